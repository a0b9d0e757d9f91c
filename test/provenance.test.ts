// Package provenance end to end: a small recipe (a tarball fetched over HTTP
// through a mirror:// URL, checked by sha256, copied into the package by a
// shell step in a busybox guest of the stage-0 toolchain) kept in a git work
// tree, built twice with `kiln build`; the SLSA provenance beside each .apk
// names the file's sha256, the recipe and its commit, the source's real URL
// and every guest package; both builds write the same bytes; `kiln verify
// --provenance` accepts the package and refuses a tampered one and another
// package's provenance; `kiln publish` to a directory carries it along.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readIndex } from "@kiln/apk";
import { bootstrapToolchain, upstreamArgs, type Bootstrap } from "./helpers/bootstrap.js";
import { kiln, kilnAsync } from "./helpers/cli.js";
import { serveDir, type StaticServer } from "./helpers/http.js";

let work: string;
let boot: Bootstrap;
let server: StaticServer;
let distro: string;
let recipeFile: string;
let head: string;
let tarSha: string;
const EPOCH = "1700000000";
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd, encoding: "utf8" }).trim();
}

const RECIPE = () => `package:
  name: prov-hello
  version: 1.0.0
  epoch: 0
  description: provenance test
  copyright:
    - license: MIT
environment:
  contents:
    packages:
      - busybox-links
      - base-layout
pipeline:
  - uses: fetch
    with:
      uri: \${{mirror.provtest}}/prov-hello-1.0.0.tar.gz
      expected-sha256: ${tarSha}
  - runs: |
      mkdir -p \${{targets.destdir}}/usr/share/prov-hello
      cp hello.txt \${{targets.destdir}}/usr/share/prov-hello/
subpackages:
  - name: prov-hello-doc
    pipeline:
      - runs: |
          mkdir -p \${{targets.subpkgdir}}/usr/share/doc/prov-hello
          echo docs > \${{targets.subpkgdir}}/usr/share/doc/prov-hello/README
`;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-provenance-e2e-"));
  const www = join(work, "www");
  const src = join(work, "src", "prov-hello-1.0.0");
  mkdirSync(www);
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, "hello.txt"), "hello provenance\n");
  const tarball = join(www, "prov-hello-1.0.0.tar.gz");
  execFileSync("tar", [
    "-czf",
    tarball,
    "--mtime=@0",
    "--owner=0",
    "--group=0",
    "-C",
    join(work, "src"),
    "prov-hello-1.0.0",
  ]);
  tarSha = sha256(readFileSync(tarball));
  server = await serveDir(www);
  distro = join(work, "distro");
  mkdirSync(join(distro, "recipes"), { recursive: true });
  recipeFile = join(distro, "recipes", "prov-hello.yaml");
  writeFileSync(recipeFile, RECIPE());
  git(distro, "init", "-q");
  git(distro, "add", ".");
  git(distro, "commit", "-qm", "the recipe");
  head = git(distro, "rev-parse", "HEAD");
  boot = await bootstrapToolchain();
}, 900_000);
afterAll(async () => {
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

function build(out: string) {
  return kilnAsync(["build", recipeFile, "--out", out, "--no-test", ...upstreamArgs(boot)], {
    env: { ...process.env, SOURCE_DATE_EPOCH: EPOCH, KILN_PROVTEST_MIRROR: server.url },
  });
}

interface Statement {
  subject: Array<{ name: string; digest: { sha256: string } }>;
  predicate: {
    buildDefinition: {
      externalParameters: {
        recipe: { path: string; digest: { sha256: string }; git?: { commit: string; dirty: boolean } };
      };
      internalParameters: Record<string, unknown>;
      resolvedDependencies: Array<{
        name?: string;
        uri?: string;
        digest?: Record<string, string>;
        annotations?: Record<string, string>;
      }>;
    };
    runDetails: { builder: { id: string } };
  };
}

describe("package provenance", () => {
  let out1: string;
  const apk = () => join(out1, "x86_64", "prov-hello-1.0.0-r0.apk");
  const doc = () => join(out1, "x86_64", "prov-hello-doc-1.0.0-r0.apk");

  it("kiln build writes SLSA provenance beside each .apk: its sha256, the recipe at its commit, the source URL, the guest", async () => {
    out1 = join(work, "out1");
    const r = await build(out1);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(readdirSync(join(out1, "x86_64")).sort()).toEqual([
      "APKINDEX.tar.gz",
      "prov-hello-1.0.0-r0.apk",
      "prov-hello-1.0.0-r0.apk.intoto.json",
      "prov-hello-doc-1.0.0-r0.apk",
      "prov-hello-doc-1.0.0-r0.apk.intoto.json",
    ]);
    // A DSSE envelope signed with the repository's key around the statement.
    const env = JSON.parse(readFileSync(apk() + ".intoto.json", "utf8"));
    expect(env.payloadType).toBe("application/vnd.in-toto+json");
    expect(env.signatures.map((x: { keyid: string }) => x.keyid)).toEqual(["bootstrap.rsa.pub"]);
    const text = Buffer.from(env.payload, "base64").toString("utf8");
    const s = JSON.parse(text) as Statement & { _type: string; predicateType: string };
    expect(s._type).toBe("https://in-toto.io/Statement/v1");
    expect(s.predicateType).toBe("https://slsa.dev/provenance/v1");
    expect(s.subject).toEqual([{ name: "prov-hello-1.0.0-r0.apk", digest: { sha256: sha256(readFileSync(apk())) } }]);
    const def = s.predicate.buildDefinition;
    expect(def.externalParameters.recipe).toEqual({
      path: "recipes/prov-hello.yaml",
      digest: { sha256: sha256(readFileSync(recipeFile)) },
      git: { commit: head, dirty: false },
    });
    expect(def.internalParameters).toEqual({ arch: "x86_64", sourceDateEpoch: Number(EPOCH), distro: "kiln" });
    const sources = def.resolvedDependencies.filter((d) => d.annotations?.kind === "source");
    expect(sources).toEqual([
      {
        name: "prov-hello-1.0.0.tar.gz",
        uri: `${server.url}/prov-hello-1.0.0.tar.gz`,
        digest: { sha256: tarSha },
        annotations: { kind: "source" },
      },
    ]);
    // Every package of the build guest, by its C: identity as the stage-0 index lists it.
    const index = await readIndex(readFileSync(join(boot.repo, "x86_64", "APKINDEX.tar.gz")));
    const byId = new Map(index.records.map((x) => [`${x.name}-${x.version}`, x.checksum]));
    const guest = def.resolvedDependencies.filter((d) => d.annotations?.kind === "guest-package");
    expect(guest.map((g) => g.name!.replace(/-[^-]+-r\d+$/, "")).sort()).toEqual(
      expect.arrayContaining(["base-layout", "busybox-links"]),
    );
    for (const g of guest) {
      expect(g.annotations!.apkChecksum).toBe(byId.get(g.name!));
      expect(g.uri).toMatch(/^pkg:apk\/kiln\/[^/@]+@[^?]+\?arch=x86_64$/);
    }
    expect(s.predicate.runDetails.builder.id).toMatch(/^https:\/\/kiln\.invalid\/builder\/kiln@\d+\.\d+\.\d+/);
    // Nothing of the build machine: no temporary or cache paths, no clock time.
    expect(text).not.toContain(work);
    expect(text).not.toContain(boot.cacheDir);
    expect(text).not.toMatch(/startedOn|finishedOn/);
    const d = JSON.parse(
      Buffer.from(JSON.parse(readFileSync(doc() + ".intoto.json", "utf8")).payload, "base64").toString("utf8"),
    ) as Statement;
    expect(d.subject[0]!.name).toBe("prov-hello-doc-1.0.0-r0.apk");
  }, 600_000);

  it("a second build writes byte-identical provenance", async () => {
    const out2 = join(work, "out2");
    const r = await build(out2);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    for (const f of ["prov-hello-1.0.0-r0.apk.intoto.json", "prov-hello-doc-1.0.0-r0.apk.intoto.json"])
      expect(readFileSync(join(out2, "x86_64", f))).toEqual(readFileSync(join(out1, "x86_64", f)));
  }, 600_000);

  it("kiln verify --provenance accepts the package and names builder, recipe, sources and guest", () => {
    const r = kiln(["verify", "--provenance", apk()]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${apk()}: OK provenance ${apk()}.intoto.json`);
    expect(r.stdout).toMatch(/builder: https:\/\/kiln\.invalid\/builder\/kiln@/);
    expect(r.stdout).toContain(`recipe: recipes/prov-hello.yaml sha256 `);
    expect(r.stdout).toContain(`at ${head}`);
    expect(r.stdout).toContain(`source: ${server.url}/prov-hello-1.0.0.tar.gz sha256:${tarSha}`);
    expect(r.stdout).toMatch(/guest: \d+ packages \(.*busybox-links-/);
    expect(r.stdout).toContain("signed by: bootstrap.rsa.pub (not checked: give --keys-dir)");
    // With the repository's key: the package's signature and the envelope's are checked.
    const keys = join(work, "keys");
    mkdirSync(keys, { recursive: true });
    copyFileSync(boot.publicKey, join(keys, "bootstrap.rsa.pub"));
    const k = kiln(["verify", "--keys-dir", keys, "--provenance", apk()]);
    expect(k.status, k.stderr).toBe(0);
    expect(k.stdout).toContain(`${apk()}: OK`);
    expect(k.stdout).toContain("signed by: bootstrap.rsa.pub (verified: bootstrap.rsa.pub)");
    const j = kiln(["verify", "--provenance", apk(), "--json"]);
    expect(j.status, j.stderr).toBe(0);
    expect(JSON.parse(j.stdout)[0].sha256).toBe(sha256(readFileSync(apk())));
  });

  it("refuses a tampered package and another package's provenance: one error, exit 1", () => {
    const bad = join(work, "tampered", "prov-hello-1.0.0-r0.apk");
    mkdirSync(join(work, "tampered"));
    const bytes = readFileSync(apk());
    bytes[bytes.length - 10] ^= 1;
    writeFileSync(bad, bytes);
    copyFileSync(apk() + ".intoto.json", bad + ".intoto.json");
    const t = kiln(["verify", "--provenance", bad]);
    expect(t.status).toBe(1);
    expect(t.stderr).toMatch(
      /prov-hello-1\.0\.0-r0\.apk: sha256 [0-9a-f]{64} differs from the provenance's [0-9a-f]{64}/,
    );
    expect(t.stderr.trim().split("\n")).toHaveLength(1);
    const m = kiln(["verify", "--provenance", apk() + ".intoto.json", doc()]);
    expect(m.status).toBe(1);
    expect(m.stderr).toMatch(/is the provenance of prov-hello-1\.0\.0-r0\.apk, not of prov-hello-doc-1\.0\.0-r0\.apk/);
    writeFileSync(bad + ".intoto.json", '{"_type": "https://in-toto.io/Statement/v1"}');
    const p = kiln(["verify", "--provenance", bad]);
    expect(p.status).toBe(1);
    expect(p.stderr).toMatch(/not an in-toto Statement v1 with SLSA provenance v1/);
  });

  it("kiln publish to a directory publishes the provenance beside each package", () => {
    const target = join(work, "published");
    const r = kiln(["publish", "--from", out1, "--to", target, "--signing-key", boot.privateKey]);
    expect(r.status, r.stderr).toBe(0);
    for (const f of ["prov-hello-1.0.0-r0.apk", "prov-hello-doc-1.0.0-r0.apk"]) {
      const pub = join(target, "x86_64", f);
      expect(readFileSync(pub + ".intoto.json")).toEqual(readFileSync(join(out1, "x86_64", f + ".intoto.json")));
      expect(kiln(["verify", "--provenance", pub]).status).toBe(0);
    }
  });
});
