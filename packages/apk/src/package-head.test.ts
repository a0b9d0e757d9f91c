// The head reader (index records without the data member) against the full
// reader: the same records for good packages, the same refusals for damage in
// the members it reads, and no reading of the data member at all.

import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApkError } from "./errors.js";
import { gunzipMembers } from "./gzip.js";
import { generateKey, parseSigningKey, type SigningKey } from "./keys.js";
import { indexRecordFromHead, indexRecordsFromHeads } from "./package-head.js";
import { writePackage, type EntrySpec } from "./package-write.js";
import { emptyPackageInfo } from "./pkginfo.js";
import { indexRecordForPackage } from "./verify.js";

let dir: string;
let key: SigningKey;
let good: Buffer;
let members: Buffer[];
let n = 0;

const ENTRIES: EntrySpec[] = [
  { path: "usr", type: "dir" },
  { path: "usr/share", type: "dir" },
  { path: "usr/share/big", type: "file", content: Buffer.alloc(200_000, "x") },
  { path: "usr/share/small", type: "file", content: "hello\n" },
];

async function splitMembers(b: Buffer): Promise<Buffer[]> {
  const parts: Buffer[][] = [];
  async function* one() {
    yield b;
  }
  for await (const _ of gunzipMembers(one(), { onCompressed: (m, x) => (parts[m] ??= []).push(Buffer.from(x)) }));
  return parts.map((p) => Buffer.concat(p));
}

async function fileOf(bytes: Uint8Array): Promise<string> {
  const p = join(dir, `f${n++}.apk`);
  await writeFile(p, bytes);
  return p;
}

/** The ApkError code of a promise ("OK" when it resolves). */
async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (e) {
    if (e instanceof ApkError) return e.code;
    throw e;
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-head-"));
  key = parseSigningKey((await generateKey(2048)).privatePem, "head.rsa.pub");
  const info = emptyPackageInfo("demo", "1.0-r0", "x86_64");
  info.description = "a demo";
  info.depends = ["so:libc.so.6", "busybox>=1.36"];
  info.provides = ["cmd:demo=1.0-r0"];
  const f = join(dir, "demo-1.0-r0.apk");
  await writePackage({ info, entries: ENTRIES, signingKeys: [key], sourceDateEpoch: 1_700_000_000 }, f);
  good = await readFile(f);
  members = await splitMembers(good);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("index records from the package head", () => {
  it("equal the full reader's records (C:, S:, every field), signed and unsigned", async () => {
    expect(members).toHaveLength(3);
    const unsigned = join(dir, "unsigned.apk");
    const info = emptyPackageInfo("bare", "2.0-r1", "aarch64");
    await writePackage({ info, entries: ENTRIES, signingKeys: [], sourceDateEpoch: 1_700_000_000 }, unsigned);
    for (const f of [join(dir, "demo-1.0-r0.apk"), unsigned]) {
      const full = await indexRecordForPackage(f);
      expect(await indexRecordFromHead(f)).toEqual(full);
    }
    const both = await indexRecordsFromHeads([unsigned, join(dir, "demo-1.0-r0.apk")]);
    expect(both.map((r) => r.name)).toEqual(["bare", "demo"]);
    expect(both[1]!.checksum).toMatch(/^Q1/);
    expect(both[1]!.fileSize).toBe(good.length);
  });

  it("do not read the data member: a package whose data member is garbage still gives its record", async () => {
    const garbage = Buffer.concat([members[0]!, members[1]!, Buffer.from("this is not gzip at all")]);
    const f = await fileOf(garbage);
    const rec = await indexRecordFromHead(f);
    expect(rec.name).toBe("demo");
    expect(rec.fileSize).toBe(garbage.length);
    // The full reader refuses it, so --check-data still catches it.
    expect(await code(indexRecordForPackage(f))).toBe("BAD_ARCHIVE");
  });

  it("refuse damage in the signature and control members as the full reader does", async () => {
    const head = members[0]!.length + members[1]!.length;
    const seen: string[] = [];
    for (let pos = 0; pos < head; pos += 7) {
      const bad = Buffer.from(good);
      bad[pos] ^= 0xff;
      const f = await fileOf(bad);
      const h = await code(indexRecordFromHead(f));
      const full = await code(indexRecordForPackage(f));
      // Damage the head reader does not see (none in these members) would show as OK here.
      if (full !== "OK") expect(`${pos}:${h}`).not.toBe(`${pos}:OK`);
      // Where both fail, they agree on the kind (a deflate stream cut short may be TRUNCATED for one).
      if (h !== "OK" && full !== "OK" && h !== full)
        expect([h, full].sort(), `byte ${pos}`).toEqual(["BAD_ARCHIVE", "TRUNCATED"]);
      seen.push(h);
    }
    expect(seen.filter((c) => c === "OK").length).toBeLessThan(seen.length / 10);
  });

  it("refuse truncation inside the head, an empty file, and what is not a regular file", async () => {
    const head = members[0]!.length + members[1]!.length;
    for (const cut of [0, 5, 10, members[0]!.length, members[0]!.length + 20, head - 4]) {
      expect(`${cut}:${await code(indexRecordFromHead(await fileOf(good.subarray(0, cut))))}`).toMatch(
        new RegExp(`^${cut}:(TRUNCATED|BAD_ARCHIVE)$`),
      );
    }
    expect(await code(indexRecordFromHead(await fileOf(Buffer.alloc(0))))).toBe("TRUNCATED");
    expect(await code(indexRecordFromHead(dir))).toBe("BAD_ARCHIVE");
    const fifo = join(dir, "fifo.apk");
    execFileSync("mkfifo", [fifo]);
    expect(await code(indexRecordFromHead(fifo))).toBe("BAD_ARCHIVE");
  });

  it("bound the control member (a gzip bomb in it is LIMIT, not memory)", async () => {
    // A signature member followed by a control member that inflates to 80 MB of zeros.
    const bomb = Buffer.concat([members[0]!, gzipSync(Buffer.alloc(80 * 1024 * 1024), { level: 9 })]);
    expect(await code(indexRecordFromHead(await fileOf(bomb)))).toBe("LIMIT");
  });
});
