// Source fetching for the `fetch` pipeline and for bootstrap recipes that
// import Debian binary packages: mirror substitution resolved from apt's
// configuration (never a host name written in the repository), HTTP(S)
// downloads with retries into a content-addressed cache, mandatory checksum
// pinning, and archive extraction that never writes outside its destination.
//
// Decompression: gzip is Node's own zlib. xz, bzip2, zstd and lzma use the
// host's `xz`, `bzip2` and `zstd` programs (Debian packages xz-utils, bzip2,
// zstd), streamed through a pipe. They are the reference decoders, several
// times faster than the JavaScript/WASM ports (the bootstrap unpacks hundreds
// of megabytes of toolchain .debs), stream without holding the archive in
// memory, verify the format's own integrity checks, and handle every variant
// (multi-stream xz, concatenated bzip2, zstd long windows) found in the wild.

import { KilnError } from "@kiln/core";
import { spawn } from "node:child_process";
import { createHash, randomBytes, type Hash } from "node:crypto";
import { constants as FS, createReadStream, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { delimiter, join, posix } from "node:path";
import type { Readable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { createGunzip } from "node:zlib";
import { openConfined, type FileRoot } from "./host-files.js";

// ---------------------------------------------------------------------------
// Errors

export type SourceErrorCode =
  | "NO_CHECKSUM" // no expected checksum, or a malformed one
  | "CHECKSUM_MISMATCH"
  | "HTTP" // a non-retryable HTTP status, or retries exhausted
  | "NETWORK" // connection failures after all retries
  | "MIRROR" // a mirror substitution could not be resolved
  | "BAD_URI"
  | "UNSAFE_PATH" // an archive entry that would land outside the destination
  | "BAD_ARCHIVE" // malformed or unsupported archive data
  | "MISSING_TOOL"; // a host decompressor is not installed

export class SourceError extends KilnError {
  override readonly name = "SourceError";
  constructor(
    readonly code: SourceErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

// ---------------------------------------------------------------------------
// Mirrors

export interface MirrorOptions {
  /** Explicit mirror settings (e.g. from distro.yaml): name → base URL. Highest precedence. */
  mirrors?: Record<string, string | undefined>;
  /** Environment to read `KILN_<NAME>_MIRROR` from; defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** Root of the filesystem whose apt configuration is read; defaults to "/". */
  aptRoot?: string;
}

export interface AptSource {
  /** File the entry came from. */
  file: string;
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
}

// Debian release names and aliases; a suite is "Debian's main archive" when it
// is one of these, optionally with -updates / -backports / -proposed-updates.
const DEBIAN_SUITES = new Set([
  "buzz",
  "rex",
  "bo",
  "hamm",
  "slink",
  "potato",
  "woody",
  "sarge",
  "etch",
  "lenny",
  "squeeze",
  "wheezy",
  "jessie",
  "stretch",
  "buster",
  "bullseye",
  "bookworm",
  "trixie",
  "forky",
  "duke",
  "sid",
  "stable",
  "testing",
  "unstable",
  "oldstable",
  "oldoldstable",
  "experimental",
]);

function suiteKind(suite: string): "debian" | "debian-security" | undefined {
  const s = suite.replace(/\/+$/, "");
  const sec = /^([a-z]+)(?:-security|\/updates)$/.exec(s);
  if (sec && DEBIAN_SUITES.has(sec[1]!)) return "debian-security";
  const main = /^([a-z]+)(?:-updates|-backports|-proposed-updates|-backports-sloppy)?$/.exec(s);
  if (main && DEBIAN_SUITES.has(main[1]!)) return "debian";
  return undefined;
}

/** Parse deb822 paragraphs (apt `.sources`, Debian control files): field names as written, continuation lines joined with "\n". */
export function parseDeb822(text: string): Array<Record<string, string>> {
  const out: Array<Record<string, string>> = [];
  let cur: Record<string, string> = {};
  let last: string | undefined;
  const flush = (): void => {
    if (Object.keys(cur).length) out.push(cur);
    cur = {};
    last = undefined;
  };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line.startsWith("#")) continue;
    if (line.trim() === "") {
      flush();
      continue;
    }
    if (/^[ \t]/.test(line)) {
      if (last !== undefined) cur[last] += "\n" + line.replace(/^[ \t]/, "");
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    last = line.slice(0, colon).trim();
    cur[last] = line.slice(colon + 1).trim();
  }
  flush();
  return out;
}

function words(v: string | undefined): string[] {
  return (v ?? "").split(/\s+/).filter((w) => w !== "");
}

function fieldCI(p: Record<string, string>, name: string): string | undefined {
  const k = Object.keys(p).find((x) => x.toLowerCase() === name.toLowerCase());
  return k === undefined ? undefined : p[k];
}

function parseOneLineSources(text: string, file: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split("\n")) {
    let line = raw.replace(/#.*$/, "").trim();
    if (line === "") continue;
    const m = /^(deb|deb-src)\s+(.*)$/.exec(line);
    if (!m) continue;
    line = m[2]!.trim();
    if (line.startsWith("[")) {
      const end = line.indexOf("]");
      if (end < 0) continue;
      line = line.slice(end + 1).trim();
    }
    const [uri, suite, ...components] = words(line);
    if (!uri || !suite) continue;
    out.push({ file, types: [m[1]!], uris: [uri], suites: [suite], components });
  }
  return out;
}

/**
 * Read apt's source entries the way apt does: `etc/apt/sources.list`, then
 * every `*.list` and `*.sources` file in `etc/apt/sources.list.d` in name
 * order. Entries with `Enabled: no` are left out.
 */
export function readAptSources(aptRoot = "/"): AptSource[] {
  const out: AptSource[] = [];
  const main = join(aptRoot, "etc/apt/sources.list");
  if (existsSync(main)) out.push(...parseOneLineSources(readFileSync(main, "utf8"), main));
  const dir = join(aptRoot, "etc/apt/sources.list.d");
  let names: string[] = [];
  try {
    names = readdirSync(dir).sort();
  } catch {
    names = [];
  }
  for (const n of names) {
    const f = join(dir, n);
    if (!/^[A-Za-z0-9_.-]+$/.test(n)) continue;
    try {
      if (!statSync(f).isFile()) continue;
    } catch {
      continue;
    }
    if (n.endsWith(".list")) out.push(...parseOneLineSources(readFileSync(f, "utf8"), f));
    else if (n.endsWith(".sources")) {
      for (const p of parseDeb822(readFileSync(f, "utf8"))) {
        if ((fieldCI(p, "Enabled") ?? "yes").trim().toLowerCase() === "no") continue;
        out.push({
          file: f,
          types: words(fieldCI(p, "Types")),
          uris: words(fieldCI(p, "URIs")),
          suites: words(fieldCI(p, "Suites")),
          components: words(fieldCI(p, "Components")),
        });
      }
    }
  }
  return out;
}

function cleanMirrorUrl(u: string, what: string): string {
  const s = u.trim().replace(/\/+$/, "");
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new SourceError("MIRROR", `${what}: ${JSON.stringify(u)} is not a URL`);
  }
  if (!["http:", "https:", "file:"].includes(url.protocol)) {
    throw new SourceError("MIRROR", `${what}: ${JSON.stringify(u)} is not an http(s) or file URL`);
  }
  return s;
}

/** An apt source URI as an http(s) URL: plain ones as they are; `mirror+file:` lists (Debian's cloud images) give their first http(s) entry. */
function aptUriToHttp(uri: string, aptRoot: string): string | undefined {
  if (/^https?:\/\//.test(uri)) return uri;
  const m = /^mirror\+file:(?:\/\/)?(\/.*)$/.exec(uri);
  if (!m) return undefined;
  try {
    for (const line of readFileSync(join(aptRoot, m[1]!), "utf8").split("\n")) {
      const u = line.replace(/#.*$/, "").trim().split(/\s+/)[0];
      if (u && /^https?:\/\//.test(u)) return u;
    }
  } catch {
    /* unreadable list: not a usable source */
  }
  return undefined;
}

/** The mirrors named by apt's configuration: `debian` and `debian-security`, first match in apt's reading order. */
export function aptMirrors(aptRoot = "/"): { debian?: string; "debian-security"?: string } {
  const found: { debian?: string; "debian-security"?: string } = {};
  for (const src of readAptSources(aptRoot)) {
    if (!src.types.some((t) => t === "deb" || t === "deb-src")) continue;
    const uri = src.uris.map((u) => aptUriToHttp(u, aptRoot)).find((u) => u !== undefined);
    if (!uri) continue;
    for (const suite of src.suites) {
      const kind = suiteKind(suite);
      if (kind && found[kind] === undefined) found[kind] = uri.replace(/\/+$/, "");
    }
  }
  return found;
}

function envName(name: string): string {
  return `KILN_${name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_MIRROR`;
}

/**
 * The base URL (no trailing slash) of the mirror called `name`. Lookup order:
 * 1. `opts.mirrors[name]` (an explicit setting, e.g. from distro.yaml);
 * 2. the environment variable `KILN_<NAME>_MIRROR` (`KILN_DEBIAN_MIRROR`);
 * 3. for `debian` and `debian-security`, apt's configuration on this machine.
 * Throws SourceError MIRROR, saying where it looked, when none is found.
 */
export function resolveMirror(name: string, opts: MirrorOptions = {}): string {
  const explicit = opts.mirrors?.[name];
  if (explicit) return cleanMirrorUrl(explicit, `mirror ${name} (explicit setting)`);
  const env = opts.env ?? process.env;
  const fromEnv = env[envName(name)];
  if (fromEnv) return cleanMirrorUrl(fromEnv, `mirror ${name} (${envName(name)})`);
  const aptRoot = opts.aptRoot ?? "/";
  if (name === "debian" || name === "debian-security") {
    const apt = aptMirrors(aptRoot)[name];
    if (apt) return cleanMirrorUrl(apt, `mirror ${name} (apt configuration)`);
  }
  const aptPlaces =
    join(aptRoot, "etc/apt/sources.list") + " and " + join(aptRoot, "etc/apt/sources.list.d/*.{list,sources}");
  throw new SourceError(
    "MIRROR",
    `no mirror configured for ${JSON.stringify(name)}: set mirrors.${name}, or the environment variable ${envName(name)}` +
      (name === "debian" || name === "debian-security"
        ? `, or add a Debian source to apt (looked in ${aptPlaces})`
        : ""),
  );
}

/** The Debian archive mirror (e.g. for `${{mirror.debian}}/pool/main/...`); see resolveMirror for the lookup order. */
export function debianMirror(opts: MirrorOptions = {}): string {
  return resolveMirror("debian", opts);
}

const MIRROR_VAR = /\$\{\{\s*mirror\.([A-Za-z0-9_-]+)\s*\}\}/g;
const MIRROR_SCHEME = /^mirror:\/\/([A-Za-z0-9_-]+)(\/.*)?$/;

/** Replace `${{mirror.NAME}}` anywhere and a leading `mirror://NAME/` in a URI by the resolved mirror. */
export function substituteMirrors(uri: string, opts: MirrorOptions = {}): string {
  let out = uri.replace(MIRROR_VAR, (_m, name: string) => resolveMirror(name, opts));
  const m = MIRROR_SCHEME.exec(out);
  if (m) out = resolveMirror(m[1]!, opts) + (m[2] ?? "");
  return out;
}

/** The directories of the file:// mirrors a URI uses: a path under one of them may be read (and nothing else through it). */
export function mirrorFileRoots(uri: string, opts: MirrorOptions = {}): FileRoot[] {
  const names = [...uri.matchAll(MIRROR_VAR)].map((m) => m[1]!);
  const scheme = MIRROR_SCHEME.exec(uri);
  if (scheme) names.push(scheme[1]!);
  const out: FileRoot[] = [];
  for (const name of new Set(names)) {
    const base = resolveMirror(name, opts);
    if (/^file:/i.test(base))
      out.push({
        dir: localFilePath(new URL(base), `mirror ${name}`),
        what: `the ${name} mirror`,
        allowHardLinks: true,
      });
  }
  return out;
}

/** The local path a file: URL names; refuses other hosts and encodings that do not name a plain path. */
export function localFilePath(u: URL, subject: string): string {
  if (u.hostname !== "" && u.hostname !== "localhost")
    throw new SourceError(
      "BAD_URI",
      `${subject}: a file URL must name a local file, not one on ${JSON.stringify(u.hostname)}`,
    );
  try {
    return fileURLToPath(u);
  } catch (e) {
    throw new SourceError("BAD_URI", `${subject}: not a usable file URL (${(e as Error).message})`);
  }
}

// ---------------------------------------------------------------------------
// Fetching

export interface SourceSpec {
  uri: string;
  expectedSha256?: string;
  expectedSha512?: string;
}

export type FetchProgress =
  | { kind: "cached"; uri: string; path: string; sha256: string }
  | { kind: "start"; uri: string; url: string; attempt: number; total?: number }
  | { kind: "data"; uri: string; url: string; received: number; total?: number }
  | { kind: "retry"; uri: string; url: string; attempt: number; delayMs: number; reason: string }
  | { kind: "done"; uri: string; url: string; path: string; sha256: string; bytes: number };

export interface FetchOptions extends MirrorOptions {
  /** Cache root; files land in `<cacheDir>/sources/<sha256>`. */
  cacheDir: string;
  onProgress?: (e: FetchProgress) => void;
  /** Further attempts after the first on 5xx/429/408 or network errors (default 4). */
  retries?: number;
  /** First back-off delay; doubles per attempt, capped at 10 s (default 500 ms). */
  retryDelayMs?: number;
  /** Abort an attempt when no data arrives for this long (default 60 s). */
  idleTimeoutMs?: number;
  /**
   * Where `file://` sources may be read from (the recipe's directory, an
   * explicit --source-dir); a file:// mirror's own directory is added for the
   * URIs that use it. Without any, file:// sources are refused.
   */
  fileRoots?: readonly FileRoot[];
}

function normalizeHex(v: string | undefined, len: number, what: string, uri: string): string | undefined {
  if (v === undefined || v === "") return undefined;
  const s = v.trim().toLowerCase();
  if (!new RegExp(`^[0-9a-f]{${len}}$`).test(s)) {
    throw new SourceError("NO_CHECKSUM", `${uri}: ${what} ${JSON.stringify(v)} is not ${len} hexadecimal digits`);
  }
  return s;
}

class RetryableError extends Error {}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fsp.lstat(p)).isFile();
  } catch {
    return false;
  }
}

/**
 * Download `spec.uri` (after mirror substitution) into the content-addressed
 * cache and return the path of the verified file, `<cacheDir>/sources/<sha256>`.
 * A file already cached is returned without any request. At least one of
 * expectedSha256/expectedSha512 is required; a mismatch is fatal, names the
 * URI with the expected and actual hash, and caches nothing. 5xx, 429, 408 and
 * network errors are retried with exponential back-off; other statuses fail at
 * once, and only http(s) redirects are followed. `file://` URIs are read
 * from disk only inside `opts.fileRoots` (see openConfined), and still
 * verified and cached.
 */
export async function fetchSource(spec: SourceSpec, opts: FetchOptions): Promise<string> {
  const uri = spec.uri;
  const want256 = normalizeHex(spec.expectedSha256, 64, "expected-sha256", uri);
  const want512 = normalizeHex(spec.expectedSha512, 128, "expected-sha512", uri);
  if (!want256 && !want512) {
    throw new SourceError(
      "NO_CHECKSUM",
      `${uri}: no expected-sha256 or expected-sha512; sources must be pinned by checksum`,
    );
  }
  // A local file is checked before anything else, the cache included: a refused path is refused every time.
  if (/^\s*file:/i.test(uri)) await (await openLocal(uri, uri, opts.fileRoots ?? [])).handle.close();
  const dir = join(opts.cacheDir, "sources");
  const by512 = join(dir, "sha512");

  // Cache lookup first: a cached file needs neither the network nor a mirror.
  let known256 = want256;
  if (!known256 && want512) {
    try {
      const s = (await fsp.readFile(join(by512, want512), "utf8")).trim();
      if (/^[0-9a-f]{64}$/.test(s)) known256 = s;
    } catch {
      /* not cached */
    }
  }
  if (known256 && (await isFile(join(dir, known256)))) {
    const path = join(dir, known256);
    opts.onProgress?.({ kind: "cached", uri, path, sha256: known256 });
    return path;
  }

  const url = substituteMirrors(uri, opts);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SourceError("BAD_URI", `${uri}: ${JSON.stringify(url)} is not a URL`);
  }
  if (!["http:", "https:", "file:"].includes(parsed.protocol)) {
    throw new SourceError("BAD_URI", `${uri}: unsupported scheme ${parsed.protocol} (expected http, https or file)`);
  }

  await fsp.mkdir(dir, { recursive: true });
  const retries = opts.retries ?? 4;
  const baseDelay = opts.retryDelayMs ?? 500;
  let lastReason = "";
  for (let attempt = 1; attempt <= retries + 1; attempt++) {
    const tmp = join(dir, `.partial-${process.pid}-${randomBytes(6).toString("hex")}`);
    try {
      const got = await downloadOnce(
        parsed,
        uri,
        url,
        tmp,
        attempt,
        opts,
        !!want512,
        parsed.protocol === "file:" ? [...(opts.fileRoots ?? []), ...mirrorFileRoots(uri, opts)] : [],
      );
      if (want256 && got.sha256 !== want256) {
        throw new SourceError(
          "CHECKSUM_MISMATCH",
          `checksum mismatch for ${uri}${url !== uri ? ` (${url})` : ""}: expected sha256 ${want256}, got sha256 ${got.sha256}`,
        );
      }
      if (want512 && got.sha512 !== want512) {
        throw new SourceError(
          "CHECKSUM_MISMATCH",
          `checksum mismatch for ${uri}${url !== uri ? ` (${url})` : ""}: expected sha512 ${want512}, got sha512 ${got.sha512}`,
        );
      }
      const final = join(dir, got.sha256);
      await fsp.rename(tmp, final);
      if (want512) {
        await fsp.mkdir(by512, { recursive: true });
        const ptmp = join(by512, `.partial-${process.pid}-${randomBytes(6).toString("hex")}`);
        await fsp.writeFile(ptmp, got.sha256 + "\n");
        await fsp.rename(ptmp, join(by512, want512));
      }
      opts.onProgress?.({ kind: "done", uri, url, path: final, sha256: got.sha256, bytes: got.bytes });
      return final;
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      if (!(e instanceof RetryableError)) throw e;
      lastReason = e.message;
      if (attempt > retries) break;
      const delayMs = Math.min(baseDelay * 2 ** (attempt - 1), 10_000);
      opts.onProgress?.({ kind: "retry", uri, url, attempt, delayMs, reason: e.message });
      await sleep(delayMs);
    }
  }
  const code: SourceErrorCode = /^HTTP /.test(lastReason) ? "HTTP" : "NETWORK";
  throw new SourceError(
    code,
    `fetching ${uri}${url !== uri ? ` (${url})` : ""} failed after ${retries + 1} attempts: ${lastReason}`,
  );
}

async function downloadOnce(
  parsed: URL,
  uri: string,
  url: string,
  tmp: string,
  attempt: number,
  opts: FetchOptions,
  need512: boolean,
  fileRoots: readonly FileRoot[],
): Promise<{ sha256: string; sha512: string | undefined; bytes: number }> {
  const h256 = createHash("sha256");
  const h512: Hash | undefined = need512 ? createHash("sha512") : undefined;
  const fh = await fsp.open(tmp, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o644);
  let bytes = 0;
  let lastEmit = 0;
  try {
    const consume = async (chunk: Uint8Array, total: number | undefined): Promise<void> => {
      h256.update(chunk);
      h512?.update(chunk);
      await fh.write(chunk);
      bytes += chunk.length;
      const now = Date.now();
      if (opts.onProgress && (now - lastEmit >= 100 || bytes === total)) {
        lastEmit = now;
        opts.onProgress({ kind: "data", uri, url, received: bytes, ...(total !== undefined ? { total } : {}) });
      }
    };
    if (parsed.protocol === "file:") {
      const f = await openLocal(url, uri, fileRoots);
      try {
        opts.onProgress?.({ kind: "start", uri, url, attempt, total: f.size });
        for await (const chunk of f.handle.createReadStream({ autoClose: false, start: 0 }))
          await consume(chunk as Buffer, f.size);
      } finally {
        await f.handle.close();
      }
    } else {
      const ac = new AbortController();
      const idleMs = opts.idleTimeoutMs ?? 60_000;
      let timer = setTimeout(() => ac.abort(), idleMs);
      const kick = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => ac.abort(), idleMs);
      };
      try {
        let res: Response;
        try {
          res = await httpGet(url, uri, ac.signal);
        } catch (e) {
          if (e instanceof SourceError) throw e;
          throw new RetryableError(
            ac.signal.aborted ? `no response within ${idleMs} ms` : `network error: ${describe(e)}`,
          );
        }
        if (res.status !== 200) {
          await res.body?.cancel().catch(() => undefined);
          const msg = `HTTP ${res.status}${res.statusText ? " " + res.statusText : ""}`;
          if (res.status >= 500 || res.status === 429 || res.status === 408) throw new RetryableError(msg);
          throw new SourceError("HTTP", `fetching ${uri}${url !== uri ? ` (${url})` : ""}: ${msg}`);
        }
        const lenHeader = res.headers.get("content-length");
        const total = lenHeader !== null && /^\d+$/.test(lenHeader) ? Number(lenHeader) : undefined;
        opts.onProgress?.({ kind: "start", uri, url, attempt, ...(total !== undefined ? { total } : {}) });
        if (!res.body) throw new RetryableError("empty response body");
        try {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            kick();
            await consume(chunk, total);
          }
        } catch (e) {
          if (e instanceof SourceError) throw e;
          throw new RetryableError(
            ac.signal.aborted
              ? `download stalled for ${idleMs} ms after ${bytes} bytes`
              : `connection lost after ${bytes} bytes: ${describe(e)}`,
          );
        }
        if (total !== undefined && bytes !== total) throw new RetryableError(`short body: ${bytes} of ${total} bytes`);
      } finally {
        clearTimeout(timer);
      }
    }
  } finally {
    await fh.close();
  }
  return { sha256: h256.digest("hex"), sha512: h512?.digest("hex"), bytes };
}

