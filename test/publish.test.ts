// Publishing end to end: a real S3-protocol server (s3rver) on loopback,
// uploads with @aws-sdk/client-s3 (kiln publish), objects and headers
// confirmed with Debian's awscli, the result consumed over plain HTTP GET by
// packages/repo and by `kiln image build`; the same for a directory target;
// faults injected by a proxy between kiln and the server, kill -9 at chosen
// points, concurrent publishers, the refusals (each before any write, also
// for hostile local indexes), and the temporary directory on signals.

import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Keyring, openPackage, readIndex, verifyIndex, type IndexRecord } from "@kiln/apk";
import { fetchPackage, loadIndex, planPublish, unsatisfiedDependencies, type RemoteArchState } from "@kiln/repo";
import { baseLayoutEntries, makeKey, makeRepo, type PkgSpec, type TestKey } from "./helpers/fixtures.js";
import { rawIndex, rawPackage } from "./helpers/hostile.js";
import {
  aws,
  awsHead,
  awsKeys,
  runKiln,
  spawnKiln,
  startFaultProxy,
  startS3,
  type FaultProxy,
  type S3Server,
} from "./helpers/s3.js";
import type { Run } from "./helpers/cli.js";

const BUCKET = "kiln-repo";
let work: string;
let buildKey: TestKey; // signs the packages in OUT (a throwaway build key)
let pubKey: TestKey; // publishes
let otherKey: TestKey;
let s3: S3Server;
let proxy: FaultProxy;

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const HELLO = "#!/bin/sh\necho hello from a published repository\n";

function pkgs(names: string[], extra: Partial<PkgSpec> = {}): PkgSpec[] {
  return names.map((n) => ({
    name: n,
    entries: [{ path: `usr/share/${n}/README`, type: "file", content: `package ${n}\n` }],
    ...extra,
  }));
}

const BASE: PkgSpec[] = [
  { name: "baselayout", entries: baseLayoutEntries(), info: { description: "the base layout" } },
  {
    name: "hello",
    version: "2.12-r1",
    entries: [{ path: "usr/bin/hello", type: "file", mode: 0o755, content: HELLO }],
    info: { depends: ["baselayout"], description: "says hello <html>", license: "GPL-3.0-or-later" },
  },
];

async function out(name: string, specs: PkgSpec[], key = buildKey): Promise<string> {
  const dir = join(work, "out", name);
  rmSync(dir, { recursive: true, force: true });
  await makeRepo(dir, key.key, specs);
  return dir;
}

function s3Args(endpoint = proxy.endpoint): string[] {
  return ["--endpoint-url", endpoint, "--path-style", "--retries", "6", "--timeout", "10"];
}

function publishArgs(from: string, prefix: string, extra: string[] = [], endpoint?: string): string[] {
  return [
    "publish",
    "--from",
    from,
    "--to",
    `s3://${BUCKET}/${prefix}`,
    "--signing-key",
    pubKey.privatePath,
    ...s3Args(endpoint),
    ...extra,
  ];
}

const httpBase = (prefix: string) => `${s3.endpoint}/${BUCKET}/${prefix}`;

/**
 * GET for the test's own reads. A kept-alive connection the server closed as
 * the request went out fails with "other side closed" (seen once on a loaded
 * CI machine): that is retried once on a new connection, nothing else.
 */
async function get(url: string): Promise<Response> {
  try {
    return await fetch(url);
  } catch (e) {
    if ((e as { cause?: { code?: string } }).cause?.code !== "UND_ERR_SOCKET") throw e;
    return fetch(url); // the closed connection left the pool: this one is new
  }
}

async function httpIndex(prefix: string): Promise<IndexRecord[]> {
  const r = await get(`${httpBase(prefix)}/x86_64/APKINDEX.tar.gz`);
  expect(r.status).toBe(200);
  const idx = await readIndex(Buffer.from(await r.arrayBuffer()));
  expect(verifyIndex(idx, new Keyring().add("pub.rsa.pub", readFileSync(pubKey.publicPath))).verdict).toBe("OK");
  return idx.records;
}

const ids = (rs: IndexRecord[]) => rs.map((r) => `${r.name}-${r.version}`).sort();

async function check(prefix: string): Promise<Run> {
  return runKiln(["repo", "check", httpBase(prefix), "--keys-dir", pubKey.keysDir, "--arch", "x86_64"]);
}

