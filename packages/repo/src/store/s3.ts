// S3Store: a repository under s3://BUCKET/PREFIX. Where the server's PUT is
// atomic (AWS S3; `atomicPut`), an object is written with one conditional PUT
// carrying its SHA-256. Otherwise each write uploads the bytes
// to a fresh staging key (multipart when large, with SHA-256 checksums), then
// copies it server-side onto the final key and deletes the staging copy. The
// copy is what makes a write atomic even on S3-protocol servers whose PUT is
// not (a dropped upload there truncates the object in place): the final key
// only ever receives a complete, verified source, and a client killed after
// sending the copy request does not interrupt it. Conditional writes
// (If-None-Match / If-Match) are sent on the copy; servers that ignore them
// are handled by the publisher's re-read-and-merge loop. Requests are retried
// with exponential backoff on throttling, 5xx, timeouts and dropped
// connections.

import { sleep } from "@kiln/core";
import { createHash, randomUUID } from "node:crypto";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { open } from "node:fs/promises";
import { createRequire } from "node:module";
import type * as S3Sdk from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import {
  StoreError,
  storeKeySegments,
  type ObjectStore,
  type StoreEvent,
  type StoredObject,
  type WriteOptions,
  type WriteSource,
} from "./types.js";

let sdk: typeof S3Sdk | undefined;

/**
 * The AWS SDK, loaded on first use: loading it costs about 200 ms and 20 MB,
 * which the commands that never reach S3 (build, index, plan, image from
 * local repositories) should not pay at start-up.
 */
export function s3Sdk(): typeof S3Sdk {
  if (!sdk) {
    // The SDK warns on every start under Node 20; kiln supports Node 20.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    sdk = createRequire(import.meta.url)("@aws-sdk/client-s3") as typeof S3Sdk;
  }
  return sdk;
}

export interface S3Location {
  bucket: string;
  /** Key prefix without leading slash; "" or ending in "/". */
  prefix: string;
}

/** `s3://bucket/some/prefix` → { bucket, prefix: "some/prefix/" }. */
export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!m) throw new StoreError(`${url}: not an s3://BUCKET/PREFIX URL`, "STORE");
  const bucket = m[1]!;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    throw new StoreError(`${url}: invalid bucket name ${JSON.stringify(bucket)}`, "STORE");
  let prefix = (m[2] ?? "").replace(/^\/+/, "").replace(/\/+$/, "");
  if (prefix.split("/").some((s) => s === "." || s === ".."))
    throw new StoreError(`${url}: prefix must not contain . or .. segments`, "STORE");
  if (prefix) prefix += "/";
  return { bucket, prefix };
}

export interface S3Options {
  endpointUrl?: string;
  region?: string;
  pathStyle?: boolean;
  /** Attempts per request (first try included). */
  maxAttempts?: number;
  /** Base delay of the exponential backoff, ms. */
  backoffMs?: number;
  /** Per-request timeout, ms. */
  timeoutMs?: number;
  /** Objects at least this large are uploaded in parts. */
  multipartThreshold?: number;
  partSize?: number;
  /**
   * The server's PUT replaces an object whole or not at all, as AWS S3's does:
   * an object below the multipart threshold is written with one conditional
   * PUT instead of a staged upload and a copy. Default: true for AWS S3 (no
   * endpointUrl), false for other endpoints (some S3-protocol servers
   * truncate an object in place when an upload is dropped).
   */
  atomicPut?: boolean;
  onEvent?: (e: StoreEvent) => void;
}

export const DEFAULT_MULTIPART_THRESHOLD = 16 * 1024 * 1024;
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
const MIN_PART_SIZE = 5 * 1024 * 1024;

