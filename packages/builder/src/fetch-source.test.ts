// Source fetching over a real local HTTP server (checksums, cache, retries),
// mirror resolution from apt configuration files, and archive extraction of
// tarballs made by the host's tar in every compression, plus hostile ones.

import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  createReadStream,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { KilnError } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Compression,
  type FetchProgress,
  SourceError,
  aptMirrors,
  debianMirror,
  decompress,
  extractArchive,
  fetchSource,
  readAptSources,
  resolveMirror,
  substituteMirrors,
} from "./fetch-source.js";

const sha256 = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");
const sha512 = (b: Buffer | string): string => createHash("sha512").update(b).digest("hex");

let work: string;
let server: Server;
let base: string;
const hits = new Map<string, number>();
const files = new Map<string, Buffer>();
let flaky = 0;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-fetch-"));
  files.set("/src/hello-1.0.tar.gz", Buffer.from("pretend this is a tarball\n".repeat(5000)));
  files.set("/debian/pool/main/h/hello/hello.deb", Buffer.from("a deb, served from the mirror path\n"));
  server = createServer((req, res) => {
    const url = req.url ?? "/";
    hits.set(url, (hits.get(url) ?? 0) + 1);
    if (url === "/flaky") {
      // 503 twice, then the content.
      if (++flaky <= 2) {
        res.writeHead(503).end("busy");
        return;
      }
      res.writeHead(200, { "content-length": "5" }).end("flaky");
      return;
    }
    if (url.startsWith("/redirect?to=")) {
      res.writeHead(302, { location: decodeURIComponent(url.slice("/redirect?to=".length)) }).end();
      return;
    }
    if (url === "/always-503") {
      res.writeHead(503).end();
      return;
    }
    if (url === "/cut") {
      // The first attempt loses the connection half way; the second completes.
      const body = Buffer.alloc(200_000, 7);
      res.writeHead(200, { "content-length": String(body.length) });
      if ((hits.get(url) ?? 0) === 1) {
        res.write(body.subarray(0, 50_000), () => res.destroy());
        return;
      }
      res.end(body);
      return;
    }
    const f = files.get(url);
    if (!f) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-length": String(f.length) }).end(f);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(work, { recursive: true, force: true });
});

const cache = (): string => mkdtempSync(join(work, "cache-"));
const fast = { retries: 3, retryDelayMs: 10 };