/** Open the local file a file: URL names, inside `roots` only. */
async function openLocal(url: string, uri: string, roots: readonly FileRoot[]) {
  let u: URL;
  try {
    u = new URL(url.trim());
  } catch {
    throw new SourceError("BAD_URI", `${uri}: ${JSON.stringify(url)} is not a URL`);
  }
  return openConfined(localFilePath(u, uri), roots, uri);
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * GET an http(s) URL, following at most 10 redirects and only to http(s):
 * a server cannot send kiln to a file:// (or any other) URL.
 */
export async function httpGet(url: string, subject: string, signal?: AbortSignal): Promise<Response> {
  let current = url;
  for (let hop = 0; hop <= 10; hop++) {
    const res = await fetch(current, {
      ...(signal ? { signal } : {}),
      redirect: "manual",
      headers: { "user-agent": "kiln" },
    });
    if (!REDIRECTS.has(res.status)) return res;
    await res.body?.cancel().catch(() => undefined);
    const location = res.headers.get("location");
    if (!location) throw new SourceError("HTTP", `fetching ${subject}: HTTP ${res.status} redirect without a Location`);
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      throw new SourceError("HTTP", `fetching ${subject}: HTTP ${res.status} redirect to an invalid URL`);
    }
    if (next.protocol !== "http:" && next.protocol !== "https:") {
      throw new SourceError(
        "BAD_URI",
        `fetching ${subject}: refusing the redirect from ${current} to a ${next.protocol} URL (only http and https redirects are followed)`,
      );
    }
    current = next.href;
  }
  throw new SourceError("HTTP", `fetching ${subject}: more than 10 redirects`);
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}

