// The Debian archive's source indexes (dists/SUITE/main/source/Sources.xz),
// read as hostile input: the compressed and decompressed sizes, each line and
// each paragraph are bounded; every Package name is checked, and the
// paragraphs kept (only those of the sources asked for) have their version,
// directory and file names validated before anything uses them.

import { createHash } from "node:crypto";
import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { HttpError, httpGet, writeFileAtomic } from "@kiln/core";
import { localFilePath } from "../source/mirrors.js";
import { decompress } from "../source/decompress.js";
import { SourceError } from "../source/errors.js";

export const INDEX_LIMITS = {
  /** A compressed Sources.xz (sid's is about 12 MB). */
  compressedBytes: 96 * 1024 * 1024,
  /** The decompressed index (sid's is about 60 MB). */
  decompressedBytes: 768 * 1024 * 1024,
  /** One line (the longest Binary: lists are a few KiB). */
  lineBytes: 256 * 1024,
  /** One paragraph of a kept source. */
  paragraphBytes: 1024 * 1024,
  /** Files listed by one source. */
  filesPerSource: 64,
};

/** A Debian source package name (Debian policy 5.6.1). */
export const DEBIAN_SOURCE_RE = /^[a-z0-9][a-z0-9+.-]{1,99}$/;
/** A Debian version: [epoch:]upstream[-revision], no spaces. */
const DEBIAN_VERSION_RE = /^(?:\d{1,9}:)?[A-Za-z0-9][A-Za-z0-9.+~:-]{0,127}$/;
/** A file name in a pool directory: no slash, no leading dot. */
const POOL_FILE_RE = /^[A-Za-z0-9][A-Za-z0-9.+~_-]{0,254}$/;
const SUITE_RE = /^[a-z][a-z0-9-]{0,39}$/;

export interface IndexedFile {
  name: string;
  sha256: string;
  size: number;
}

export interface IndexedSource {
  name: string;
  version: string;
  suite: string;
  /** pool/main/x/name, validated to be exactly that source's pool directory. */
  directory: string;
  files: IndexedFile[];
}

function bad(subject: string, line: number, message: string): never {
  throw new SourceError("BAD_ARCHIVE", `${subject}:${line}: ${message}`);
}

/** The pool directory a source must live in: pool/COMPONENT/{l|libX}/NAME. */
export function poolDirectory(component: string, name: string): string {
  const prefix = name.startsWith("lib") && name.length > 3 ? name.slice(0, 4) : name[0]!;
  return `pool/${component}/${prefix}/${name}`;
}

export function checkSuite(suite: string, what: string): string {
  if (!SUITE_RE.test(suite))
    throw new SourceError("BAD_URI", `${what}: ${JSON.stringify(suite)} is not a suite name (a-z, 0-9, -)`);
  return suite;
}

const SKIPPED = "";

interface Para {
  fields: Map<string, string>;
  line: number;
  bytes: number;
}

function validateKept(p: Para, suite: string, subject: string): IndexedSource {
  const name = p.fields.get("package")!;
  const version = p.fields.get("version") ?? "";
  if (!DEBIAN_VERSION_RE.test(version))
    bad(subject, p.line, `source ${name}: Version ${JSON.stringify(version.slice(0, 80))} is not a Debian version`);
  const directory = p.fields.get("directory") ?? "";
  const component = /^pool\/([a-z-]{1,20})\//.exec(directory)?.[1] ?? "main";
  if (directory !== poolDirectory(component, name))
    bad(
      subject,
      p.line,
      `source ${name}: Directory ${JSON.stringify(directory.slice(0, 120))} is not ${poolDirectory(component, name)}`,
    );
  const files: IndexedFile[] = [];
  for (const raw of (p.fields.get("checksums-sha256") ?? "").split("\n")) {
    const l = raw.trim();
    if (l === "") continue;
    const m = /^([0-9a-f]{64}) (\d{1,15}) (\S+)$/.exec(l);
    if (!m)
      bad(
        subject,
        p.line,
        `source ${name}: Checksums-Sha256 line ${JSON.stringify(l.slice(0, 120))} is not "SHA256 SIZE FILE"`,
      );
    if (!POOL_FILE_RE.test(m[3]!))
      bad(subject, p.line, `source ${name}: ${JSON.stringify(m[3]!.slice(0, 120))} is not a plain file name`);
    files.push({ sha256: m[1]!, size: Number(m[2]), name: m[3]! });
    if (files.length > INDEX_LIMITS.filesPerSource)
      bad(subject, p.line, `source ${name}: more than ${INDEX_LIMITS.filesPerSource} files`);
  }
  return { name, version, suite, directory, files };
}