describe("fetchSource", () => {
  it("downloads, verifies and caches by sha256; a cached file is not downloaded again", async () => {
    const cacheDir = cache();
    const body = files.get("/src/hello-1.0.tar.gz")!;
    const uri = `${base}/src/hello-1.0.tar.gz`;
    const events: FetchProgress[] = [];
    hits.clear();
    const p = await fetchSource(
      { uri, expectedSha256: sha256(body).toUpperCase() },
      { cacheDir, onProgress: (e) => events.push(e), ...fast },
    );
    expect(p).toBe(join(cacheDir, "sources", sha256(body)));
    expect(readFileSync(p).equals(body)).toBe(true);
    expect(events[0]).toMatchObject({ kind: "start", total: body.length });
    expect(events.at(-1)).toMatchObject({ kind: "done", bytes: body.length, sha256: sha256(body) });
    expect(events.some((e) => e.kind === "data" && e.received === body.length)).toBe(true);

    const again: FetchProgress[] = [];
    const p2 = await fetchSource(
      { uri, expectedSha256: sha256(body) },
      { cacheDir, onProgress: (e) => again.push(e), ...fast },
    );
    expect(p2).toBe(p);
    expect(hits.get("/src/hello-1.0.tar.gz")).toBe(1);
    expect(again).toEqual([{ kind: "cached", uri, path: p, sha256: sha256(body) }]);
    expect(readdirSync(join(cacheDir, "sources"))).toEqual([sha256(body)]);
  });

  it("a checksum mismatch is fatal, names the URI and both hashes, and caches nothing", async () => {
    const cacheDir = cache();
    const body = files.get("/src/hello-1.0.tar.gz")!;
    const wrong = "0".repeat(64);
    const uri = `${base}/src/hello-1.0.tar.gz`;
    hits.clear();
    const err = await fetchSource({ uri, expectedSha256: wrong }, { cacheDir, ...fast }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SourceError);
    expect((err as SourceError).code).toBe("CHECKSUM_MISMATCH");
    expect((err as Error).message).toContain(uri);
    expect((err as Error).message).toContain(`expected sha256 ${wrong}`);
    expect((err as Error).message).toContain(`got sha256 ${sha256(body)}`);
    expect(hits.get("/src/hello-1.0.tar.gz")).toBe(1); // not retried
    expect(readdirSync(join(cacheDir, "sources"))).toEqual([]);

    const e512 = await fetchSource({ uri, expectedSha512: "a".repeat(128) }, { cacheDir, ...fast }).catch(
      (e: unknown) => e,
    );
    expect((e512 as Error).message).toMatch(new RegExp(`expected sha512 a{128}, got sha512 ${sha512(body)}`));
    expect(readdirSync(join(cacheDir, "sources"))).toEqual([]);
  });

  it("requires a pinned checksum, before any request", async () => {
    hits.clear();
    const uri = `${base}/src/hello-1.0.tar.gz`;
    await expect(fetchSource({ uri }, { cacheDir: cache() })).rejects.toMatchObject({
      code: "NO_CHECKSUM",
      message: expect.stringContaining("pinned"),
    });
    await expect(fetchSource({ uri, expectedSha256: "abc" }, { cacheDir: cache() })).rejects.toMatchObject({
      code: "NO_CHECKSUM",
    });
    expect(hits.size).toBe(0);
  });

  it("caches by sha512 alone too", async () => {
    const cacheDir = cache();
    const body = files.get("/src/hello-1.0.tar.gz")!;
    const uri = `${base}/src/hello-1.0.tar.gz`;
    hits.clear();
    const p = await fetchSource({ uri, expectedSha512: sha512(body) }, { cacheDir, ...fast });
    expect(p).toBe(join(cacheDir, "sources", sha256(body)));
    const p2 = await fetchSource({ uri, expectedSha512: sha512(body) }, { cacheDir, ...fast });
    expect(p2).toBe(p);
    expect(hits.get("/src/hello-1.0.tar.gz")).toBe(1);
  });

  it("retries 503 with back-off, and a dropped connection", async () => {
    flaky = 0;
    hits.clear();
    const events: FetchProgress[] = [];
    const p = await fetchSource(
      { uri: `${base}/flaky`, expectedSha256: sha256("flaky") },
      { cacheDir: cache(), onProgress: (e) => events.push(e), retries: 3, retryDelayMs: 20 },
    );
    expect(readFileSync(p, "utf8")).toBe("flaky");
    expect(hits.get("/flaky")).toBe(3);
    const retries = events.filter((e) => e.kind === "retry");
    expect(retries.map((e) => (e as { delayMs: number }).delayMs)).toEqual([20, 40]);
    expect(retries[0]).toMatchObject({ reason: expect.stringContaining("HTTP 503") });

    const cut = await fetchSource(
      { uri: `${base}/cut`, expectedSha256: sha256(Buffer.alloc(200_000, 7)) },
      { cacheDir: cache(), ...fast },
    );
    expect(statSync(cut).size).toBe(200_000);
    expect(hits.get("/cut")).toBe(2);
  });

  it("gives up after the retries on 5xx, and at once on 404", async () => {
    hits.clear();
    const cacheDir = cache();
    const e = await fetchSource(
      { uri: `${base}/always-503`, expectedSha256: "1".repeat(64) },
      { cacheDir, retries: 2, retryDelayMs: 5 },
    ).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "HTTP", message: expect.stringMatching(/after 3 attempts: HTTP 503/) });
    expect(hits.get("/always-503")).toBe(3);
    const n = await fetchSource(
      { uri: `${base}/missing.tar.gz`, expectedSha256: "1".repeat(64) },
      { cacheDir, retries: 2, retryDelayMs: 5 },
    ).catch((x: unknown) => x);
    expect(n).toMatchObject({ code: "HTTP", message: expect.stringContaining("HTTP 404") });
    expect(hits.get("/missing.tar.gz")).toBe(1);
    expect(readdirSync(join(cacheDir, "sources"))).toEqual([]);
  });

  it("retries connection failures and then reports them", async () => {
    // A port that was just free: nothing listens there.
    const tmp = createServer();
    await new Promise<void>((r) => tmp.listen(0, "127.0.0.1", r));
    const port = (tmp.address() as AddressInfo).port;
    await new Promise((r) => tmp.close(r));
    const events: FetchProgress[] = [];
    const e = await fetchSource(
      { uri: `http://127.0.0.1:${port}/x`, expectedSha256: "1".repeat(64) },
      { cacheDir: cache(), retries: 1, retryDelayMs: 5, onProgress: (x) => events.push(x) },
    ).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "NETWORK", message: expect.stringContaining("network error") });
    expect(events.filter((x) => x.kind === "retry")).toHaveLength(1);
  });

  it("reads file:// URIs inside the allowed directories, still verified and cached", async () => {
    const f = join(work, "local.txt");
    writeFileSync(f, "local source\n");
    const fileRoots = [{ dir: work, what: "the recipe's directory" }];
    const p = await fetchSource(
      { uri: pathToFileURL(f).href, expectedSha256: sha256("local source\n") },
      { cacheDir: cache(), fileRoots },
    );
    expect(readFileSync(p, "utf8")).toBe("local source\n");
    // The same through localhost, and with a redundant "./" — still inside.
    await expect(
      fetchSource(
        { uri: `file://localhost${f}`, expectedSha256: sha256("local source\n") },
        { cacheDir: cache(), fileRoots },
      ),
    ).resolves.toMatch(/sources\//);
    await expect(
      fetchSource({ uri: pathToFileURL(f).href, expectedSha256: sha256("local source\n") }, { cacheDir: cache() }),
    ).rejects.toThrow(/no directory was given/);
  });

  it("follows http redirects, but never to another scheme", async () => {
    const body = files.get("/src/hello-1.0.tar.gz")!;
    await expect(
      fetchSource(
        { uri: `${base}/redirect?to=${encodeURIComponent("/src/hello-1.0.tar.gz")}`, expectedSha256: sha256(body) },
        { cacheDir: cache(), ...fast },
      ),
    ).resolves.toMatch(/sources\//);
    const f = join(work, "redirected.txt");
    writeFileSync(f, "a local file\n");
    const e = await fetchSource(
      {
        uri: `${base}/redirect?to=${encodeURIComponent(pathToFileURL(f).href)}`,
        expectedSha256: sha256("a local file\n"),
      },
      { cacheDir: cache(), ...fast, fileRoots: [{ dir: work, what: "the recipe's directory" }] },
    ).catch((x: unknown) => x);
    expect(e).toMatchObject({
      code: "BAD_URI",
      message: expect.stringMatching(/refusing the redirect .* to a file: URL/),
    });
  });
});

