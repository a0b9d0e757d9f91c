// Fetching bytes by URL: local paths, file://, http(s):// (and s3:// through
// an injected client). Transient failures are retried with backoff by
// @kiln/core's HTTP client; a 404 is final and reported as such. Relative
// parts joined onto a repository URL are plain path segments only.

import { assertPathComponent, HttpError, httpGetWithRetries, KilnError } from "@kiln/core";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { Readable } from "node:stream";

export class FetchError extends KilnError {
  readonly code = "FETCH";
  constructor(
    message: string,
    readonly url: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, { ...options, kind: "environment" });
  }
  get notFound(): boolean {
    return this.status === 404;
  }
}

export interface Validator {
  etag?: string;
  lastModified?: string;
}

export type FetchResult =
  { status: "ok"; body: AsyncIterable<Uint8Array>; size?: number; validator: Validator } | { status: "not-modified" };

export interface Fetcher {
  /** Fetch `url`; with `validator`, may answer not-modified. */
  get(url: string, validator?: Validator): Promise<FetchResult>;
}

export function isLocal(url: string): boolean {
  return url.startsWith("file:") || !/^[a-z][a-z0-9+.-]*:\/\//i.test(url);
}

export function localPath(url: string): string {
  return url.startsWith("file:") ? fileURLToPath(url) : url;
}

/** Join a repository base and a relative path, for URLs and paths alike; every segment of `rel` must be one plain path segment (no `..`, `.` or empty one). */
export function joinUrl(base: string, rel: string): string {
  for (const seg of rel.split("/")) assertPathComponent(seg, "URL path segment");
  return base.replace(/\/+$/, "") + "/" + rel;
}

export interface HttpFetcherOptions {
  retries?: number;
  /** Base delay for exponential backoff, ms. */
  backoffMs?: number;
  timeoutMs?: number;
  headers?: Record<string, string>;
}

/** Local files and HTTP(S). */
export class DefaultFetcher implements Fetcher {
  constructor(
    private readonly opts: HttpFetcherOptions = {},
    private readonly s3?: Fetcher,
  ) {}

  async get(url: string, validator?: Validator): Promise<FetchResult> {
    if (url.startsWith("s3://")) {
      if (!this.s3)
        throw new FetchError(`${url}: s3:// repositories need an S3 client (give --endpoint-url / credentials)`, url);
      return this.s3.get(url, validator);
    }
    if (isLocal(url)) return this.getLocal(url, validator);
    return this.getHttp(url, validator);
  }

  private async getLocal(url: string, validator?: Validator): Promise<FetchResult> {
    const p = localPath(url);
    const st = await stat(p).catch((e: NodeJS.ErrnoException) => {
      throw new FetchError(
        `${p}: ${e.code === "ENOENT" ? "not found" : e.message}`,
        url,
        e.code === "ENOENT" ? 404 : undefined,
        { cause: e },
      );
    });
    if (!st.isFile()) throw new FetchError(`${p}: not a regular file`, url);
    const lastModified = `${st.mtimeMs}:${st.size}`;
    if (validator?.lastModified === lastModified) return { status: "not-modified" };
    return { status: "ok", body: createReadStream(p), size: st.size, validator: { lastModified } };
  }

  private async getHttp(url: string, validator?: Validator): Promise<FetchResult> {
    const headers: Record<string, string> = { ...this.opts.headers };
    if (validator?.etag) headers["if-none-match"] = validator.etag;
    if (validator?.lastModified) headers["if-modified-since"] = validator.lastModified;
    let res: Response;
    try {
      res = await httpGetWithRetries(url, {
        headers,
        timeoutMs: this.opts.timeoutMs ?? 120_000,
        retries: this.opts.retries ?? 4,
        backoffMs: this.opts.backoffMs ?? 200,
        // What fetch's own redirect following allowed before.
        maxRedirects: 20,
      });
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      throw new FetchError(e.message, url, e.status, { cause: e.cause ?? e });
    }
    if (res.status === 304) return { status: "not-modified" };
    if (res.ok && res.body) {
      const v: Validator = {};
      const etag = res.headers.get("etag");
      const lm = res.headers.get("last-modified");
      if (etag) v.etag = etag;
      if (lm) v.lastModified = lm;
      const len = res.headers.get("content-length");
      const r: FetchResult = {
        status: "ok",
        body: Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>),
        validator: v,
      };
      if (len) r.size = Number(len);
      return r;
    }
    await res.body?.cancel();
    throw new FetchError(`${url}: HTTP ${res.status} ${res.statusText}`, url, res.status);
  }
}

export async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}