// ---------------------------------------------------------------------------
// Decompression

export type Compression = "none" | "gzip" | "xz" | "bzip2" | "zstd" | "lzma";
export type ArchiveFormat = "tar" | "tar.gz" | "tar.xz" | "tar.bz2" | "tar.zst" | "tar.lzma";

const FORMAT_COMPRESSION: Record<ArchiveFormat, Compression> = {
  tar: "none",
  "tar.gz": "gzip",
  "tar.xz": "xz",
  "tar.bz2": "bzip2",
  "tar.zst": "zstd",
  "tar.lzma": "lzma",
};

const TOOLS: Record<Exclude<Compression, "none" | "gzip">, { bin: string; args: string[]; pkg: string }> = {
  xz: { bin: "xz", args: ["-dc", "-T1"], pkg: "xz-utils" },
  lzma: { bin: "xz", args: ["-dc", "--format=lzma"], pkg: "xz-utils" },
  bzip2: { bin: "bzip2", args: ["-dc"], pkg: "bzip2" },
  zstd: { bin: "zstd", args: ["-dcq", "--long=31"], pkg: "zstd" },
};

const toolCache = new Map<string, string | undefined>();

function findTool(bin: string): string | undefined {
  if (toolCache.has(bin)) return toolCache.get(bin);
  let found: string | undefined;
  for (const d of (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(delimiter)) {
    if (!d) continue;
    const p = join(d, bin);
    try {
      const st = statSync(p);
      if (st.isFile() && st.mode & 0o111) {
        found = p;
        break;
      }
    } catch {
      /* next */
    }
  }
  toolCache.set(bin, found);
  return found;
}

/** Guess the archive format from its first bytes, falling back to the file name. */
export async function detectArchiveFormat(file: string): Promise<ArchiveFormat> {
  const fh = await fsp.open(file, "r");
  const head = Buffer.alloc(512);
  let n: number;
  try {
    n = (await fh.read(head, 0, 512, 0)).bytesRead;
  } finally {
    await fh.close();
  }
  const b = head.subarray(0, n);
  if (b[0] === 0x1f && b[1] === 0x8b) return "tar.gz";
  if (b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return "tar.xz";
  if (b.subarray(0, 3).toString("latin1") === "BZh") return "tar.bz2";
  if (b.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return "tar.zst";
  if (n >= 262 && b.subarray(257, 262).toString("latin1") === "ustar") return "tar";
  if (/\.(tar\.lzma|tlz)$/i.test(file)) return "tar.lzma";
  if (/\.tar$/i.test(file)) return "tar";
  if (b.subarray(0, 4).toString("latin1") === "PK\u0003\u0004") {
    throw new SourceError("BAD_ARCHIVE", `${file}: zip archives are not supported; use a tarball`);
  }
  throw new SourceError(
    "BAD_ARCHIVE",
    `${file}: not a recognised archive (tar, tar.gz, tar.xz, tar.bz2, tar.zst, tar.lzma)`,
  );
}

interface Decompressed {
  stream: AsyncIterable<Buffer>;
  /** Resolves when the decompressor finished cleanly; rejects with its error. */
  done: Promise<void>;
  /** Stop early (after an error elsewhere). */
  abort(): void;
  /** The decompressor's own error, if it failed or fails shortly (a host tool is given time to exit): explains a garbled tar stream. */
  failure(): Promise<unknown>;
}

const ignore = (): void => undefined;

/**
 * Decompress a byte stream with zlib (gzip) or a host tool (xz, bzip2, zstd, lzma).
 * Every stream involved has its errors handled from the moment it exists: an
 * error raised before the consumer starts reading (a corrupt gzip header
 * decoded while the destination directory is still being created) surfaces
 * through `stream` or `done`, never as an uncaught exception.
 */
export function decompress(input: Readable, compression: Compression, subject: string): Decompressed {
  if (compression === "none") {
    const done = finished(input);
    done.catch(ignore); // an early abort is a premature close; the reader reports real errors
    return {
      stream: input as AsyncIterable<Buffer>,
      done,
      abort: () => input.destroy(),
      failure: () => Promise.resolve(undefined),
    };
  }
  if (compression === "gzip") return gunzip(input, subject);
  return toolDecompress(input, compression, subject);
}

function gunzip(input: Readable, subject: string): Decompressed {
  const wrap = (e: unknown): unknown => {
    if (e instanceof SourceError) return e;
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && code.startsWith("Z_"))
      return new SourceError("BAD_ARCHIVE", `${subject}: gzip data is corrupt: ${(e as Error).message}`, { cause: e });
    return e; // the input's own read error (a system error), as it is
  };
  const gz = createGunzip();
  let gzError: unknown;
  gz.on("error", (e) => (gzError ??= e));
  // pipeline() puts error handlers on both streams at once and destroys both on either's failure.
  const done = pipeline(input, gz).catch((e: unknown) => {
    throw wrap(e);
  });
  done.catch(ignore); // observed through the stream (or by the caller); never unhandled
  return {
    stream: (async function* () {
      try {
        for await (const c of gz) yield c as Buffer;
      } catch (e) {
        throw wrap(e);
      }
    })(),
    done,
    abort: () => {
      input.destroy();
      gz.destroy();
    },
    // zlib fails as it decodes: no point in waiting.
    failure: () => Promise.resolve(gzError === undefined ? undefined : wrap(gzError)),
  };
}

function toolDecompress(
  input: Readable,
  compression: Exclude<Compression, "none" | "gzip">,
  subject: string,
): Decompressed {
  const tool = TOOLS[compression];
  const bin = findTool(tool.bin);
  if (!bin) {
    input.destroy();
    throw new SourceError(
      "MISSING_TOOL",
      `${subject}: ${compression} data needs the host's \`${tool.bin}\` program (Debian package ${tool.pkg}): apt-get install ${tool.pkg}`,
    );
  }
  const child = spawn(bin, tool.args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  let aborted = false;
  let readFailure: unknown;
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  child.stderr.on("error", ignore);
  // The consumer iterates stdout; until it does, an error must not go unhandled (it ends the iteration anyway).
  child.stdout.on("error", ignore);
  // EPIPE on stdin when the tool fails early is expected: its exit status tells. A read error of the input is ours to report.
  pipeline(input, child.stdin).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === "EPIPE" || aborted) return;
    if (input.errored) {
      readFailure = e;
      child.kill("SIGKILL");
    }
  });
  const done = new Promise<void>((res, rej) => {
    child.on("error", (e) =>
      rej(new SourceError("MISSING_TOOL", `${subject}: cannot run ${bin}: ${e.message}`, { cause: e })),
    );
    child.on("close", (code, signal) => {
      if (aborted) res();
      else if (readFailure !== undefined) rej(readFailure);
      else if (code === 0) res();
      else
        rej(
          new SourceError(
            "BAD_ARCHIVE",
            `${subject}: ${tool.bin} could not decompress the data (${signal ?? `exit ${code}`}): ${stderr.trim() || "no message"}`,
          ),
        );
    });
  });
  done.catch(ignore); // observed by the caller; avoid an unhandled rejection meanwhile
  return {
    stream: child.stdout as AsyncIterable<Buffer>,
    done,
    abort: () => {
      aborted = true;
      input.destroy();
      child.kill("SIGKILL");
    },
    failure: () =>
      Promise.race([
        done.then(
          () => undefined,
          (x: unknown) => x,
        ),
        sleep(2000).then(() => undefined),
      ]),
  };
}

