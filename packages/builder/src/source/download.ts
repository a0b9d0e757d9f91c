// Downloading one pinned source: mirror substitution, the cache first, then
// attempts over http(s) (@kiln/core's client: its redirect policy, its retry
// loop), FTP (./ftp.ts) or a confined file: read, each hashed as it streams
// and verified before it enters the cache.

import { HttpError, httpGet as coreHttpGet, withRetries } from "@kiln/core";
import { createHash, type Hash } from "node:crypto";
import { constants as FS } from "node:fs";
import * as fsp from "node:fs/promises";
import { openConfined, type FileRoot } from "../host-files.js";
import { lookupCached, partialPath, sourceCache, storeVerified } from "./cache.js";
import { SourceError, type SourceErrorCode } from "./errors.js";
import { FtpError, ftpGet } from "./ftp.js";
import { localFilePath, mirrorFileRoots, substituteMirrors, type MirrorOptions } from "./mirrors.js";

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

/** A checksum as lower-case hex, or undefined when absent; SourceError NO_CHECKSUM when malformed. */
function normalizeHex(v: string | undefined, len: number, what: string, uri: string): string | undefined {
  if (v === undefined || v === "") return undefined;
  const s = v.trim().toLowerCase();
  if (!new RegExp(`^[0-9a-f]{${len}}$`).test(s)) {
    throw new SourceError("NO_CHECKSUM", `${uri}: ${what} ${JSON.stringify(v)} is not ${len} hexadecimal digits`);
  }
  return s;
}

/** A failed attempt worth another: a retryable status, a network error, a stalled or short body. */
class RetryableError extends Error {}

