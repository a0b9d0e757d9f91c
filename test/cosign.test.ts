// Image signatures and attestations checked by the real cosign (Debian's
// package, fetched through apt's mirror by helpers/cosign.ts) against Debian's
// docker-registry (distribution 2.8, no referrers API) on loopback. cosign
// verifies offline: --insecure-ignore-tlog (no transparency log here) and
// --allow-insecure-registry (plain HTTP).

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kiln } from "./helpers/cli.js";
import { fetchCosign, type Cosign } from "./helpers/cosign.js";
import { writeDistro } from "./helpers/distro.js";
import {
  baseLayoutEntries,
  makeKey,
  makeRepo,
  startRegistry,
  type Registry,
  type TestKey,
} from "./helpers/fixtures.js";

let work: string;
let cosign: Cosign;
let reg: Registry;
let apkKey: TestKey;
let repo: string;
/** The ECDSA key pairs made by kiln keygen: the signer's and a stranger's. */
let signer: { key: string; pub: string };
let stranger: { key: string; pub: string };

function runCosign(args: string[]) {
  const r = spawnSync(cosign.bin, args, {
    encoding: "utf8",
    // Its own HOME: no user TUF cache or docker credentials; offline verification needs neither.
    env: { PATH: process.env.PATH, HOME: join(work, "home"), COSIGN_PASSWORD: "", NO_COLOR: "1" },
    timeout: 120_000,
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const OFFLINE = ["--insecure-ignore-tlog=true", "--allow-insecure-registry"];

function verify(ref: string, pub: string) {
  return runCosign(["verify", "--key", pub, ...OFFLINE, ref]);
}

function verifyAttestation(ref: string, pub: string, type: string) {
  return runCosign(["verify-attestation", "--key", pub, "--type", type, ...OFFLINE, ref]);
}

/** The in-toto statement of the first attestation line cosign printed. */
function statementOf(stdout: string): {
  subject: Array<{ digest: { sha256: string } }>;
  predicateType: string;
  predicate: Record<string, unknown>;
} {
  const env = JSON.parse(stdout.trim().split("\n")[0]!);
  return JSON.parse(Buffer.from(env.payload, "base64").toString("utf8"));
}

function imageConfig(name: string, greeting: string): string {
  const f = join(work, `${name}.yaml`);
  writeFileSync(
    f,
    `contents:
  repositories:
    - ${repo}
  keyring:
    - ${apkKey.publicPath}
  packages:
    - hello
    - baselayout
entrypoint:
  command: /usr/bin/hello
environment:
  GREETING: ${greeting}
archs:
  - x86_64
`,
  );
  return f;
}

interface Listed {
  digest: string;
  artifactType?: string;
  subject?: { digest: string };
  mediaType?: string;
}

async function registryJson(
  path: string,
): Promise<{ manifests: Listed[]; layers: Listed[]; subject?: { digest: string } } | undefined> {
  const r = await fetch(`http://${reg.host}${path}`, {
    headers: { accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json" },
  });
  return r.status === 200 ? r.json() : undefined;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-cosign-"));
  mkdirSync(join(work, "home"));
  cosign = await fetchCosign();
  apkKey = await makeKey(work);
  repo = join(work, "repo");
  await makeRepo(repo, apkKey.key, [
    { name: "baselayout", entries: baseLayoutEntries() },
    {
      name: "hello",
      version: "2.12-r1",
      entries: [{ path: "usr/bin/hello", type: "file", mode: 0o755, content: "#!/bin/sh\necho hi\n" }],
      info: { depends: ["baselayout"], license: "GPL-3.0-or-later" },
    },
  ]);
  reg = await startRegistry(mkdtempSync(join(tmpdir(), "kiln-cosign-reg-")));
  for (const who of ["signer", "stranger"]) {
    const r = kiln(["keygen", "--type", "ecdsa-p256", "--prefix", join(work, who)]);
    expect(r.status, r.stderr).toBe(0);
  }
  signer = { key: join(work, "signer.key"), pub: join(work, "signer.pub") };
  stranger = { key: join(work, "stranger.key"), pub: join(work, "stranger.pub") };
}, 600_000);

afterAll(async () => {
  await reg?.stop();
});

describe("cosign-compatible signatures", () => {
  let ref: string;
  let digest: string;

  it("the Debian cosign is 2.x or 3.x", () => {
    expect(cosign.debVersion).toMatch(/^[23]\./);
    const r = runCosign(["version"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/GitVersion/);
  });

  it("kiln keygen --type ecdsa-p256 writes a 0600 PKCS#8 key and an SPKI public key; cosign import-key-pair takes the key", () => {
    expect(statSync(signer.key).mode & 0o777).toBe(0o600);
    expect(readFileSync(signer.key, "utf8")).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(readFileSync(signer.pub, "utf8")).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const again = kiln(["keygen", "--type", "ecdsa-p256", "--prefix", join(work, "signer")]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain("refusing to overwrite");
    const imp = runCosign([
      "import-key-pair",
      "--key",
      signer.key,
      "--output-key-prefix",
      join(work, "imported"),
      "--yes",
    ]);
    expect(imp.status, imp.stderr).toBe(0);
    expect(readFileSync(join(work, "imported.key"), "utf8")).toContain("ENCRYPTED SIGSTORE PRIVATE KEY");
    // The same public key: what cosign derived from kiln's private key is what kiln wrote.
    const der = (f: string) =>
      spawnSync("openssl", ["pkey", "-pubin", "-in", f, "-outform", "der"]).stdout.toString("hex");
    expect(der(join(work, "imported.pub"))).toBe(der(signer.pub));
  });

  it("kiln image push --sign: cosign verify --key accepts the signature; it is under the .sig tag and listed as a referrer", async () => {
    ref = `${reg.host}/kiln/hello:1.0`;
    const r = kiln(["image", "push", imageConfig("hello", "hi"), ref, "--insecure", "--sign", signer.key, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    digest = out.digest;
    expect(out.signed.signature.tag).toBe(`${digest.replace(":", "-")}.sig`);
    expect(out.signed.signature.referrersVia).toBe("tag-schema");
    const v = verify(ref, signer.pub);
    expect(v.status, v.stderr).toBe(0);
    expect(v.stderr).toContain("The signatures were verified against the specified public key");
    const claims = JSON.parse(v.stdout);
    expect(claims[0].critical.image["docker-manifest-digest"]).toBe(digest);
    expect(claims[0].critical.identity["docker-reference"]).toBe(`${reg.host}/kiln/hello`);
    expect(claims[0].critical.type).toBe("cosign container image signature");
    // The referrers tag schema's index lists the signature and the attestations, each with its subject.
    const index = await registryJson(`/v2/kiln/hello/manifests/${digest.replace(":", "-")}`);
    const types = index!.manifests.map((m) => m.artifactType);
    expect(types).toContain("application/vnd.dev.cosign.artifact.sig.v1+json");
    expect(types.filter((t) => t === "application/vnd.dev.cosign.artifact.att.v1+json")).toHaveLength(3);
    const referrer = await registryJson(`/v2/kiln/hello/manifests/${index!.manifests[0]!.digest}`);
    expect(referrer!.subject!.digest).toBe(digest);
    expect(referrer!.layers[0]!.mediaType).toBe("application/vnd.dev.cosign.simplesigning.v1+json");
  });

  it("cosign verify-attestation accepts the SLSA v1 provenance: the image config and every package with its checksum", () => {
    const v = verifyAttestation(ref, signer.pub, "slsaprovenance1");
    expect(v.status, v.stderr).toBe(0);
    const st = statementOf(v.stdout);
    expect(st.predicateType).toBe("https://slsa.dev/provenance/v1");
    expect(st.subject[0]!.digest.sha256).toBe(digest.slice(7));
    const def = st.predicate.buildDefinition as {
      externalParameters: { config: { environment: Record<string, string>; file: string } };
      resolvedDependencies: Array<{ name: string; digest: Record<string, string> }>;
    };
    expect(def.externalParameters.config.environment).toMatchObject({ GREETING: "hi" });
    expect(def.externalParameters.config.file).toBe("hello.yaml");
    const deps = def.resolvedDependencies.map((d) => [d.name.replace(/\?.*/, ""), Object.keys(d.digest).sort()]);
    expect(deps.sort()).toEqual([
      ["pkg:apk/kiln/baselayout@1.0-r0", ["apk-control-sha1", "sha256"]],
      ["pkg:apk/kiln/hello@2.12-r1", ["apk-control-sha1", "sha256"]],
    ]);
    const hello = def.resolvedDependencies.find((d) => d.name.startsWith("pkg:apk/kiln/hello@"));
    const apk = readFileSync(join(repo, "x86_64/hello-2.12-r1.apk"));
    expect(hello!.digest.sha256).toBe(createHash("sha256").update(apk).digest("hex"));
    expect((st.predicate.runDetails as { builder: { id: string } }).builder.id).toMatch(/kiln@\d+\.\d+\.\d+/);
  });

  it("cosign verify-attestation accepts the SPDX 2.3 and the CycloneDX 1.6 SBOMs", () => {
    const spdx = verifyAttestation(ref, signer.pub, "spdxjson");
    expect(spdx.status, spdx.stderr).toBe(0);
    const s = statementOf(spdx.stdout);
    expect(s.predicateType).toBe("https://spdx.dev/Document");
    expect(s.predicate.spdxVersion).toBe("SPDX-2.3");
    expect((s.predicate.packages as Array<{ name: string }>).map((p) => p.name)).toEqual(
      expect.arrayContaining(["hello", "baselayout"]),
    );
    const cdx = verifyAttestation(ref, signer.pub, "cyclonedx");
    expect(cdx.status, cdx.stderr).toBe(0);
    const c = statementOf(cdx.stdout);
    expect(c.predicateType).toBe("https://cyclonedx.org/bom");
    expect(c.predicate.specVersion).toBe("1.6");
    expect((c.predicate.components as Array<{ purl: string }>).map((x) => x.purl).sort()).toEqual([
      "pkg:apk/kiln/baselayout@1.0-r0?arch=x86_64&origin=baselayout",
      "pkg:apk/kiln/hello@2.12-r1?arch=x86_64&origin=hello",
    ]);
  });

  it("cosign rejects the signature and the attestations with a stranger's key", () => {
    const v = verify(ref, stranger.pub);
    expect(v.status).not.toBe(0);
    expect(v.stderr).toMatch(/no matching signatures|invalid signature/i);
    const a = verifyAttestation(ref, stranger.pub, "slsaprovenance1");
    expect(a.status).not.toBe(0);
  });

  it("kiln image sign: again with the same key changes nothing; a second key's signature joins the first", () => {
    const same = kiln(["image", "sign", ref, "--key", signer.key, "--insecure", "--json"]);
    expect(same.status, same.stderr).toBe(0);
    expect(JSON.parse(same.stdout).signature.unchanged).toBe(1);
    const other = kiln(["image", "sign", `${reg.host}/kiln/hello@${digest}`, "--key", stranger.key, "--insecure"]);
    expect(other.status, other.stderr).toBe(0);
    expect(verify(ref, stranger.pub).status).toBe(0);
    expect(verify(ref, signer.pub).status).toBe(0);
  });

  it("a different image pushed under the signed tag fails verification; the signed digest still verifies", () => {
    const r = kiln(["image", "push", imageConfig("tampered", "evil"), ref, "--insecure", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).digest).not.toBe(digest);
    const v = verify(ref, signer.pub);
    expect(v.status).not.toBe(0);
    expect(v.stderr).toMatch(/no signatures found|no matching signatures/i);
    expect(verifyAttestation(ref, signer.pub, "spdxjson").status).not.toBe(0);
    expect(verify(`${reg.host}/kiln/hello@${digest}`, signer.pub).status).toBe(0);
  });
});

describe("kiln images --push --sign", () => {
  it("signs and attests each pushed distribution image; a second run leaves the signature as it is", async () => {
    const dir = join(work, "distro");
    await writeDistro(dir, {
      upstream: { repo, publicKey: apkKey.publicPath },
      recipes: [],
      images: [{ name: "hello-image", packages: ["hello"] }],
    });
    // No recipes: the distribution's own repository is an empty index, signed with its key.
    mkdirSync(join(dir, "out/x86_64"), { recursive: true });
    const idx = kiln([
      "index",
      "-o",
      join(dir, "out/x86_64/APKINDEX.tar.gz"),
      "--signing-key",
      join(dir, "keys/synth.rsa"),
    ]);
    expect(idx.status, idx.stderr).toBe(0);
    const args = ["images", "--all", "--push", reg.host, "--insecure", "--sign", signer.key];
    const r = kiln([...args, "--distro", join(dir, "distro.yaml")], { cwd: dir });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const ref = `${reg.host}/hello-image:latest`;
    const digest = new RegExp(`pushed ${ref} \\((sha256:[0-9a-f]{64})\\)`).exec(r.stderr + r.stdout)?.[1];
    expect(digest, r.stderr + r.stdout).toBeDefined();
    expect(r.stderr + r.stdout).toContain(
      `signed ${digest!.replace(":", "-")}.sig; attested https://slsa.dev/provenance/v1`,
    );
    const v = verify(ref, signer.pub);
    expect(v.status, v.stderr).toBe(0);
    for (const type of ["slsaprovenance1", "spdxjson", "cyclonedx"]) {
      const a = verifyAttestation(ref, signer.pub, type);
      expect(a.status, `${type}: ${a.stderr}`).toBe(0);
      // The distribution's id is the purl namespace.
      if (type === "cyclonedx")
        expect((statementOf(a.stdout).predicate.components as Array<{ purl: string }>).map((c) => c.purl)).toContain(
          "pkg:apk/synth/hello@2.12-r1?arch=x86_64&origin=hello",
        );
    }
    const again = kiln([...args, "--distro", join(dir, "distro.yaml")], { cwd: dir });
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr + again.stdout).toContain("already signed");
    const bad = kiln(["images", "--all", "--sign", signer.key, "--distro", join(dir, "distro.yaml")], { cwd: dir });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("--sign: signing needs --push or --publish");
  });
});

describe("hostile keys and references", () => {
  function signFails(key: string, expected: RegExp, ref = `${reg.host}/kiln/hello:1.0`) {
    const r = kiln(["image", "sign", ref, "--key", key, "--insecure"]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(expected);
  }

  it("a missing, non-PEM, RSA, public or cosign-encrypted key file is one clear error, exit 1", () => {
    signFails(join(work, "nope.key"), /signing key .*nope\.key: .*ENOENT/);
    writeFileSync(join(work, "junk.key"), "not a key\n");
    signFails(join(work, "junk.key"), /junk\.key: no PEM block; expected a "PRIVATE KEY" \(PKCS#8\) ECDSA P-256 key/);
    signFails(apkKey.privatePath, /a PEM "RSA PRIVATE KEY" block|a rsa key; expected ECDSA P-256/);
    signFails(signer.pub, /a PEM "PUBLIC KEY" block/);
    signFails(join(work, "imported.key"), /a cosign-encrypted key/);
    writeFileSync(join(work, "broken.key"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    signFails(join(work, "broken.key"), /broken\.key: cannot be read as a private key/);
    writeFileSync(join(work, "huge.key"), "x".repeat(100_000));
    signFails(join(work, "huge.key"), /100000 bytes; a PEM key is at most/);
  });

  it("an image that is not in the registry, or a malformed reference, is one clear error, exit 1", () => {
    signFails(signer.key, /no such image in the registry/, `${reg.host}/kiln/absent:1.0`);
    signFails(signer.key, /invalid image reference/, `${reg.host}/Kiln/UPPER:1.0`);
  });
});