// ---------------------------------------------------------------------------
// Tar reading

export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

export interface TarEntry {
  /** Name as stored (PAX/GNU long names applied), not normalised. */
  path: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** Symlink target or hardlink source, as stored. */
  linkname: string;
}

/** Exact-size reads over an async byte stream. */
class ByteReader {
  private chunks: Buffer[] = [];
  private avail = 0;
  private ended = false;
  private readonly it: AsyncIterator<Buffer>;
  constructor(
    src: AsyncIterable<Buffer>,
    private readonly subject: string,
  ) {
    this.it = src[Symbol.asyncIterator]();
  }
  private async fill(n: number): Promise<void> {
    while (this.avail < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else if (r.value.length) {
        this.chunks.push(r.value);
        this.avail += r.value.length;
      }
    }
  }
  /** Exactly n bytes, or null at a clean end of stream; throws if the stream ends inside. */
  async read(n: number, what: string): Promise<Buffer | null> {
    await this.fill(n);
    if (this.avail === 0) return null;
    if (this.avail < n) throw new SourceError("BAD_ARCHIVE", `${this.subject}: archive is truncated (in ${what})`);
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length, n - off);
      c.copy(out, off, 0, take);
      off += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    this.avail -= n;
    return out;
  }
  /** Yield exactly n bytes in pieces. */
  async *take(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.avail === 0) {
        await this.fill(1);
        if (this.avail === 0)
          throw new SourceError("BAD_ARCHIVE", `${this.subject}: archive is truncated (in ${what})`);
      }
      const c = this.chunks[0]!;
      if (c.length <= left) {
        this.chunks.shift();
        this.avail -= c.length;
        left -= c.length;
        yield c;
      } else {
        this.chunks[0] = c.subarray(left);
        this.avail -= left;
        const piece = c.subarray(0, left);
        left = 0;
        yield piece;
      }
    }
  }
  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.take(n, what)) {
      /* discard */
    }
  }
  async drain(): Promise<void> {
    this.chunks = [];
    this.avail = 0;
    while (!this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
    }
  }
}

