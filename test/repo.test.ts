// Repositories over real HTTP: verified indexes, packages checked against the
// index (C:, S: each on its own), a disk cache revalidated by ETag, retries,
// repository tags, and trusted indexes whose names would leave the cache.

import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildIndex, indexRecordForPackage, Keyring, parsePublicKey, readIndex, type IndexRecord } from "@kiln/apk";
import { DefaultFetcher, fetchPackage, fetchPackages, loadIndex, resolve, RepositoryError } from "@kiln/repo";
import { kilnAsync } from "./helpers/cli.js";
import { baseLayoutEntries, buildHello, makeKey, makeRepo, type TestKey } from "./helpers/fixtures.js";
import { rawIndex, rawPackage } from "./helpers/hostile.js";
import { serveDir, type StaticServer } from "./helpers/http.js";

let work: string;
let key: TestKey;
let server: StaticServer;
let ring: Keyring;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-repo-"));
  key = await makeKey(work);
  ring = new Keyring().add("test.rsa.pub", parsePublicKey(readFileSync(key.publicPath), "test key"));
  const hello = buildHello(work);
  await makeRepo(join(work, "www/os"), key.key, [
    { name: "baselayout", entries: baseLayoutEntries() },
    {
      name: "hello",
      version: "2.12-r1",
      entries: [{ path: "usr/bin/hello", type: "file", mode: 0o755, content: { file: hello } }],
      info: { depends: ["baselayout"] },
    },
    ...Array.from({ length: 12 }, (_, i) => ({
      name: `lib${i}`,
      entries: [{ path: `usr/lib/lib${i}.so`, type: "file" as const, content: `lib ${i}`.repeat(1000) }],
    })),
  ]);
  // A second, tagged repository with its own hello.
  await makeRepo(join(work, "www/local"), key.key, [
    {
      name: "hello",
      version: "9.9-r0",
      entries: [{ path: "usr/bin/hello", type: "file", mode: 0o755, content: { file: hello } }],
    },
  ]);
  server = await serveDir(join(work, "www"));
});
afterAll(async () => {
  await server?.close();
});