export function makeS3Client(opts: S3Options, env: NodeJS.ProcessEnv = process.env): S3Client {
  const agentOpts = { keepAlive: true, maxSockets: 32 };
  return new (s3Sdk().S3Client)({
    region: opts.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1",
    ...(opts.endpointUrl ? { endpoint: opts.endpointUrl } : {}),
    forcePathStyle: opts.pathStyle ?? false,
    // kiln retries itself (fresh body each attempt, its own backoff and reporting).
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: Math.min(opts.timeoutMs ?? 60_000, 10_000),
      requestTimeout: opts.timeoutMs ?? 60_000,
      // Without this a timeout only logs a warning and the request hangs on.
      throwOnRequestTimeout: true,
      httpAgent: new HttpAgent(agentOpts),
      httpsAgent: new HttpsAgent(agentOpts),
    },
    // The checksum kiln asks for (SHA-256) is computed by kiln and sent as a
    // header; no trailing/streaming checksums, which not every server speaks.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

interface AwsError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const TRANSIENT_CODES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "RequestTimeout",
  "RequestTimeTooSkewed",
  "InternalError",
  "ServiceUnavailable",
  "TooManyRequests",
  "TimeoutError",
  "RequestTimeoutException",
  "NetworkingError",
]);
const NET_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENOTFOUND",
  "ECONNABORTED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

function statusOf(e: unknown): number | undefined {
  return (e as AwsError).$metadata?.httpStatusCode;
}

function codeOf(e: unknown): string {
  const a = e as AwsError;
  return a.Code ?? a.name ?? a.code ?? "";
}

export function isTransient(e: unknown): boolean {
  const status = statusOf(e);
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) return true;
  const a = e as AwsError & { cause?: unknown };
  if (TRANSIENT_CODES.has(codeOf(e)) || (a.code && NET_CODES.has(a.code))) return true;
  // Dropped connections surface as plain errors without an HTTP status.
  if (
    status === undefined &&
    /socket hang up|ECONNRESET|EPIPE|timed? ?out|aborted|premature close|other side closed|Unexpected end|Deserialization error|char '.' is not expected|Non-whitespace before first tag/i.test(
      a.message ?? "",
    )
  )
    return true;
  return false;
}

export const STAGING_MARKER = ".kiln/staging/README";

/** If-None-Match / If-Match for a write's condition, when conditions are sent. */
function conditionHeaders(conditional: boolean, opts: WriteOptions): { IfNoneMatch?: string; IfMatch?: string } {
  const cond = opts.condition;
  if (!conditional || !cond) return {};
  return "ifAbsent" in cond ? { IfNoneMatch: "*" } : "ifMatch" in cond ? { IfMatch: cond.ifMatch } : {};
}

function b64(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64");
}

export class S3Store implements ObjectStore {
  private clientValue: S3Client | undefined;
  readonly location: string;
  readonly repositoryUrl: string;
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly threshold: number;
  private readonly partSize: number;
  private readonly atomicPut: boolean;
  /** Cleared when the server answers a conditional copy with 501: it does not support them. */
  private conditional = true;
  private stagingMarker: Promise<void> | undefined;
  private readonly staged: string[] = [];

  constructor(
    readonly where: S3Location,
    private readonly opts: S3Options = {},
    client?: S3Client,
  ) {
    this.clientValue = client;
    this.location = `s3://${where.bucket}/${where.prefix.replace(/\/$/, "")}`;
    this.repositoryUrl = this.location;
    this.attempts = Math.max(1, opts.maxAttempts ?? 6);
    this.backoffMs = opts.backoffMs ?? 250;
    this.threshold = opts.multipartThreshold ?? DEFAULT_MULTIPART_THRESHOLD;
    // Parts no larger than the threshold, so anything multipart has at least two.
    this.partSize = Math.max(opts.partSize ?? Math.min(DEFAULT_PART_SIZE, this.threshold), MIN_PART_SIZE);
    this.atomicPut = opts.atomicPut ?? !opts.endpointUrl;
  }

  /** The S3 client, made on first use. */
  get client(): S3Client {
    return (this.clientValue ??= makeS3Client(this.opts));
  }

  /** The object key under the prefix; a key with an empty, `.` or `..` segment is refused before any request (servers and proxies may normalise them away from the prefix). */
  private full(key: string, opts: { prefix?: boolean } = {}): string {
    storeKeySegments(key, this.location, opts);
    return this.where.prefix + key;
  }

