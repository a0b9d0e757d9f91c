// Issue 16, the advisory feed and the scanner, end to end as a maintainer and
// a consumer use them: advisories/NAME.yaml written for the test, a small
// repository made with kiln mkpkg and kiln index, kiln publish --advisories
// to a directory and to S3 (s3rver), an image built from the published
// repository, and kiln scan of the image, its SBOM and its unpacked root.

import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kiln, kilnAsync, type Run } from "./helpers/cli.js";
import { aws, awsKeys, runKiln, S3_ENV, startS3, type S3Server } from "./helpers/s3.js";

let work: string;
let key: string;
let keys: string;
let s3: S3Server;
const BUCKET = "feeds";

const HELLO = `package: hello
advisories:
  - id: CVE-2024-0001
    aliases: [GHSA-2222-3333-4444]
    summary: overflow in the greeting
    events:
      - date: 2024-01-02
        state: affected
      - date: 2024-02-03
        state: fixed
        version: 2.12-r1
  - id: CVE-2024-0002
    events:
      - date: 2024-03-01
        state: not-affected
        justification: vulnerable_code_not_present
  - id: CVE-2024-0003
    events:
      - date: 2024-04-01
        state: affected
`;
const ZLIB = `package: zlib
advisories:
  - id: CVE-2023-0009
    events:
      - {date: 2023-06-01, state: fixed, version: 1.2-r0}
`;