describe("HTTP repositories", () => {
  it("loads and verifies an index over HTTP, then revalidates it with If-None-Match (304)", async () => {
    const cacheDir = mkdtempSync(join(work, "cache-"));
    const repo = { url: `${server.url}/os` };
    const a = await loadIndex(repo, "x86_64", { keyring: ring, cacheDir });
    expect(a.trust).toBe("OK");
    expect(a.packages.map((p) => p.record.name)).toContain("hello");
    const before = server.log.length;
    const b = await loadIndex(repo, "x86_64", { keyring: ring, cacheDir });
    expect(b.packages.length).toBe(a.packages.length);
    const reval = server.log.slice(before);
    expect(reval).toEqual([{ method: "GET", path: "/os/x86_64/APKINDEX.tar.gz", status: 304, conditional: true }]);
  });

  it("refuses an index signed by an unknown key unless allowed", async () => {
    const cacheDir = mkdtempSync(join(work, "cache-"));
    await expect(
      loadIndex({ url: `${server.url}/os` }, "x86_64", { keyring: new Keyring(), cacheDir }),
    ).rejects.toThrow(RepositoryError);
    await expect(
      loadIndex({ url: `${server.url}/os` }, "x86_64", { keyring: new Keyring(), cacheDir }),
    ).rejects.toThrow(/UNTRUSTED/);
    const ok = await loadIndex({ url: `${server.url}/os` }, "x86_64", {
      keyring: new Keyring(),
      cacheDir,
      allowUntrusted: true,
    });
    expect(ok.trust).toBe("UNTRUSTED");
  });

  it("downloads in parallel with retries on 5xx, verifies, caches; a second fetch downloads nothing", async () => {
    const cacheDir = mkdtempSync(join(work, "cache-"));
    const idx = await loadIndex({ url: `${server.url}/os` }, "x86_64", { keyring: ring, cacheDir });
    const res = resolve(["hello", ...Array.from({ length: 12 }, (_, i) => `lib${i}`)], idx.packages, {
      arch: "x86_64",
    });
    server.failNext(/lib3-/, 2, 503);
    server.failNext(/lib7-/, 1, 502);
    const before = server.log.length;
    const fetcher = new DefaultFetcher({ backoffMs: 10 });
    let inFlight = 0,
      maxInFlight = 0;
    const slow = {
      get: async (url: string, v?: { etag?: string }) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          await new Promise((r) => setTimeout(r, 20));
          return await fetcher.get(url, v);
        } finally {
          inFlight--;
        }
      },
    };
    const files = await fetchPackages(res.packages, { keyring: ring, cacheDir, fetcher: slow, concurrency: 4 });
    expect(files).toHaveLength(res.packages.length);
    expect(maxInFlight).toBe(4);
    const got = server.log.slice(before);
    expect(got.filter((r) => r.status === 503 || r.status === 502)).toHaveLength(3);
    expect(got.filter((r) => r.status === 200)).toHaveLength(res.packages.length);
    const again = server.log.length;
    await fetchPackages(res.packages, { keyring: ring, cacheDir, fetcher, concurrency: 4 });
    expect(server.log.length).toBe(again);
  });

  it("a 404 is reported as such, naming the package", async () => {
    const cacheDir = mkdtempSync(join(work, "cache-"));
    const idx = await loadIndex({ url: `${server.url}/os` }, "x86_64", { keyring: ring, cacheDir });
    const p = idx.packages.find((x) => x.record.name === "hello")!;
    await expect(
      fetchPackages([{ ...p, url: `${server.url}/os/x86_64/nope.apk` }], { keyring: ring, cacheDir }),
    ).rejects.toThrow(/hello-2\.12-r1: .*404/);
  });

  it("kiln image build from HTTP repositories honours @tag repositories; the second build downloads only the index revalidation", async () => {
    const cfg = join(work, "img.yaml");
    writeFileSync(
      cfg,
      `contents:\n  repositories:\n    - ${server.url}/os\n    - "@local ${server.url}/local"\n  keyring: [${key.publicPath}]\n  packages: [hello@local, baselayout]\narchs: [x86_64]\n`,
    );
    const cache = mkdtempSync(join(work, "cache-"));
    const r = await kilnAsync(["image", "show-packages", cfg, "--cache-dir", cache]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`x86_64 hello 9.9-r0 ${server.url}/local`);
    const untagged = join(work, "img2.yaml");
    writeFileSync(untagged, readFileSync(cfg, "utf8").replace("hello@local", "hello"));
    const r2 = await kilnAsync(["image", "show-packages", untagged, "--cache-dir", cache]);
    expect(r2.stdout).toContain(`x86_64 hello 2.12-r1 ${server.url}/os`);

    const b1 = await kilnAsync(["image", "build", cfg, join(work, "out1"), "--cache-dir", cache, "--json"]);
    expect(b1.status, b1.stderr).toBe(0);
    const before = server.log.length;
    const b2 = await kilnAsync(["image", "build", cfg, join(work, "out2"), "--cache-dir", cache, "--json"]);
    expect(b2.status, b2.stderr).toBe(0);
    expect(JSON.parse(b2.stdout).digest).toBe(JSON.parse(b1.stdout).digest);
    const second = server.log.slice(before);
    expect(second.every((x) => x.status === 304 && x.path.endsWith("APKINDEX.tar.gz"))).toBe(true);
    expect(second).toHaveLength(2);
  });
});