function expectOk(r: Run, what = "kiln") {
  expect(r.status, `${what}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
}

/** Requests that write (or start writing) something in the bucket. */
const writes = (log: FaultProxy["log"]) =>
  log.filter((r) => r.method === "PUT" || r.method === "POST" || r.method === "DELETE");

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-publish-e2e-"));
  [buildKey, pubKey, otherKey] = await Promise.all([
    makeKey(join(work, "k-build"), "build"),
    makeKey(join(work, "k-pub"), "pub"),
    makeKey(join(work, "k-other"), "pub"),
  ]);
  s3 = await startS3(join(work, "s3data"));
  proxy = await startFaultProxy(s3.port);
  aws(s3.endpoint, ["s3api", "create-bucket", "--bucket", BUCKET]);
});

afterAll(async () => {
  await proxy?.stop();
  await s3?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("kiln publish to S3", () => {
  let first: string;

  it("uploads re-signed packages, then the signed index, public key and index.html, with checksums, content types and cache headers (confirmed with awscli)", async () => {
    first = await out("first", BASE);
    proxy.reset();
    const r = await runKiln(publishArgs(first, "main", ["--json"]));
    expectOk(r);
    const summary = JSON.parse(r.stdout);
    expect(summary.archs[0].uploaded).toEqual(["baselayout-1.0-r0", "hello-2.12-r1"]);
    expect(summary.archs[0].resigned).toEqual(["baselayout-1.0-r0", "hello-2.12-r1"]);
    expect(summary.archs[0].indexPackages).toBe(2);
    expect(r.stderr).toMatch(/x86_64\/hello-2\.12-r1\.apk: uploaded, \d+ bytes, re-signed by pub\.rsa\.pub/);

    // Every upload carried a SHA-256 checksum; packages were written before the index.
    const puts = proxy.log.filter((q) => q.method === "PUT" && !q.headers["x-amz-copy-source"]);
    expect(puts.length).toBeGreaterThanOrEqual(5);
    for (const p of puts) {
      expect(p.headers["x-amz-checksum-sha256"], p.url).toMatch(/^[A-Za-z0-9+/]+=*$/);
      expect(p.headers["x-amz-meta-sha256"], p.url).toMatch(/^[0-9a-f]{64}$/);
    }
    const copies = proxy.log
      .filter((q) => q.method === "PUT" && q.headers["x-amz-copy-source"])
      .map((q) => q.url.replace(/\?.*$/, ""));
    const firstIndex = copies.findIndex((u) => u.endsWith("/APKINDEX.tar.gz"));
    const lastApk = copies.map((u, i) => (u.endsWith(".apk") ? i : -1)).reduce((a, b) => Math.max(a, b));
    expect(firstIndex).toBeGreaterThan(lastApk);

    expect(awsKeys(s3.endpoint, BUCKET, "main/")).toEqual([
      "main/.kiln/staging/README",
      "main/pub.rsa.pub",
      "main/x86_64/APKINDEX.tar.gz",
      "main/x86_64/baselayout-1.0-r0.apk",
      "main/x86_64/hello-2.12-r1.apk",
      "main/x86_64/index.html",
    ]);
    const dl = join(work, "dl");
    mkdirSync(dl, { recursive: true });
    aws(s3.endpoint, ["s3", "cp", "--quiet", `s3://${BUCKET}/main/x86_64/`, dl, "--recursive"]);
    aws(s3.endpoint, ["s3", "cp", "--quiet", `s3://${BUCKET}/main/pub.rsa.pub`, join(dl, "pub.rsa.pub")]);
    expect(readFileSync(join(dl, "pub.rsa.pub"), "utf8")).toBe(readFileSync(pubKey.publicPath, "utf8"));

    const idx = await readIndex(readFileSync(join(dl, "APKINDEX.tar.gz")));
    expect(verifyIndex(idx, new Keyring().add("pub.rsa.pub", readFileSync(pubKey.publicPath))).verdict).toBe("OK");
    expect(verifyIndex(idx, new Keyring().add("build.rsa.pub", readFileSync(buildKey.publicPath))).verdict).not.toBe(
      "OK",
    );
    for (const rec of idx.records) {
      const key = `main/x86_64/${rec.name}-${rec.version}.apk`;
      const bytes = readFileSync(join(dl, `${rec.name}-${rec.version}.apk`));
      const head = awsHead(s3.endpoint, BUCKET, key)!;
      expect(head.CacheControl).toBe("public, max-age=31536000, immutable");
      expect(head.ContentType).toBe("application/octet-stream");
      expect(head.Metadata?.sha256).toBe(sha256(bytes));
      // S: and C: follow the final (re-signed) bytes.
      expect(rec.fileSize).toBe(bytes.length);
      const reader = await openPackage(
        (async function* () {
          yield bytes;
        })(),
      );
      expect(reader.head.checksum).toBe(rec.checksum);
      expect(reader.head.signatures.map((s) => `${s.type}.${s.keyName}`)).toEqual(["RSA256.pub.rsa.pub"]);
      await reader.drain();
      await reader.close();
      expect(bytes.length).not.toBe(readFileSync(join(first, "x86_64", `${rec.name}-${rec.version}.apk`)).length + 1e9);
    }
    const ih = awsHead(s3.endpoint, BUCKET, "main/x86_64/APKINDEX.tar.gz")!;
    expect(ih.CacheControl).toBe("no-cache");
    expect(ih.ContentType).toBe("application/gzip");
    const hh = awsHead(s3.endpoint, BUCKET, "main/x86_64/index.html")!;
    expect(hh.CacheControl).toBe("no-cache");
    expect(hh.ContentType).toBe("text/html; charset=utf-8");
    const html = readFileSync(join(dl, "index.html"), "utf8");
    expect(html).toContain(`<a href="hello-2.12-r1.apk">hello</a></td><td>2.12-r1</td>`);
    expect(html).toContain("says hello &lt;html&gt;");
    expect(html).toContain("<code>baselayout</code>");
    expect(html).toContain("2023-11-14 22:13:20 UTC");
    expect(html).toContain(`href="../pub.rsa.pub"`);
    // No staging leftovers (the marker object stays).
    expect(awsKeys(s3.endpoint, BUCKET, "main/.kiln/")).toEqual(["main/.kiln/staging/README"]);
  });

  it("--atomic-put: one PUT per object onto its final key, with its SHA-256 and condition, no staging, the index last", async () => {
    const from = await out("atomic", BASE);
    proxy.reset();
    const r = await runKiln(publishArgs(from, "atomic", ["--atomic-put", "--json"]));
    expectOk(r);
    expect(JSON.parse(r.stdout).archs[0].uploaded).toEqual(["baselayout-1.0-r0", "hello-2.12-r1"]);
    const puts = proxy.log.filter((q) => q.method === "PUT");
    expect(puts.filter((q) => q.headers["x-amz-copy-source"])).toEqual([]);
    expect(puts.filter((q) => q.url.includes("/.kiln/"))).toEqual([]);
    const paths = puts.map((q) => q.url.replace(/\?.*$/, ""));
    for (const name of ["baselayout-1.0-r0.apk", "hello-2.12-r1.apk"]) {
      const mine = puts.filter((q) => q.url.replace(/\?.*$/, "").endsWith(`/atomic/x86_64/${name}`));
      expect(mine).toHaveLength(1);
      expect(mine[0]!.headers["x-amz-checksum-sha256"]).toMatch(/^[A-Za-z0-9+/]+=*$/);
      expect(mine[0]!.headers["if-none-match"]).toBe("*");
    }
    const lastApk = paths.map((u, i) => (u.endsWith(".apk") ? i : -1)).reduce((a, b) => Math.max(a, b));
    expect(paths.findIndex((u) => u.endsWith("/APKINDEX.tar.gz"))).toBeGreaterThan(lastApk);
    expect(awsKeys(s3.endpoint, BUCKET, "atomic/")).toEqual([
      "atomic/pub.rsa.pub",
      "atomic/x86_64/APKINDEX.tar.gz",
      "atomic/x86_64/baselayout-1.0-r0.apk",
      "atomic/x86_64/hello-2.12-r1.apk",
      "atomic/x86_64/index.html",
    ]);
    const dl = join(work, "dl-atomic");
    mkdirSync(dl, { recursive: true });
    aws(s3.endpoint, ["s3", "cp", "--quiet", `s3://${BUCKET}/atomic/x86_64/`, dl, "--recursive"]);
    const idx = await readIndex(readFileSync(join(dl, "APKINDEX.tar.gz")));
    expect(verifyIndex(idx, new Keyring().add("pub.rsa.pub", readFileSync(pubKey.publicPath))).verdict).toBe("OK");
    for (const rec of idx.records)
      expect(readFileSync(join(dl, `${rec.name}-${rec.version}.apk`)).length).toBe(rec.fileSize);
    // Published again: nothing is written over the packages.
    proxy.reset();
    expectOk(await runKiln(publishArgs(from, "atomic", ["--atomic-put"])));
    expect(proxy.log.filter((q) => q.method === "PUT" && q.url.includes(".apk"))).toEqual([]);
  });

  it("is consumed over plain HTTP GET by packages/repo, and kiln image build makes an image from it", async () => {
    const cache = mkdtempSync(join(work, "consumer-cache-"));
    const ring = new Keyring().add("pub.rsa.pub", readFileSync(pubKey.publicPath));
    const loaded = await loadIndex({ url: httpBase("main") }, "x86_64", { keyring: ring, cacheDir: cache });
    expect(loaded.trust).toBe("OK");
    expect(loaded.url).toBe(`${httpBase("main")}/x86_64/APKINDEX.tar.gz`);
    for (const p of loaded.packages) {
      const file = await fetchPackage(p, { keyring: ring, cacheDir: cache });
      expect(readFileSync(file).length).toBe(p.record.fileSize);
    }
    const cfg = join(work, "image.yaml");
    writeFileSync(
      cfg,
      `contents:\n  repositories: [${httpBase("main")}]\n  keyring: [${httpBase("main")}/pub.rsa.pub]\n  packages: [hello]\narchs: [x86_64]\nentrypoint:\n  command: /usr/bin/hello\n`,
    );
    const layout = join(work, "image-s3");
    const b = await runKiln([
      "image",
      "build",
      cfg,
      layout,
      "--json",
      "--cache-dir",
      mkdtempSync(join(work, "img-cache-")),
    ]);
    expectOk(b, "image build");
    expect(JSON.parse(b.stdout).archs).toEqual([{ arch: "x86_64", packages: 2 }]);
    const bundle = join(work, "bundle-s3");
    execFileSync("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, bundle], { stdio: "pipe" });
    expect(readFileSync(join(bundle, "rootfs/usr/bin/hello"), "utf8")).toBe(HELLO);

    // The same repository as an s3:// URL (kiln's S3 fetcher, --endpoint-url). The digest differs
    // only because /etc/apk/repositories records the URL the image was built from.
    const cfgS3 = join(work, "image-s3url.yaml");
    writeFileSync(
      cfgS3,
      `contents:\n  repositories: [s3://${BUCKET}/main]\n  keyring: [${pubKey.publicPath}]\n  packages: [hello]\narchs: [x86_64]\nentrypoint:\n  command: /usr/bin/hello\n`,
    );
    const viaS3 = await runKiln([
      "image",
      "build",
      cfgS3,
      join(work, "image-s3url"),
      "--json",
      "--cache-dir",
      mkdtempSync(join(work, "img-cache-")),
      "--endpoint-url",
      s3.endpoint,
      "--path-style",
    ]);
    expectOk(viaS3, "image build from s3://");
    expect(JSON.parse(viaS3.stdout).archs).toEqual([{ arch: "x86_64", packages: 2 }]);
    const bundleS3 = join(work, "bundle-s3url");
    execFileSync("umoci", ["unpack", "--rootless", "--image", `${join(work, "image-s3url")}:latest`, bundleS3], {
      stdio: "pipe",
    });
    expect(readFileSync(join(bundleS3, "rootfs/usr/bin/hello"), "utf8")).toBe(HELLO);
    expect(readFileSync(join(bundleS3, "rootfs/etc/apk/repositories"), "utf8")).toBe(`s3://${BUCKET}/main\n`);
  });

  it("kiln repo check passes over HTTP and over s3:// (S3 fetcher), and a re-run publishes nothing", async () => {
    expectOk(await check("main"), "check http");
    const viaS3 = await runKiln([
      "repo",
      "check",
      `s3://${BUCKET}/main`,
      "--keys-dir",
      pubKey.keysDir,
      ...s3Args(s3.endpoint),
      "--json",
    ]);
    expectOk(viaS3, "check s3");
    expect(JSON.parse(viaS3.stdout)).toMatchObject({
      ok: true,
      archs: [{ arch: "x86_64", packages: 2, checked: 2, problems: [] }],
    });
    proxy.reset();
    const again = await runKiln(publishArgs(first, "main"));
    expectOk(again);
    expect(again.stdout).toContain("0 uploaded, 0 already uploaded and indexed, 2 already published; index 2 packages");
    expect(writes(proxy.log)).toEqual([]);
  });

  it("an incremental publish uploads only the new package, reads no published .apk, and uses multipart for a large one", async () => {
    const big = Buffer.alloc(7 * 1024 * 1024);
    let s = 7;
    for (let i = 0; i < big.length; i++) big[i] = (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 24;
    const second = await out("second", [
      ...BASE,
      { name: "bigdata", entries: [{ path: "usr/share/bigdata/blob", type: "file", content: big }] },
    ]);
    proxy.reset();
    const r = await runKiln(publishArgs(second, "main", ["--multipart-threshold", String(6 * 1024 * 1024)]));
    expectOk(r);
    expect(r.stdout).toContain(
      "1 uploaded (1 re-signed), 0 already uploaded and indexed, 2 already published; index 3 packages",
    );
    const gets = proxy.log.filter((q) => q.method === "GET" && /\.apk(\?|$)/.test(q.url));
    expect(gets).toEqual([]);
    expect(proxy.log.filter((q) => q.method === "POST" && /\?uploads/.test(q.url))).toHaveLength(1);
    const parts = proxy.log.filter((q) => q.method === "PUT" && /partNumber=/.test(q.url));
    expect(parts).toHaveLength(2);
    for (const p of parts) expect(p.headers["x-amz-checksum-sha256"]).toBeTruthy();
    expect(r.stderr).toMatch(/multipart|parts/);
    const rec = (await httpIndex("main")).find((x) => x.name === "bigdata")!;
    const head = awsHead(s3.endpoint, BUCKET, "main/x86_64/bigdata-1.0-r0.apk")!;
    expect(head.ContentLength).toBe(rec.fileSize);
    const got = Buffer.from(await (await get(`${httpBase("main")}/x86_64/bigdata-1.0-r0.apk`)).arrayBuffer());
    expect(sha256(got)).toBe(head.Metadata?.sha256);
    expectOk(await check("main"));
  });

  it("--dry-run reports the plan and writes nothing", async () => {
    const third = await out("third", [...BASE, ...pkgs(["extra"])]);
    proxy.reset();
    const r = await runKiln(publishArgs(third, "main", ["--dry-run"]));
    expectOk(r);
    expect(r.stderr).toContain("x86_64/extra-1.0-r0.apk: would upload");
    expect(r.stdout).toContain("dry run:");
    expect(writes(proxy.log)).toEqual([]);
    expect(ids(await httpIndex("main"))).not.toContain("extra-1.0-r0");
  });
});