function ok(r: Run, what = "kiln"): Run {
  expect(r.status, `${what}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
  return r;
}

/** A package made with kiln mkpkg from TREE into DIR/x86_64. */
function mkpkg(dir: string, tree: string, name: string, version: string, origin = name): void {
  mkdirSync(join(dir, "x86_64"), { recursive: true });
  ok(
    kiln([
      ...["mkpkg", tree, "--name", name, "--version", version, "--origin", origin],
      ...["--signing-key", key, "-o", join(dir, "x86_64", `${name}-${version}.apk`)],
    ]),
  );
}

function index(dir: string): void {
  const apks = readdirSync(join(dir, "x86_64"))
    .filter((n) => n.endsWith(".apk"))
    .map((n) => join(dir, "x86_64", n));
  ok(kiln(["index", "-o", join(dir, "x86_64/APKINDEX.tar.gz"), "--signing-key", key, ...apks]));
}

function adv(name: string, files: Record<string, string>): string {
  const d = join(work, name);
  mkdirSync(d, { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(d, f), text);
  return d;
}

function publish(from: string, to: string, advisories: string, extra: string[] = []): Run {
  return kiln(["publish", "--from", from, "--to", to, "--signing-key", key, "--advisories", advisories, ...extra]);
}

/** An image of hello, hello-doc, zlib and the layout package from REPO. */
function image(name: string, repo: string): string {
  const cfg = join(work, `${name}.yaml`);
  writeFileSync(
    cfg,
    `contents:\n  repositories: [${repo}]\n  keyring: [${keys}/k.rsa.pub]\n  packages: [base-layout, hello, hello-doc, zlib]\narchs: [x86_64]\n`,
  );
  const out = join(work, name);
  ok(kiln(["image", "build", cfg, out]), "image build");
  return out;
}

interface ScanJson {
  targets: Array<{
    subject: string;
    osRelease: Record<string, string> | null;
    packages: number;
    findings: Array<{
      package: string;
      version: string;
      origin: string;
      id: string;
      fixed?: string;
      aliases: string[];
    }>;
  }>;
  open: number;
}

function scan(input: string, feeds: string[], extra: string[] = []): { run: Run; json: ScanJson } {
  const run = kiln(["scan", input, ...feeds.flatMap((f) => ["--feed", f]), "--json", ...extra]);
  expect([0, 3], run.stderr).toContain(run.status);
  return { run, json: JSON.parse(run.stdout) as ScanJson };
}

const rows = (j: ScanJson) =>
  j.targets[0]!.findings.map((f) => `${f.package} ${f.version} ${f.origin} ${f.id} ${f.fixed ?? "no fix"}`);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-scan-"));
  keys = join(work, "keys");
  mkdirSync(keys);
  ok(kiln(["keygen", join(work, "k"), "--bits", "2048"]));
  key = join(work, "k.rsa");
  cpSync(`${key}.pub`, join(keys, "k.rsa.pub"));
  const layout = join(work, "tree-layout");
  mkdirSync(join(layout, "usr/lib"), { recursive: true });
  mkdirSync(join(layout, "etc"), { recursive: true });
  symlinkSync("usr/lib", join(layout, "lib"));
  writeFileSync(
    join(layout, "usr/lib/os-release"),
    'ID=kiln\nID_LIKE=wolfi\nNAME="Kiln Linux"\nPRETTY_NAME="Kiln Linux 1"\nVERSION_ID=1\n',
  );
  symlinkSync("../usr/lib/os-release", join(layout, "etc/os-release"));
  const doc = join(work, "tree-doc");
  mkdirSync(join(doc, "usr/share/doc"), { recursive: true });
  writeFileSync(join(doc, "usr/share/doc/hello"), "hello\n");
  const out = join(work, "out");
  mkpkg(out, layout, "base-layout", "1.0-r0");
  mkpkg(out, doc, "hello", "2.12-r0");
  mkpkg(out, doc, "hello-doc", "2.12-r0", "hello");
  mkpkg(out, doc, "zlib", "1.3-r0");
  index(out);
  adv("advisories", { "hello.yaml": HELLO, "zlib.yaml": ZLIB, "README.md": "advisories of the test distribution\n" });
  s3 = await startS3(join(work, "s3data"));
  aws(s3.endpoint, ["s3api", "create-bucket", "--bucket", BUCKET]);
});

afterAll(async () => {
  await s3?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const OSV_1 = {
  schema_version: "1.6.0",
  id: "KILN-CVE-2024-0001",
  modified: "2024-02-03T00:00:00Z",
  published: "2024-01-02T00:00:00Z",
  aliases: ["CVE-2024-0001", "GHSA-2222-3333-4444"],
  summary: "overflow in the greeting",
  affected: [
    {
      package: { ecosystem: "kiln", name: "hello", purl: "pkg:apk/kiln/hello" },
      ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "0" }, { fixed: "2.12-r1" }] }],
    },
  ],
};
const OSV_3 = {
  schema_version: "1.6.0",
  id: "KILN-CVE-2024-0003",
  modified: "2024-04-01T00:00:00Z",
  published: "2024-04-01T00:00:00Z",
  aliases: ["CVE-2024-0003"],
  affected: [
    {
      package: { ecosystem: "kiln", name: "hello", purl: "pkg:apk/kiln/hello" },
      ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "0" }] }],
    },
  ],
};
const OSV_9 = {
  schema_version: "1.6.0",
  id: "KILN-CVE-2023-0009",
  modified: "2023-06-01T00:00:00Z",
  published: "2023-06-01T00:00:00Z",
  aliases: ["CVE-2023-0009"],
  affected: [
    {
      package: { ecosystem: "kiln", name: "zlib", purl: "pkg:apk/kiln/zlib" },
      ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "0" }, { fixed: "1.2-r0" }] }],
    },
  ],
};

const read = (f: string) => JSON.parse(readFileSync(f, "utf8")) as unknown;

describe("kiln publish --advisories", () => {
  it("writes security.json (secdb) and osv/ (OSV 1.6, all.json) beside the repository, exactly; again, nothing is rewritten", () => {
    const pub = join(work, "pub");
    const r = ok(publish(join(work, "out"), pub, join(work, "advisories"), ["--distro-id", "kiln", "--json"]));
    expect(JSON.parse(r.stdout).feed).toEqual({
      secdbPackages: 2,
      osvRecords: 3,
      written: [
        "osv/KILN-CVE-2023-0009.json",
        "osv/KILN-CVE-2024-0001.json",
        "osv/KILN-CVE-2024-0003.json",
        "osv/all.json",
        "security.json",
      ],
      removed: [],
    });
    expect(read(join(pub, "security.json"))).toEqual({
      apkurl: "{{urlprefix}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
      archs: ["x86_64"],
      reponame: "kiln",
      urlprefix: pub,
      packages: [
        { pkg: { name: "hello", secfixes: { "0": ["CVE-2024-0002"], "2.12-r1": ["CVE-2024-0001"] } } },
        { pkg: { name: "zlib", secfixes: { "1.2-r0": ["CVE-2023-0009"] } } },
      ],
    });
    expect(readdirSync(join(pub, "osv")).sort()).toEqual([
      "KILN-CVE-2023-0009.json",
      "KILN-CVE-2024-0001.json",
      "KILN-CVE-2024-0003.json",
      "all.json",
    ]);
    expect(read(join(pub, "osv/KILN-CVE-2024-0001.json"))).toEqual(OSV_1);
    expect(read(join(pub, "osv/all.json"))).toEqual([OSV_9, OSV_1, OSV_3]);
    const again = ok(publish(join(work, "out"), pub, join(work, "advisories"), ["--distro-id", "kiln", "--json"]));
    expect(JSON.parse(again.stdout).feed.written).toEqual([]);
  });

  it("a bad advisory is refused with its file:line before anything is published", () => {
    const bad = adv("advisories-bad", { "hello.yaml": HELLO.replace("version: 2.12-r1", "version: 2.12-rX") });
    const pub = join(work, "pub-bad");
    const r = publish(join(work, "out"), pub, bad, ["--distro-id", "kiln"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${bad}/hello.yaml:11:18: advisories[0].events[1].version: expected an apk version`);
    expect(existsSync(join(pub, "x86_64"))).toBe(false);
    const path = adv("advisories-path", { "hello.yaml": HELLO.replace("package: hello", "package: ../../etc") });
    const p = publish(join(work, "out"), pub, path, ["--distro-id", "kiln"]);
    expect(p.status).toBe(1);
    expect(p.stderr).toContain("hello.yaml:1:10: package: expected a package name");
  });

  it("to S3 (s3rver): the feed lands beside the repository, and kiln scan reads it over HTTP", async () => {
    const r = await runKiln([
      ...["publish", "--from", join(work, "out"), "--to", `s3://${BUCKET}/kiln`, "--signing-key", key],
      ...[
        "--advisories",
        join(work, "advisories"),
        "--distro-id",
        "kiln",
        "--feed-url",
        `${s3.endpoint}/${BUCKET}/kiln`,
      ],
      ...["--endpoint-url", s3.endpoint, "--path-style"],
    ]);
    ok(r, "publish to s3");
    expect(
      awsKeys(s3.endpoint, BUCKET, "kiln/").filter((k) => !k.includes("/x86_64/") && !k.startsWith("kiln/.kiln/")),
    ).toEqual([
      "kiln/k.rsa.pub",
      "kiln/osv/KILN-CVE-2023-0009.json",
      "kiln/osv/KILN-CVE-2024-0001.json",
      "kiln/osv/KILN-CVE-2024-0003.json",
      "kiln/osv/all.json",
      "kiln/security.json",
    ]);
    const secdb = (await (await fetch(`${s3.endpoint}/${BUCKET}/kiln/security.json`)).json()) as { urlprefix: string };
    expect(secdb.urlprefix).toBe(`${s3.endpoint}/${BUCKET}/kiln`);
    const img = image("img-s3", join(work, "out"));
    const s = await kilnAsync(["scan", img, "--feed", `${s3.endpoint}/${BUCKET}/kiln/security.json`, "--json"], {
      env: S3_ENV,
    });
    ok(s, "scan over http");
    // secdb cannot say "affected, no fix yet": only the fixed one is found from it.
    expect(rows(JSON.parse(s.stdout) as ScanJson)).toEqual([
      "hello 2.12-r0 hello CVE-2024-0001 2.12-r1",
      "hello-doc 2.12-r0 hello CVE-2024-0001 2.12-r1",
    ]);
    // The repository's URL: its security.json and osv/all.json together find the unfixed one too.
    const base = await kilnAsync(["scan", img, "--feed", `${s3.endpoint}/${BUCKET}/kiln/`, "--json"], { env: S3_ENV });
    ok(base, "scan of the repository URL");
    expect(rows(JSON.parse(base.stdout) as ScanJson)).toEqual([
      "hello 2.12-r0 hello CVE-2024-0001 2.12-r1",
      "hello 2.12-r0 hello CVE-2024-0003 no fix",
      "hello-doc 2.12-r0 hello CVE-2024-0001 2.12-r1",
      "hello-doc 2.12-r0 hello CVE-2024-0003 no fix",
    ]);
    const none = await kilnAsync(["scan", img, "--feed", `${s3.endpoint}/${BUCKET}/nothing`], { env: S3_ENV });
    expect(none.status).toBe(1);
    expect(none.stderr).toContain(`${s3.endpoint}/${BUCKET}/nothing: neither security.json nor osv/all.json is there`);
  });
});

