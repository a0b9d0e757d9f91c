// Guests made from package manifests: a package installed into one guest is
// installed into the next from its manifest, linking the store's files,
// without its .apk; the guest is the same tree; a manifest that is damaged or
// names a store entry that is gone is not used.

import { buildIndex, generateKey, parseSigningKey, writePackage, emptyPackageInfo, type EntrySpec } from "@kiln/apk";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { indexRecordForPackage } from "@kiln/apk";
import { assembleGuest, resolveGuest, type GuestSpec } from "./guest.js";
import { manifestPath } from "./guest-manifests.js";
import { listStore } from "./guest-store.js";

let tmp: string;
let repo: string;
let pub: { name: string; pem: Buffer };
const tool = Buffer.alloc(100_000, "t");

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "kiln-guest-manifests-"));
  repo = join(tmp, "repo");
  await mkdir(join(repo, "x86_64"), { recursive: true });
  const k = await generateKey(2048);
  const key = parseSigningKey(k.privatePem, "test.rsa.pub");
  pub = { name: "test.rsa.pub", pem: Buffer.from(k.publicPem) };
  const base: EntrySpec[] = [
    { path: "usr", type: "dir" },
    { path: "usr/bin", type: "dir" },
    { path: "usr/bin/tool", type: "file", content: tool, mode: 0o755 },
    { path: "usr/bin/tool-again", type: "hardlink", linkTarget: "usr/bin/tool" },
    { path: "usr/bin/t", type: "symlink", linkTarget: "tool" },
    { path: "etc", type: "dir" },
    { path: "etc/empty.conf", type: "file", content: Buffer.alloc(0) },
    { path: "etc/tool.conf", type: "file", content: Buffer.from("level=3\n") },
    { path: "var", type: "dir" },
    { path: "var/lib", type: "dir" },
    { path: "var/lib/tool", type: "dir", mode: 0o700, uid: 1000, gid: 1000 },
  ];
  const extra: EntrySpec[] = [
    { path: "etc", type: "dir" },
    // replaces base's copy: the installed database and tree must say so after a replay too
    { path: "etc/tool.conf", type: "file", content: Buffer.from("level=9\n") },
    { path: "usr", type: "dir" },
    { path: "usr/share", type: "dir" },
    { path: "usr/share/extra.txt", type: "file", content: Buffer.alloc(5000, "e") },
  ];
  const recs = [];
  for (const [name, entries, replaces] of [
    ["base", base, []],
    ["extra", extra, ["base"]],
  ] as const) {
    const info = { ...emptyPackageInfo(name, "1.0-r0", "x86_64"), replaces: [...replaces] };
    if (name === "base") info.depends = [];
    const file = join(repo, "x86_64", `${name}-1.0-r0.apk`);
    await writePackage(
      {
        info,
        entries: [...entries],
        signingKeys: [key],
        scripts: name === "base" ? { ".post-install": "#!/bin/sh\necho hi\n" } : {},
      },
      file,
    );
    recs.push(await indexRecordForPackage(file));
  }
  await writeFile(join(repo, "x86_64", "APKINDEX.tar.gz"), buildIndex(recs, { signingKeys: [key] }));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

function spec(cacheDir: string, buildUid: number): GuestSpec {
  return { arch: "x86_64", packages: ["base", "extra"], repositories: [repo], keys: [pub], buildUid, cacheDir };
}

/** Every path with its type, mode and link target, and every regular file's content hash. */
function listing(dir: string): string[] {
  const out = execFileSync("find", [".", "-printf", "%p %y %m %l\\n"], { cwd: dir, encoding: "utf8" });
  const sums = execFileSync("sh", ["-c", "find . -type f -exec sha256sum {} + | sort -k2"], {
    cwd: dir,
    encoding: "utf8",
  });
  return [...out.split("\n").filter(Boolean).sort(), ...sums.split("\n")];
}