describe("file:// sources cannot reach files outside the recipe's directory", () => {
  // The layout an attacker's recipe sees: its directory, and beside it a private key and a plain secret.
  let recipes: string;
  let outside: string;
  let mirror: string;
  const secrets: Array<{ path: string; body: Buffer }> = [];
  beforeAll(async () => {
    const { generateKeyPairSync } = await import("node:crypto");
    const root = mkdtempSync(join(work, "confine-"));
    recipes = join(root, "recipes");
    outside = join(root, "outside");
    mirror = join(root, "mirror");
    for (const d of [recipes, outside, mirror, join(recipes, "greet")]) mkdirSync(d, { recursive: true });
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
    const key = Buffer.from(privateKey.export({ type: "pkcs1", format: "pem" }).toString());
    secrets.push(
      { path: join(outside, "kiln-test.rsa"), body: key },
      { path: join(outside, "secret.txt"), body: Buffer.from("the host's secret, no key markers\n") },
    );
    for (const x of secrets) writeFileSync(x.path, x.body, { mode: 0o600 });
    symlinkSync(join(outside, "secret.txt"), join(recipes, "greet", "link-out"));
    symlinkSync("../../outside/kiln-test.rsa", join(recipes, "greet", "relative-link-out"));
    execFileSync("ln", [join(outside, "secret.txt"), join(recipes, "hard-link")]);
    writeFileSync(join(recipes, "inside.rsa"), key); // a private key inside the recipe's directory is refused too
    writeFileSync(join(mirror, "pool.txt"), "from the mirror\n");
  });

  it.each([
    ["an absolute path outside", () => pathToFileURL(secrets[0]!.path).href, 0],
    ["the plain secret", () => pathToFileURL(secrets[1]!.path).href, 1],
    ["dot-dot out of the recipe's directory", () => `file://${recipes}/../outside/secret.txt`, 1],
    ["percent-encoded dot-dot", () => `file://${recipes}/%2e%2e/outside/secret.txt`, 1],
    ["upper-case percent-encoded dot-dot", () => `file://${recipes}/%2E%2E/outside/kiln-test.rsa`, 0],
    ["file://localhost", () => `file://localhost${secrets[1]!.path}`, 1],
    ["file:/ with one slash", () => `file:${secrets[1]!.path}`, 1],
    ["an upper-case scheme", () => `FILE://${secrets[1]!.path}`, 1],
    ["an absolute symlink in the recipe's directory", () => `file://${recipes}/greet/link-out`, 1],
    ["a relative symlink in the recipe's directory", () => `file://${recipes}/greet/relative-link-out`, 0],
    ["a hard link in the recipe's directory", () => `file://${recipes}/hard-link`, 1],
    ["a private key inside the recipe's directory", () => `file://${recipes}/inside.rsa`, 0],
    ["another host", () => `file://elsewhere.invalid${secrets[1]!.path}`, 1],
    ["an encoded slash", () => `file://${recipes}/..%2Foutside%2Fsecret.txt`, 1],
    ["an encoded NUL", () => `file://${recipes}/greet%00/../../outside/secret.txt`, 1],
    ["a file:// mirror, then dot-dot out of it", () => "mirror://local/../outside/secret.txt", 1],
    [
      "an http redirect to file://",
      () => `${base}/redirect?to=${encodeURIComponent(pathToFileURL(secrets[1]!.path).href)}`,
      1,
    ],
  ])("%s is refused, with the right hash too, and nothing about the file appears", async (_what, uri, which) => {
    const secret = secrets[which]!;
    const cacheDir = cache();
    const opts = {
      cacheDir,
      ...fast,
      fileRoots: [{ dir: recipes, what: "the recipe's directory" }],
      mirrors: { local: pathToFileURL(mirror).href },
    };
    for (const spec of [
      { expectedSha256: sha256(secret.body) },
      { expectedSha256: "0".repeat(64) },
      { expectedSha512: sha512(secret.body) },
    ]) {
      const e = await fetchSource({ uri: uri(), ...spec }, opts).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(KilnError);
      if (process.env.KILN_SHOW_REFUSALS) console.log(_what, "→", (e as Error).message);
      const text = `${(e as Error).message} ${String((e as Error).stack)}`;
      for (const leak of [
        secret.body.toString(),
        secret.body.toString().split("\n")[1]!,
        sha256(secret.body),
        sha512(secret.body),
        String(secret.body.length),
      ]) {
        if (leak.length > 4) expect(text).not.toContain(leak);
      }
    }
    // Nothing of it was cached.
    const cached = existsSync(join(cacheDir, "sources")) ? readdirSync(join(cacheDir, "sources")) : [];
    expect(cached.filter((n) => !n.startsWith("."))).not.toContain(sha256(secret.body));
  });

  it("a file:// mirror's own files can be read through mirror://", async () => {
    const p = await fetchSource(
      { uri: "mirror://local/pool.txt", expectedSha256: sha256("from the mirror\n") },
      { cacheDir: cache(), mirrors: { local: pathToFileURL(mirror).href } },
    );
    expect(readFileSync(p, "utf8")).toBe("from the mirror\n");
  });
});