  /** Run one request with retries; `what` names it in messages. */
  private async call<T>(what: string, key: string, fn: () => Promise<T>): Promise<T> {
    let last: unknown;
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      try {
        return await fn();
      } catch (e) {
        last = e;
        if (!isTransient(e) || attempt === this.attempts) break;
        const delay = Math.min(this.backoffMs * 2 ** (attempt - 1), 8_000) * (0.5 + Math.random() / 2);
        this.opts.onEvent?.({
          kind: "retry",
          key,
          detail: `${what}: ${describe(e)}; retrying in ${Math.round(delay)} ms (attempt ${attempt + 1} of ${this.attempts})`,
        });
        await sleep(delay);
      }
    }
    throw this.wrap(last, what, key);
  }

  private wrap(e: unknown, what: string, key: string): StoreError {
    if (e instanceof StoreError) return e;
    const status = statusOf(e);
    const code = codeOf(e);
    const where = `s3://${this.where.bucket}/${this.where.prefix}${key}`;
    const msg = `${where}: ${what} failed: ${describe(e)}`;
    if (code === "NoSuchBucket")
      return new StoreError(`s3://${this.where.bucket}: no such bucket`, "NO_BUCKET", key, { cause: e });
    if (status === 412 || code === "PreconditionFailed" || code === "ConditionalRequestConflict")
      return new StoreError(`${where}: changed by someone else (precondition failed)`, "PRECONDITION_FAILED", key, {
        cause: e,
      });
    if (status === 404 || code === "NoSuchKey" || code === "NotFound")
      return new StoreError(`${where}: not found`, "NOT_FOUND", key, { cause: e });
    if (status === 403 || code === "AccessDenied" || code === "InvalidAccessKeyId" || code === "SignatureDoesNotMatch")
      return new StoreError(msg, "ACCESS", key, { cause: e });
    if (isTransient(e))
      return new StoreError(`${msg} (gave up after ${this.attempts} attempts)`, "TRANSIENT", key, { cause: e });
    return new StoreError(msg, "STORE", key, { cause: e });
  }

  async head(key: string): Promise<StoredObject | undefined> {
    try {
      const r = await this.call("HEAD", key, () =>
        this.client.send(new (s3Sdk().HeadObjectCommand)({ Bucket: this.where.bucket, Key: this.full(key) })),
      );
      const o: StoredObject = { key, size: r.ContentLength ?? 0 };
      if (r.ETag) o.etag = r.ETag;
      if (r.LastModified) o.lastModified = r.LastModified;
      if (r.Metadata?.sha256) o.sha256 = r.Metadata.sha256;
      if (r.CacheControl) o.cacheControl = r.CacheControl;
      if (r.ContentType) o.contentType = r.ContentType;
      return o;
    } catch (e) {
      if (e instanceof StoreError && e.code === "NOT_FOUND") return undefined;
      throw e;
    }
  }

  async get(key: string): Promise<{ body: Buffer; etag?: string } | undefined> {
    try {
      return await this.call("GET", key, async () => {
        const r = await this.client.send(
          new (s3Sdk().GetObjectCommand)({ Bucket: this.where.bucket, Key: this.full(key) }),
        );
        const bytes = await r.Body!.transformToByteArray();
        if (r.ContentLength !== undefined && bytes.length !== r.ContentLength) {
          throw Object.assign(
            new Error(`GET returned ${bytes.length} of ${r.ContentLength} bytes (connection dropped)`),
            { code: "ECONNRESET" },
          );
        }
        const out: { body: Buffer; etag?: string } = { body: Buffer.from(bytes) };
        if (r.ETag) out.etag = r.ETag;
        return out;
      });
    } catch (e) {
      if (e instanceof StoreError && e.code === "NOT_FOUND") return undefined;
      throw e;
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    let token: string | undefined;
    do {
      const r = await this.call("LIST", prefix, () =>
        this.client.send(
          new (s3Sdk().ListObjectsV2Command)({
            Bucket: this.where.bucket,
            Prefix: this.full(prefix, { prefix: true }),
            ...(token ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      for (const o of r.Contents ?? []) {
        if (!o.Key) continue;
        const so: StoredObject = { key: o.Key.slice(this.where.prefix.length), size: o.Size ?? 0 };
        if (o.ETag) so.etag = o.ETag;
        if (o.LastModified) so.lastModified = o.LastModified;
        yield so;
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * A permanent object in the staging "directory": some S3-protocol servers
   * that map keys to directories remove a directory when its last object is
   * deleted, racing with a concurrent upload into it (s3rver then crashes).
   * With this object present, deleting a staging object never empties it.
   */
  private async ensureStagingMarker(): Promise<void> {
    if (this.stagingMarker) return this.stagingMarker;
    this.stagingMarker = (async () => {
      if (await this.head(STAGING_MARKER)) return;
      const body = Buffer.from(
        "Temporary uploads of kiln publish, copied onto their final keys. Objects here older than a day are left from interrupted runs and are removed by the next publish.\n",
      );
      await this.call("PUT", STAGING_MARKER, () =>
        this.client.send(
          new (s3Sdk().PutObjectCommand)({
            Bucket: this.where.bucket,
            Key: this.full(STAGING_MARKER),
            Body: body,
            ContentType: "text/plain",
            CacheControl: "no-cache",
            Metadata: { sha256: createHash("sha256").update(body).digest("hex") },
            ChecksumAlgorithm: "SHA256",
            ChecksumSHA256: createHash("sha256").update(body).digest("base64"),
          }),
        ),
      );
    })();
    try {
      await this.stagingMarker;
    } catch (e) {
      this.stagingMarker = undefined;
      throw e;
    }
  }

  async write(key: string, source: WriteSource, opts: WriteOptions): Promise<{ etag?: string }> {
    this.full(key); // refuse an unsafe key before uploading anything
    const size = Buffer.isBuffer(source) ? source.length : source.size;
    if (this.atomicPut && size < this.threshold) return this.putFinal(key, source, opts);
    await this.ensureStagingMarker();
    const staging = `.kiln/staging/${randomUUID()}`;
    const meta = { ContentType: opts.contentType, CacheControl: opts.cacheControl, Metadata: { sha256: opts.sha256 } };
    const stagedEtag =
      size >= this.threshold
        ? await this.putMultipart(staging, source, size, meta, key)
        : await this.putSimple(staging, source, meta);
    try {
      return await this.copy(staging, stagedEtag, key, opts);
    } finally {
      // Deleted in batches by flush(): one request per 1,000 uploads instead of one each.
      this.staged.push(staging);
      if (this.staged.length >= 1000) await this.flush();
    }
  }

  async flush(): Promise<void> {
    while (this.staged.length) {
      const batch = this.staged.splice(0, 1000);
      await this.call("DeleteObjects", ".kiln/staging/", () =>
        this.client.send(
          new (s3Sdk().DeleteObjectsCommand)({
            Bucket: this.where.bucket,
            Delete: { Objects: batch.map((k) => ({ Key: this.full(k) })), Quiet: true },
          }),
        ),
      ).catch(() => undefined); // leftovers are removed a day later by cleanStaging
    }
  }

  /** Send a write with its condition; a server that answers a conditional write with 501 gets unconditional ones from then on. */
  private conditionally<T>(
    what: string,
    key: string,
    opts: WriteOptions,
    send: (conditional: boolean) => Promise<T>,
  ): Promise<T> {
    return this.call(what, key, async () => {
      try {
        return await send(this.conditional);
      } catch (e) {
        if (this.conditional && opts.condition && (statusOf(e) === 501 || codeOf(e) === "NotImplemented")) {
          this.conditional = false;
          return send(false);
        }
        throw e;
      }
    });
  }

  /** One PUT onto the final key (atomicPut), with the write's condition; a server that answers a conditional PUT with 501 gets unconditional ones. */
  private async putFinal(key: string, source: WriteSource, opts: WriteOptions): Promise<{ etag?: string }> {
    const body = Buffer.isBuffer(source) ? source : await readRange(source.path, 0, source.size);
    const send = (conditional: boolean) =>
      this.client.send(
        new (s3Sdk().PutObjectCommand)({
          Bucket: this.where.bucket,
          Key: this.full(key),
          Body: body,
          ContentLength: body.length,
          ChecksumAlgorithm: "SHA256",
          ChecksumSHA256: b64(opts.sha256),
          ContentType: opts.contentType,
          CacheControl: opts.cacheControl,
          Metadata: { sha256: opts.sha256 },
          ...conditionHeaders(conditional, opts),
        }),
      );
    const r = await this.conditionally("PUT", key, opts, send);
    return r.ETag ? { etag: r.ETag } : {};
  }

  private async putSimple(
    staging: string,
    source: WriteSource,
    meta: { ContentType: string; CacheControl: string; Metadata: Record<string, string> },
  ): Promise<string | undefined> {
    const body = Buffer.isBuffer(source) ? source : await readRange(source.path, 0, source.size);
    const sha = b64(meta.Metadata.sha256!);
    const r = await this.call("PUT", staging, () =>
      this.client.send(
        new (s3Sdk().PutObjectCommand)({
          Bucket: this.where.bucket,
          Key: this.full(staging),
          Body: body,
          ContentLength: body.length,
          ChecksumAlgorithm: "SHA256",
          ChecksumSHA256: sha,
          ...meta,
        }),
      ),
    );
    return r.ETag;
  }

  private async putMultipart(
    staging: string,
    source: WriteSource,
    size: number,
    meta: { ContentType: string; CacheControl: string; Metadata: Record<string, string> },
    finalKey: string,
  ): Promise<string | undefined> {
    const Bucket = this.where.bucket;
    const Key = this.full(staging);
    const created = await this.call("CreateMultipartUpload", staging, () =>
      this.client.send(
        new (s3Sdk().CreateMultipartUploadCommand)({ Bucket, Key, ChecksumAlgorithm: "SHA256", ...meta }),
      ),
    );
    const UploadId = created.UploadId!;
    const parts: Array<{ PartNumber: number; ETag: string; ChecksumSHA256: string }> = [];
    this.opts.onEvent?.({
      kind: "multipart",
      key: finalKey,
      detail: `${size} bytes in ${Math.ceil(size / this.partSize)} parts`,
    });
    try {
      for (let off = 0, n = 1; off < size; off += this.partSize, n++) {
        const len = Math.min(this.partSize, size - off);
        const part = Buffer.isBuffer(source) ? source.subarray(off, off + len) : await readRange(source.path, off, len);
        const ChecksumSHA256 = createHash("sha256").update(part).digest("base64");
        const r = await this.call(`UploadPart ${n}`, staging, () =>
          this.client.send(
            new (s3Sdk().UploadPartCommand)({
              Bucket,
              Key,
              UploadId,
              PartNumber: n,
              Body: part,
              ContentLength: part.length,
              ChecksumAlgorithm: "SHA256",
              ChecksumSHA256,
            }),
          ),
        );
        parts.push({ PartNumber: n, ETag: r.ETag!, ChecksumSHA256 });
      }
      const done = await this.call("CompleteMultipartUpload", staging, () =>
        this.client.send(
          new (s3Sdk().CompleteMultipartUploadCommand)({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }),
        ),
      );
      return done.ETag;
    } catch (e) {
      await this.client
        .send(new (s3Sdk().AbortMultipartUploadCommand)({ Bucket, Key, UploadId }))
        .catch(() => undefined);
      throw e;
    }
  }

  private async copy(
    staging: string,
    stagedEtag: string | undefined,
    key: string,
    opts: WriteOptions,
  ): Promise<{ etag?: string }> {
    const send = (conditional: boolean) =>
      this.client.send(
        new (s3Sdk().CopyObjectCommand)({
          Bucket: this.where.bucket,
          Key: this.full(key),
          CopySource: `${this.where.bucket}/${this.full(staging)}`.split("/").map(encodeURIComponent).join("/"),
          MetadataDirective: "COPY",
          ChecksumAlgorithm: "SHA256",
          ...(stagedEtag ? { CopySourceIfMatch: stagedEtag } : {}),
          ...conditionHeaders(conditional, opts),
        }),
      );
    const r = await this.conditionally("COPY", key, opts, send);
    const out: { etag?: string } = {};
    if (r.CopyObjectResult?.ETag) out.etag = r.CopyObjectResult.ETag;
    return out;
  }

  async delete(key: string): Promise<void> {
    await this.call("DELETE", key, () =>
      this.client.send(new (s3Sdk().DeleteObjectCommand)({ Bucket: this.where.bucket, Key: this.full(key) })),
    );
  }

  async close(): Promise<void> {
    await this.flush();
    this.client.destroy();
  }
}

async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0)
        throw new StoreError(`${path}: shorter than expected (${offset + got} of ${offset + length} bytes)`, "STORE");
      got += bytesRead;
    }
    return buf;
  } finally {
    await fh.close();
  }
}

function describe(e: unknown): string {
  const a = e as AwsError;
  const status = statusOf(e);
  const code = codeOf(e);
  const msg = a.message && a.message !== code && a.message !== "UnknownError" ? a.message : "";
  return (
    [status ? `HTTP ${status}` : "", code && code !== "Error" ? code : "", msg].filter(Boolean).join(" ") || String(e)
  );
}
