import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseApkPurl, parseOsRelease, readScanInput } from "./scan-input.js";

const DB = `C:Q1abcdefghijklmnopqrstuvwxyz0=
P:libcurl
V:7.88.1-r0
A:x86_64
S:100
I:200
T:the library
o:curl

C:Q1bbcdefghijklmnopqrstuvwxyz0=
P:zlib
V:1.2.13-r0
A:x86_64
S:100
I:200
T:zlib

`;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-scan-input-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe("scan inputs", () => {
  it("os-release: quotes and escapes removed, comments and junk skipped", () => {
    expect(
      parseOsRelease('# c\nID=kiln\nID_LIKE="wolfi"\nNAME="Kiln \\"L\\""\nPRETTY_NAME=\'K 1\'\nbad line\n'),
    ).toEqual({
      ID: "kiln",
      ID_LIKE: "wolfi",
      NAME: 'Kiln "L"',
      PRETTY_NAME: "K 1",
    });
  });

  it("purls: pkg:apk with namespace, version and origin; others ignored", () => {
    expect(parseApkPurl("pkg:apk/kiln/libcurl@7.88.1-r0?arch=x86_64&origin=curl")).toEqual({
      name: "libcurl",
      version: "7.88.1-r0",
      origin: "curl",
      namespace: "kiln",
    });
    expect(parseApkPurl("pkg:apk/zlib@1.2.13-r0")).toEqual({ name: "zlib", version: "1.2.13-r0" });
    expect(parseApkPurl("pkg:npm/left-pad@1.0.0")).toBeUndefined();
  });

  it("a root: lib/apk/db/installed through a merged-usr link, os-release through its link", async () => {
    await mkdir(join(dir, "usr/lib/apk/db"), { recursive: true });
    await mkdir(join(dir, "etc"));
    await writeFile(join(dir, "usr/lib/apk/db/installed"), DB);
    await symlink("usr/lib", join(dir, "lib"));
    await writeFile(join(dir, "usr/lib/os-release"), "ID=kiln\nVERSION_ID=1\n");
    await symlink("../usr/lib/os-release", join(dir, "etc/os-release"));
    const [t] = await readScanInput(dir);
    expect(t!.packages).toEqual([
      { name: "libcurl", version: "7.88.1-r0", origin: "curl" },
      { name: "zlib", version: "1.2.13-r0" },
    ]);
    expect(t!.osRelease).toEqual({ ID: "kiln", VERSION_ID: "1" });
  });

  it("a root whose database link leads outside it is not read", async () => {
    const outside = join(dir, "outside");
    await mkdir(join(outside, "apk/db"), { recursive: true });
    await writeFile(join(outside, "apk/db/installed"), DB);
    const root = join(dir, "root");
    await mkdir(root);
    await symlink(outside, join(root, "lib"));
    await expect(readScanInput(root)).rejects.toThrow(/no lib\/apk\/db\/installed/);
  });

  it("a CycloneDX SBOM: components (nested too) by purl", async () => {
    const f = join(dir, "bom.json");
    await writeFile(
      f,
      JSON.stringify({
        bomFormat: "CycloneDX",
        specVersion: "1.6",
        components: [
          { type: "library", name: "libcurl", purl: "pkg:apk/kiln/libcurl@7.88.1-r0?origin=curl" },
          { type: "library", name: "x", components: [{ purl: "pkg:apk/kiln/zlib@1.2.13-r0" }] },
          { type: "file", name: "no purl" },
        ],
      }),
    );
    const [t] = await readScanInput(f);
    expect(t!.packages).toEqual([
      { name: "libcurl", version: "7.88.1-r0", origin: "curl" },
      { name: "zlib", version: "1.2.13-r0" },
    ]);
    expect(t!.osRelease).toEqual({ ID: "kiln" });
  });

  it("JSON that is no SBOM, and a missing input: one clear error", async () => {
    const f = join(dir, "x.json");
    await writeFile(f, '{"hello": 1}');
    await expect(readScanInput(f)).rejects.toThrow(`${f}: a JSON file that is neither an SPDX nor a CycloneDX SBOM`);
    await expect(readScanInput(join(dir, "none"))).rejects.toThrow("no such file or directory");
  });
});