// ---------------------------------------------------------------------------
// Mirrors

function aptRoot(files: Record<string, string>): string {
  const root = mkdtempSync(join(work, "apt-"));
  for (const [p, body] of Object.entries(files)) {
    mkdirSync(join(root, p, ".."), { recursive: true });
    writeFileSync(join(root, p), body);
  }
  mkdirSync(join(root, "etc/apt/sources.list.d"), { recursive: true });
  return root;
}

describe("mirrors", () => {
  it("reads the Debian mirror from deb822 .sources, skipping security, disabled and foreign entries", () => {
    const mirror = `${base}/debian`;
    const root = aptRoot({
      "etc/apt/sources.list.d/00-other.sources": `Types: deb\nURIs: ${base}/nodesource\nSuites: nodistro\nComponents: main\n`,
      "etc/apt/sources.list.d/10-off.sources": `Enabled: no\nTypes: deb\nURIs: ${base}/disabled\nSuites: bookworm\n`,
      "etc/apt/sources.list.d/20-debian.sources":
        `# comment\nTypes: deb\nURIs: ${base}/debian-security\nSuites: bookworm-security\nComponents: main\n\n` +
        `Types: deb deb-src\nURIs: ${mirror}/\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`,
      "etc/apt/sources.list.d/30-x.list.disabled": `deb ${base}/nope bookworm main\n`,
    });
    expect(aptMirrors(root)).toEqual({ debian: mirror, "debian-security": `${base}/debian-security` });
    expect(resolveMirror("debian", { aptRoot: root, env: {} })).toBe(mirror);
    expect(readAptSources(root).map((s) => s.uris[0])).toEqual([
      `${base}/nodesource`,
      `${base}/debian-security`,
      `${mirror}/`,
    ]);
  });

  it("reads the one-line sources.list format, options in brackets included", () => {
    const root = aptRoot({
      "etc/apt/sources.list": `# deb ${base}/commented bookworm main\ndeb-src [signed-by=/x.gpg arch=amd64] ${base}/mirror/debian trixie main\ndeb ${base}/sec trixie-security main\n`,
    });
    expect(aptMirrors(root)).toEqual({ debian: `${base}/mirror/debian`, "debian-security": `${base}/sec` });
  });

  it("follows apt's mirror+file: lists (as Debian's cloud images use)", () => {
    const root = aptRoot({
      "etc/apt/mirrors/debian.list": `# list\n${base}/listed/debian\tpriority:1\n${base}/second/debian\n`,
      "etc/apt/sources.list.d/debian.sources":
        "Types: deb\nURIs: mirror+file:///etc/apt/mirrors/debian.list\nSuites: bookworm bookworm-updates\nComponents: main\n",
    });
    expect(aptMirrors(root).debian).toBe(`${base}/listed/debian`);
  });

  it("prefers an explicit setting, then KILN_DEBIAN_MIRROR, then apt; says where it looked when nothing is set", () => {
    const root = aptRoot({ "etc/apt/sources.list": `deb ${base}/apt bookworm main\n` });
    expect(resolveMirror("debian", { aptRoot: root, env: {} })).toBe(`${base}/apt`);
    expect(resolveMirror("debian", { aptRoot: root, env: { KILN_DEBIAN_MIRROR: `${base}/env/` } })).toBe(`${base}/env`);
    expect(
      resolveMirror("debian", {
        aptRoot: root,
        env: { KILN_DEBIAN_MIRROR: `${base}/env` },
        mirrors: { debian: `${base}/explicit` },
      }),
    ).toBe(`${base}/explicit`);
    const empty = aptRoot({});
    expect(() => resolveMirror("debian", { aptRoot: empty, env: {} })).toThrow(/KILN_DEBIAN_MIRROR.*sources\.list/);
    expect(() => resolveMirror("debian", { aptRoot: empty, env: { KILN_DEBIAN_MIRROR: "ftp://x" } })).toThrow(
      /not an http/,
    );
    expect(resolveMirror("gnu", { env: { KILN_GNU_MIRROR: `${base}/gnu` } })).toBe(`${base}/gnu`);
  });

  it("substitutes ${{mirror.debian}} and mirror://debian/ and fetches through the resolved mirror", async () => {
    const root = aptRoot({
      "etc/apt/sources.list.d/debian.sources": `Types: deb\nURIs: ${base}/debian\nSuites: bookworm\nComponents: main\n`,
    });
    const opts = { aptRoot: root, env: {} };
    expect(substituteMirrors("${{ mirror.debian }}/pool/x.deb", opts)).toBe(`${base}/debian/pool/x.deb`);
    expect(substituteMirrors("mirror://debian/pool/x.deb", opts)).toBe(`${base}/debian/pool/x.deb`);
    const body = files.get("/debian/pool/main/h/hello/hello.deb")!;
    for (const uri of [
      "${{mirror.debian}}/pool/main/h/hello/hello.deb",
      "mirror://debian/pool/main/h/hello/hello.deb",
    ]) {
      const p = await fetchSource({ uri, expectedSha256: sha256(body) }, { cacheDir: cache(), ...opts });
      expect(readFileSync(p).equals(body)).toBe(true);
    }
    // A mismatch names the recipe's URI and the URL it resolved to.
    const e = await fetchSource(
      { uri: "mirror://debian/pool/main/h/hello/hello.deb", expectedSha256: "2".repeat(64) },
      { cacheDir: cache(), ...opts },
    ).catch((x: unknown) => x);
    expect((e as Error).message).toContain(
      `mirror://debian/pool/main/h/hello/hello.deb (${base}/debian/pool/main/h/hello/hello.deb)`,
    );
  });

  it("finds this machine's Debian mirror the way the tests and builds do", () => {
    const m = debianMirror();
    expect(m).toMatch(/^(https?|file):\/\/\S+[^/]$/);
    if (!process.env.KILN_DEBIAN_MIRROR) expect(m).toBe(aptMirrors().debian);
  });
});