describe("refusals: one clear error, nothing uploaded", () => {
  it("refuses a different .apk under a published name", async () => {
    const changed = await out("changed", [
      { ...BASE[0]!, entries: [...baseLayoutEntries(), { path: "etc/motd", type: "file", content: "changed\n" }] },
      BASE[1]!,
    ]);
    const before = awsHead(s3.endpoint, BUCKET, "main/x86_64/baselayout-1.0-r0.apk")!;
    proxy.reset();
    const r = await runKiln(publishArgs(changed, "main"));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^kiln publish: refusing to publish to s3:\/\/kiln-repo\/main: x86_64\/baselayout-1\.0-r0\.apk: a different package is already published under this name .*bump the release/m,
    );
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(writes(proxy.log)).toEqual([]);
    expect(awsHead(s3.endpoint, BUCKET, "main/x86_64/baselayout-1.0-r0.apk")!.ETag).toBe(before.ETag);
  });

  it("refuses an unsatisfiable dependency with its explanation; an --upstream repository can satisfy it", async () => {
    const needs = await out("needs", [...BASE, ...pkgs(["needs"], { info: { depends: ["libmissing>=2", "hello"] } })]);
    proxy.reset();
    const r = await runKiln(publishArgs(needs, "main"));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("refusing to publish to s3://kiln-repo/main: 1 dependency would not be satisfiable");
    expect(r.stderr).toContain(`  x86_64/needs-1.0-r0 depends on libmissing>=2: nothing provides "libmissing"`);
    expect(writes(proxy.log)).toEqual([]);
    // An upstream with too old a version: still refused, naming what exists.
    const up1 = await out("upstream-old", [{ name: "libmissing", version: "1.0-r0", entries: [] }], pubKey);
    const r1 = await runKiln(publishArgs(needs, "main", ["--upstream", up1, "--keys-dir", pubKey.keysDir]));
    expect(r1.status).toBe(1);
    expect(r1.stderr).toContain("x86_64/needs-1.0-r0 depends on libmissing>=2: only libmissing-1.0-r0");
    const up2 = await out("upstream-new", [{ name: "libmissing", version: "2.1-r0", entries: [] }], pubKey);
    const r2 = await runKiln(publishArgs(needs, "needs-upstream", ["--upstream", up2, "--keys-dir", pubKey.keysDir]));
    expectOk(r2);
  });

  it("refuses a wrong signing key, and an unreadable or invalid key file, before any request writes", async () => {
    const o = await out("wrongkey", [...BASE, ...pkgs(["wk"])]);
    proxy.reset();
    const r = await runKiln([
      "publish",
      "--from",
      o,
      "--to",
      `s3://${BUCKET}/main`,
      "--signing-key",
      otherKey.privatePath,
      ...s3Args(),
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(
      /^kiln publish: s3:\/\/kiln-repo\/main\/pub\.rsa\.pub: the published public key pub\.rsa\.pub is not the public half of the signing key; wrong --signing-key\?$/,
    );
    expect(writes(proxy.log)).toEqual([]);

    proxy.reset();
    const missing = await runKiln(
      publishArgs(o, "main").map((a) => (a === pubKey.privatePath ? join(work, "nope.rsa") : a)),
    );
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim()).toBe(`kiln publish: signing key ${join(work, "nope.rsa")}: no such file`);
    const garbage = join(work, "garbage.rsa");
    writeFileSync(garbage, "not a key\n", { mode: 0o600 }); // a loose mode is refused first, as ssh does
    const bad = await runKiln(publishArgs(o, "main").map((a) => (a === pubKey.privatePath ? garbage : a)));
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim()).toMatch(new RegExp(`^kiln publish: ${garbage}: not a PEM private key`));
    const dirKey = await runKiln(publishArgs(o, "main").map((a) => (a === pubKey.privatePath ? work : a)));
    expect(dirKey.status).toBe(1);
    expect(dirKey.stderr.trim()).toBe(`kiln publish: signing key ${work}: not a regular file`);
    expect(proxy.log).toEqual([]); // not even a read
  });

  it("refuses an index signed by another key (key file absent) as a wrong signing key", async () => {
    aws(s3.endpoint, ["s3", "rm", "--quiet", `s3://${BUCKET}/main/pub.rsa.pub`]);
    try {
      const o = await out("wrongkey2", BASE);
      proxy.reset();
      const r = await runKiln([
        "publish",
        "--from",
        o,
        "--to",
        `s3://${BUCKET}/main`,
        "--signing-key",
        otherKey.privatePath,
        ...s3Args(),
      ]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(
        "main/x86_64/APKINDEX.tar.gz: signed by pub.rsa.pub, which the signing key pub.rsa.pub does not match",
      );
      expect(writes(proxy.log)).toEqual([]);
    } finally {
      aws(s3.endpoint, ["s3", "cp", "--quiet", pubKey.publicPath, `s3://${BUCKET}/main/pub.rsa.pub`]);
    }
  });
});