/**
 * Parse a decompressed Sources stream, keeping the paragraphs of `wanted`
 * sources. Throws SourceError BAD_ARCHIVE naming SUBJECT:LINE on a line or
 * paragraph over its limit, a malformed Package name, or a kept paragraph
 * whose version, directory or files are not what Debian writes.
 */
export async function parseSources(
  chunks: AsyncIterable<Buffer>,
  suite: string,
  wanted: ReadonlySet<string>,
  subject: string,
): Promise<IndexedSource[]> {
  const out: IndexedSource[] = [];
  let para: Para | undefined;
  let last: string | undefined;
  let lineNo = 0;
  let total = 0;
  let carry = "";
  const flush = (): void => {
    if (para && wanted.has(para.fields.get("package") ?? "")) out.push(validateKept(para, suite, subject));
    para = undefined;
    last = undefined;
  };
  const onLine = (line: string): void => {
    lineNo++;
    if (line.length > INDEX_LIMITS.lineBytes)
      bad(subject, lineNo, `a line of more than ${INDEX_LIMITS.lineBytes} bytes`);
    if (line.trim() === "") return flush();
    para ??= { fields: new Map(), line: lineNo, bytes: 0 };
    para.bytes += line.length + 1;
    if (/^[ \t]/.test(line)) {
      if (last === undefined) bad(subject, lineNo, "a continuation line outside a field");
      if (last !== SKIPPED) para.fields.set(last, para.fields.get(last)! + "\n" + line.slice(1));
    } else {
      const colon = line.indexOf(":");
      if (colon <= 0) bad(subject, lineNo, `${JSON.stringify(line.slice(0, 80))} is not "Field: value"`);
      last = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (last === "package" && !DEBIAN_SOURCE_RE.test(value))
        bad(subject, lineNo, `Package ${JSON.stringify(value.slice(0, 80))} is not a Debian source name`);
      // Only the fields used are kept (the others are skipped, their lines still bounded).
      if (["package", "version", "directory", "checksums-sha256"].includes(last)) para.fields.set(last, value);
      else last = SKIPPED;
    }
    if (para.bytes > INDEX_LIMITS.paragraphBytes)
      bad(subject, para.line, `a paragraph of more than ${INDEX_LIMITS.paragraphBytes} bytes`);
  };
  for await (const c of chunks) {
    total += c.length;
    if (total > INDEX_LIMITS.decompressedBytes)
      bad(subject, lineNo, `more than ${INDEX_LIMITS.decompressedBytes} bytes decompressed`);
    const text = carry + c.toString("utf8");
    const lines = text.split("\n");
    carry = lines.pop()!;
    if (carry.length > INDEX_LIMITS.lineBytes)
      bad(subject, lineNo + 1, `a line of more than ${INDEX_LIMITS.lineBytes} bytes`);
    for (const l of lines) onLine(l.replace(/\r$/, ""));
  }
  if (carry !== "") onLine(carry);
  flush();
  return out;
}

export interface IndexFetchOptions {
  /** Directory of the cached indexes (one file per URL, revalidated with If-None-Match / If-Modified-Since). */
  cacheDir?: string;
  onProgress?: (message: string) => void;
  /** A cached index younger than this is used without asking the mirror (default 6 hours; 0 always asks). Mirrors that answer no conditional request make this the only saving. */
  maxAgeSeconds?: number;
  /** The clock (tests). */
  now?: () => number;
}

interface CacheMeta {
  url: string;
  etag?: string;
  lastModified?: string;
  fetchedAt?: number;
}