// ---------------------------------------------------------------------------
// Extraction

function makeTree(root: string): void {
  mkdirSync(join(root, "pkg-1.0/src/deep/er"), { recursive: true });
  writeFileSync(join(root, "pkg-1.0/README"), "readme\n");
  writeFileSync(join(root, "pkg-1.0/configure"), "#!/bin/sh\n", { mode: 0o755 });
  writeFileSync(join(root, "pkg-1.0/src/deep/er/data.bin"), Buffer.alloc(100_000, 3));
  const long = "a-rather-long-directory-name-that-goes-on/" + "and-on-and-on-".repeat(8) + "file.txt";
  mkdirSync(join(root, "pkg-1.0", long, ".."), { recursive: true });
  writeFileSync(join(root, "pkg-1.0", long), "long name\n");
  symlinkSync("src/deep/er/data.bin", join(root, "pkg-1.0/data-link"));
  symlinkSync("/usr/share/common-licenses/GPL-3", join(root, "pkg-1.0/COPYING"));
  execFileSync("ln", [join(root, "pkg-1.0/README"), join(root, "pkg-1.0/README.hard")]);
  mkdirSync(join(root, "pkg-1.0/readonly"), { mode: 0o555 });
  execFileSync("chmod", ["0555", join(root, "pkg-1.0/readonly")]);
  execFileSync("chmod", ["4755", join(root, "pkg-1.0/configure")]);
}

function listTree(root: string): string {
  return execFileSync("find", [".", "-mindepth", "1", "-printf", "%y %m %s %p -> %l\\n"], {
    cwd: root,
    encoding: "utf8",
  })
    .split("\n")
    .map((l) => l.replace(/^d (\d+) \d+ /, "d $1 - "))
    .sort()
    .join("\n");
}

