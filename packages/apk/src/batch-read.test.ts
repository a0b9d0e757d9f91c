// The reader's batched fast path (entries lying whole in the inflated bytes
// at hand are parsed without waiting) must give exactly what the general path
// gives, and the in-place header encoder exactly what encodeHeader gives.

import { createHash } from "node:crypto";
import { createReadStream, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApkError } from "./errors.js";
import { generateKey, parseSigningKey, type SigningKey } from "./keys.js";
import { emptyPackageInfo } from "./pkginfo.js";
import { dataOffset, openPackage, type DataEntry } from "./package-read.js";
import { writePackage, type EntrySpec } from "./package-write.js";
import { decodeHeader, encodeHeader, encodeHeaderInto, paxRecord, parsePax, type TarHeader } from "./tar.js";

let dir: string;
let key: SigningKey;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-batch-"));
  const k = await generateKey(2048);
  key = parseSigningKey(k.privatePem, "test.rsa.pub");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Many small files in a few directories, two large ones (they cross the inflater's chunks), links and a device. */
function mixedEntries(): EntrySpec[] {
  const out: EntrySpec[] = [{ path: "usr", type: "dir" }];
  for (let d = 0; d < 4; d++) {
    out.push({ path: `usr/d${d}`, type: "dir" });
    for (let i = 0; i < 700; i++) {
      const body = Buffer.from(`${d}/${i} ${"y".repeat((i * 37) % 300)}\n`);
      out.push({ path: `usr/d${d}/f${i}`, type: "file", content: body, mode: i % 3 ? 0o644 : 0o755 });
    }
  }
  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
  out.push({ path: "usr/d0/big", type: "file", content: big });
  out.push({ path: "usr/d1/big2", type: "file", content: big.subarray(0, 700 * 1024) });
  out.push({ path: "usr/d1/link", type: "symlink", linkTarget: "big2" });
  out.push({ path: "usr/d1/hard", type: "hardlink", linkTarget: "usr/d1/big2" });
  out.push({ path: "usr/d2/empty", type: "file", content: Buffer.alloc(0) });
  out.push({ path: `usr/d3/${"n".repeat(120)}`, type: "file", content: Buffer.from("long name\n") });
  return out;
}

interface Seen {
  path: string;
  type: string;
  mode: number;
  sha1: string | undefined;
  linkTarget: string | undefined;
  content: string;
}

async function collect(e: DataEntry): Promise<Seen> {
  const h = createHash("sha256");
  for await (const c of e.content()) h.update(c);
  return { path: e.path, type: e.type, mode: e.mode, sha1: e.sha1, linkTarget: e.linkTarget, content: h.digest("hex") };
}

describe("entryBatches", () => {
  it("gives the entries entries() gives, small files with their data at hand, the rest streamed as the last of a batch", async () => {
    const file = join(dir, "mixed.apk");
    await writePackage(
      { info: emptyPackageInfo("mixed", "1.0-r0", "x86_64"), entries: mixedEntries(), signingKeys: [key] },
      file,
    );
    const one: Seen[] = [];
    const r1 = await openPackage(createReadStream(file), { subject: file });
    for await (const e of r1.entries()) one.push(await collect(e));
    await r1.close();

    const batched: Seen[] = [];
    let withData = 0;
    let batches = 0;
    const r2 = await openPackage(createReadStream(file), { subject: file });
    for await (const batch of r2.entryBatches()) {
      batches++;
      for (const [i, e] of batch.entries()) {
        // Only the last of a batch may still have to be read from the package.
        if (i < batch.length - 1 && e.type === "file")
          expect(e.data, `${e.path} is not the last of its batch`).toBeDefined();
        if (e.data) {
          withData++;
          expect(createHash("sha1").update(e.data).digest("hex")).toBe(e.sha1);
        }
        batched.push(await collect(e));
      }
    }
    await r2.close();
    expect(batched).toEqual(one);
    // Both equal what was written (entries() reads through the same batches, so it is no reference on its own).
    const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
    const written = mixedEntries()
      .map((e) => ({
        path: e.path,
        type: e.type,
        linkTarget: e.linkTarget,
        content: sha256(e.type === "file" ? (e.content as Uint8Array) : new Uint8Array(0)),
      }))
      .sort((a, b) => (a.path < b.path ? -1 : 1));
    expect(batched.map(({ path, type, linkTarget, content }) => ({ path, type, linkTarget, content }))).toEqual(
      written,
    );
    // Most small files come at hand, in far fewer batches than entries; the 3 MiB file never does.
    expect(withData).toBeGreaterThan(2000);
    expect(batches).toBeLessThan(one.length / 10);
    expect(batched.find((e) => e.path === "usr/d0/big")).toBeDefined();
  });

  it("a tampered small file at hand is refused for its checksum, after the entries before it", async () => {
    const entries: EntrySpec[] = [{ path: "etc", type: "dir" }];
    for (let i = 0; i < 20; i++)
      entries.push({ path: `etc/f${i}`, type: "file", content: Buffer.from(`file ${i} ${"z".repeat(i)}\n`) });
    const file = join(dir, "tamper.apk");
    await writePackage({ info: emptyPackageInfo("tamper", "1.0-r0", "x86_64"), entries, signingKeys: [] }, file);
    // Rewrite the data member with one byte of etc/f7's content changed (its PAX checksum kept).
    const bytes = readFileSync(file);
    const r = await openPackage(createReadStream(file), { subject: file });
    const start = dataOffset(r.head);
    await r.close();
    const { gunzipSync } = await import("node:zlib");
    const tar = gunzipSync(bytes.subarray(start));
    const at = tar.indexOf("file 7 zzzzzzz");
    expect(at).toBeGreaterThan(0);
    tar[at] = "F".charCodeAt(0);
    const bad = join(dir, "tampered.apk");
    writeFileSync(bad, Buffer.concat([bytes.subarray(0, start), gzipSync(tar)]));
    const seen: string[] = [];
    const reader = await openPackage(createReadStream(bad), { subject: bad });
    const err = await (async () => {
      for await (const batch of reader.entryBatches()) for (const e of batch) seen.push(e.path);
    })().catch((e: unknown) => e);
    await reader.close();
    expect(err).toBeInstanceOf(ApkError);
    expect((err as ApkError).message).toBe(`${bad}: etc/f7: content does not match its APK-TOOLS.checksum.SHA1`);
    // Packages list their entries sorted by path: f0, f1, f10 … f19, f2 … f6 come before f7.
    const sorted = entries.map((e) => e.path).sort();
    expect(seen).toEqual(sorted.slice(0, sorted.indexOf("etc/f7")));
    expect(seen).toHaveLength(18);
  });
});

describe("encodeHeaderInto", () => {
  const cases: TarHeader[] = [
    { path: "usr/bin/x", type: "file", mode: 0o755, uid: 0, gid: 0, size: 1234, mtime: 1700000000 },
    { path: "usr/lib/", type: "dir", mode: 0o755, uid: 1000, gid: 1000, size: 0, mtime: 0, uname: "u", gname: "g" },
    {
      path: "usr/lib/libz.so",
      type: "symlink",
      mode: 0o777,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: 5,
      linkTarget: "libz.so.1",
    },
    { path: "dev/null", type: "char", mode: 0o666, uid: 0, gid: 0, size: 0, mtime: 0, devMajor: 1, devMinor: 3 },
    { path: "usr/share/é-ü.txt", type: "file", mode: 0o644, uid: 0, gid: 0, size: 3, mtime: 0 },
    { path: `usr/${"long/".repeat(30)}x`, type: "file", mode: 0o644, uid: 0, gid: 0, size: 1, mtime: 0 },
    { path: "big", type: "file", mode: 0o644, uid: 0, gid: 0, size: 5 * 1024 ** 3 + 3, mtime: 2 ** 32 + 9 },
    { path: "a", type: "hardlink", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0, linkTarget: "b" },
    {
      path: "x",
      type: "file",
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: 0,
      pax: { "SCHILY.xattr.user.k": Buffer.from([0, 1, 2]) },
    },
  ];
  for (const h of cases) {
    it(`writes what encodeHeader gives: ${h.type} ${h.path.slice(0, 40)}`, () => {
      const want = encodeHeader(h);
      const buf = Buffer.alloc(want.length + 700, 0xee);
      expect(encodeHeaderInto(h, buf, 100)).toBe(want.length);
      expect(buf.subarray(100, 100 + want.length).equals(want)).toBe(true);
      expect(buf[99]).toBe(0xee);
      expect(buf[100 + want.length]).toBe(0xee);
      // What does not fit is not written.
      const small = Buffer.alloc(want.length - 1, 0xee);
      expect(encodeHeaderInto(h, small, 0)).toBe(-1);
      expect(small.every((b) => b === 0xee)).toBe(true);
    });
  }

  it("decodes back, from an aligned and from a misaligned buffer, and a changed byte fails the checksum in both", () => {
    const h = cases[0]!;
    const block = encodeHeader(h);
    const aligned = new Uint8Array(new ArrayBuffer(1024), 0, 512);
    aligned.set(block);
    const odd = new Uint8Array(new ArrayBuffer(1024), 3, 512);
    odd.set(block);
    for (const b of [aligned, odd]) {
      const d = decodeHeader(b);
      expect([d.name, d.mode, d.size, d.mtime, d.typeflag, d.uname]).toEqual([
        h.path,
        0o755,
        1234,
        1700000000,
        "0",
        "root",
      ]);
      const c = b.slice();
      c[40] = 0x41;
      expect(() => decodeHeader(c)).toThrow(/checksum mismatch/);
    }
  });

  it("decodes a block at an offset of a larger buffer (aligned or not) as the block itself", () => {
    for (const h of cases) {
      const block = encodeHeader(h).subarray(-512);
      for (const at of [512, 515]) {
        const big = Buffer.alloc(at + 1024, 0);
        big.set(block, at);
        expect(decodeHeader(big, at)).toEqual(decodeHeader(Buffer.from(block)));
      }
    }
  });
});

describe("parsePax over a range", () => {
  it("reads the records between start and end only, values copied", () => {
    const body = Buffer.concat([paxRecord("path", "a/é"), paxRecord("SCHILY.xattr.user.x", Buffer.from([0, 255]))]);
    const big = Buffer.concat([Buffer.from("junk="), body, Buffer.from("99 more=junk\n")]);
    const got = parsePax(big, "t", 5, 5 + body.length);
    expect([...got.keys()]).toEqual(["path", "SCHILY.xattr.user.x"]);
    expect(got.get("path")!.toString("utf8")).toBe("a/é");
    expect([...got.get("SCHILY.xattr.user.x")!]).toEqual([0, 255]);
    big.fill(0);
    expect(got.get("path")!.toString("utf8")).toBe("a/é");
    // A record running past the end of the range is refused.
    expect(() => parsePax(Buffer.concat([body]), "t", 0, body.length - 1)).toThrow(/does not match its content/);
  });
});
