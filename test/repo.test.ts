// Repositories over real HTTP: verified indexes, packages checked against the
// index, a disk cache revalidated by ETag, retries, and repository tags.

import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Keyring, parsePublicKey } from "@kiln/apk";
import { DefaultFetcher, fetchPackages, loadIndex, resolve, RepositoryError } from "@kiln/repo";
import { kilnAsync } from "./helpers/cli.js";
import { baseLayoutEntries, buildHello, makeKey, makeRepo, type TestKey } from "./helpers/fixtures.js";
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
    { name: "hello", version: "2.12-r1", entries: [{ path: "usr/bin/hello", type: "file", mode: 0o755, content: { file: hello } }], info: { depends: ["baselayout"] } },
    ...Array.from({ length: 12 }, (_, i) => ({ name: `lib${i}`, entries: [{ path: `usr/lib/lib${i}.so`, type: "file" as const, content: `lib ${i}`.repeat(1000) }] })),
  ]);
  // A second, tagged repository with its own hello.
  await makeRepo(join(work, "www/local"), key.key, [{ name: "hello", version: "9.9-r0", entries: [{ path: "usr/bin/hello", type: "file", mode: 0o755, content: { file: hello } }] }]);
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
    await expect(loadIndex({ url: `${server.url}/os` }, "x86_64", { keyring: new Keyring(), cacheDir })).rejects.toThrow(RepositoryError);
    await expect(loadIndex({ url: `${server.url}/os` }, "x86_64", { keyring: new Keyring(), cacheDir })).rejects.toThrow(/UNTRUSTED/);
    const ok = await loadIndex({ url: `${server.url}/os` }, "x86_64", { keyring: new Keyring(), cacheDir, allowUntrusted: true });
    expect(ok.trust).toBe("UNTRUSTED");
  });

  it("downloads in parallel with retries on 5xx, verifies, caches; a second fetch downloads nothing", async () => {
    const cacheDir = mkdtempSync(join(work, "cache-"));
    const idx = await loadIndex({ url: `${server.url}/os` }, "x86_64", { keyring: ring, cacheDir });
    const res = resolve(["hello", ...Array.from({ length: 12 }, (_, i) => `lib${i}`)], idx.packages, { arch: "x86_64" });
    server.failNext(/lib3-/, 2, 503);
    server.failNext(/lib7-/, 1, 502);
    const before = server.log.length;
    const fetcher = new DefaultFetcher({ backoffMs: 10 });
    let inFlight = 0, maxInFlight = 0;
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
    await expect(fetchPackages([{ ...p, url: `${server.url}/os/x86_64/nope.apk` }], { keyring: ring, cacheDir })).rejects.toThrow(/hello-2\.12-r1: .*404/);
  });

  it("kiln image build from HTTP repositories honours @tag repositories; the second build downloads only the index revalidation", async () => {
    const cfg = join(work, "img.yaml");
    writeFileSync(cfg, `contents:\n  repositories:\n    - ${server.url}/os\n    - "@local ${server.url}/local"\n  keyring: [${key.publicPath}]\n  packages: [hello@local, baselayout]\narchs: [x86_64]\n`);
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
