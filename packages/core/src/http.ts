// The one HTTP client of kiln: a GET that follows redirects by kiln's policy
// (http and https only, a bounded number of hops, credentials not carried to
// another origin), bounded retries with exponential back-off on transient
// failures (network errors, 5xx, 429, 408), a byte budget for bodies read
// into memory, and the one `sleep`. Callers keep their own error types: the
// errors here carry a `reason` a caller maps to its own code and message.

import { KilnError } from "./errors.js";

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export type HttpErrorReason =
  /** A redirect without a Location header, or with one that is not a URL. */
  | "bad-redirect"
  /** A redirect to a scheme other than http and https. */
  | "redirect-scheme"
  | "too-many-redirects"
  /** Retries exhausted on a retryable status, or a status the caller refused. */
  | "status"
  /** Retries exhausted on connection failures or timeouts. */
  | "network"
  /** The body is larger than the caller's byte budget. */
  | "too-large";

export class HttpError extends KilnError {
  readonly code = "HTTP";
  constructor(
    readonly reason: HttpErrorReason,
    message: string,
    readonly url: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, { ...options, kind: "environment" });
  }
}

export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
export const DEFAULT_MAX_REDIRECTS = 10;

/** Statuses worth another attempt: server errors, too many requests, request timeout. */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/** Headers the fetch standard drops when a redirect leaves the origin. */
const CROSS_ORIGIN_DROPPED = ["authorization", "proxy-authorization", "cookie"];

export interface HttpGetOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Abort when the response (headers and body) takes longer than this. */
  timeoutMs?: number;
  /** Redirects followed before giving up (default 10). */
  maxRedirects?: number;
  /** Names the request in error messages (default: the URL). */
  subject?: string;
}

/**
 * One GET of an http(s) URL, following at most `maxRedirects` redirects and
 * only to http(s): a server cannot send kiln to a file:// (or any other) URL.
 * The final response is returned whatever its status; network errors are
 * thrown as fetch throws them.
 */
export async function httpGet(url: string, opts: HttpGetOptions = {}): Promise<Response> {
  const subject = opts.subject ?? url;
  const max = opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  const signals = [opts.signal, opts.timeoutMs !== undefined ? AbortSignal.timeout(opts.timeoutMs) : undefined].filter(
    (s): s is AbortSignal => s !== undefined,
  );
  const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
  let headers: Record<string, string> = { ...opts.headers };
  let current = url;
  for (let hop = 0; hop <= max; hop++) {
    const res = await fetch(current, { ...(signal ? { signal } : {}), redirect: "manual", headers });
    if (!REDIRECT_STATUSES.has(res.status)) return res;
    await res.body?.cancel().catch(() => undefined);
    const location = res.headers.get("location");
    if (!location)
      throw new HttpError(
        "bad-redirect",
        `fetching ${subject}: HTTP ${res.status} redirect without a Location`,
        current,
        res.status,
      );
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      throw new HttpError(
        "bad-redirect",
        `fetching ${subject}: HTTP ${res.status} redirect to an invalid URL`,
        current,
        res.status,
      );
    }
    if (next.protocol !== "http:" && next.protocol !== "https:") {
      throw new HttpError(
        "redirect-scheme",
        `fetching ${subject}: refusing the redirect from ${current} to a ${next.protocol} URL (only http and https redirects are followed)`,
        current,
        res.status,
      );
    }
    if (next.origin !== new URL(current).origin) headers = withoutCredentials(headers);
    current = next.href;
  }
  throw new HttpError("too-many-redirects", `fetching ${subject}: more than ${max} redirects`, current);
}

function withoutCredentials(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).filter(([k]) => !CROSS_ORIGIN_DROPPED.includes(k.toLowerCase())));
}

export interface RetryOptions {
  /** Further attempts after the first (default 4). */
  retries?: number;
  /** The first back-off delay; doubles per attempt (default 200 ms). */
  backoffMs?: number;
  /** Cap on one delay (default: none). */
  maxDelayMs?: number;
  /** Told before each wait: the attempt that failed (1-based), the delay, the error. */
  onRetry?: (attempt: number, delayMs: number, error: unknown) => void;
}

/** The back-off before attempt `failed + 1`: base·2^(failed−1), capped. */
export function backoffDelay(failed: number, opts: Pick<RetryOptions, "backoffMs" | "maxDelayMs"> = {}): number {
  const d = (opts.backoffMs ?? 200) * 2 ** (failed - 1);
  return opts.maxDelayMs === undefined ? d : Math.min(d, opts.maxDelayMs);
}

/**
 * Run `fn` (given the 1-based attempt number) until it succeeds, it throws
 * an error `isRetryable` refuses, or the retries are spent; then the last
 * error is thrown.
 */
export async function withRetries<T>(
  fn: (attempt: number) => Promise<T>,
  isRetryable: (e: unknown) => boolean,
  opts: RetryOptions = {},
): Promise<T> {
  const retries = opts.retries ?? 4;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (!isRetryable(e) || attempt > retries) throw e;
      const delayMs = backoffDelay(attempt, opts);
      opts.onRetry?.(attempt, delayMs, e);
      await sleep(delayMs);
    }
  }
}

class RetryableStatus extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

/**
 * GET with retries: network errors and retryable statuses are tried again
 * with back-off; any other response (2xx, 3xx not followed, 4xx) is returned
 * for the caller to judge. When the retries are spent, throws HttpError
 * "status" (with the last status and statusText in the message) or
 * "network" (with the last error as its cause). Redirect policy errors are
 * thrown at once.
 */
export async function httpGetWithRetries(url: string, opts: HttpGetOptions & RetryOptions = {}): Promise<Response> {
  let last: { res?: Response; error?: unknown } = {};
  try {
    return await withRetries(
      async () => {
        let res: Response;
        try {
          res = await httpGet(url, opts);
        } catch (e) {
          if (e instanceof HttpError) throw e;
          last = { error: e };
          throw e;
        }
        if (!isRetryableStatus(res.status)) return res;
        await res.body?.cancel().catch(() => undefined);
        last = { res };
        throw new RetryableStatus(res.status);
      },
      (e) => !(e instanceof HttpError),
      opts,
    );
  } catch (e) {
    if (e instanceof HttpError) throw e;
    if (last.res)
      throw new HttpError("status", `${url}: HTTP ${last.res.status} ${last.res.statusText}`, url, last.res.status);
    throw new HttpError("network", `${url}: ${(e as Error).message}`, url, undefined, { cause: e });
  }
}

/** Read a response body into memory, refusing more than `maxBytes` (HttpError "too-large"). */
export async function readBody(res: Response, maxBytes: number, url = res.url): Promise<Buffer> {
  const len = res.headers.get("content-length");
  if (len !== null && /^\d+$/.test(len) && Number(len) > maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw new HttpError("too-large", `${url}: ${len} bytes is more than the limit of ${maxBytes}`, url, res.status);
  }
  const parts: Buffer[] = [];
  let total = 0;
  if (res.body) {
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
      total += c.length;
      // Leaving the loop by a throw cancels the stream.
      if (total > maxBytes) throw new HttpError("too-large", `${url}: more than ${maxBytes} bytes`, url, res.status);
      parts.push(Buffer.from(c));
    }
  }
  return Buffer.concat(parts);
}
