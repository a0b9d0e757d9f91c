// Package provenance and the package SBOM, from real parts: packages written
// by emitPackage (the builder's own packaging), recipes in a real git work
// tree, and statements checked by verifyProvenance against the file bytes.

import { execFileSync } from "node:child_process";
import { createHash, generateKeyPairSync } from "node:crypto";
import { appendFileSync, createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Keyring, openPackage } from "@kiln/apk";
import { kilnVersion } from "@kiln/core";
import { spdx23Problems } from "@kiln/image";
import { signEnvelope } from "./dsse.js";
import { emitPackage, type EmitSpec } from "./emit.js";
import {
  kilnBuilderId,
  provenanceStatement,
  publicSource,
  recipeGit,
  recipeIdentity,
  sha256File,
  type ProvenanceInput,
} from "./provenance.js";
import { parseProvenance, ProvenanceError, verifyProvenance } from "./provenance-verify.js";

let work: string;
const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const TARBALL = sha256("tarball");
const MIRROR = "http://mirror.example.test/debian";

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "kiln-provenance-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd, encoding: "utf8" }).trim();
}

function input(over: Partial<ProvenanceInput> = {}): ProvenanceInput {
  return {
    file: "hello-1.0-r0.apk",
    sha256: sha256("apk"),
    package: { name: "hello", version: "1.0-r0", origin: "hello" },
    arch: "x86_64",
    sourceDateEpoch: 1_700_000_000,
    distroId: "kilnos",
    recipe: { path: "recipes/hello.yaml", sha256: sha256("recipe") },
    sources: [{ name: "hello-1.0.tar.gz", uri: `${MIRROR}/pool/h/hello-1.0.tar.gz`, sha256: TARBALL }],
    guest: [{ name: "busybox", version: "1.36-r0", checksum: "Q1abcdefghijklmnopqrstuvwxyz0=" }],
    ...over,
  };
}

describe("sources as the world may see them", () => {
  it("mirror:// becomes the configured mirror's URL; a local file keeps only its name; git keeps URL and commit", () => {
    const mirrors = { mirrors: { debian: MIRROR } };
    expect(
      publicSource({ uri: "mirror://debian/pool/main/h/hello_1.0.orig.tar.gz", sha256: TARBALL }, mirrors),
    ).toEqual({ name: "hello_1.0.orig.tar.gz", uri: `${MIRROR}/pool/main/h/hello_1.0.orig.tar.gz`, sha256: TARBALL });
    expect(publicSource({ uri: `file://${work}/src/local.tar.gz`, sha256: TARBALL })).toEqual({
      name: "local.tar.gz",
      sha256: TARBALL,
    });
    const c = "a".repeat(40);
    expect(publicSource({ uri: `git+https://git.example.test/proj.git@${c}`, commit: "b".repeat(40) })).toEqual({
      name: "proj",
      uri: `git+https://git.example.test/proj.git@${c}`,
      commit: "b".repeat(40),
    });
  });
});

describe("the recipe's git commit", () => {
  it("is the work tree's HEAD, dirty only when the recipe differs from it; none outside a work tree", async () => {
    const repo = join(work, "distro");
    mkdirSync(join(repo, "recipes"), { recursive: true });
    git(repo, "init", "-q");
    const f = join(repo, "recipes", "hello.yaml");
    writeFileSync(f, "package:\n  name: hello\n");
    git(repo, "add", ".");
    git(repo, "commit", "-qm", "one");
    const head = git(repo, "rev-parse", "HEAD");
    expect(await recipeGit(f)).toEqual({ commit: head, dirty: false, path: "recipes/hello.yaml" });
    appendFileSync(f, "# changed\n");
    expect(await recipeGit(f)).toEqual({ commit: head, dirty: true, path: "recipes/hello.yaml" });
    const outside = join(mkdtempSync(join(tmpdir(), "kiln-nogit-")), "r.yaml");
    writeFileSync(outside, "x\n");
    expect(await recipeGit(outside)).toBeUndefined();
    expect(await recipeIdentity(outside)).toEqual({ path: "r.yaml", sha256: sha256("x\n") });
  });
});

