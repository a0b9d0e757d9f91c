import { createPublicKey, generateKeyPairSync, verify } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { RepoPackage } from "@kiln/repo";
import { cosignTag, dsseEnvelope, dssePae, envelopeSignedBy, simpleSigningPayload } from "./cosign.js";
import { generateSigningKey, loadSigningKey, loadVerifyKey } from "./keys.js";
import { imageStatements } from "./statements.js";

const dir = mkdtempSync(join(tmpdir(), "kiln-sign-unit-"));
function file(name: string, text: string): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

describe("DSSE and simple signing", () => {
  it("PAE is DSSE v1's: lengths in bytes, single spaces", () => {
    expect(dssePae("http://example.com/HelloWorld", Buffer.from("hello world")).toString()).toBe(
      "DSSEv1 29 http://example.com/HelloWorld 11 hello world",
    );
    expect(dssePae("t", Buffer.from("é")).toString()).toBe("DSSEv1 1 t 2 é");
  });

  it("an envelope verifies with the signer's public key only, and not once its payload is changed", async () => {
    const pair = generateSigningKey();
    const key = await loadSigningKey(file("a.key", pair.privatePem));
    const env = dsseEnvelope({ _type: "x", predicateType: "p" }, key);
    expect(envelopeSignedBy(env, await loadVerifyKey(file("a.pub", pair.publicPem)))).toBe(true);
    const other = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey;
    expect(envelopeSignedBy(env, other)).toBe(false);
    const j = JSON.parse(env.toString());
    j.payload = Buffer.from('{"_type":"y"}').toString("base64");
    expect(envelopeSignedBy(Buffer.from(JSON.stringify(j)), createPublicKey(key))).toBe(false);
    expect(envelopeSignedBy(Buffer.from("not json"), createPublicKey(key))).toBe(false);
  });

  it("the simple-signing payload names the repository and digest, and a signature over it verifies", async () => {
    const d = "sha256:" + "ab".repeat(32);
    const p = simpleSigningPayload("r.example:5000/a/b", d);
    expect(JSON.parse(p.toString())).toEqual({
      critical: {
        identity: { "docker-reference": "r.example:5000/a/b" },
        image: { "docker-manifest-digest": d },
        type: "cosign container image signature",
      },
      optional: null,
    });
    expect(cosignTag(d, "sig")).toBe(`sha256-${"ab".repeat(32)}.sig`);
    const pair = generateSigningKey();
    const key = await loadSigningKey(file("b.key", pair.privatePem));
    const { sign } = await import("node:crypto");
    expect(verify("sha256", p, createPublicKey(pair.publicPem), sign("sha256", p, key))).toBe(true);
  });
});

describe("keys", () => {
  it("refuses a P-384 key, an RSA key and a public key as the signing key, naming the file", async () => {
    const p384 = generateKeyPairSync("ec", { namedCurve: "secp384r1" });
    const f = file("p384.key", p384.privateKey.export({ type: "pkcs8", format: "pem" }).toString());
    await expect(loadSigningKey(f)).rejects.toThrow(/p384\.key: a ec secp384r1 key; expected ECDSA P-256/);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const r = file("rsa.key", rsa.privateKey.export({ type: "pkcs8", format: "pem" }).toString());
    await expect(loadSigningKey(r)).rejects.toThrow(/rsa\.key: a rsa key; expected ECDSA P-256/);
    const pub = file("pub.key", generateSigningKey().publicPem);
    await expect(loadSigningKey(pub)).rejects.toThrow(/pub\.key: a PEM "PUBLIC KEY" block/);
    await expect(loadVerifyKey(file("priv.pub", generateSigningKey().privatePem))).rejects.toThrow(
      /expected a PEM "PUBLIC KEY"/,
    );
  });
});

describe("statements", () => {
  const pkg = (name: string, version: string): RepoPackage =>
    ({
      record: {
        name,
        version,
        arch: "x86_64",
        origin: name,
        checksum: "Q1" + Buffer.alloc(20, 7).toString("base64"),
        license: "MIT",
        depends: [],
      },
      repo: { url: "https://repo.invalid/os" },
      url: `https://repo.invalid/os/x86_64/${name}-${version}.apk`,
    }) as unknown as RepoPackage;
  const img = {
    name: "reg.invalid/x",
    digest: "sha256:" + "cd".repeat(32),
    config: { file: "/home/someone/images/x.yaml", environment: { A: "1" } },
    archs: [{ arch: "x86_64", packages: [pkg("zlib", "1.3-r0"), pkg("busybox", "1.36-r1")] }],
    created: "2023-11-14T22:13:20Z",
    distro: "kiln",
  };

  it("provenance, SPDX and CycloneDX for each arch, the same bytes every time, no host path", () => {
    const a = imageStatements(img);
    expect(JSON.stringify(imageStatements(img))).toBe(JSON.stringify(a));
    expect(a.map((s) => s.predicateType)).toEqual([
      "https://slsa.dev/provenance/v1",
      "https://spdx.dev/Document",
      "https://cyclonedx.org/bom",
    ]);
    for (const s of a) expect(s.subject).toEqual([{ name: "reg.invalid/x", digest: { sha256: "cd".repeat(32) } }]);
    expect(JSON.stringify(a)).not.toContain("/home/someone");
    const prov = a[0]!.predicate as {
      buildDefinition: { resolvedDependencies: Array<{ name: string; digest: Record<string, string> }> };
    };
    expect(prov.buildDefinition.resolvedDependencies.map((d) => [d.name, d.digest])).toEqual([
      ["pkg:apk/kiln/zlib@1.3-r0?arch=x86_64&origin=zlib", { "apk-control-sha1": "07".repeat(20) }],
      ["pkg:apk/kiln/busybox@1.36-r1?arch=x86_64&origin=busybox", { "apk-control-sha1": "07".repeat(20) }],
    ]);
    const cdx = a[2]!.predicate as { serialNumber: string; components: Array<{ purl: string; licenses: unknown }> };
    expect(cdx.serialNumber).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(cdx.components[0]).toMatchObject({
      purl: "pkg:apk/kiln/zlib@1.3-r0?arch=x86_64&origin=zlib",
      licenses: [{ expression: "MIT" }],
    });
  });

  it("takes each package's .apk SHA-256 from the build's SPDX document when it has one", () => {
    const spdx = {
      name: "x-x86_64",
      packages: [
        { name: "zlib", versionInfo: "1.3-r0", checksums: [{ algorithm: "SHA256", checksumValue: "ef".repeat(32) }] },
      ],
    };
    const a = imageStatements({ ...img, archs: [{ ...img.archs[0]!, spdx }] });
    expect(a[1]!.predicate).toBe(spdx);
    const prov = a[0]!.predicate as {
      buildDefinition: { resolvedDependencies: Array<{ digest: Record<string, string> }> };
    };
    expect(prov.buildDefinition.resolvedDependencies[0]!.digest.sha256).toBe("ef".repeat(32));
    expect(prov.buildDefinition.resolvedDependencies[1]!.digest.sha256).toBeUndefined();
    const cdx = a[2]!.predicate as { components: Array<{ hashes?: unknown }> };
    expect(cdx.components[0]!.hashes).toEqual([{ alg: "SHA-256", content: "ef".repeat(32) }]);
  });
});