async function hideApks(cacheDir: string): Promise<() => Promise<void>> {
  const aside = join(tmp, `aside-${Math.random()}`);
  await mkdir(aside);
  await rm(join(cacheDir, "packages"), { recursive: true, force: true });
  const names = (await readdir(join(repo, "x86_64"))).filter((n) => n.endsWith(".apk"));
  for (const n of names) await writeFile(join(aside, n), await readFile(join(repo, "x86_64", n)));
  for (const n of names) await rm(join(repo, "x86_64", n));
  return async () => {
    for (const n of names) await writeFile(join(repo, "x86_64", n), await readFile(join(aside, n)));
  };
}

describe("guests from package manifests", () => {
  it("the second guest is made from manifests without the .apk files: same tree, same store inodes, same apk database", async () => {
    const cache = join(tmp, "c1");
    const s1 = spec(cache, 1000);
    const pkgs = await resolveGuest(s1);
    const a = await assembleGuest(s1, pkgs);
    await a.release();
    for (const p of pkgs) expect((await stat(manifestPath(cache, p.record.checksum)!)).isFile()).toBe(true);
    const restore = await hideApks(cache);
    try {
      // Another build user: another guest key, so it is assembled again, not reused.
      const b = await assembleGuest(spec(cache, 1001), pkgs);
      await b.release();
      expect(b.reused).toBe(false);
      expect(b.key).not.toBe(a.key);
      // all but the build user in /etc/passwd and /etc/group, and the marker naming the key
      const accounts = (l: string) => !/\.\/(etc\/passwd|etc\/group|\.kiln-guest-complete)$/.test(l);
      const la = listing(a.dir).filter(accounts);
      const lb = listing(b.dir).filter(accounts);
      expect(lb).toEqual(la);
      expect(await readFile(join(b.dir, "etc/tool.conf"), "utf8")).toBe("level=9\n");
      expect((await stat(join(b.dir, "usr/bin/tool"))).ino).toBe((await stat(join(a.dir, "usr/bin/tool"))).ino);
      expect((await stat(join(b.dir, "usr/bin/tool-again"))).ino).toBe((await stat(join(b.dir, "usr/bin/tool"))).ino);
      expect(await readFile(join(b.dir, "lib/apk/db/installed"), "utf8")).toBe(
        await readFile(join(a.dir, "lib/apk/db/installed"), "utf8"),
      );
      expect(await readFile(join(b.dir, "lib/apk/db/scripts.tar"))).toEqual(
        await readFile(join(a.dir, "lib/apk/db/scripts.tar")),
      );
    } finally {
      await restore();
    }
  });

  it("a damaged manifest, or one naming a store entry that is gone, falls back to the package", async () => {
    const cache = join(tmp, "c2");
    const s1 = spec(cache, 1000);
    const pkgs = await resolveGuest(s1);
    await (await assembleGuest(s1, pkgs)).release();
    const base = pkgs.find((p) => p.record.name === "base")!;
    const extra = pkgs.find((p) => p.record.name === "extra")!;
    // extra's store entry gone: without the .apk its guest cannot be made, which shows the manifest was not used
    const entries = await listStore(cache);
    const extraFile = entries.find((e) => e.bytes > 0 && e.nlink === 2 && e.path.endsWith("-644"));
    expect(extraFile).toBeDefined();
    const restore = await hideApks(cache);
    try {
      for (const e of entries) if (!e.path.endsWith("-755")) await rm(e.path);
      const s2 = { ...spec(cache, 1001), packages: ["extra"] };
      await expect(assembleGuest(s2, [extra])).rejects.toThrow(/extra/);
      // base's manifest replaced by garbage: same
      await writeFile(manifestPath(cache, base.record.checksum)!, "{ not json");
      const s3 = { ...spec(cache, 1002), packages: ["base"] };
      await expect(assembleGuest(s3, [base])).rejects.toThrow(/base/);
    } finally {
      await restore();
    }
    // with the packages back, both guests are made (from the packages) and the manifests written again
    const g = await assembleGuest({ ...spec(cache, 1003) }, pkgs);
    await g.release();
    expect(await readFile(join(g.dir, "usr/share/extra.txt"))).toEqual(Buffer.alloc(5000, "e"));
    expect(JSON.parse(await readFile(manifestPath(cache, base.record.checksum)!, "utf8")).version).toBe(1);
  });
});
