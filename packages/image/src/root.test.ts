import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { emptyPackageInfo, indexRecordForPackage, parseInstalledDb, writePackage, type EntrySpec } from "@kiln/apk";
import type { RepoPackage } from "@kiln/repo";
import { ImageRoot } from "./root.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-root-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function pkg(
  name: string,
  entries: EntrySpec[],
  extra: { replaces?: string[]; origin?: string; scripts?: Record<string, string>; triggers?: string[] } = {},
): Promise<{ file: string; rp: RepoPackage }> {
  const info = emptyPackageInfo(name, "1.0-r0", "x86_64");
  info.replaces = extra.replaces ?? [];
  info.origin = extra.origin ?? name;
  info.triggers = extra.triggers ?? [];
  const file = join(dir, `${name}-${n++}.apk`);
  await writePackage({ info, entries, scripts: extra.scripts as never }, file);
  const record = await indexRecordForPackage(file);
  return { file, rp: { record, repo: { url: dir }, url: file } };
}

async function install(root: ImageRoot, ...pkgs: Array<{ file: string; rp: RepoPackage }>) {
  for (const p of pkgs) await root.installPackage(p.file, p.rp);
}

describe("installing into an image root", () => {
  it("places files, links and directories, and writes apk's database", async () => {
    const root = new ImageRoot(join(dir, "spool1"));
    const base = await pkg("baselayout", [
      { path: "usr/bin", type: "dir" },
      { path: "usr/lib", type: "dir" },
      { path: "bin", type: "symlink", linkTarget: "usr/bin" },
      { path: "lib", type: "symlink", linkTarget: "usr/lib" },
      { path: "etc/passwd", type: "file", content: "root:x:0:0:root:/root:/bin/sh\n" },
    ]);
    // A package that still ships /bin/tool: it lands in usr/bin through the merged-usr link.
    const tool = await pkg(
      "tool",
      [
        { path: "bin/tool", type: "file", mode: 0o755, content: "#!/bin/sh\n" },
        { path: "bin/tool2", type: "hardlink", linkTarget: "bin/tool" },
      ],
      { scripts: { ".post-install": "#!/bin/sh\necho hi\n" }, triggers: ["/usr/share/x/*"] },
    );
    await install(root, base, tool);
    expect(root.nodes.get("usr/bin/tool")).toMatchObject({ type: "file", mode: 0o755, owner: "tool" });
    expect(root.nodes.get("bin")).toMatchObject({ type: "symlink", linkTarget: "usr/bin" });
    expect(root.nodes.get("usr/bin/tool2")!.linkGroup).toBe(root.nodes.get("usr/bin/tool")!.linkGroup);
    await root.writeApkState({
      world: ["tool"],
      repositories: [{ url: "https://repo.invalid/os" }],
      arch: "x86_64",
      keys: [{ name: "k.rsa.pub", pem: Buffer.from("PEM") }],
    });
    // lib → usr/lib: the database lands in usr/lib/apk/db/installed.
    const db = parseInstalledDb((await root.readText("lib/apk/db/installed"))!);
    expect(root.nodes.has("usr/lib/apk/db/installed")).toBe(true);
    expect(db.map((p) => p.record.name)).toEqual(["baselayout", "tool"]);
    const t = db.find((p) => p.record.name === "tool")!;
    expect(t.dirs.map((d) => [d.path, d.files.map((f) => f.name)])).toEqual([["bin", ["tool", "tool2"]]]);
    expect(t.record.checksum).toBe(tool.rp.record.checksum);
    expect(await root.readText("etc/apk/world")).toBe("tool\n");
    expect(await root.readText("etc/apk/arch")).toBe("x86_64\n");
    expect(await root.readText("lib/apk/db/triggers")).toBe(`${tool.rp.record.checksum} /usr/share/x/*\n`);
    const scripts = await root.readBlob(root.get("lib/apk/db/scripts.tar")!.blob!);
    expect(scripts.subarray(0, 100).toString()).toContain(`tool-1.0-r0.${tool.rp.record.checksum}.post-install`);
  });

  it("allows identical duplicates, honours replaces, and names both packages on a conflict", async () => {
    const root = new ImageRoot(join(dir, "spool2"));
    const a = await pkg("a", [
      { path: "etc/conf", type: "file", content: "same" },
      { path: "etc/a", type: "file", content: "a" },
    ]);
    const b = await pkg("b", [{ path: "etc/conf", type: "file", content: "same" }]);
    await install(root, a, b);
    const c = await pkg("c", [{ path: "etc/a", type: "file", content: "c's version" }]);
    await expect(install(root, c)).rejects.toThrow(/file conflict: \/etc\/a is in both a and c/);
    const d = await pkg("d", [{ path: "etc/a", type: "file", content: "d's version" }], { replaces: ["a"] });
    await install(root, d);
    expect(await root.readText("etc/a")).toBe("d's version");
    expect(root.nodes.get("etc/a")!.owner).toBe("d");
  });

  it("never writes outside the root: a symlink to / followed by etc/passwd stays inside", async () => {
    const root = new ImageRoot(join(dir, "spool3"));
    const evil1 = await pkg("evil1", [{ path: "etc", type: "symlink", linkTarget: "/" }]);
    const evil2 = await pkg("evil2", [{ path: "etc/passwd", type: "file", content: "pwned" }]);
    await install(root, evil1);
    // The reader refuses the second package's layout only if it is inconsistent;
    // here "etc/passwd" resolves through etc → / to /passwd inside the root.
    await install(root, evil2);
    // etc → / resolves to the image root, so the file lands at /passwd inside it.
    expect(await root.readText("passwd")).toBe("pwned");
    expect(root.nodes.has("etc/passwd")).toBe(false);
    for (const p of root.nodes.keys()) expect(p.startsWith("/") || p.split("/").includes("..")).toBe(false);
    expect(root.resolve("etc/../../../../etc/passwd", true)).toBe("passwd");
    expect(root.resolve("etc/passwd", true)).toBe("passwd");
  });

  it("refuses a package whose bytes differ from its index record", async () => {
    const root = new ImageRoot(join(dir, "spool4"));
    const a = await pkg("x", [{ path: "f", type: "file", content: "1" }]);
    const b = await pkg("x", [{ path: "f", type: "file", content: "2" }]);
    await expect(root.installPackage(b.file, a.rp)).rejects.toThrow(/differ from the index/);
  });

  it("emits a sorted tar with parents first and hard links after their target", async () => {
    const root = new ImageRoot(join(dir, "spool5"));
    const p = await pkg("t", [
      { path: "z/file", type: "file", content: "zz" },
      { path: "a/link", type: "hardlink", linkTarget: "z/file" },
    ]);
    await install(root, p);
    const chunks: Buffer[] = [];
    for await (const c of root.tar({ mtime: 7 })) chunks.push(Buffer.from(c));
    const tar = Buffer.concat(chunks);
    const names: string[] = [];
    for (let off = 0; off + 512 <= tar.length;) {
      const name = tar
        .subarray(off, off + 100)
        .toString()
        .replace(/\0.*$/s, "");
      if (!name) break;
      const size = parseInt(
        tar
          .subarray(off + 124, off + 136)
          .toString()
          .replace(/\0.*$/s, ""),
        8,
      );
      names.push(`${String.fromCharCode(tar[off + 156]!)}:${name}`);
      off += 512 + Math.ceil(size / 512) * 512;
    }
    expect(names).toEqual(["5:a/", "0:a/link", "5:z/", "1:z/file"]);
  });
});