describe("kiln scan", () => {
  let img: string;
  beforeAll(() => {
    img = image("img", join(work, "pub"));
  });

  it("an image: the open CVE and the unfixed one, by origin (hello-doc too); not the not-affected one, not zlib's fixed one; os-release reported", () => {
    const { run, json } = scan(img, [join(work, "pub")]);
    expect(run.status).toBe(0);
    expect(rows(json)).toEqual([
      "hello 2.12-r0 hello CVE-2024-0001 2.12-r1",
      "hello 2.12-r0 hello CVE-2024-0003 no fix",
      "hello-doc 2.12-r0 hello CVE-2024-0001 2.12-r1",
      "hello-doc 2.12-r0 hello CVE-2024-0003 no fix",
    ]);
    expect(json.targets[0]!.findings[0]!.aliases).toEqual(["GHSA-2222-3333-4444", "KILN-CVE-2024-0001"]);
    expect(json.targets[0]!.osRelease).toMatchObject({ ID: "kiln", ID_LIKE: "wolfi", VERSION_ID: "1" });
    expect(json.targets[0]!.packages).toBe(4);
    const text = kiln(["scan", img, "--feed", join(work, "pub"), "--fail-on-found"]);
    expect(text.status).toBe(3);
    expect(text.stdout).toContain("Kiln Linux 1 (ID=kiln ID_LIKE=wolfi VERSION_ID=1)");
    expect(text.stdout).toMatch(/hello-doc\s+2\.12-r0\s+hello\s+CVE-2024-0003\s+no fix/);
    expect(text.stdout).toContain("4 packages scanned, 4 open advisories (2 with a fix)");
  });

  it("the image's SBOM and its unpacked root give the same findings", () => {
    const fromImage = rows(scan(img, [join(work, "pub/osv/all.json")]).json);
    expect(fromImage).toHaveLength(4);
    expect(rows(scan(`${img}.sbom-x86_64.spdx.json`, [join(work, "pub/osv/all.json")]).json)).toEqual(fromImage);
    const index = read(join(img, "index.json")) as { manifests: Array<{ digest: string }> };
    const blob = (d: string) => join(img, "blobs/sha256", d.slice(7));
    const manifest = read(blob(index.manifests[0]!.digest)) as { layers: Array<{ digest: string }> };
    const root = join(work, "root");
    mkdirSync(root);
    for (const l of manifest.layers) execFileSync("tar", ["-xzf", blob(l.digest), "-C", root]);
    const r = scan(root, [join(work, "pub/osv/all.json")]).json;
    expect(rows(r)).toEqual(fromImage);
    expect(r.targets[0]!.osRelease).toMatchObject({ ID: "kiln", ID_LIKE: "wolfi" });
  });

  it("an oci-archive gives the same findings; a layer that does not match its digest is refused", () => {
    const tar = join(work, "img.tar");
    ok(kiln(["image", "build", join(work, "img.yaml"), tar, "--format", "oci-archive"]), "oci-archive");
    expect(rows(scan(tar, [join(work, "pub")]).json)).toEqual(rows(scan(img, [join(work, "pub")]).json));
    const copy = join(work, "img-corrupt");
    cpSync(img, copy, { recursive: true });
    const index = read(join(copy, "index.json")) as { manifests: Array<{ digest: string }> };
    const blob = (d: string) => join(copy, "blobs/sha256", d.slice(7));
    const layer = (read(blob(index.manifests[0]!.digest)) as { layers: Array<{ digest: string }> }).layers[0]!.digest;
    const bytes = readFileSync(blob(layer));
    bytes[bytes.length - 9] ^= 0xff; // inside the gzip trailer's CRC: still inflates, but is not the blob
    writeFileSync(blob(layer), bytes);
    const r = kiln(["scan", copy, "--feed", join(work, "pub")]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`layer ${layer}`);
  });

  it("a bumped package clears the fixed finding; recording the fix of the last one leaves the image clean (exit 0 with --fail-on-found)", () => {
    const out2 = join(work, "out2");
    const doc = join(work, "tree-doc");
    mkpkg(out2, doc, "hello", "2.12-r1");
    mkpkg(out2, doc, "hello-doc", "2.12-r1", "hello");
    index(out2);
    const pub = join(work, "pub");
    ok(publish(out2, pub, join(work, "advisories"), ["--distro-id", "kiln"]));
    const bumped = image("img2", pub);
    expect(rows(scan(bumped, [pub]).json)).toEqual([
      "hello 2.12-r1 hello CVE-2024-0003 no fix",
      "hello-doc 2.12-r1 hello CVE-2024-0003 no fix",
    ]);
    const fixed = adv("advisories-fixed", {
      "hello.yaml": HELLO + "      - date: 2024-05-01\n        state: fixed\n        version: 2.12-r1\n",
      "zlib.yaml": ZLIB,
    });
    const r = ok(publish(out2, pub, fixed, ["--distro-id", "kiln", "--json"]));
    expect(JSON.parse(r.stdout).feed).toMatchObject({ osvRecords: 3 });
    expect(
      (read(join(pub, "security.json")) as { packages: Array<{ pkg: { secfixes: unknown } }> }).packages[0]!.pkg
        .secfixes,
    ).toEqual({
      "0": ["CVE-2024-0002"],
      "2.12-r1": ["CVE-2024-0001", "CVE-2024-0003"],
    });
    const clean = kiln(["scan", bumped, "--feed", pub, "--fail-on-found"]);
    expect(clean.status, clean.stderr).toBe(0);
    expect(clean.stdout).toContain("4 packages scanned, 0 open advisories");
    // The old image is still affected by the first fix and the one just recorded.
    expect(kiln(["scan", img, "--feed", pub, "--fail-on-found"]).status).toBe(3);
  });

  it("bad input: one clear error, exit 1; no feed: exit 2", () => {
    const bad = join(work, "bad-feed.json");
    writeFileSync(bad, JSON.stringify({ packages: [{ pkg: { name: "../../etc", secfixes: {} } }] }));
    const r = kiln(["scan", img, "--feed", bad]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`kiln scan: ${bad}: packages[0].pkg.name: expected a package name, got "../../etc"`);
    const ver = join(work, "bad-version.json");
    writeFileSync(
      ver,
      JSON.stringify([{ id: "X-1", affected: [{ package: { name: "hello" }, versions: ["1.0-rX"] }] }]),
    );
    expect(kiln(["scan", img, "--feed", ver]).stderr).toContain(
      `${ver}[0]: X-1: affected[0].versions[0]: expected an apk version, got "1.0-rX"`,
    );
    const none = kiln(["scan", join(work, "nowhere"), "--feed", bad]);
    expect(none.status).toBe(1);
    expect(none.stderr).toContain("nowhere: no such file or directory");
    const notRoot = kiln(["scan", join(work, "keys"), "--feed", join(work, "pub")]);
    expect(notRoot.status).toBe(1);
    expect(notRoot.stderr).toContain("no lib/apk/db/installed");
    expect(kiln(["scan", img]).status).toBe(2);
  });
});