describe("the statement", () => {
  it("is an in-toto Statement v1 of SLSA provenance v1 with no clock time, the same bytes for the same inputs", () => {
    const text = provenanceStatement(input());
    expect(provenanceStatement(input())).toBe(text);
    const s = parseProvenance(text, "p.json");
    expect(s.subject).toEqual([{ name: "hello-1.0-r0.apk", digest: { sha256: sha256("apk") } }]);
    expect(s.predicate.runDetails.builder).toEqual({ id: kilnBuilderId(), version: { kiln: kilnVersion() } });
    expect(s.predicate.buildDefinition.internalParameters).toEqual({
      arch: "x86_64",
      sourceDateEpoch: 1_700_000_000,
      distro: "kilnos",
    });
    const deps = s.predicate.buildDefinition.resolvedDependencies!;
    expect(deps[0]).toMatchObject({ uri: `${MIRROR}/pool/h/hello-1.0.tar.gz`, digest: { sha256: TARBALL } });
    expect(deps[1]).toMatchObject({
      name: "busybox-1.36-r0",
      uri: "pkg:apk/kilnos/busybox@1.36-r0?arch=x86_64",
      annotations: { kind: "guest-package", apkChecksum: "Q1abcdefghijklmnopqrstuvwxyz0=" },
    });
    expect(text).not.toMatch(/startedOn|finishedOn|\d{4}-\d\d-\d\dT/);
  });

  it("a malformed statement is refused naming the field", () => {
    const bad = JSON.parse(provenanceStatement(input()));
    bad.subject[0].digest.sha256 = "xyz";
    delete bad.predicate.runDetails.builder.id;
    const e = (() => {
      try {
        parseProvenance(JSON.stringify(bad), "bad.json");
      } catch (err) {
        return err as ProvenanceError;
      }
      throw new Error("accepted");
    })();
    expect(e).toBeInstanceOf(ProvenanceError);
    expect(e.message).toMatch(/^bad\.json: not an in-toto Statement v1/);
    expect(e.message).toContain("subject.0.digest.sha256: expected 64 lowercase hex digits");
    expect(e.message).toContain("predicate.runDetails.builder.id");
    expect(() => parseProvenance("{", "t.json")).toThrow(/t\.json: not JSON/);
  });
});

