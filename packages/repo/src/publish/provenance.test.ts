// A package's provenance travels with it through publish and withdraw: real
// packages written with @kiln/apk's writer into a local repository, each with
// a statement beside it, published to a real directory store (LocalDirStore).

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildIndex,
  emptyPackageInfo,
  generateKey,
  indexRecordForPackage,
  parseSigningKey,
  writePackage,
  type SigningKey,
} from "@kiln/apk";
import { LocalDirStore } from "../store/local.js";
import type { PublishEvent } from "./events.js";
import { publish, withdraw } from "./publish.js";

let work: string;
let key: SigningKey;
let other: SigningKey;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-publish-prov-"));
  key = parseSigningKey((await generateKey(2048)).privatePem, "k.rsa.pub");
  other = parseSigningKey((await generateKey(2048)).privatePem, "other.rsa.pub");
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const statement = (name: string, sha256: string) =>
  JSON.stringify({ _type: "https://in-toto.io/Statement/v1", subject: [{ name, digest: { sha256 } }] }) + "\n";

/** OUT/x86_64 with a (good provenance) and b (a provenance naming other bytes). */
async function localRepo(): Promise<string> {
  const out = mkdtempSync(join(work, "out-"));
  const dir = join(out, "x86_64");
  mkdirSync(dir);
  const records = [];
  for (const name of ["a", "b"]) {
    const file = join(dir, `${name}-1.0-r0.apk`);
    await writePackage(
      {
        info: { ...emptyPackageInfo(name, "1.0-r0", "x86_64"), origin: name },
        entries: [{ path: `usr/share/${name}/README`, type: "file", content: `${name}\n` }],
        signingKeys: [key],
        sourceDateEpoch: 1_700_000_000,
      },
      file,
    );
    const sha = createHash("sha256").update(readFileSync(file)).digest("hex");
    writeFileSync(`${file}.intoto.json`, statement(`${name}-1.0-r0.apk`, name === "a" ? sha : "0".repeat(64)));
    records.push(await indexRecordForPackage(file));
  }
  writeFileSync(join(dir, "APKINDEX.tar.gz"), buildIndex(records, { signingKeys: [key] }));
  return out;
}

describe("publishing provenance", () => {
  it("uploads the statement naming the published bytes beside the package; withdraw --delete removes it too", async () => {
    const out = await localRepo();
    const dir = mkdtempSync(join(work, "target-"));
    const store = new LocalDirStore(dir);
    const events: PublishEvent[] = [];
    await publish(store, out, { signingKey: key, onEvent: (e) => events.push(e) });
    const a = join(dir, "x86_64", "a-1.0-r0.apk.intoto.json");
    expect(readFileSync(a, "utf8")).toBe(readFileSync(join(out, "x86_64", "a-1.0-r0.apk.intoto.json"), "utf8"));
    // b's statement names other bytes: not published, and said so.
    expect(existsSync(join(dir, "x86_64", "b-1.0-r0.apk.intoto.json"))).toBe(false);
    expect(
      events.some((e) => e.kind === "warning" && /b-1\.0-r0\.apk\.intoto\.json: not published/.test(e.message)),
    ).toBe(true);
    await withdraw(store, ["a-1.0-r0"], { signingKey: key, delete: true });
    expect(existsSync(join(dir, "x86_64", "a-1.0-r0.apk"))).toBe(false);
    expect(existsSync(a)).toBe(false);
  });

  it("a package re-signed by the publishing key is other bytes: its provenance is left out, with a warning", async () => {
    const out = await localRepo();
    const dir = mkdtempSync(join(work, "target-"));
    const events: PublishEvent[] = [];
    await publish(new LocalDirStore(dir), out, { signingKey: other, onEvent: (e) => events.push(e) });
    expect(existsSync(join(dir, "x86_64", "a-1.0-r0.apk"))).toBe(true);
    expect(existsSync(join(dir, "x86_64", "a-1.0-r0.apk.intoto.json"))).toBe(false);
    expect(
      events.some(
        (e) =>
          e.kind === "warning" &&
          /a-1\.0-r0\.apk\.intoto\.json: not published: the package was re-signed/.test(e.message),
      ),
    ).toBe(true);
  });
});