/**
 * Download `spec.uri` (after mirror substitution) into the content-addressed
 * cache and return the path of the verified file, `<cacheDir>/sources/<sha256>`.
 * A file already cached is returned without any request. At least one of
 * expectedSha256/expectedSha512 is required; a mismatch is fatal, names the
 * URI with the expected and actual hash, and caches nothing. 5xx, 429, 408 and
 * network errors are retried with exponential back-off; other statuses fail at
 * once, and only http(s) redirects are followed. `ftp://` URIs are
 * retrieved in passive mode (a 4xx reply is retried, a 5xx one is not). `file://` URIs are read
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
  const cache = sourceCache(opts.cacheDir);

  // Cache lookup first: a cached file needs neither the network nor a mirror.
  const hit = await lookupCached(cache, want256, want512);
  if (hit) {
    opts.onProgress?.({ kind: "cached", uri, path: hit.path, sha256: hit.sha256 });
    return hit.path;
  }

  const url = substituteMirrors(uri, opts);
  const parsed = parseSourceUrl(uri, url);
  const subject = `${uri}${url !== uri ? ` (${url})` : ""}`;
  const fileRoots = parsed.protocol === "file:" ? [...(opts.fileRoots ?? []), ...mirrorFileRoots(uri, opts)] : [];
  await fsp.mkdir(cache.dir, { recursive: true });
  const retries = opts.retries ?? 4;
  try {
    return await withRetries(
      async (attempt) => {
        const tmp = partialPath(cache.dir);
        try {
          const got = await downloadOnce({ parsed, uri, url, tmp, attempt, opts, need512: !!want512, fileRoots });
          if (want256 && got.sha256 !== want256) throw mismatch(subject, "sha256", want256, got.sha256);
          if (want512 && got.sha512 !== want512) throw mismatch(subject, "sha512", want512, got.sha512!);
          const final = await storeVerified(cache, tmp, got.sha256, want512);
          opts.onProgress?.({ kind: "done", uri, url, path: final, sha256: got.sha256, bytes: got.bytes });
          return final;
        } catch (e) {
          await fsp.rm(tmp, { force: true });
          throw e;
        }
      },
      (e) => e instanceof RetryableError,
      {
        retries,
        backoffMs: opts.retryDelayMs ?? 500,
        maxDelayMs: 10_000,
        onRetry: (attempt, delayMs, e) =>
          opts.onProgress?.({ kind: "retry", uri, url, attempt, delayMs, reason: (e as Error).message }),
      },
    );
  } catch (e) {
    if (!(e instanceof RetryableError)) throw e;
    const code: SourceErrorCode = /^HTTP /.test(e.message) ? "HTTP" : "NETWORK";
    throw new SourceError(
      code,
      `fetching ${subject} failed after ${retries + 1} attempts: ${e.message}; ` +
        `the source cache has no file with this checksum either (kiln source add FILE puts one there)`,
    );
  }
}

function parseSourceUrl(uri: string, url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SourceError("BAD_URI", `${uri}: ${JSON.stringify(url)} is not a URL`);
  }
  if (!["http:", "https:", "ftp:", "file:"].includes(parsed.protocol)) {
    throw new SourceError(
      "BAD_URI",
      `${uri}: unsupported scheme ${parsed.protocol} (expected http, https, ftp or file)`,
    );
  }
  return parsed;
}

function mismatch(subject: string, algo: string, want: string, got: string): SourceError {
  return new SourceError(
    "CHECKSUM_MISMATCH",
    `checksum mismatch for ${subject}: expected ${algo} ${want}, got ${algo} ${got}`,
  );
}

interface Attempt {
  parsed: URL;
  uri: string;
  url: string;
  tmp: string;
  attempt: number;
  opts: FetchOptions;
  need512: boolean;
  fileRoots: readonly FileRoot[];
}

type Consume = (chunk: Uint8Array, total: number | undefined) => Promise<void>;

/** One attempt: stream the source into `a.tmp`, hashing it. */
async function downloadOnce(a: Attempt): Promise<{ sha256: string; sha512: string | undefined; bytes: number }> {
  const { uri, url, opts } = a;
  const h256 = createHash("sha256");
  const h512: Hash | undefined = a.need512 ? createHash("sha512") : undefined;
  const fh = await fsp.open(a.tmp, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o644);
  let bytes = 0;
  let lastEmit = 0;
  try {
    const consume: Consume = async (chunk, total) => {
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
    if (a.parsed.protocol === "file:") await readLocal(a, consume);
    else if (a.parsed.protocol === "ftp:") await readFtp(a, consume);
    else await readHttp(a, consume, () => bytes);
  } finally {
    await fh.close();
  }
  return { sha256: h256.digest("hex"), sha512: h512?.digest("hex"), bytes };
}

async function readLocal(a: Attempt, consume: Consume): Promise<void> {
  const f = await openLocal(a.url, a.uri, a.fileRoots);
  try {
    a.opts.onProgress?.({ kind: "start", uri: a.uri, url: a.url, attempt: a.attempt, total: f.size });
    for await (const chunk of f.handle.createReadStream({ autoClose: false, start: 0 }))
      await consume(chunk as Buffer, f.size);
  } finally {
    await f.handle.close();
  }
}

/** RETR over FTP; a 4xx reply or a network failure may succeed on another attempt, a 5xx reply will not. */
async function readFtp(a: Attempt, consume: Consume): Promise<void> {
  const idleMs = a.opts.idleTimeoutMs ?? 60_000;
  const onStart = (total: number | undefined) =>
    a.opts.onProgress?.({
      kind: "start",
      uri: a.uri,
      url: a.url,
      attempt: a.attempt,
      ...(total !== undefined ? { total } : {}),
    });
  try {
    await ftpGet(a.parsed, consume, { idleMs, onStart });
  } catch (e) {
    if (!(e instanceof FtpError)) throw e;
    if (e.transient) throw new RetryableError(`FTP: ${e.message}`);
    throw new SourceError("HTTP", `fetching ${a.uri}: FTP: ${e.message}`);
  }
}

/** GET over http(s), aborted when no data arrives for the idle timeout; transient failures as RetryableError. */
async function readHttp(a: Attempt, consume: Consume, received: () => number): Promise<void> {
  const { uri, url } = a;
  const ac = new AbortController();
  const idleMs = a.opts.idleTimeoutMs ?? 60_000;
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
      throw new RetryableError(ac.signal.aborted ? `no response within ${idleMs} ms` : `network error: ${describe(e)}`);
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      const msg = `HTTP ${res.status}${res.statusText ? " " + res.statusText : ""}`;
      if (res.status >= 500 || res.status === 429 || res.status === 408) throw new RetryableError(msg);
      throw new SourceError("HTTP", `fetching ${uri}${url !== uri ? ` (${url})` : ""}: ${msg}`);
    }
    const lenHeader = res.headers.get("content-length");
    const total = lenHeader !== null && /^\d+$/.test(lenHeader) ? Number(lenHeader) : undefined;
    a.opts.onProgress?.({ kind: "start", uri, url, attempt: a.attempt, ...(total !== undefined ? { total } : {}) });
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
          ? `download stalled for ${idleMs} ms after ${received()} bytes`
          : `connection lost after ${received()} bytes: ${describe(e)}`,
      );
    }
    if (total !== undefined && received() !== total)
      throw new RetryableError(`short body: ${received()} of ${total} bytes`);
  } finally {
    clearTimeout(timer);
  }
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

/**
 * GET an http(s) URL, following at most 10 redirects and only to http(s):
 * a server cannot send kiln to a file:// (or any other) URL. The policy is
 * @kiln/core's httpGet; its refusals become SourceErrors (BAD_URI for a
 * redirect to another scheme, HTTP otherwise). Network errors are thrown as
 * fetch throws them.
 */
export async function httpGet(url: string, subject: string, signal?: AbortSignal): Promise<Response> {
  try {
    return await coreHttpGet(url, { subject, headers: { "user-agent": "kiln" }, ...(signal ? { signal } : {}) });
  } catch (e) {
    if (!(e instanceof HttpError)) throw e;
    throw new SourceError(e.reason === "redirect-scheme" ? "BAD_URI" : "HTTP", e.message);
  }
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}
