// Data budgets of a root: a package may not write more than it declares (I:
// plus max(10%, 1 MiB)), a root may not exceed its total cap, and a refused
// install leaves no partial file in the spool.

import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { emptyPackageInfo, indexRecordForPackage, writePackage, type EntrySpec } from "@kiln/apk";
import { isKilnError } from "@kiln/core";
import type { RepoPackage } from "@kiln/repo";
import { DEFAULT_ROOT_CAP, formatSize, MIB, packageAllowance, parseSize, rootCapFromEnv } from "./budget.js";
import { ImageRoot } from "./root.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-budget-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Incompressible-ish bytes, so the package stays small only if the test means it to. */
function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let s = seed;
  for (let i = 0; i < n; i++) b[i] = (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 24;
  return b;
}

let n = 0;
async function pkg(
  name: string,
  entries: EntrySpec[],
  installedSize?: number,
): Promise<{ file: string; rp: RepoPackage }> {
  const info = emptyPackageInfo(name, "1.0-r0", "x86_64");
  if (installedSize !== undefined) info.installedSize = installedSize;
  const file = join(dir, `${name}-${n++}.apk`);
  await writePackage({ info, entries }, file);
  const record = await indexRecordForPackage(file);
  return { file, rp: { record, repo: { url: dir }, url: file } };
}

function spoolFiles(root: ImageRoot): string[] {
  return existsSync(root.spoolDir) ? readdirSync(root.spoolDir).sort() : [];
}

describe("per-package budget: actual file bytes ≤ I: + max(10%, 1 MiB)", () => {
  it("refuses a package whose files exceed its declared installed size, naming it, with no partial file left", async () => {
    // Declares 1000 bytes; its one file is 3 MiB. The first file is small and honest.
    const bomb = await pkg(
      "bomb",
      [
        { path: "etc/small", type: "file", content: "ok\n" },
        { path: "usr/share/bomb/blob", type: "file", content: bytes(3 * MIB) },
      ],
      1000,
    );
    expect(bomb.rp.record.installedSize).toBe(1000);
    const root = new ImageRoot(join(dir, "spool-bomb"));
    const err = await root.installPackage(bomb.file, bomb.rp).catch((e: unknown) => e);
    expect(isKilnError(err, "TOO_LARGE"), String(err)).toBe(true);
    expect((err as Error).message).toBe(
      `bomb-1.0-r0: its files hold more than ${1000 + MIB} bytes, but it declares 1000 bytes installed (I:), and at most max(10%, 1 MiB) more is accepted; refusing it`,
    );
    // The honest small file is stored; the refused one stopped at the allowance and was removed.
    expect(spoolFiles(root).filter((f) => f.startsWith("tmp-"))).toEqual([]);
    expect(spoolFiles(root)).toEqual([]); // the small file is kept in memory
    expect(await root.readText("etc/small")).toBe("ok\n");
    expect(root.written).toBe(3);
  });

  it("accepts a package within the slack: 1 MiB over a small I:, 10% over a large one", async () => {
    const small = await pkg("within-mib", [{ path: "usr/share/a", type: "file", content: bytes(MIB) }], 1000);
    const large = await pkg(
      "within-tenth",
      [{ path: "usr/share/b", type: "file", content: bytes(12 * MIB) }],
      11 * MIB,
    );
    const root = new ImageRoot(join(dir, "spool-ok"));
    await root.installPackage(small.file, small.rp);
    await root.installPackage(large.file, large.rp);
    expect(root.written).toBe(13 * MIB);
    expect(packageAllowance(1000)).toBe(1000 + MIB);
    expect(packageAllowance(100 * MIB)).toBe(110 * MIB);
  });

  it("a package 10% + 1 byte over a large I: is refused", async () => {
    const declared = 20 * MIB;
    const over = await pkg(
      "over-tenth",
      [{ path: "usr/share/c", type: "file", content: bytes(packageAllowance(declared) + 1) }],
      declared,
    );
    const err = await new ImageRoot(join(dir, "spool-over"))
      .installPackage(over.file, over.rp)
      .catch((e: unknown) => e);
    expect((err as Error).message).toMatch(
      /^over-tenth-1\.0-r0: its files hold more than 23068672 bytes, but it declares 20971520 bytes installed \(I:\)/,
    );
  });

  it("the smaller of the index's I: and .PKGINFO's size is what counts", async () => {
    const p = await pkg("index-lies", [{ path: "usr/share/d", type: "file", content: bytes(2 * MIB) }]); // .PKGINFO size = 2 MiB, honest
    const rp = { ...p.rp, record: { ...p.rp.record, installedSize: 10 } };
    const err = await new ImageRoot(join(dir, "spool-index")).installPackage(p.file, rp).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(
      /^index-lies-1\.0-r0: its files hold more than 1048586 bytes, but it declares 10 bytes installed/,
    );
  });
});