describe("the repository layer checks each field of the index on its own", () => {
  /** A copy of the os repository whose index says `change(record)` for hello. */
  async function variant(name: string, change: (r: IndexRecord) => IndexRecord): Promise<string> {
    const dir = join(work, "variants", name);
    mkdirSync(join(dir, "x86_64"), { recursive: true });
    const src = join(work, "www/os/x86_64");
    const idx = await readIndex(readFileSync(join(src, "APKINDEX.tar.gz")));
    for (const r of idx.records)
      copyFileSync(join(src, `${r.name}-${r.version}.apk`), join(dir, "x86_64", `${r.name}-${r.version}.apk`));
    writeFileSync(
      join(dir, "x86_64/APKINDEX.tar.gz"),
      buildIndex(
        idx.records.map((r) => (r.name === "hello" ? change(r) : r)),
        { signingKeys: [key.key] },
      ),
    );
    return dir;
  }
  const helloOf = async (dir: string) =>
    (
      await loadIndex({ url: dir }, "x86_64", { keyring: ring, cacheDir: mkdtempSync(join(work, "cache-")) })
    ).packages.find((p) => p.record.name === "hello")!;

  it("C: — bytes of the right size, name and datahash whose control identity differs are refused, by the API and by kiln repo check", async () => {
    const other = (await readIndex(readFileSync(join(work, "www/os/x86_64/APKINDEX.tar.gz")))).records.find(
      (r) => r.name === "lib1",
    )!;
    const dir = await variant("c-mismatch", (r) => ({ ...r, checksum: other.checksum! }));
    const hello = await helloOf(dir);
    const cacheDir = mkdtempSync(join(work, "cache-"));
    // The expected identity first: awaited inside the expectation, it let fetchPackage's rejection go unobserved for a while.
    const actual = (await indexRecordForPackage(join(dir, "x86_64/hello-2.12-r1.apk"))).checksum;
    await expect(fetchPackage(hello, { keyring: ring, cacheDir })).rejects.toThrow(
      `${hello.url}: control identity ${actual} differs from the index's C:${other.checksum}`,
    );
    expect(readdirSync(join(cacheDir, "packages"))).toEqual([]);
    const r = await kilnAsync(["repo", "check", dir, "--keys-dir", key.keysDir]);
    expect(r.status, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(
      /^PROBLEM x86_64\/hello-2\.12-r1\.apk: .*: control identity Q1\S+ differs from the index's C:Q1\S+$/m,
    );
    expect(r.stdout).toContain("x86_64: 1 problem (13 of 14 packages verified)");
  });

  it("S: — a file shorter than the index says is refused with the size message, by the API and by kiln repo check", async () => {
    const real = statSync(join(work, "www/os/x86_64/hello-2.12-r1.apk")).size;
    const dir = await variant("s-larger", (r) => ({ ...r, fileSize: real + 7 }));
    const hello = await helloOf(dir);
    await expect(fetchPackage(hello, { keyring: ring, cacheDir: mkdtempSync(join(work, "cache-")) })).rejects.toThrow(
      new RegExp(`^${escapeRe(hello.url)}: ${real} bytes, but the index says ${real + 7} \\(S:\\)$`),
    );
    const r = await kilnAsync(["repo", "check", dir, "--keys-dir", key.keysDir]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(
      new RegExp(
        `^PROBLEM x86_64/hello-2\\.12-r1\\.apk: \\S+: ${real} bytes, but the index says ${real + 7} \\(S:\\)$`,
        "m",
      ),
    );
  });

  it("S: — a download longer than the index says is stopped while it streams, nothing cached", async () => {
    const real = statSync(join(work, "www/os/x86_64/hello-2.12-r1.apk")).size;
    const dir = await variant("s-smaller", (r) => ({ ...r, fileSize: real - 7 }));
    const hello = await helloOf(dir);
    const cacheDir = mkdtempSync(join(work, "cache-"));
    await expect(fetchPackage(hello, { keyring: ring, cacheDir })).rejects.toThrow(
      new RegExp(
        `^${escapeRe(hello.url)}: over ${real - 7} bytes, but the index says ${real - 7} \\(S:\\); download stopped$`,
      ),
    );
    expect(readdirSync(join(cacheDir, "packages"))).toEqual([]);
    // Over HTTP the same.
    const viaHttp = { ...hello, url: `${server.url}/os/x86_64/hello-2.12-r1.apk` };
    await expect(fetchPackage(viaHttp, { keyring: ring, cacheDir })).rejects.toThrow(
      /over \d+ bytes, but the index says \d+ \(S:\); download stopped$/,
    );
  });
});

describe("a trusted index naming paths", () => {
  it("kiln image build refuses an index whose P: climbs out of the cache, writes nothing outside; kiln repo check calls it bad", async () => {
    // The package the hostile record points at, readable where its name leads from the repository
    // (WORK/www/hostile/x86_64/x/../../../outside → WORK/www/outside); from the cache directory the
    // same name leads to WORK/outside, where an unchecked cache would have written it.
    const name = "x/../../../outside/evil";
    const evil = rawPackage(
      { name, version: "1.0-r0", provides: ["innocent=1.0-r0"] },
      [{ path: "usr/share/evil", content: "evil\n" }],
      key.key,
    );
    const repoDir = join(work, "www/hostile");
    mkdirSync(join(repoDir, "x86_64/x"), { recursive: true });
    mkdirSync(join(work, "www/outside"), { recursive: true });
    writeFileSync(join(work, "www/outside/evil-1.0-r0.apk"), evil.bytes);
    writeFileSync(join(repoDir, "x86_64/APKINDEX.tar.gz"), rawIndex([evil.record], key.key));
    const cfg = join(work, "hostile.yaml");
    writeFileSync(
      cfg,
      `contents:\n  repositories: [${repoDir}]\n  keyring: [${key.publicPath}]\n  packages: [innocent]\narchs: [x86_64]\n`,
    );
    const cache = join(work, "cache-hostile");
    mkdirSync(cache);
    const out = join(work, "hostile-out");
    const r = await kilnAsync(["image", "build", cfg, out, "--cache-dir", cache]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^kiln image: .*"x\/\.\.\/\.\.\/\.\.\/outside\/evil"/);
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(existsSync(join(work, "outside"))).toBe(false);
    expect(existsSync(out)).toBe(false);
    const check = await kilnAsync(["repo", "check", repoDir, "--keys-dir", key.keysDir]);
    expect(check.status).toBe(1);
    expect(check.stdout).toMatch(/^PROBLEM x86_64: .*"x\/\.\.\/\.\.\/\.\.\/outside\/evil"/m);
    expect(check.stdout).toContain("x86_64: 1 problem");
  });
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