/** The bytes of one compressed index: from a file: mirror directly, over http(s) through the cache. Undefined when the suite has none (404). */
async function indexBytes(url: string, opts: IndexFetchOptions): Promise<Buffer | undefined> {
  if (/^file:/i.test(url)) {
    const path = localFilePath(new URL(url), url);
    const st = await stat(path).catch(() => undefined);
    if (!st) return undefined;
    if (!st.isFile() || st.size > INDEX_LIMITS.compressedBytes)
      throw new SourceError("BAD_ARCHIVE", `${url}: not a file of at most ${INDEX_LIMITS.compressedBytes} bytes`);
    return readFile(path);
  }
  const key = createHash("sha256").update(url).digest("hex").slice(0, 32);
  const dir = opts.cacheDir ? join(opts.cacheDir, "archive-indexes") : undefined;
  let meta: CacheMeta | undefined;
  let cached: Buffer | undefined;
  if (dir) {
    try {
      meta = JSON.parse(await readFile(join(dir, `${key}.json`), "utf8")) as CacheMeta;
      cached = await readFile(join(dir, `${key}.xz`));
      if (meta.url !== url) meta = cached = undefined;
    } catch {
      meta = cached = undefined;
    }
  }
  const now = (opts.now ?? Date.now)();
  if (
    cached &&
    meta?.fetchedAt !== undefined &&
    now - meta.fetchedAt < (opts.maxAgeSeconds ?? 6 * 3600) * 1000 &&
    now >= meta.fetchedAt
  )
    return cached;
  const headers: Record<string, string> = {};
  if (meta?.etag) headers["if-none-match"] = meta.etag;
  if (meta?.lastModified) headers["if-modified-since"] = meta.lastModified;
  const res = await fetchOnce(url, headers);
  if (res.status === 304 && cached) return cached;
  if (res.status === 404) {
    await res.body?.cancel().catch(() => undefined);
    return undefined;
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    throw new SourceError("HTTP", `${url}: HTTP ${res.status}`);
  }
  opts.onProgress?.(`downloading ${url}`);
  const body = await readLimited(res, url);
  if (dir) {
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(join(dir, `${key}.xz`), body);
    const m: CacheMeta = { url, fetchedAt: now };
    const etag = res.headers.get("etag");
    const lm = res.headers.get("last-modified");
    if (etag) m.etag = etag;
    if (lm) m.lastModified = lm;
    await writeFileAtomic(join(dir, `${key}.json`), JSON.stringify(m) + "\n");
  }
  return body;
}

async function fetchOnce(url: string, headers: Record<string, string>): Promise<Response> {
  try {
    return await httpGet(url, { subject: url, headers: { "user-agent": "kiln", ...headers }, timeoutMs: 600_000 });
  } catch (e) {
    if (e instanceof HttpError) throw new SourceError(e.reason === "redirect-scheme" ? "BAD_URI" : "HTTP", e.message);
    throw new SourceError("NETWORK", `${url}: ${(e as Error).message}`);
  }
}

async function readLimited(res: Response, url: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
    n += c.length;
    if (n > INDEX_LIMITS.compressedBytes)
      throw new SourceError("BAD_ARCHIVE", `${url}: more than ${INDEX_LIMITS.compressedBytes} bytes`);
    parts.push(Buffer.from(c));
  }
  return Buffer.concat(parts);
}

/** Whether the mirror serves SUITE (its Sources.xz exists). */
export function sourcesUrl(mirror: string, suite: string): string {
  return `${mirror}/dists/${checkSuite(suite, "suite")}/main/source/Sources.xz`;
}

/** Read one suite's index, keeping the `wanted` sources; undefined when the mirror does not serve the suite. */
export async function readSuiteIndex(
  mirror: string,
  suite: string,
  wanted: ReadonlySet<string>,
  opts: IndexFetchOptions = {},
): Promise<IndexedSource[] | undefined> {
  const url = sourcesUrl(mirror, suite);
  const bytes = await indexBytes(url, opts);
  if (!bytes) return undefined;
  const d = decompress(Readable.from([bytes]), "xz", url);
  try {
    const out = await parseSources(d.stream, suite, wanted, url);
    await d.done;
    return out;
  } catch (e) {
    d.abort();
    throw (await d.failure()) ?? e;
  }
}
