// s3:// URLs for consumers: a Fetcher that GETs objects with the S3 API
// (credentials from the usual AWS environment), for DefaultFetcher's second
// constructor argument. Conditional GETs answer not-modified from the etag.

import { sleep } from "@kiln/core";
import type { S3Client } from "@aws-sdk/client-s3";
import { Readable } from "node:stream";
import { FetchError, type Fetcher, type FetchResult, type Validator } from "../fetch.js";
import { isTransient, makeS3Client, parseS3Url, s3Sdk, type S3Options } from "./s3.js";

export class S3Fetcher implements Fetcher {
  private clientValue: S3Client | undefined;
  constructor(
    private readonly opts: S3Options = {},
    client?: S3Client,
  ) {
    this.clientValue = client;
  }

  /** The S3 client, made on the first s3:// fetch: most fetchers never see one. */
  get client(): S3Client {
    return (this.clientValue ??= makeS3Client(this.opts));
  }

  async get(url: string, validator?: Validator): Promise<FetchResult> {
    let loc;
    try {
      loc = parseS3Url(url);
    } catch (e) {
      throw new FetchError((e as Error).message, url, undefined, { cause: e });
    }
    const Key = loc.prefix.replace(/\/$/, "");
    const attempts = this.opts.maxAttempts ?? 5;
    let last: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await sleep((this.opts.backoffMs ?? 200) * 2 ** (attempt - 2));
      try {
        const r = await this.client.send(
          new (s3Sdk().GetObjectCommand)({
            Bucket: loc.bucket,
            Key,
            ...(validator?.etag ? { IfNoneMatch: validator.etag } : {}),
          }),
        );
        const v: Validator = {};
        if (r.ETag) v.etag = r.ETag;
        if (r.LastModified) v.lastModified = r.LastModified.toUTCString();
        const out: FetchResult = { status: "ok", body: r.Body as Readable, validator: v };
        if (r.ContentLength !== undefined) out.size = r.ContentLength;
        return out;
      } catch (e) {
        const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (status === 304) return { status: "not-modified" };
        const name = (e as { name?: string }).name;
        if (status === 404 || name === "NoSuchKey" || name === "NoSuchBucket")
          throw new FetchError(`${url}: not found${name === "NoSuchBucket" ? " (no such bucket)" : ""}`, url, 404, {
            cause: e,
          });
        last = e;
        if (!isTransient(e)) break;
      }
    }
    const status = (last as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    throw new FetchError(`${url}: ${(last as Error).name ?? "error"}: ${(last as Error).message}`, url, status, {
      cause: last,
    });
  }
}