describe("faults between kiln and the server", () => {
  it("retries 503s, dropped connections, lost responses, torn uploads and timeouts, and completes", async () => {
    await expectOkAsync(runKiln(publishArgs(await out("f0", BASE), "faults")));
    const o = await out("f1", [...BASE, ...pkgs(["fa", "fb", "fc"])]);
    proxy.reset();
    proxy.rules = [
      { match: /^PUT .*\.kiln\/staging\//, action: "503", times: 2 },
      { match: /^PUT .*\.kiln\/staging\//, action: "truncate", after: 1, times: 1 },
      { match: /^HEAD /, action: "drop", times: 1 },
      { match: /^PUT .*\/x86_64\/f[a-c]-1\.0-r0\.apk/, action: "drop-response", times: 1 },
      { match: /^PUT .*\/x86_64\/APKINDEX\.tar\.gz/, action: "drop-response", times: 1 },
      { match: /^GET .*list-type=2/, action: "503", times: 1 },
      { match: /^GET .*\/x86_64\/APKINDEX\.tar\.gz/, action: "hang", times: 1 },
    ];
    const r = await runKiln(publishArgs(o, "faults", ["--timeout", "2"], proxy.endpoint));
    expectOk(r);
    expect(
      proxy.log
        .filter((q) => q.fault)
        .map((q) => q.fault)
        .sort(),
    ).toEqual(["503", "503", "503", "drop", "drop-response", "drop-response", "hang", "truncate"]);
    expect(r.stderr).toMatch(/retrying in \d+ ms/);
    expect(r.stderr).toMatch(/GET: .*(timed out|Timeout|ETIMEDOUT).*retrying/i);
    expectOk(await check("faults"));
    expect(ids(await httpIndex("faults"))).toEqual([
      "baselayout-1.0-r0",
      "fa-1.0-r0",
      "fb-1.0-r0",
      "fc-1.0-r0",
      "hello-2.12-r1",
    ]);
  });

  it("a publish that cannot write the index fails with one line, leaves the old index valid, and a re-run completes", async () => {
    const o = await out("f2", [...BASE, ...pkgs(["fa", "fb", "fc", "fd"])]);
    proxy.reset();
    proxy.rules = [{ match: /^PUT .*\/x86_64\/APKINDEX\.tar\.gz/, action: "503", times: Infinity }];
    const r = await runKiln(publishArgs(o, "faults", ["--retries", "2"]));
    expect(r.status).toBe(1);
    const errLine = r.stderr.trim().split("\n").pop()!;
    expect(errLine).toMatch(
      /^kiln publish: s3:\/\/kiln-repo\/faults\/x86_64\/APKINDEX\.tar\.gz: COPY failed: HTTP 503 SlowDown.*gave up after 2 attempts/,
    );
    expectOk(await check("faults"));
    expect(ids(await httpIndex("faults"))).not.toContain("fd-1.0-r0");
    expect(awsHead(s3.endpoint, BUCKET, "faults/x86_64/fd-1.0-r0.apk")).toBeDefined(); // uploaded, not yet indexed
    proxy.reset();
    const again = await runKiln(publishArgs(o, "faults"));
    expectOk(again);
    expect(again.stdout).toContain("0 uploaded, 1 already uploaded and indexed");
    expect(ids(await httpIndex("faults"))).toContain("fd-1.0-r0");
    expectOk(await check("faults"));
  });

  it("kill -9 at chosen requests (several seeds): the repository stays valid and a re-run completes", async () => {
    const base = await out("k0", BASE);
    const full = await out("k1", [...BASE, ...pkgs(["ka", "kb", "kc", "kd", "ke", "kf", "kg", "kh"])]);
    // How many requests a whole publish makes, to choose kill points within it.
    await expectOkAsync(runKiln(publishArgs(base, "kill-ref")));
    proxy.reset();
    await expectOkAsync(runKiln(publishArgs(full, "kill-ref")));
    const total = proxy.log.length;
    expect(total).toBeGreaterThan(30);
    let rng = 20240601;
    const seeds = [1, 2, 3, 4, 5, 6];
    const seenStates: string[] = [];
    for (const seed of seeds) {
      const prefix = `kill-${seed}`;
      await expectOkAsync(runKiln(publishArgs(base, prefix)));
      rng = (Math.imul(rng, 1664525) + 1013904223) >>> 0;
      const at = 1 + (rng % total);
      proxy.reset();
      const child = spawnKiln(publishArgs(full, prefix));
      // Odd seeds: killed after the request left (the server completes it); even: before it is sent.
      if (seed % 2 === 0) proxy.rules = [{ match: /./, action: "drop", after: at - 1, times: Infinity }];
      proxy.onRequest = (q) => {
        if (q.n === at) child.proc.kill("SIGKILL");
      };
      const killed = await child.done;
      proxy.reset();
      expect(killed.status, `seed ${seed}: not killed (${killed.stderr})`).toBe(137);
      // What the kill left: package objects present vs listed in the index.
      const present = awsKeys(s3.endpoint, BUCKET, `${prefix}/x86_64/`).filter((k) =>
        /\/[^/.][^/]*\.apk$/.test(k),
      ).length;
      const indexed = (await httpIndex(prefix)).length;
      seenStates.push(`killed at ${at}/${total}: ${present} objects, ${indexed} indexed`);
      const c = await check(prefix);
      expect(
        c.status,
        `seed ${seed}, killed at request ${at} of ${total} (exit ${killed.status}): ${c.stdout}${c.stderr}`,
      ).toBe(0);
      const rerun = await runKiln(publishArgs(full, prefix));
      expect(rerun.status, `seed ${seed} re-run: ${rerun.stderr}`).toBe(0);
      expectOk(await check(prefix));
      expect(ids(await httpIndex(prefix))).toEqual(
        ids((await readIndex(readFileSync(join(full, "x86_64/APKINDEX.tar.gz")))).records),
      );
    }
    // The seeds reach the interesting window: packages uploaded, index not yet covering them.
    expect(
      seenStates.some((s) => {
        const m = /(\d+) objects, (\d+) indexed/.exec(s)!;
        return Number(m[1]) > Number(m[2]);
      }),
      seenStates.join("\n"),
    ).toBe(true);
    console.log(seenStates.join("\n"));
  }, 300_000); // 6 seeds × 4 publishes; a hang guard only, generous for a loaded 2-core machine
});

describe("concurrent publishers", () => {
  it("four publishers of different packages at once: every package ends up in the index", async () => {
    await expectOkAsync(runKiln(publishArgs(await out("c0", BASE), "concurrent")));
    const outs = await Promise.all(
      [0, 1, 2, 3].map((i) => out(`c${i + 1}`, [...BASE, ...pkgs([0, 1, 2, 3, 4].map((j) => `p${i}x${j}`))])),
    );
    // Force the lost-update race: publishers start 300 ms apart (so each lists a different set of
    // package objects), and their first index writes are held until all four have arrived, then
    // applied in reverse order — the write based on the oldest listing lands last.
    proxy.reset();
    proxy.rules = [{ match: /^PUT .*\/concurrent\/x86_64\/APKINDEX\.tar\.gz/, action: "barrier", times: 4 }];
    const runs = await Promise.all(
      outs.map(async (o, i) => {
        await new Promise((r) => setTimeout(r, i * 300));
        return runKiln(publishArgs(o, "concurrent"));
      }),
    );
    for (const r of runs) expectOk(r, "concurrent publisher");
    const want = [
      "baselayout-1.0-r0",
      "hello-2.12-r1",
      ...[0, 1, 2, 3].flatMap((i) => [0, 1, 2, 3, 4].map((j) => `p${i}x${j}-1.0-r0`)),
    ].sort();
    expect(ids(await httpIndex("concurrent"))).toEqual(want);
    expectOk(await check("concurrent"));
    // The held writes really were stale: some publisher had to merge again.
    expect(
      proxy.log.filter((q) => q.method === "PUT" && /\/concurrent\/x86_64\/APKINDEX\.tar\.gz/.test(q.url)).length,
    ).toBeGreaterThan(4);
    // Four kiln processes and an S3 server on 2 cores: a hang guard, not a speed check. Alone it takes
    // about 20 s; a fresh-clone CI run beside a full distribution build passed 240 s.
  }, 600_000);
});

describe("kiln withdraw", () => {
  it("removes a package from the index (object kept), refuses to strand dependents, --delete removes the object, publishing again restores", async () => {
    const o = await out("w0", [...BASE, ...pkgs(["wa", "wb"]), ...pkgs(["wdep"], { info: { depends: ["wb"] } })]);
    await expectOkAsync(runKiln(publishArgs(o, "withdraw")));
    const w = await runKiln([
      "withdraw",
      "wa-1.0-r0",
      "--to",
      `s3://${BUCKET}/withdraw`,
      "--signing-key",
      pubKey.privatePath,
      ...s3Args(),
    ]);
    expectOk(w);
    expect(w.stdout).toContain("withdrawn x86_64/wa-1.0-r0");
    expect(ids(await httpIndex("withdraw"))).not.toContain("wa-1.0-r0");
    expect(awsHead(s3.endpoint, BUCKET, "withdraw/x86_64/wa-1.0-r0.apk")).toBeDefined();
    expect(await (await get(`${httpBase("withdraw")}/x86_64/index.html`)).text()).not.toContain("wa-1.0-r0");
    expectOk(await check("withdraw"));

    const refused = await runKiln([
      "withdraw",
      "wb-1.0-r0",
      "--to",
      `s3://${BUCKET}/withdraw`,
      "--signing-key",
      pubKey.privatePath,
      ...s3Args(),
    ]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain("x86_64/wdep-1.0-r0 depends on wb: nothing provides");
    const unknown = await runKiln([
      "withdraw",
      "nosuch-1.0-r0",
      "--to",
      `s3://${BUCKET}/withdraw`,
      "--signing-key",
      pubKey.privatePath,
      ...s3Args(),
    ]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr.trim()).toBe(
      "kiln withdraw: not published in s3://kiln-repo/withdraw (x86_64): nosuch-1.0-r0",
    );

    // A later publish does not bring the withdrawn package back...
    await expectOkAsync(runKiln(publishArgs(await out("w1", [...BASE, ...pkgs(["wc"])]), "withdraw")));
    expect(ids(await httpIndex("withdraw"))).not.toContain("wa-1.0-r0");
    // ...publishing it again does.
    const again = await runKiln(publishArgs(o, "withdraw"));
    expectOk(again);
    expect(ids(await httpIndex("withdraw"))).toContain("wa-1.0-r0");

    const del = await runKiln([
      "withdraw",
      "wdep-1.0-r0",
      "--delete",
      "--to",
      `s3://${BUCKET}/withdraw`,
      "--signing-key",
      pubKey.privatePath,
      ...s3Args(),
    ]);
    expectOk(del);
    expect(awsHead(s3.endpoint, BUCKET, "withdraw/x86_64/wdep-1.0-r0.apk")).toBeUndefined();
    expect(ids(await httpIndex("withdraw"))).not.toContain("wdep-1.0-r0");
    expectOk(await check("withdraw"));
  }, 60_000);
});

describe("kiln repo check finds problems", () => {
  it("a replaced package object, a missing one, and an untrusted index are each reported; exit 1", async () => {
    await expectOkAsync(runKiln(publishArgs(await out("t0", [...BASE, ...pkgs(["ta", "tb"])]), "tamper")));
    // Replace one object with another valid package and delete another, behind kiln's back.
    const other = await out("t1", pkgs(["ta"], { entries: [{ path: "etc/ta", type: "file", content: "evil" }] }));
    aws(s3.endpoint, [
      "s3",
      "cp",
      "--quiet",
      join(other, "x86_64/ta-1.0-r0.apk"),
      `s3://${BUCKET}/tamper/x86_64/ta-1.0-r0.apk`,
    ]);
    aws(s3.endpoint, ["s3", "rm", "--quiet", `s3://${BUCKET}/tamper/x86_64/tb-1.0-r0.apk`]);
    const r = await check("tamper");
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(
      /PROBLEM x86_64\/ta-1\.0-r0\.apk: .*(bytes, but the index says|differs from the index's C:)/,
    );
    expect(r.stdout).toMatch(/PROBLEM x86_64\/tb-1\.0-r0\.apk: .*HTTP 404/);
    expect(r.stdout).toContain("x86_64: 2 problems (2 of 4 packages verified)");
    const untrusted = await runKiln([
      "repo",
      "check",
      httpBase("tamper"),
      "--keys-dir",
      buildKey.keysDir,
      "--arch",
      "x86_64",
    ]);
    expect(untrusted.status).toBe(1);
    expect(untrusted.stdout).toMatch(/PROBLEM x86_64: .*UNTRUSTED/);
  });
});

describe("local directory target", () => {
  it("publishes to a directory, which repo check passes, kiln image build consumes, and a re-run leaves alone", async () => {
    const dir = join(work, "published-dir");
    const o = await out("d0", [...BASE, ...pkgs(["da"])]);
    // The distribution's build-key records travel with the repository.
    writeFileSync(join(o, "x86_64/.kiln-build-keys.jsonl"), '{"recipe":"da","key":"k1"}\n');
    const r = await runKiln(["publish", "--from", o, "--to", dir, "--signing-key", pubKey.privatePath]);
    expectOk(r);
    expect(readFileSync(join(dir, "x86_64/.kiln-build-keys.jsonl"), "utf8")).toBe('{"recipe":"da","key":"k1"}\n');
    for (const f of [
      "pub.rsa.pub",
      "x86_64/APKINDEX.tar.gz",
      "x86_64/index.html",
      "x86_64/hello-2.12-r1.apk",
      "x86_64/da-1.0-r0.apk",
    ])
      expect(existsSync(join(dir, f)), f).toBe(true);
    expectOk(await runKiln(["repo", "check", dir, "--keys-dir", pubKey.keysDir]));
    const cfg = join(work, "image-dir.yaml");
    writeFileSync(
      cfg,
      `contents:\n  repositories: [${dir}]\n  keyring: [${join(dir, "pub.rsa.pub")}]\n  packages: [hello]\narchs: [x86_64]\n`,
    );
    const layout = join(work, "image-dir");
    const b = await runKiln([
      "image",
      "build",
      cfg,
      layout,
      "--json",
      "--cache-dir",
      mkdtempSync(join(work, "img-cache-")),
    ]);
    expectOk(b, "image build");
    const bundle = join(work, "bundle-dir");
    execFileSync("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, bundle], { stdio: "pipe" });
    expect(readFileSync(join(bundle, "rootfs/usr/bin/hello"), "utf8")).toBe(HELLO);
    const before = readFileSync(join(dir, "x86_64/APKINDEX.tar.gz"));
    const again = await runKiln(["publish", "--from", o, "--to", dir, "--signing-key", pubKey.privatePath]);
    expectOk(again);
    expect(again.stdout).toContain("3 already published");
    // Records published by someone else are kept alongside ours.
    writeFileSync(join(dir, "x86_64/.kiln-build-keys.jsonl"), '{"recipe":"other","key":"k9"}\n');
    expectOk(await runKiln(["publish", "--from", o, "--to", dir, "--signing-key", pubKey.privatePath]));
    expect(readFileSync(join(dir, "x86_64/.kiln-build-keys.jsonl"), "utf8")).toBe(
      '{"recipe":"da","key":"k1"}\n{"recipe":"other","key":"k9"}\n',
    );
    expect(readFileSync(join(dir, "x86_64/APKINDEX.tar.gz")).equals(before)).toBe(true);
    // A different package under a published name is refused here too.
    const changed = await out("d1", pkgs(["da"], { entries: [{ path: "etc/da", type: "file", content: "other" }] }));
    const refused = await runKiln(["publish", "--from", changed, "--to", dir, "--signing-key", pubKey.privatePath]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain("x86_64/da-1.0-r0.apk: a different package is already published under this name");
  });
});

describe("planPublish and dependency checks (pure)", () => {
  const rec = (name: string, version: string, extra: Partial<IndexRecord> = {}): IndexRecord => ({
    name,
    version,
    arch: "x86_64",
    depends: [],
    provides: [],
    installIf: [],
    replaces: [],
    triggers: [],
    extra: [],
    unknownFields: [],
    checksum: `Q1${name}${version}=`,
    fileSize: 100,
    ...extra,
  });

  it("skips what is indexed, indexes what is present, uploads the rest, and flags conflicts", () => {
    const state: RemoteArchState = {
      arch: "x86_64",
      indexed: [rec("a", "1-r0")],
      objects: new Map([
        ["a-1-r0", { key: "x86_64/a-1-r0.apk", size: 100 }],
        ["b-1-r0", { key: "x86_64/b-1-r0.apk", size: 100 }],
        ["c-1-r0", { key: "x86_64/c-1-r0.apk", size: 100 }],
      ]),
      unindexed: new Map([
        ["b-1-r0", rec("b", "1-r0")],
        ["c-1-r0", rec("c", "1-r0", { checksum: "Q1other=" })],
      ]),
      unreadable: new Map(),
      withdrawn: new Set(),
    };
    const local = [
      {
        arch: "x86_64",
        dir: "/o/x86_64",
        description: "",
        unlisted: [],
        packages: ["a", "b", "c", "d"].map((n) => ({
          id: `${n}-1-r0`,
          file: `/o/x86_64/${n}-1-r0.apk`,
          record: rec(n, "1-r0", n === "d" ? { depends: ["a", "so:libz.so.1"] } : {}),
        })),
      },
    ];
    const plan = planPublish(local, new Map([["x86_64", state]]));
    expect(plan.archs[0]!.packages.map((p) => `${p.id}:${p.action}`)).toEqual([
      "a-1-r0:skip",
      "b-1-r0:index",
      "d-1-r0:upload",
    ]);
    expect(plan.conflicts).toEqual([
      expect.stringContaining("x86_64/c-1-r0.apk: a different package is already published under this name"),
    ]);
    expect(plan.unsatisfied).toEqual([
      { package: "d-1-r0", arch: "x86_64", dependency: "so:libz.so.1", reason: `nothing provides "so:libz.so.1"` },
    ]);
    const up = new Map([["x86_64", [rec("zlib", "1.3-r0", { provides: ["so:libz.so.1=1.3"] })]]]);
    expect(planPublish(local, new Map([["x86_64", state]]), up).unsatisfied).toEqual([]);
  });

  it("applies apk's version rules and ignores conflicts (!name)", () => {
    const rs = [
      rec("app", "1-r0", { depends: ["lib>=2", "!old", "cmd:sh"] }),
      rec("lib", "1.5-r0"),
      rec("busybox", "1-r0", { provides: ["cmd:sh=1-r0"] }),
    ];
    expect(unsatisfiedDependencies(rs, [], "x86_64").map((u) => `${u.dependency}: ${u.reason}`)).toEqual([
      "lib>=2: only lib-1.5-r0",
    ]);
  });
});

async function expectOkAsync(p: Promise<Run>): Promise<void> {
  expectOk(await p);
}

/** Every file and directory under `dir` (relative), [] when it does not exist. */
function listing(dir: string): string[] {
  return existsSync(dir) ? (readdirSync(dir, { recursive: true, encoding: "utf8" }) as string[]).sort() : [];
}

/** A private TMPDIR for one kiln run, so its temporary directories can be listed. */
function privateTmp(name: string): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = join(work, "tmpdirs", name);
  mkdirSync(dir, { recursive: true });
  return { dir, env: { TMPDIR: dir } };
}

describe("hostile local indexes: refused before anything is written, nothing outside", () => {
  /**
   * OUT (4 levels below WORK/out) with a correctly signed index naming `name`, and the package
   * that name reaches from OUT/x86_64 (WORK/out/outside/x-1.0-r0.apk). From publish's staging
   * directory (TMPDIR/kiln-publish-…) the same name reaches WORK/outside, where an unchecked
   * join would leave the re-signed copy.
   */
  async function hostileOut(tag: string, name: string, arch = "x86_64"): Promise<string> {
    const o = join(work, "out", "h", tag, "deep", "hostile");
    rmSync(o, { recursive: true, force: true });
    mkdirSync(join(o, "x86_64"), { recursive: true });
    const pkg = rawPackage({ name, version: "1.0-r0", arch }, [{ path: "usr/share/x", content: "x\n" }], buildKey.key);
    const target = join(o, "x86_64", `${name}-1.0-r0.apk`);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, pkg.bytes);
    writeFileSync(join(o, "x86_64/APKINDEX.tar.gz"), rawIndex([pkg.record], buildKey.key));
    return o;
  }

  it.each([
    ["../../../../outside/x", "climbs out of the staging directory"],
    ["../aarch64/x", "reaches another architecture's directory"],
  ])("a record named %j (%s): local directory target and S3 both untouched", async (name) => {
    const o = await hostileOut(name.startsWith("../aarch64") ? "cross" : "climb", name);
    const tmp = privateTmp(`hostile-${name.length}`);
    const dir = join(work, `hostile-target-${name.length}`);
    const r = await runKiln(["publish", "--from", o, "--to", dir, "--signing-key", pubKey.privatePath], tmp.env);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^kiln publish: .*${escapeRe(JSON.stringify(name))}`));
    expect(listing(dir)).toEqual([]);
    proxy.reset();
    const s = await runKiln(publishArgs(o, `hostile-${name.length}`), tmp.env);
    expect(s.status, s.stderr).toBe(1);
    expect(writes(proxy.log)).toEqual([]);
    expect(awsKeys(s3.endpoint, BUCKET, `hostile-${name.length}/`)).toEqual([]);
    expect(existsSync(join(work, "outside"))).toBe(false);
    expect(listing(tmp.dir)).toEqual([]);
  });

  it("a package whose bytes differ from its local index (no S: to catch it early) is refused before the public key or anything else is written", async () => {
    const o = await out("c-mismatch", [...BASE, ...pkgs(["cm"])]);
    const idx = await readIndex(readFileSync(join(o, "x86_64/APKINDEX.tar.gz")));
    const hello = idx.records.find((x) => x.name === "hello")!;
    // The index keeps hello's name but carries cm's C: and no S:.
    const changed = idx.records.map((x) =>
      x.name === "hello" ? { ...x, checksum: idx.records.find((y) => y.name === "cm")!.checksum! } : x,
    );
    for (const x of changed) delete x.fileSize;
    writeFileSync(join(o, "x86_64/APKINDEX.tar.gz"), rawIndex(changed, buildKey.key));
    const dir = join(work, "fresh-target");
    const r = await runKiln(["publish", "--from", o, "--to", dir, "--signing-key", pubKey.privatePath]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim()).toBe(
      `kiln publish: ${join(o, "x86_64/hello-2.12-r1.apk")}: C:${hello.checksum} differs from its local index (C:${changed.find((x) => x.name === "hello")!.checksum}); re-run kiln index`,
    );
    expect(existsSync(dir)).toBe(false);
    proxy.reset();
    const s = await runKiln(publishArgs(o, "fresh-prefix"));
    expect(s.status).toBe(1);
    expect(writes(proxy.log)).toEqual([]);
    expect(awsKeys(s3.endpoint, BUCKET, "fresh-prefix/")).toEqual([]);
    // The same repository, fixed, publishes.
    writeFileSync(join(o, "x86_64/APKINDEX.tar.gz"), rawIndex(idx.records, buildKey.key));
    expectOk(await runKiln(["publish", "--from", o, "--to", dir, "--signing-key", pubKey.privatePath]));
    expect(listing(dir)).toContain("pub.rsa.pub");
  });
});

describe("publish's temporary directory", () => {
  /** Start a publish whose first PUT never gets an answer; `kill` it when that PUT arrives. */
  async function killedPublish(
    prefix: string,
    signal: NodeJS.Signals,
    tmp: { env: NodeJS.ProcessEnv },
  ): Promise<{ signal: string | null; stagedWhileRunning: string[] }> {
    const o = await out(`sig-${prefix}`, [...BASE, ...pkgs(["sa", "sb"])]);
    proxy.reset();
    proxy.rules = [{ match: /^PUT /, action: "hang", times: Infinity }];
    const child = spawnKiln(publishArgs(o, prefix), tmp.env);
    let staged: string[] = [];
    const tmpDir = tmp.env.TMPDIR!;
    proxy.onRequest = (q) => {
      if (q.method !== "PUT" || staged.length) return;
      staged = listing(tmpDir);
      child.proc.kill(signal);
    };
    await child.done;
    proxy.reset();
    return { signal: child.proc.signalCode, stagedWhileRunning: staged };
  }

  it.each(["SIGTERM", "SIGINT"] as const)("is removed when the publish is stopped by %s", async (sig) => {
    const tmp = privateTmp(`sig-${sig}`);
    const r = await killedPublish(`sig-${sig.toLowerCase()}`, sig, tmp);
    // While it ran, the re-signed copies sat in TMPDIR/kiln-publish-<pid>-XXXXXX.
    expect(
      r.stagedWhileRunning.filter((p) => p.endsWith(".apk")).length,
      r.stagedWhileRunning.join("\n"),
    ).toBeGreaterThanOrEqual(4);
    expect(r.stagedWhileRunning[0]).toMatch(/^kiln-publish-\d+-[A-Za-z0-9]{6}$/);
    expect(r.signal).toBe(sig);
    expect(listing(tmp.dir)).toEqual([]);
  });

  it("left by kill -9, is removed by the next run", async () => {
    const tmp = privateTmp("sig-kill");
    const r = await killedPublish("sig-kill", "SIGKILL", tmp);
    expect(r.signal).toBe("SIGKILL");
    const left = readdirSync(tmp.dir);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^kiln-publish-\d+-[A-Za-z0-9]{6}$/);
    expect(listing(join(tmp.dir, left[0]!)).filter((p) => p.endsWith(".apk")).length).toBeGreaterThanOrEqual(4);
    const again = await runKiln(
      publishArgs(await out("sig-kill-again", [...BASE, ...pkgs(["sa", "sb"])]), "sig-kill"),
      tmp.env,
    );
    expectOk(again);
    expect(listing(tmp.dir)).toEqual([]);
  });
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
