// Verifying and re-signing a package for publishing, each package read once:
// the re-signed copy is byte for byte what @kiln/apk's resignPackage makes,
// a package already signed by the publishing key alone is not copied, and a
// file changed between the check and the copy is refused.

import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  emptyPackageInfo,
  generateKey,
  indexRecordForPackage,
  Keyring,
  parsePublicKey,
  parseSigningKey,
  resignPackage,
  verifyFile,
  writePackage,
  type SigningKey,
} from "@kiln/apk";
import { isKilnError } from "@kiln/core";
import type { PlannedPackage } from "./plan.js";
import { preparePackage, stagePackage, verifyPackage } from "./prepare.js";

let work: string;
let buildKey: SigningKey;
let pubKey: SigningKey;
let ring: Keyring;
let file: string;

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function planned(path: string): Promise<PlannedPackage> {
  const rec = await indexRecordForPackage(path);
  return {
    arch: "x86_64",
    id: `${rec.name}-${rec.version}`,
    file: path,
    action: "upload",
    checksum: rec.checksum!,
    size: rec.fileSize!,
  };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-prepare-test-"));
  buildKey = parseSigningKey((await generateKey(2048)).privatePem, "build.rsa.pub");
  const pub = await generateKey(2048);
  pubKey = parseSigningKey(pub.privatePem, "publish.rsa.pub");
  ring = new Keyring().add("publish.rsa.pub", parsePublicKey(pub.publicPem, "publish key"));
  file = join(work, "demo-1.0-r0.apk");
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
  await writePackage(
    {
      info: emptyPackageInfo("demo", "1.0-r0", "x86_64"),
      entries: [
        { path: "usr", type: "dir" },
        { path: "usr/demo", type: "file", content: big },
      ],
      signingKeys: [buildKey],
      sourceDateEpoch: 1_700_000_000,
    },
    file,
  );
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("preparing a package for publishing", () => {
  it("re-signs a copy exactly as resignPackage does, with its size, sha256 and record", async () => {
    const tmp = mkdtempSync(join(work, "t-"));
    const prep = await preparePackage(await planned(file), pubKey, tmp);
    expect(prep.resigned).toBe(true);
    expect(prep.path.startsWith(tmp)).toBe(true);
    const reference = join(work, "reference.apk");
    copyFileSync(file, reference);
    await resignPackage(reference, [pubKey], "RSA256");
    const staged = readFileSync(prep.path);
    expect(staged.equals(readFileSync(reference))).toBe(true);
    expect(prep.size).toBe(staged.length);
    expect(prep.record.fileSize).toBe(staged.length);
    expect(prep.sha256).toBe(sha256(staged));
    expect(prep.record.checksum).toBe((await indexRecordForPackage(file)).checksum);
    expect((await verifyFile(prep.path, ring)).verdict).toBe("OK");
  });

  it("publishes a package signed by the publishing key alone as it is (no copy)", async () => {
    const mine = join(work, "mine.apk");
    copyFileSync(file, mine);
    await resignPackage(mine, [pubKey], "RSA256");
    const tmp = mkdtempSync(join(work, "t-"));
    const prep = await preparePackage(await planned(mine), pubKey, tmp);
    expect(prep.resigned).toBe(false);
    expect(prep.path).toBe(mine);
    expect(prep.sha256).toBe(sha256(readFileSync(mine)));
    expect(prep.size).toBe(statSync(mine).size);
  });

  it("refuses a file whose data changed after it was verified, writing no copy that could be uploaded", async () => {
    const victim = join(work, "victim.apk");
    copyFileSync(file, victim);
    const v = await verifyPackage(await planned(victim), pubKey);
    const bytes = readFileSync(victim);
    bytes[bytes.length - 100] ^= 0xff; // inside the data member
    writeFileSync(victim, bytes);
    const tmp = mkdtempSync(join(work, "t-"));
    const err = await stagePackage(v, pubKey, tmp).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isKilnError(err), String(err)).toBe(true);
    expect((err as Error).message).toBe(`${victim}: changed while being published (its data no longer matches)`);
  });

  it("refuses a package whose control member differs from its local index (C:)", async () => {
    const p = { ...(await planned(file)), checksum: "Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=" };
    const err = await verifyPackage(p, pubKey).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Error).message).toMatch(/differs from its local index/);
  });
});