describe("extractArchive", () => {
  let tree: string;
  let expected: string;
  beforeAll(() => {
    tree = mkdtempSync(join(work, "tree-"));
    makeTree(tree);
    expected = listTree(join(tree, "pkg-1.0"));
  });

  const variants: Array<[string, string[]]> = [
    ["tar.gz", ["-z"]],
    ["tar.xz", ["-J"]],
    ["tar.bz2", ["-j"]],
    ["tar.zst", ["--zstd"]],
    ["tar", []],
  ];
  for (const [ext, flags] of variants) {
    for (const format of ["gnu", "pax"]) {
      it(`extracts a ${format} .${ext} made by tar, with strip-components, modes, symlinks and hardlinks`, async () => {
        const file = join(work, `pkg-${format}.${ext}`);
        execFileSync("tar", ["-c", ...flags, `--format=${format}`, "-f", file, "-C", tree, "pkg-1.0"]);
        const dest = mkdtempSync(join(work, "x-"));
        const s = await extractArchive(file, dest, { stripComponents: 1 });
        expect(listTree(dest)).toBe(expected);
        expect(readlinkSync(join(dest, "COPYING"))).toBe("/usr/share/common-licenses/GPL-3");
        expect(statSync(join(dest, "README.hard")).ino).toBe(statSync(join(dest, "README")).ino);
        expect(statSync(join(dest, "configure")).mode & 0o7777).toBe(0o4755);
        expect(s.hardlinks).toBe(1);
        expect(s.symlinks).toBe(2);
        expect(s.skipped).toEqual(["pkg-1.0/: stripped"]);
      });
    }
  }

  it("keeps the top directory without strip-components, and honours an explicit format", async () => {
    const file = join(work, "pkg-noext");
    execFileSync("tar", ["-cJf", file, "-C", tree, "pkg-1.0"]);
    const dest = mkdtempSync(join(work, "x-"));
    await extractArchive(file, dest, { format: "tar.xz" });
    expect(readFileSync(join(dest, "pkg-1.0/README"), "utf8")).toBe("readme\n");
  });

  it("reports corrupt compressed data with the decompressor's message", async () => {
    const file = join(work, "corrupt.tar.xz");
    execFileSync("tar", ["-cJf", file, "-C", tree, "pkg-1.0"]);
    const b = readFileSync(file);
    for (let i = 200; i < 260; i++) b[i] = b[i]! ^ 0xff;
    writeFileSync(file, b);
    const e = await extractArchive(file, mkdtempSync(join(work, "x-"))).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "BAD_ARCHIVE", message: expect.stringMatching(/xz could not decompress/) });
    const gz = join(work, "corrupt.tar.gz");
    const g = execFileSync("tar", ["-cz", "-C", tree, "pkg-1.0"]);
    for (let i = 100; i < 160; i++) g[i] = g[i]! ^ 0xff;
    writeFileSync(gz, g);
    await expect(extractArchive(gz, mkdtempSync(join(work, "x-")))).rejects.toMatchObject({ code: "BAD_ARCHIVE" });
    writeFileSync(join(work, "plain.txt"), "not an archive at all\n");
    await expect(extractArchive(join(work, "plain.txt"), mkdtempSync(join(work, "x-")))).rejects.toMatchObject({
      code: "BAD_ARCHIVE",
    });
  });

  it("an error raised before the output is read is reported, never uncaught (gzip, xz, a missing input)", async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown): void => void uncaught.push(e);
    process.on("uncaughtException", onUncaught);
    try {
      const g = execFileSync("tar", ["-cz", "-C", tree, "pkg-1.0"]);
      for (let i = 10; i < 200; i++) g[i] = g[i]! ^ 0xff; // zlib fails within the first block
      const gz = join(work, "early.tar.gz");
      writeFileSync(gz, g);
      const xz = join(work, "early.tar.xz");
      const x = execFileSync("tar", ["-cJ", "-C", tree, "pkg-1.0"]);
      for (let i = 30; i < 200; i++) x[i] = x[i]! ^ 0xff;
      writeFileSync(xz, x);
      const cases: Array<[string, Compression, RegExp]> = [
        [gz, "gzip", /gzip data is corrupt/],
        [xz, "xz", /xz could not decompress/],
        [join(work, "no-such-input.tar.gz"), "gzip", /ENOENT/],
        [join(work, "no-such-input.tar"), "none", /ENOENT/],
        [join(work, "no-such-input.tar.xz"), "xz", /ENOENT/],
      ];
      for (const [file, compression, message] of cases) {
        const d = decompress(createReadStream(file), compression, file);
        // The consumer is slow to start (as extraction is while it creates its directory).
        await new Promise((r) => setTimeout(r, 300));
        const read = (async () => {
          for await (const _ of d.stream) {
            /* drain */
          }
          await d.done;
        })();
        await expect(read, file).rejects.toThrow(message);
      }
      // And through extraction, many times over: the destination is created while zlib already failed.
      for (let i = 0; i < 20; i++) {
        await expect(extractArchive(gz, join(work, `early-${i}`, "a", "b"))).rejects.toMatchObject({
          code: "BAD_ARCHIVE",
        });
      }
      await new Promise((r) => setTimeout(r, 100));
      expect(uncaught).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});

function octal(b: Buffer, off: number, len: number, v: number): void {
  b.write(v.toString(8).padStart(len - 1, "0") + "\0", off, len, "latin1");
}

