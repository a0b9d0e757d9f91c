// Names never become paths outside an image root or its outputs, checked in
// this package's own layer with record objects and tree nodes directly (the
// apk parser and the config schema may refuse them first): package names
// and versions, apk key names, config path mutations, and every node written
// to a directory (materializeRoot) or a layer (tar).

import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { emptyPackageInfo, indexRecordForPackage, writePackage } from "@kiln/apk";
import { isKilnError } from "@kiln/core";
import type { RepoPackage } from "@kiln/repo";
import { parseImageConfig } from "./config.js";
import { materializeRoot } from "./materialize.js";
import { applyPaths } from "./mutate.js";
import { ImageRoot } from "./root.js";

let dir: string;
let good: { file: string; rp: RepoPackage };
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-image-paths-"));
  const file = join(dir, "hello-1.0-r0.apk");
  await writePackage(
    {
      info: emptyPackageInfo("hello", "1.0-r0", "x86_64"),
      entries: [{ path: "usr/bin/hello", type: "file", mode: 0o755, content: "hi\n" }],
    },
    file,
  );
  good = { file, rp: { record: await indexRecordForPackage(file), repo: { url: dir }, url: file } };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function drain(it: AsyncIterable<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const c of it) n += c.length;
  return n;
}

describe("package names and versions", () => {
  it.each([{ name: "x/../../etc" }, { name: ".." }, { version: "1.0/../../x" }, { name: "a\u0000b" }])(
    "installPackage refuses record %j before reading the package",
    async (over) => {
      const root = new ImageRoot(join(dir, "spool-name"));
      const err = await root
        .installPackage(good.file, { ...good.rp, record: { ...good.rp.record, ...over } })
        .catch((e: unknown) => e);
      expect(isKilnError(err, "UNSAFE_NAME"), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/^refusing to install /);
      expect(root.installed).toEqual([]);
      expect(existsSync(root.spoolDir)).toBe(false);
    },
  );

  it("writeApkState refuses a key name that is not one plain segment", async () => {
    const root = new ImageRoot(join(dir, "spool-key"));
    await root.installPackage(good.file, good.rp);
    const err = await root
      .writeApkState({
        world: ["hello"],
        repositories: [],
        arch: "x86_64",
        keys: [{ name: "..", pem: Buffer.from("k") }],
      })
      .catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^etc\/apk\/keys: key name "\.\." is not a valid name/);
  });
});

describe("outputs: a directory and a layer", () => {
  for (const bad of ["..", "usr/../..", "usr//bin", "./x", "usr/bin/"]) {
    it(`materializeRoot and tar refuse a node at ${JSON.stringify(bad)}, writing nothing`, async () => {
      const root = new ImageRoot(join(dir, "spool-out"));
      await root.installPackage(good.file, good.rp);
      root.nodes.set(bad, { path: bad, type: "symlink", mode: 0o777, uid: 0, gid: 0, linkTarget: "/etc/passwd" });
      const target = join(dir, `guest-${readdirSync(dir).length}`, "root");
      const err = await materializeRoot(root, target).catch((e: unknown) => e);
      expect(isKilnError(err, "INVALID_PATH"), String(err)).toBe(true);
      expect((err as Error).message).toContain(`refusing to write ${JSON.stringify(bad)}`);
      expect(existsSync(target)).toBe(false);
      await expect(drain(root.tar({ mtime: 0 }))).rejects.toThrow(`refusing to write ${JSON.stringify(bad)}`);
    });
  }

  it("tar refuses a bad name right after a good one in the same directory, naming the whole path", async () => {
    // Sorted, "usr/bin/-" comes just before "usr/bin/..": the second is checked by its name alone.
    const root = new ImageRoot(join(dir, "spool-sibling"));
    await root.installPackage(good.file, good.rp);
    root.nodes.set("usr/bin/-", { path: "usr/bin/-", type: "symlink", mode: 0o777, uid: 0, gid: 0, linkTarget: "x" });
    root.nodes.set("usr/bin/..", { path: "usr/bin/..", type: "symlink", mode: 0o777, uid: 0, gid: 0, linkTarget: "/" });
    const err = await drain(root.tar({ mtime: 0 })).catch((e: unknown) => e);
    expect(isKilnError(err, "INVALID_PATH"), String(err)).toBe(true);
    expect((err as Error).message).toContain(`refusing to write "usr/bin/.."`);
  });

  it("a clean tree still materializes and tars", async () => {
    const root = new ImageRoot(join(dir, "spool-clean"));
    await root.installPackage(good.file, good.rp);
    const target = join(dir, "clean-guest");
    await materializeRoot(root, target);
    expect(readdirSync(join(target, "usr/bin"))).toEqual(["hello"]);
    expect((await drain(root.tar({ mtime: 0 }))) % 512).toBe(0);
  });
});

describe("config path mutations", () => {
  it("the config refuses .. segments in paths[].path", () => {
    expect(() =>
      parseImageConfig(
        "img.yaml",
        "contents:\n  packages: [hello]\npaths:\n  - {path: /var/../../etc/x, type: empty-file}\n",
      ),
    ).toThrow(/paths\[0\]\.path: "\/var\/\.\.\/\.\.\/etc\/x" must not contain "\.\." segments/);
  });

  it.each(["/..", "/var/..", "/var/.", "/var/"])(
    "applyPaths refuses a symlink or hardlink whose last segment is %j",
    async (path) => {
      const root = new ImageRoot(join(dir, "spool-mut"));
      await root.installPackage(good.file, good.rp);
      const cfg = {
        file: "img.yaml",
        paths: [{ path, type: "symlink" as const, uid: 0, gid: 0, source: "/etc/passwd", recursive: false }],
      };
      await expect(applyPaths(root, cfg as never)).rejects.toThrow(/img\.yaml: paths\[0\] .*last path segment/);
      const hl = { ...cfg, paths: [{ ...cfg.paths[0]!, type: "hardlink" as const, source: "/usr/bin/hello" }] };
      await expect(applyPaths(root, hl as never)).rejects.toThrow(/last path segment/);
      for (const n of root.nodes.keys()) expect(n.split("/")).not.toContain("..");
    },
  );
});