describe("the total cap", () => {
  it("refuses the install that would take the root past it, naming the cap and how to raise it", async () => {
    const a = await pkg("part-a", [{ path: "usr/share/a", type: "file", content: bytes(600 * 1024) }]);
    const b = await pkg("part-b", [{ path: "usr/share/b", type: "file", content: bytes(600 * 1024, 2) }]);
    const root = new ImageRoot(join(dir, "spool-cap"), { maxBytes: MIB, raiseHint: "raise it with --max-size SIZE" });
    await root.installPackage(a.file, a.rp);
    // b declares what it holds; the declared size alone no longer fits.
    const err = await root.installPackage(b.file, b.rp).catch((e: unknown) => e);
    expect(isKilnError(err, "TOO_LARGE")).toBe(true);
    expect((err as Error).message).toBe(
      "part-b-1.0-r0: the image root would exceed its cap of 1 MiB of file content (600 KiB written, 600 KiB more declared); raise it with --max-size SIZE",
    );
    // One that declares little enough to fit, within its own slack, is stopped by the cap while written.
    const sly = await pkg("sly", [{ path: "usr/share/sly", type: "file", content: bytes(1536 * 1024, 3) }], 900 * 1024);
    const root2 = new ImageRoot(join(dir, "spool-cap2"), { maxBytes: MIB });
    const err2 = await root2.installPackage(sly.file, sly.rp).catch((e: unknown) => e);
    expect((err2 as Error).message).toBe(
      "sly-1.0-r0: the image root would exceed its cap of 1 MiB of file content; set KILN_MAX_ROOT_SIZE to raise it (e.g. KILN_MAX_ROOT_SIZE=32G)",
    );
    expect(spoolFiles(root2)).toEqual([]);
  });

  it("stops a file mid-write when nothing declares a size", async () => {
    const root = new ImageRoot(join(dir, "spool-stream"), { maxBytes: MIB });
    async function* endless() {
      for (let i = 0; i < 64; i++) yield bytes(64 * 1024, i);
    }
    const err = await root.spool(endless(), undefined, "stream-test").catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      "stream-test: the image root would exceed its cap of 1 MiB of file content; set KILN_MAX_ROOT_SIZE to raise it (e.g. KILN_MAX_ROOT_SIZE=32G)",
    );
    expect(spoolFiles(root)).toEqual([]);
    expect(root.written).toBe(0);
  });

  it("checkDeclared refuses a package set whose I: sum exceeds the cap before anything is fetched", async () => {
    const a = await pkg("declared-a", [{ path: "usr/share/a", type: "file", content: bytes(700 * 1024) }]);
    const root = new ImageRoot(join(dir, "spool-declared"), { maxBytes: MIB });
    expect(() => root.checkDeclared([a.rp])).not.toThrow();
    expect(() => root.checkDeclared([a.rp, a.rp])).toThrow(
      /^2 packages declaring 1\.4 MiB installed \(I:\): the image root would exceed its cap of 1 MiB/,
    );
  });

  it("a root made without options (build guests) takes its cap from KILN_MAX_ROOT_SIZE", async () => {
    const a = await pkg("guest-a", [{ path: "usr/share/a", type: "file", content: bytes(700 * 1024) }]);
    const saved = process.env.KILN_MAX_ROOT_SIZE;
    process.env.KILN_MAX_ROOT_SIZE = "512K";
    try {
      const root = new ImageRoot(join(dir, "spool-guest"));
      expect(root.maxBytes).toBe(512 * 1024);
      await expect(root.installPackage(a.file, a.rp)).rejects.toThrow(
        "guest-a-1.0-r0: the image root would exceed its cap of 512 KiB of file content (0 bytes written, 700 KiB more declared); set KILN_MAX_ROOT_SIZE to raise it (e.g. KILN_MAX_ROOT_SIZE=32G)",
      );
      process.env.KILN_MAX_ROOT_SIZE = "a lot";
      expect(() => new ImageRoot(join(dir, "spool-guest2"))).toThrow(
        'KILN_MAX_ROOT_SIZE: expected a size such as 16G, 500M or a number of bytes, got "a lot"',
      );
    } finally {
      if (saved === undefined) delete process.env.KILN_MAX_ROOT_SIZE;
      else process.env.KILN_MAX_ROOT_SIZE = saved;
    }
  });

  it("sizes: KILN_MAX_ROOT_SIZE and --max-size values", () => {
    expect(rootCapFromEnv({})).toBe(DEFAULT_ROOT_CAP);
    expect(rootCapFromEnv({ KILN_MAX_ROOT_SIZE: "32G" })).toBe(32 * 1024 * MIB);
    expect(parseSize("500M", "x")).toBe(500 * MIB);
    expect(parseSize("2.5GiB", "x")).toBe(2.5 * 1024 * MIB);
    expect(parseSize("1048576", "x")).toBe(MIB);
    expect(() => parseSize("lots", "--max-size")).toThrow(
      '--max-size: expected a size such as 16G, 500M or a number of bytes, got "lots"',
    );
    expect(() => parseSize("0", "--max-size")).toThrow(/not a positive size/);
    expect(() => new ImageRoot(join(dir, "x"), {}).maxBytes).not.toThrow();
    expect(formatSize(DEFAULT_ROOT_CAP)).toBe("16 GiB");
    expect(formatSize(1.5 * MIB)).toBe("1.5 MiB");
  });
});
