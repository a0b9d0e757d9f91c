// The image SBOM's package fields, from real packages written with
// @kiln/apk's writer: the download location is the published http(s) URL or
// NOASSERTION (never the build machine's path of a local repository), the
// checksum is the SHA-256 of the .apk file itself, kiln's version is among the
// creators, the purl has the distribution as its namespace, and the document
// has every field SPDX 2.3 requires.

import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  emptyPackageInfo,
  generateKey,
  indexRecordForPackage,
  parseSigningKey,
  writePackage,
  type SigningKey,
} from "@kiln/apk";
import { kilnVersion } from "@kiln/core";
import type { RepoPackage } from "@kiln/repo";
import { apkPurl, fileSha256s, imageSbom, packageDownloadLocation } from "./sbom.js";
import { spdx23Problems } from "./spdx-check.js";

let work: string;
let key: SigningKey;
const files: string[] = [];
const pkgs: RepoPackage[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-sbom-test-"));
  key = parseSigningKey((await generateKey(2048)).privatePem, "k.rsa.pub");
  const repos = [{ url: join(work, "repo") }, { url: "https://pkgs.example.test/os" }, { url: `file://${work}/r2` }];
  for (const [i, name] of ["alpha", "beta", "gamma"].entries()) {
    const info = { ...emptyPackageInfo(name, "1.2-r3", "x86_64"), origin: "src-" + name, license: "MIT" };
    const file = join(work, `${name}-1.2-r3.apk`);
    await writePackage(
      {
        info,
        entries: [{ path: `usr/share/${name}/README`, type: "file", content: `${name}\n` }],
        signingKeys: [key],
        sourceDateEpoch: 1_700_000_000,
      },
      file,
    );
    files.push(file);
    const repo = repos[i]!;
    pkgs.push({ record: await indexRecordForPackage(file), repo, url: `${repo.url}/x86_64/${name}-1.2-r3.apk` });
  }
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function doc(): Promise<{
  creationInfo: { creators: string[] };
  packages: Array<{
    name: string;
    downloadLocation: string;
    checksums?: Array<{ algorithm: string; checksumValue: string }>;
    externalRefs?: Array<{ referenceLocator: string }>;
  }>;
}> {
  return imageSbom(pkgs, {
    name: "img",
    arch: "x86_64",
    created: "2023-11-14T22:13:20Z",
    namespace: "kilnos",
    sha256: await fileSha256s(files),
  }) as never;
}

describe("image SBOM fields", () => {
  it("names no path of the build machine: a local or file:// repository gives NOASSERTION, an http(s) one its URL", async () => {
    const d = await doc();
    const text = JSON.stringify(d);
    expect(text).not.toContain(work);
    expect(text).not.toMatch(/"\/(tmp|home|root|work)\//);
    const loc = Object.fromEntries(d.packages.map((p) => [p.name, p.downloadLocation]));
    expect(loc).toEqual({
      img: "NOASSERTION",
      alpha: "NOASSERTION",
      beta: "https://pkgs.example.test/os/x86_64/beta-1.2-r3.apk",
      gamma: "NOASSERTION",
    });
    expect(packageDownloadLocation("s3://bucket/x86_64/a.apk")).toBe("NOASSERTION");
  });

  it("each package's checksum is the SHA-256 of its .apk file (not the C: control hash)", async () => {
    const d = await doc();
    for (const [i, name] of ["alpha", "beta", "gamma"].entries()) {
      const p = d.packages.find((x) => x.name === name)!;
      const want = createHash("sha256").update(readFileSync(files[i]!)).digest("hex");
      expect(p.checksums).toEqual([{ algorithm: "SHA256", checksumValue: want }]);
    }
    expect(JSON.stringify(d)).not.toContain('"SHA1"');
  });

  it("creators name kiln's version; purls are pkg:apk/DISTRO/NAME@VERSION?arch=ARCH", async () => {
    const d = await doc();
    expect(kilnVersion()).toMatch(/^\d+\.\d+\.\d+/);
    expect(d.creationInfo.creators).toEqual([`Tool: kiln-${kilnVersion()}`]);
    const alpha = d.packages.find((x) => x.name === "alpha")!;
    expect(alpha.externalRefs![0]!.referenceLocator).toBe("pkg:apk/kilnos/alpha@1.2-r3?arch=x86_64&origin=src-alpha");
    expect(apkPurl("kilnos", "c++", "1.0-r0", "aarch64")).toBe("pkg:apk/kilnos/c%2B%2B@1.0-r0?arch=aarch64");
  });

  it("has every field SPDX 2.3 requires (and the check finds a missing one)", async () => {
    const d = await doc();
    expect(spdx23Problems(d)).toEqual([]);
    const broken = JSON.parse(JSON.stringify(d)) as { packages: Array<Record<string, unknown>> };
    delete broken.packages[1]!.downloadLocation;
    broken.packages[2]!.filesAnalyzed = true;
    const problems = spdx23Problems(broken);
    expect(problems.some((p) => p.startsWith("packages.1.downloadLocation"))).toBe(true);
    expect(problems.some((p) => /packageVerificationCode/.test(p))).toBe(true);
  });
});
