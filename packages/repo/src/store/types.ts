// The ObjectStore: where a published repository lives (a local directory or
// an S3 bucket prefix), reduced to the few operations publishing needs. Every
// write is atomic as readers see it — an object is either the old bytes or
// the new ones, never a torn mix — which is what lets the publisher order its
// writes so the index never names a missing or different object.

import { assertPathComponent, KilnError } from "@kiln/core";
export type StoreErrorCode =
  "NOT_FOUND" | "PRECONDITION_FAILED" | "ACCESS" | "NO_BUCKET" | "TRANSIENT" | "STORE" | "UNSAFE_KEY";

export class StoreError extends KilnError {
  constructor(
    message: string,
    readonly code: StoreErrorCode,
    readonly key?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "StoreError";
  }
}

/** What a listing or a HEAD tells about one object. */
export interface StoredObject {
  /** Relative to the store's root. */
  key: string;
  size: number;
  etag?: string;
  lastModified?: Date;
  /** Lowercase hex SHA-256 of the content, when the store knows it without reading (S3 metadata written by kiln). */
  sha256?: string;
  cacheControl?: string;
  contentType?: string;
}

export type WriteCondition =
  /** Create only: fail with PRECONDITION_FAILED when the key exists (where the store can tell atomically). */
  | { ifAbsent: true }
  /** Replace only the version read before (its etag). */
  | { ifMatch: string };

export interface WriteOptions {
  contentType: string;
  cacheControl: string;
  /** Lowercase hex SHA-256 of the bytes: sent as the upload checksum and kept as metadata. */
  sha256: string;
  condition?: WriteCondition;
}

/** Bytes to write: in memory, or a file (streamed, multipart when large). */
export type WriteSource = Buffer | { path: string; size: number };

export interface StoreEvent {
  kind: "retry" | "multipart";
  key: string;
  detail: string;
}

export interface ObjectStore {
  /** Where this store points, for messages: `s3://bucket/prefix` or a directory. */
  readonly location: string;
  /** What consumers would use as the repository URL (an s3:// URL or the directory). */
  readonly repositoryUrl: string;
  head(key: string): Promise<StoredObject | undefined>;
  get(key: string): Promise<{ body: Buffer; etag?: string } | undefined>;
  /** Every object whose key starts with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<StoredObject>;
  /** Atomic create or replace (see the condition). */
  write(key: string, source: WriteSource, opts: WriteOptions): Promise<{ etag?: string }>;
  delete(key: string): Promise<void>;
  /** Finish deferred housekeeping (S3: delete staging copies). */
  flush(): Promise<void>;
  /** Finish housekeeping and release connections. */
  close(): Promise<void>;
}

export function isStoreError(e: unknown, code?: StoreErrorCode): e is StoreError {
  return e instanceof StoreError && (code === undefined || e.code === code);
}

/**
 * The segments of a store key, refusing a key any of whose `/`-separated
 * segments is not one plain path segment (empty, `.`, `..`, control
 * characters): a key names exactly one object below the store's root, never
 * another architecture's directory or something beside the prefix. A listing
 * prefix (`prefix: true`) may be empty or end in `/`.
 */
export function storeKeySegments(key: string, location: string, opts: { prefix?: boolean } = {}): string[] {
  if (opts.prefix && key === "") return [];
  const segments = key.split("/");
  if (opts.prefix && segments.length > 1 && segments[segments.length - 1] === "") segments.pop();
  try {
    for (const s of segments) assertPathComponent(s, "key segment");
  } catch (e) {
    throw new StoreError(
      `${location}: refusing key ${JSON.stringify(key)}: ${(e as Error).message}`,
      "UNSAFE_KEY",
      key,
      { cause: e },
    );
  }
  return segments;
}