function tar(entries: Array<{ name: string; type?: string; data?: string; linkname?: string; mode?: number }>): Buffer {
  const out: Buffer[] = [];
  for (const e of entries) {
    const data = Buffer.from(e.data ?? "");
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, "utf8");
    octal(h, 100, 8, e.mode ?? 0o644);
    octal(h, 108, 8, 0);
    octal(h, 116, 8, 0);
    octal(h, 124, 12, data.length);
    octal(h, 136, 12, 1_700_000_000);
    h.write("        ", 148, 8, "latin1");
    h.write(e.type ?? "0", 156, 1, "latin1");
    h.write(e.linkname ?? "", 157, 100, "utf8");
    h.write("ustar\u000000", 257, 8, "latin1");
    let sum = 0;
    for (const c of h) sum += c;
    h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
    out.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

describe("hostile archives", () => {
  let box: string;
  let outside: string;
  beforeAll(() => {
    box = mkdtempSync(join(work, "hostile-"));
    outside = join(box, "outside");
    mkdirSync(outside);
    writeFileSync(join(outside, "victim"), "original\n");
  });

  const refuse = async (
    name: string,
    entries: Parameters<typeof tar>[0],
    re: RegExp,
    compress?: string[],
  ): Promise<string> => {
    let data = tar(entries);
    if (compress) data = execFileSync(compress[0]!, compress.slice(1), { input: data });
    const file = join(box, `${name}.tar${compress ? ".x" : ""}`);
    writeFileSync(file, data);
    const dest = join(box, `dest-${name}`);
    const e = await extractArchive(file, dest).catch((x: unknown) => x);
    expect(e, name).toBeInstanceOf(SourceError);
    expect((e as SourceError).code).toBe("UNSAFE_PATH");
    expect((e as Error).message).toMatch(re);
    return dest;
  };

  afterAll(() => {
    // Whatever was tried, nothing outside the destinations changed.
    expect(readdirSync(outside)).toEqual(["victim"]);
    expect(readFileSync(join(outside, "victim"), "utf8")).toBe("original\n");
    expect(readdirSync(box).filter((n) => n.startsWith("dest-") || n === "outside" || /\.tar/.test(n)).length).toBe(
      readdirSync(box).length,
    );
  });

  it("refuses ../ entries, also inside a compressed stream", async () => {
    await refuse(
      "dotdot",
      [
        { name: "ok", data: "fine" },
        { name: "../evil", data: "x" },
      ],
      /"\.\."/,
    );
    await refuse("dotdot-deep", [{ name: "a/b/../../../evil", data: "x" }], /"\.\."/, ["gzip", "-c"]);
    await refuse("dotdot-xz", [{ name: "x/../../outside/victim", data: "pwned" }], /"\.\."/, ["xz", "-c"]);
    expect(existsSync(join(box, "evil"))).toBe(false);
  });

  it("refuses absolute names", async () => {
    await refuse("absolute", [{ name: join(outside, "victim"), data: "pwned" }], /absolute/);
  });

  it("refuses to write through a symlink (a -> dir outside, then a/passwd)", async () => {
    await refuse(
      "through-link",
      [
        { name: "a", type: "2", linkname: outside },
        { name: "a/passwd", data: "root::0:0::/:/bin/sh\n" },
      ],
      /through the symlink a\b/,
    );
    await refuse(
      "through-link-rel",
      [
        { name: "d/", type: "5", mode: 0o755 },
        { name: "d/l", type: "2", linkname: "../../outside" },
        { name: "d/l/victim", data: "pwned" },
      ],
      /through the symlink d\/l/,
    );
    await refuse(
      "link-then-dir",
      [
        { name: "a", type: "2", linkname: outside },
        { name: "a/", type: "5", mode: 0o755 },
        { name: "a/x/y", data: "z" },
      ],
      /a is a symlink|through the symlink a/,
    );
  });

  it("refuses hardlinks that leave the tree or go through a symlink", async () => {
    await refuse("hard-out", [{ name: "h", type: "1", linkname: "../outside/victim" }], /"\.\."/);
    await refuse("hard-abs", [{ name: "h", type: "1", linkname: join(outside, "victim") }], /absolute/);
    await refuse(
      "hard-via-link",
      [
        { name: "l", type: "2", linkname: outside },
        { name: "h", type: "1", linkname: "l/victim" },
      ],
      /through the symlink l/,
    );
  });

  it("replaces a symlink already in the destination instead of writing through it (O_NOFOLLOW)", async () => {
    const dest = join(box, "dest-preexisting");
    mkdirSync(dest);
    symlinkSync(join(outside, "victim"), join(dest, "file"));
    const file = join(box, "replace.tar");
    writeFileSync(file, tar([{ name: "file", data: "new content\n", mode: 0o600 }]));
    await extractArchive(file, dest);
    expect(lstatSync(join(dest, "file")).isFile()).toBe(true);
    expect(readFileSync(join(dest, "file"), "utf8")).toBe("new content\n");
    // A pre-existing symlinked directory in the destination is not followed either.
    symlinkSync(outside, join(dest, "sub"));
    writeFileSync(file, tar([{ name: "sub/victim", data: "pwned" }]));
    await expect(extractArchive(file, dest)).rejects.toMatchObject({ code: "UNSAFE_PATH" });
  });

  it("skips device nodes and fifos instead of creating them", async () => {
    const file = join(box, "dev.tar");
    writeFileSync(
      file,
      tar([
        { name: "null", type: "3" },
        { name: "fifo", type: "6" },
        { name: "ok", data: "ok" },
      ]),
    );
    const dest = join(box, "dest-dev");
    const s = await extractArchive(file, dest);
    expect(readdirSync(dest)).toEqual(["ok"]);
    expect(s.skipped).toHaveLength(2);
  });
});

// A real FTP server (pyftpdlib, Debian's python3-pyftpdlib) on loopback, serving a directory anonymously.
const PYFTPDLIB = spawnSync("/usr/bin/python3", ["-c", "import pyftpdlib"]).status === 0;

describe.skipIf(!PYFTPDLIB)("ftp:// sources, from a real FTP server", () => {
  let ftpd: ChildProcess;
  let ftpBase: string;
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "kiln-ftp-"));
    mkdirSync(join(root, "pub"));
    ftpd = spawn("/usr/bin/python3", ["-m", "pyftpdlib", "-i", "127.0.0.1", "-p", "0", "-d", root], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const port = await new Promise<string>((resolve, reject) => {
      let log = "";
      const timer = setTimeout(() => reject(new Error(`pyftpdlib did not start: ${log}`)), 15_000);
      ftpd.stderr!.on("data", (d: Buffer) => {
        log += d.toString();
        const m = /starting FTP server on 127\.0\.0\.1:(\d+)/.exec(log);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
    ftpBase = `ftp://127.0.0.1:${port}`;
  });
  afterAll(() => {
    ftpd?.kill();
    rmSync(root, { recursive: true, force: true });
  });

  it("downloads (anonymous, binary, passive), verifies and caches; a missing file fails at once", async () => {
    const body = Buffer.alloc(300_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7919) % 251;
    writeFileSync(join(root, "pub/p-1.0.tar.gz"), body);
    const uri = `${ftpBase}/pub/p-1.0.tar.gz`;
    const cacheDir = cache();
    const events: FetchProgress[] = [];
    const p = await fetchSource({ uri, expectedSha256: sha256(body) }, { cacheDir, onProgress: (e) => events.push(e) });
    expect(readFileSync(p).equals(body)).toBe(true);
    expect(events.filter((e) => e.kind !== "data").map((e) => e.kind)).toEqual(["start", "done"]);
    // A mismatch caches nothing and names both hashes.
    const wrong = "1".repeat(64);
    await expect(fetchSource({ uri, expectedSha256: wrong }, { cacheDir: cache(), ...fast })).rejects.toThrow(
      `checksum mismatch for ${uri}: expected sha256 ${wrong}, got sha256 ${sha256(body)}`,
    );
    // 550 (no such file) is not worth another attempt.
    const missing = `${ftpBase}/pub/missing.tar.gz`;
    const t0 = Date.now();
    const err = await fetchSource(
      { uri: missing, expectedSha256: wrong },
      { cacheDir: cache(), retries: 3, retryDelayMs: 2_000 },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SourceError);
    expect((err as Error).message).toMatch(
      /^fetching ftp:\/\/127\.0\.0\.1:\d+\/pub\/missing\.tar\.gz: FTP: RETR: 550 /,
    );
    expect(Date.now() - t0).toBeLessThan(2_000);
    // Once cached, the server is not needed.
    rmSync(join(root, "pub/p-1.0.tar.gz"));
    await expect(fetchSource({ uri, expectedSha256: sha256(body) }, { cacheDir })).resolves.toBe(p);
  });

  it("a server that is gone is a network error after the retries", async () => {
    const port = Number(new URL(ftpBase).port);
    // A port nobody listens on: one the kernel handed out and took back.
    const { createServer: netServer } = await import("node:net");
    const free = await new Promise<number>((resolve) => {
      const s = netServer().listen(0, "127.0.0.1", () => {
        const a = s.address() as AddressInfo;
        s.close(() => resolve(a.port));
      });
    });
    expect(free).not.toBe(port);
    await expect(
      fetchSource(
        { uri: `ftp://127.0.0.1:${free}/pub/x.tar.gz`, expectedSha256: "2".repeat(64) },
        { cacheDir: cache(), retries: 1, retryDelayMs: 5 },
      ),
    ).rejects.toMatchObject({
      code: "NETWORK",
      message: expect.stringMatching(/failed after 2 attempts: FTP: cannot connect/),
    });
  });
});