function cstr(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const z = s.indexOf(0);
  return (z < 0 ? s : s.subarray(0, z)).toString("utf8");
}

function tarNumber(b: Buffer, start: number, len: number, field: string, subject: string): number {
  const f = b.subarray(start, start + len);
  if (f[0]! & 0x80) {
    // GNU base-256: big-endian two's complement, high bit of the first byte is the marker.
    let v = BigInt(f[0]! & 0x7f);
    const negative = (f[0]! & 0x40) !== 0;
    for (let i = 1; i < f.length; i++) v = (v << 8n) | BigInt(f[i]!);
    if (negative) v -= 1n << BigInt(f.length * 8 - 1);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
      throw new SourceError("BAD_ARCHIVE", `${subject}: tar ${field} out of range`);
    return Number(v);
  }
  const s = f.toString("latin1").replace(/\0.*$/s, "").trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s))
    throw new SourceError("BAD_ARCHIVE", `${subject}: bad octal tar ${field} ${JSON.stringify(s)}`);
  return parseInt(s, 8);
}

function parsePaxRecords(body: Buffer, subject: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < body.length) {
    if (body[i] === 0) break;
    const sp = body.indexOf(0x20, i);
    if (sp < 0) throw new SourceError("BAD_ARCHIVE", `${subject}: malformed PAX record`);
    const len = Number(body.subarray(i, sp).toString("latin1"));
    if (!Number.isInteger(len) || len <= sp - i + 1 || i + len > body.length)
      throw new SourceError("BAD_ARCHIVE", `${subject}: malformed PAX record length`);
    const rec = body.subarray(sp + 1, i + len - 1).toString("utf8"); // minus the trailing newline
    const eq = rec.indexOf("=");
    if (eq <= 0) throw new SourceError("BAD_ARCHIVE", `${subject}: malformed PAX record`);
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

const MAX_META = 1 << 20;

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Iterate over tar entries (ustar, GNU and PAX). Each entry's data must be
 * consumed (or skipped) through `data` before asking for the next entry.
 */
export async function* readTar(
  src: AsyncIterable<Buffer>,
  subject: string,
): AsyncGenerator<{ entry: TarEntry; data: () => AsyncGenerator<Buffer> }> {
  const r = new ByteReader(src, subject);
  let globalPax = new Map<string, string>();
  try {
    for (;;) {
      const pax = new Map<string, string>();
      let longName: string | undefined;
      let longLink: string | undefined;
      let header: Buffer | null;
      let typeflag: string;
      for (;;) {
        header = await r.read(512, "a header");
        if (header === null) return; // end of stream without the zero blocks: accept
        if (isZero(header)) return;
        // Checksum: unsigned sum with the checksum field read as spaces (signed sums from old tars accepted too).
        const stored = tarNumber(header, 148, 8, "checksum", subject);
        let u = 0;
        let s = 0;
        for (let i = 0; i < 512; i++) {
          const c = i >= 148 && i < 156 ? 0x20 : header[i]!;
          u += c;
          s += c > 127 ? c - 256 : c;
        }
        if (stored !== u && stored !== s)
          throw new SourceError(
            "BAD_ARCHIVE",
            `${subject}: tar header checksum mismatch (not a tar archive, or corrupt)`,
          );
        typeflag = String.fromCharCode(header[156]!);
        const size = tarNumber(header, 124, 12, "size", subject);
        if (typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K") {
          if (size > MAX_META)
            throw new SourceError("BAD_ARCHIVE", `${subject}: extended header of ${size} bytes is too large`);
          const body =
            (await r.read(size + ((512 - (size % 512)) % 512), "an extended header"))?.subarray(0, size) ??
            Buffer.alloc(0);
          if (typeflag === "x") for (const [k, v] of parsePaxRecords(body, subject)) pax.set(k, v);
          else if (typeflag === "g") {
            globalPax = new Map(globalPax);
            for (const [k, v] of parsePaxRecords(body, subject)) globalPax.set(k, v);
          } else if (typeflag === "L") longName = cstr(body, 0, body.length);
          else longLink = cstr(body, 0, body.length);
          continue;
        }
        break;
      }
      const h = header;
      const merged = new Map([...globalPax, ...pax]);
      const magic = h.subarray(257, 263).toString("latin1");
      const isUstar = magic === "ustar\0";
      let name = cstr(h, 0, 100);
      if (isUstar) {
        const prefix = cstr(h, 345, 155);
        if (prefix) name = `${prefix}/${name}`;
      }
      if (longName !== undefined) name = longName;
      if (merged.has("path")) name = merged.get("path")!;
      let linkname = longLink ?? cstr(h, 157, 100);
      if (merged.has("linkpath")) linkname = merged.get("linkpath")!;
      let size = tarNumber(h, 124, 12, "size", subject);
      if (merged.has("size")) {
        const v = merged.get("size")!;
        if (!/^\d+$/.test(v)) throw new SourceError("BAD_ARCHIVE", `${subject}: bad PAX size ${JSON.stringify(v)}`);
        size = Number(v);
      }
      let mtime = tarNumber(h, 136, 12, "mtime", subject);
      if (merged.has("mtime")) {
        const v = Number(merged.get("mtime"));
        if (Number.isFinite(v)) mtime = v;
      }
      let uid = tarNumber(h, 108, 8, "uid", subject);
      let gid = tarNumber(h, 116, 8, "gid", subject);
      if (merged.has("uid") && /^\d+$/.test(merged.get("uid")!)) uid = Number(merged.get("uid"));
      if (merged.has("gid") && /^\d+$/.test(merged.get("gid")!)) gid = Number(merged.get("gid"));
      const mode = tarNumber(h, 100, 8, "mode", subject) & 0o7777;
      let type: TarEntryType;
      switch (typeflag) {
        case "0":
        case "\0":
        case "7":
          type = name.endsWith("/") && typeflag === "\0" ? "dir" : "file";
          break;
        case "1":
          type = "hardlink";
          break;
        case "2":
          type = "symlink";
          break;
        case "3":
          type = "char";
          break;
        case "4":
          type = "block";
          break;
        case "5":
        case "D":
          type = "dir";
          break;
        case "6":
          type = "fifo";
          break;
        case "V":
          await r.skip(size + ((512 - (size % 512)) % 512), "a volume label");
          continue;
        default:
          throw new SourceError(
            "BAD_ARCHIVE",
            `${subject}: unsupported tar entry type ${JSON.stringify(typeflag)} for ${JSON.stringify(name)}`,
          );
      }
      const dataSize = type === "file" || typeflag === "D" ? size : 0;
      const pad = (512 - (dataSize % 512)) % 512;
      let consumed = false;
      const entry: TarEntry = { path: name, type, mode, uid, gid, size: type === "file" ? size : 0, mtime, linkname };
      const data = async function* (): AsyncGenerator<Buffer> {
        if (consumed) return;
        consumed = true;
        yield* r.take(dataSize, JSON.stringify(name));
        if (pad) await r.skip(pad, "padding");
      };
      yield { entry, data };
      if (!consumed) {
        consumed = true;
        await r.skip(dataSize + pad, JSON.stringify(name));
      }
    }
  } finally {
    // Nothing: the caller drains or aborts the underlying stream.
  }
}

// ---------------------------------------------------------------------------
// Safe extraction

export interface ExtractSummary {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** Entries not written (device nodes, fifos, entries removed by stripComponents), with the reason. */
  skipped: string[];
  /** Relative paths written, in archive order. */
  paths: string[];
}

export interface ExtractHooks {
  /** Rewrite a normalised relative path, or return null to skip the entry. */
  mapPath?: (path: string) => string | null;
  /** Rewrite a symlink target; gets the final and the original (pre-mapPath) link path. */
  mapSymlink?: (target: string, path: string, originalPath: string) => string;
  /** What to do when an entry names a path an earlier entry of this archive wrote: replace it (tar's default) or fail. */
  onConflict?: "replace" | "error";
}

export interface ExtractOptions extends ExtractHooks {
  stripComponents?: number;
  /** Archive format; detected from the magic bytes (then the name) when absent. */
  format?: ArchiveFormat;
}

/** Normalise an entry name to `a/b/c`; "" for the root; throws UNSAFE_PATH for absolute names and `..`. */
export function normalizeArchivePath(raw: string, subject: string): string {
  if (raw.includes("\0"))
    throw new SourceError("UNSAFE_PATH", `${subject}: entry name ${JSON.stringify(raw)} contains a NUL byte`);
  if (raw.startsWith("/"))
    throw new SourceError("UNSAFE_PATH", `${subject}: refusing absolute entry name ${JSON.stringify(raw)}`);
  const segs = raw.split("/").filter((s) => s !== "" && s !== ".");
  if (segs.includes(".."))
    throw new SourceError("UNSAFE_PATH", `${subject}: refusing entry name ${JSON.stringify(raw)} containing ".."`);
  return segs.join("/");
}

class Extractor {
  private readonly dirs = new Set<string>([""]);
  private readonly written = new Set<string>();
  private readonly dirMeta = new Map<string, { mode: number; mtime: number }>();
  readonly summary: ExtractSummary = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, skipped: [], paths: [] };

  constructor(
    private readonly root: string,
    private readonly subject: string,
    private readonly opts: ExtractOptions,
  ) {}

  private unsafe(msg: string): SourceError {
    return new SourceError("UNSAFE_PATH", `${this.subject}: ${msg}`);
  }

  /** Make sure `rel` is a real directory under the root, creating it (and its parents) if missing; never through a symlink. */
  private async ensureDir(rel: string, forEntry: string): Promise<void> {
    if (this.dirs.has(rel)) return;
    const parent = posix.dirname(rel);
    await this.ensureDir(parent === "." ? "" : parent, forEntry);
    const abs = join(this.root, rel);
    let st;
    try {
      st = await fsp.lstat(abs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      try {
        await fsp.mkdir(abs, { mode: 0o755 });
      } catch (e2) {
        if ((e2 as NodeJS.ErrnoException).code !== "EEXIST") throw e2;
        st = await fsp.lstat(abs);
        if (!st.isDirectory()) throw this.unsafe(`${JSON.stringify(forEntry)}: ${rel} appeared as a non-directory`);
      }
      this.dirs.add(rel);
      return;
    }
    if (st.isSymbolicLink())
      throw this.unsafe(`refusing ${JSON.stringify(forEntry)}: it would be written through the symlink ${rel}`);
    if (!st.isDirectory()) throw this.unsafe(`refusing ${JSON.stringify(forEntry)}: ${rel} is not a directory`);
    this.dirs.add(rel);
  }

  /** Check that every parent of `rel` is a real directory (without creating anything). */
  private async checkParents(rel: string, forEntry: string): Promise<void> {
    const parts = rel.split("/");
    let cur = "";
    for (let i = 0; i < parts.length - 1; i++) {
      cur = cur ? `${cur}/${parts[i]}` : parts[i]!;
      if (this.dirs.has(cur)) continue;
      const st = await fsp.lstat(join(this.root, cur)).catch(() => undefined);
      if (!st) throw this.unsafe(`hardlink ${JSON.stringify(forEntry)}: target directory ${cur} does not exist`);
      if (st.isSymbolicLink())
        throw this.unsafe(`refusing hardlink ${JSON.stringify(forEntry)}: its target goes through the symlink ${cur}`);
      if (!st.isDirectory()) throw this.unsafe(`hardlink ${JSON.stringify(forEntry)}: ${cur} is not a directory`);
      this.dirs.add(cur);
    }
  }

  /** Clear the way for a non-directory at `rel`. */
  private async prepareLeaf(rel: string, forEntry: string): Promise<string> {
    const parent = posix.dirname(rel);
    await this.ensureDir(parent === "." ? "" : parent, forEntry);
    const abs = join(this.root, rel);
    if (this.written.has(rel) && this.opts.onConflict === "error") {
      throw new SourceError(
        "BAD_ARCHIVE",
        `${this.subject}: two entries write ${rel}${forEntry !== rel ? ` (the second is ${JSON.stringify(forEntry)})` : ""}`,
      );
    }
    const st = await fsp.lstat(abs).catch(() => undefined);
    if (st) {
      if (st.isDirectory())
        throw new SourceError(
          "BAD_ARCHIVE",
          `${this.subject}: ${JSON.stringify(forEntry)} would replace the directory ${rel}`,
        );
      await fsp.unlink(abs);
    }
    return abs;
  }

  private mapped(raw: string, what: string): { rel: string; orig: string } | null {
    const norm = normalizeArchivePath(raw, this.subject);
    let segs = norm === "" ? [] : norm.split("/");
    const strip = this.opts.stripComponents ?? 0;
    if (strip > 0) {
      if (segs.length <= strip) return null;
      segs = segs.slice(strip);
    }
    const orig = segs.join("/");
    if (orig === "") return { rel: "", orig };
    const rel = this.opts.mapPath ? this.opts.mapPath(orig) : orig;
    if (rel === null) return null;
    if (rel !== orig && normalizeArchivePath(rel, this.subject) !== rel)
      throw this.unsafe(`${what} mapped to a non-normal path ${JSON.stringify(rel)}`);
    return { rel, orig };
  }

  async entry(e: TarEntry, data: () => AsyncGenerator<Buffer>): Promise<void> {
    const m = this.mapped(e.path, JSON.stringify(e.path));
    if (m === null) {
      this.summary.skipped.push(`${e.path}: stripped`);
      return;
    }
    const { rel, orig } = m;
    if (rel === "") {
      if (e.type !== "dir") throw this.unsafe(`refusing ${JSON.stringify(e.path)}: a ${e.type} at the extraction root`);
      return; // the root's own entry: its mode stays the caller's
    }
    switch (e.type) {
      case "dir": {
        const abs = join(this.root, rel);
        const st = await fsp.lstat(abs).catch(() => undefined);
        if (st && st.isSymbolicLink())
          throw this.unsafe(`refusing directory ${JSON.stringify(e.path)}: ${rel} is a symlink`);
        if (st && !st.isDirectory()) await this.prepareLeaf(rel, e.path); // a file there: replace it
        await this.ensureDir(rel, e.path);
        if (!this.dirMeta.has(rel)) {
          this.summary.dirs++;
          this.summary.paths.push(rel);
        }
        this.dirMeta.set(rel, { mode: e.mode, mtime: e.mtime });
        return;
      }
      case "file": {
        const abs = await this.prepareLeaf(rel, e.path);
        const fh = await fsp.open(abs, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW, 0o600);
        try {
          for await (const chunk of data()) await fh.write(chunk);
          await fh.chmod(e.mode);
          await fh.utimes(e.mtime, e.mtime);
        } finally {
          await fh.close();
        }
        this.summary.files++;
        break;
      }
      case "symlink": {
        if (e.linkname === "")
          throw new SourceError(
            "BAD_ARCHIVE",
            `${this.subject}: symlink ${JSON.stringify(e.path)} has an empty target`,
          );
        if (e.linkname.includes("\0"))
          throw this.unsafe(`symlink ${JSON.stringify(e.path)} target contains a NUL byte`);
        const target = this.opts.mapSymlink ? this.opts.mapSymlink(e.linkname, rel, orig) : e.linkname;
        const abs = await this.prepareLeaf(rel, e.path);
        await fsp.symlink(target, abs);
        await fsp.lutimes(abs, e.mtime, e.mtime).catch(() => undefined);
        this.summary.symlinks++;
        break;
      }
      case "hardlink": {
        const t = this.mapped(e.linkname, `hardlink target ${JSON.stringify(e.linkname)}`);
        if (t === null || t.rel === "")
          throw this.unsafe(
            `hardlink ${JSON.stringify(e.path)} -> ${JSON.stringify(e.linkname)}: target is outside the extracted tree`,
          );
        await this.checkParents(t.rel, e.path);
        const tabs = join(this.root, t.rel);
        const tst = await fsp.lstat(tabs).catch(() => undefined);
        if (!tst || !tst.isFile())
          throw this.unsafe(
            `hardlink ${JSON.stringify(e.path)} -> ${JSON.stringify(e.linkname)}: target is not a regular file extracted before it`,
          );
        const abs = await this.prepareLeaf(rel, e.path);
        await fsp.link(tabs, abs);
        this.summary.hardlinks++;
        break;
      }
      default:
        this.summary.skipped.push(`${e.path}: ${e.type} device/fifo not created`);
        return;
    }
    this.written.add(rel);
    this.summary.paths.push(rel);
  }

  /** Apply directory modes and times, deepest first, once everything is written. */
  async finish(): Promise<void> {
    const ds = [...this.dirMeta.entries()].sort((a, b) => b[0].split("/").length - a[0].split("/").length);
    for (const [rel, m] of ds) {
      const abs = join(this.root, rel);
      await fsp.chmod(abs, m.mode);
      await fsp.utimes(abs, m.mtime, m.mtime);
    }
  }
}

/** Extract a tar stream into destDir (created if needed) with the safety rules of extractArchive. */
export async function extractTarStream(
  src: AsyncIterable<Buffer>,
  destDir: string,
  subject: string,
  opts: ExtractOptions = {},
): Promise<ExtractSummary> {
  await fsp.mkdir(destDir, { recursive: true });
  const root = await fsp.realpath(destDir);
  const x = new Extractor(root, subject, opts);
  for await (const { entry, data } of readTar(src, subject)) await x.entry(entry, data);
  await x.finish();
  return x.summary;
}

/**
 * Extract a tar archive (plain, gzip, xz, bzip2, zstd or lzma) into destDir.
 * Nothing is written outside destDir: absolute names and `..` are refused,
 * no entry is written through a symlink (parents are checked with lstat and
 * files are opened with O_NOFOLLOW|O_EXCL), and hardlinks must point at a
 * regular file extracted earlier. Modes (including setuid), mtimes, symlinks
 * and hardlinks are preserved; ownership is not (packages normalise it).
 * Device nodes and fifos are skipped and listed in `skipped`.
 */
export async function extractArchive(
  file: string,
  destDir: string,
  opts: ExtractOptions = {},
): Promise<ExtractSummary> {
  const format = opts.format ?? (await detectArchiveFormat(file));
  return extractCompressedTar(createReadStream(file), FORMAT_COMPRESSION[format], destDir, file, opts);
}

/** Extract a (possibly compressed) tar from a byte stream; shared by extractArchive and the .deb reader. */
export async function extractCompressedTar(
  input: Readable,
  compression: Compression,
  destDir: string,
  subject: string,
  opts: ExtractOptions = {},
): Promise<ExtractSummary> {
  const d = decompress(input, compression, subject);
  let summary: ExtractSummary;
  try {
    summary = await extractTarStream(d.stream, destDir, subject, opts);
  } catch (e) {
    // A truncated or garbled stream is usually the decompressor's failure: report that.
    if (e instanceof SourceError && e.code === "BAD_ARCHIVE") {
      const toolErr = await d.failure();
      d.abort();
      if (toolErr instanceof SourceError)
        throw new SourceError(toolErr.code, `${toolErr.message} (${e.message})`, { cause: e });
      throw e;
    }
    d.abort();
    throw e;
  }
  // Read to the end so the decompressor verifies its trailing checksum.
  for await (const _ of d.stream) {
    /* trailing data after the end-of-archive blocks */
  }
  await d.done;
  return summary;
}

/** Read the regular files of a (possibly compressed) tar into memory (for small archives such as a .deb's control member). */
export async function readTarFiles(
  input: Readable,
  compression: Compression,
  subject: string,
  limit = 64 << 20,
): Promise<Map<string, Buffer>> {
  const d = decompress(input, compression, subject);
  const out = new Map<string, Buffer>();
  let total = 0;
  try {
    for await (const { entry, data } of readTar(d.stream, subject)) {
      if (entry.type !== "file") continue;
      total += entry.size;
      if (total > limit) throw new SourceError("BAD_ARCHIVE", `${subject}: more than ${limit} bytes of files`);
      const parts: Buffer[] = [];
      for await (const c of data()) parts.push(Buffer.from(c));
      out.set(normalizeArchivePath(entry.path, subject), Buffer.concat(parts));
    }
  } catch (e) {
    d.abort();
    throw e;
  }
  for await (const _ of d.stream) {
    /* drain */
  }
  await d.done;
  return out;
}