describe("verifyProvenance", () => {
  it("passes for the package it names; a tampered package or another package's provenance is one clear error", async () => {
    const pkg = join(work, "hello-1.0-r0.apk");
    writeFileSync(pkg, "the package bytes");
    const prov = pkg + ".intoto.json";
    writeFileSync(prov, provenanceStatement(input({ sha256: sha256("the package bytes") })));
    const r = await verifyProvenance(pkg);
    expect(r.sha256).toBe(sha256("the package bytes"));
    expect(r.guest).toEqual(["busybox-1.36-r0"]);
    expect(r.sources).toEqual([
      { name: "hello-1.0.tar.gz", uri: `${MIRROR}/pool/h/hello-1.0.tar.gz`, digest: { sha256: TARBALL } },
    ]);
    writeFileSync(pkg, "the package bytes, changed");
    await expect(verifyProvenance(pkg)).rejects.toThrow(/sha256 [0-9a-f]{64} differs from the provenance's/);
    const other = join(work, "other-2.0-r0.apk");
    writeFileSync(other, "the package bytes");
    await expect(verifyProvenance(other, prov)).rejects.toThrow(
      /is the provenance of hello-1\.0-r0\.apk, not of other-2\.0-r0\.apk/,
    );
    await expect(verifyProvenance(other)).rejects.toThrow(/cannot read the provenance \(ENOENT\)/);
  });
});

describe("the DSSE envelope", () => {
  it("is signed with the repository's key, the same bytes each time; verifies with that key only, and not once changed", async () => {
    const gen = () => generateKeyPairSync("rsa", { modulusLength: 2048 });
    const k = gen();
    const key = { name: "repo.rsa.pub", privateKey: k.privateKey, publicKey: k.publicKey };
    const pkg = join(work, "signed-1.0-r0.apk");
    writeFileSync(pkg, "signed package");
    const statement = provenanceStatement(input({ file: "signed-1.0-r0.apk", sha256: sha256("signed package") }));
    const env = signEnvelope(statement, key);
    expect(signEnvelope(statement, key)).toBe(env);
    expect(Buffer.from(JSON.parse(env).payload, "base64").toString("utf8")).toBe(statement);
    writeFileSync(pkg + ".intoto.json", env);
    const ring = new Keyring().add("repo.rsa.pub", k.publicKey);
    const r = await verifyProvenance(pkg, undefined, { keys: ring });
    expect(r.signature).toEqual({ keyids: ["repo.rsa.pub"], verified: ["repo.rsa.pub"] });
    expect((await verifyProvenance(pkg)).signature).toEqual({ keyids: ["repo.rsa.pub"] });
    const stranger = new Keyring().add("repo.rsa.pub", gen().publicKey);
    await expect(verifyProvenance(pkg, undefined, { keys: stranger })).rejects.toThrow(
      /no signature verifies with a trusted key \(signed by repo\.rsa\.pub; trusted: repo\.rsa\.pub\)/,
    );
    const forged = JSON.parse(env);
    forged.payload = Buffer.from(statement.replace('"kilnos"', '"other"')).toString("base64");
    writeFileSync(pkg + ".intoto.json", JSON.stringify(forged));
    await expect(verifyProvenance(pkg, undefined, { keys: ring })).rejects.toThrow(/no signature verifies/);
  });
});

describe("the package SBOM", () => {
  it("names real URLs or NOASSERTION (no host path), kiln's version, the purl, and has SPDX 2.3's required fields", async () => {
    const destdir = join(work, "dest");
    mkdirSync(join(destdir, "usr/bin"), { recursive: true });
    writeFileSync(join(destdir, "usr/bin/hello"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const spec: EmitSpec = {
      name: "hello",
      version: "1.0-r0",
      arch: "x86_64",
      origin: "hello",
      license: "GPL-2.0-or-later",
      runtime: [],
      provides: [],
      replaces: [],
      options: {},
      scripts: {},
      triggers: [],
      controlFiles: {},
      distroId: "kilnos",
      sources: [
        publicSource({ uri: "mirror://debian/pool/h/hello.tar.gz", sha256: TARBALL }, { mirrors: { debian: MIRROR } }),
        publicSource({ uri: `file://${work}/local.patch`, sha256: TARBALL }),
        { uri: `${work}/raw-path.tar.gz` },
      ],
    };
    const out = join(work, "hello-1.0-r0.apk");
    await emitPackage(spec, destdir, out, {
      signingKeys: [{ name: "k.rsa.pub", privateKey, publicKey }],
      sourceDateEpoch: 1_700_000_000,
    });
    const text = readFileSync(join(destdir, "var/lib/db/sbom/hello-1.0-r0.spdx.json"), "utf8");
    // The SBOM in the package is the one written to destdir.
    const reader = await openPackage(createReadStream(out), { subject: out });
    let inPackage = "";
    for await (const e of reader.entries())
      if (e.path === "var/lib/db/sbom/hello-1.0-r0.spdx.json")
        for await (const c of e.content()) inPackage += Buffer.from(c).toString("utf8");
    await reader.close();
    expect(inPackage).toBe(text);
    expect(text).not.toContain(work);
    expect(text).not.toContain("mirror://");
    const d = JSON.parse(text);
    expect(spdx23Problems(d)).toEqual([]);
    expect(d.creationInfo.creators).toEqual([`Tool: kiln-${kilnVersion()}`]);
    const [main, s1, s2, s3] = d.packages;
    expect(main.downloadLocation).toBe("NOASSERTION");
    expect(main.externalRefs[0].referenceLocator).toBe("pkg:apk/kilnos/hello@1.0-r0?arch=x86_64&origin=hello");
    expect(main.licenseDeclared).toBe("GPL-2.0-or-later");
    expect(s1.downloadLocation).toBe(`${MIRROR}/pool/h/hello.tar.gz`);
    expect(s1.checksums).toEqual([{ algorithm: "SHA256", checksumValue: TARBALL }]);
    expect([s2.name, s2.downloadLocation, s3.downloadLocation]).toEqual(["local.patch", "NOASSERTION", "NOASSERTION"]);
    expect(await sha256File(out)).toBe(sha256(readFileSync(out)));
    expect(main.sourceInfo).toBeUndefined();
  });

  it("labels a package imported from .deb files as imported, naming each deb with its URL", async () => {
    const destdir = join(work, "dest-deb");
    mkdirSync(join(destdir, "usr/lib"), { recursive: true });
    writeFileSync(join(destdir, "usr/lib/libx.txt"), "x\n");
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const spec: EmitSpec = {
      name: "libx",
      version: "1.0-r0",
      arch: "x86_64",
      origin: "libx",
      runtime: [],
      provides: [],
      replaces: [],
      options: {},
      scripts: {},
      triggers: [],
      controlFiles: {},
      sources: [
        publicSource(
          { uri: "mirror://debian/pool/main/l/libx/libx1_1.0-1_amd64.deb", sha256: TARBALL },
          { mirrors: { debian: MIRROR } },
        ),
      ],
    };
    await emitPackage(spec, destdir, join(work, "libx-1.0-r0.apk"), {
      signingKeys: [{ name: "k.rsa.pub", privateKey, publicKey }],
      sourceDateEpoch: 1_700_000_000,
    });
    const d = JSON.parse(readFileSync(join(destdir, "var/lib/db/sbom/libx-1.0-r0.spdx.json"), "utf8"));
    expect(spdx23Problems(d)).toEqual([]);
    const [main, deb] = d.packages;
    expect(main.sourceInfo).toBe(
      "imported from Debian's binary packages, not built from source: libx1_1.0-1_amd64.deb",
    );
    expect(main.comment).toBe(main.sourceInfo);
    expect(deb.downloadLocation).toBe(`${MIRROR}/pool/main/l/libx/libx1_1.0-1_amd64.deb`);
    expect(deb.comment).toBe("a Debian binary package, imported as built");
    expect(d.relationships[1]).toEqual({
      spdxElementId: main.SPDXID,
      relationshipType: "GENERATED_FROM",
      relatedSpdxElement: deb.SPDXID,
    });
  });
});
