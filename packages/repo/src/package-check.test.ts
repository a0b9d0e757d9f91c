// How a downloaded package is checked before it is cached: "hashes" (size,
// C: and datahash over the compressed bytes) must refuse what "full" refuses
// of a package's authenticity, without inflating its data.

import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  dataOffset,
  emptyPackageInfo,
  generateKey,
  indexRecordForPackage,
  openPackage,
  parseSigningKey,
  writePackage,
} from "@kiln/apk";
import { createReadStream } from "node:fs";
import { checkPackageAgainstIndex } from "./repository.js";
import type { RepoPackage } from "./types.js";

let dir: string;
let good: string;
let pkg: RepoPackage;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-pkgcheck-"));
  const k = await generateKey(2048);
  const key = parseSigningKey(k.privatePem, "test.rsa.pub");
  good = join(dir, "hello-1.0-r0.apk");
  const entries = [
    { path: "usr", type: "dir" as const },
    { path: "usr/hello", type: "file" as const, content: Buffer.from("hello, world\n".repeat(50)) },
  ];
  await writePackage({ info: emptyPackageInfo("hello", "1.0-r0", "x86_64"), entries, signingKeys: [key] }, good);
  pkg = { record: await indexRecordForPackage(good), repo: { url: dir }, url: `${dir}/x86_64/hello-1.0-r0.apk` };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The package with its data member replaced by `edit` of its tar, re-gzipped. */
async function withData(name: string, edit: (tar: Buffer) => void): Promise<string> {
  const bytes = readFileSync(good);
  const r = await openPackage(createReadStream(good), { subject: good });
  const start = dataOffset(r.head);
  await r.close();
  const tar = gunzipSync(bytes.subarray(start));
  edit(tar);
  const file = join(dir, name);
  writeFileSync(file, Buffer.concat([bytes.subarray(0, start), gzipSync(tar, { level: 9 })]));
  return file;
}

describe("checkPackageAgainstIndex", () => {
  it("passes the package itself either way", async () => {
    await expect(checkPackageAgainstIndex(good, pkg, "hashes")).resolves.toBeUndefined();
    await expect(checkPackageAgainstIndex(good, pkg, "full")).resolves.toBeUndefined();
  });

  it('"hashes" refuses changed data (same control member, so the same C:) for its datahash, as "full" does', async () => {
    const file = await withData("changed.apk", (tar) => {
      const at = tar.indexOf("hello, world");
      tar[at] = "J".charCodeAt(0);
    });
    const sized = { ...pkg, record: { ...pkg.record } };
    delete sized.record.fileSize; // whatever its length now: the datahash is what must refuse it
    await expect(checkPackageAgainstIndex(file, sized, "hashes")).rejects.toThrow(
      `${pkg.url}: data does not match datahash in .PKGINFO`,
    );
    await expect(checkPackageAgainstIndex(file, sized, "full")).rejects.toThrow(/datahash|APK-TOOLS\.checksum\.SHA1/);
  });

  it('"hashes" refuses bytes appended after the data member (they are part of what apk hashes)', async () => {
    const file = join(dir, "appended.apk");
    writeFileSync(file, Buffer.concat([readFileSync(good), Buffer.from("junk")]));
    const sized = { ...pkg, record: { ...pkg.record } };
    delete sized.record.fileSize;
    await expect(checkPackageAgainstIndex(file, sized, "hashes")).rejects.toThrow(
      "data does not match datahash in .PKGINFO",
    );
  });
});
