// What is published, as the publisher sees it: per architecture the signed
// index, the package objects actually present, and the withdrawal markers.
//
// Layout under the store root:
//   KEYNAME                       the public key (PEM)
//   ARCH/APKINDEX.tar.gz          the index (no-cache)
//   ARCH/index.html               the browsable page (no-cache)
//   ARCH/NAME-VERSION.apk         packages (immutable)
//   ARCH/.kiln/withdrawn/NAME-VERSION   marker: withdrawn, keep out of the index
//   .kiln/staging/…               S3 upload staging (deleted after the copy)
//
// The package objects present (less the withdrawn) are the truth the index
// converges to; the index is a signed cache of their records.

import { assertPathComponent, sleep } from "@kiln/core";
import { ApkError, openPackage, readIndex, type IndexFile, type IndexRecord } from "@kiln/apk";
import type { ObjectStore, StoredObject } from "../store/types.js";
import { PublishError } from "./errors.js";

export const INDEX_NAME = "APKINDEX.tar.gz";
export const HTML_NAME = "index.html";
export const WITHDRAWN_DIR = ".kiln/withdrawn/";
export const CACHE_IMMUTABLE = "public, max-age=31536000, immutable";
export const CACHE_NO_CACHE = "no-cache";
export const TYPE_APK = "application/octet-stream";
export const TYPE_INDEX = "application/gzip";
export const TYPE_KEY = "application/x-pem-file";
export const TYPE_HTML = "text/html; charset=utf-8";

export const idOf = (r: { name: string; version: string }): string => `${r.name}-${r.version}`;
/** ARCH/NAME-VERSION.apk; refuses an arch or id that is not one plain path segment (`../aarch64/x` must not reach another architecture). */
export const packageKey = (arch: string, id: string): string =>
  `${assertPathComponent(arch, "architecture")}/${assertPathComponent(`${id}.apk`, "package file name")}`;

export interface RemoteIndex {
  file: IndexFile;
  etag?: string;
}

export interface ArchListing {
  /** Package objects directly under ARCH/, by NAME-VERSION. */
  objects: Map<string, StoredObject>;
  withdrawn: Set<string>;
}

/**
 * Read ARCH/APKINDEX.tar.gz. A torn read (a concurrent writer on a server
 * whose writes are not atomic) is retried before it is reported.
 */
export async function readRemoteIndex(
  store: ObjectStore,
  arch: string,
  attempts = 4,
): Promise<RemoteIndex | undefined> {
  const key = `${arch}/${INDEX_NAME}`;
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    if (i) await sleep(150 * 2 ** i);
    const got = await store.get(key);
    if (!got) return undefined;
    try {
      const file = await readIndex(got.body, { subject: `${store.location}/${key}` });
      return got.etag ? { file, etag: got.etag } : { file };
    } catch (e) {
      if (!(e instanceof ApkError)) throw e;
      last = e;
    }
  }
  throw new PublishError(`${store.location}/${key}: not a valid index: ${(last as Error).message}`, "BAD_REMOTE", [], {
    cause: last,
  });
}

export async function listArch(store: ObjectStore, arch: string): Promise<ArchListing> {
  const objects = new Map<string, StoredObject>();
  const withdrawn = new Set<string>();
  for await (const o of store.list(`${arch}/`)) {
    const rel = o.key.slice(arch.length + 1);
    if (rel.startsWith(WITHDRAWN_DIR)) {
      withdrawn.add(rel.slice(WITHDRAWN_DIR.length));
    } else if (!rel.includes("/") && !rel.startsWith(".") && rel.endsWith(".apk")) {
      objects.set(rel.slice(0, -4), o);
    }
  }
  return { objects, withdrawn };
}

/** The index record of a package's bytes (reads it fully: structure and datahash are checked). */
export async function recordFromBytes(body: Buffer, subject: string): Promise<IndexRecord> {
  const reader = await openPackage(
    (async function* () {
      yield body;
    })(),
    { subject },
  );
  try {
    await reader.drain();
    const { info, checksum } = reader.head;
    const rec: IndexRecord = { ...info, extra: [], checksum, fileSize: body.length, unknownFields: [] };
    delete rec.dataHash;
    return rec;
  } finally {
    await reader.close();
  }
}

/**
 * The record of a package object in the store, or an error message when it
 * cannot be read as a package (retried: it may be mid-copy on a server whose
 * writes are not atomic).
 */
export async function readPackageObject(
  store: ObjectStore,
  arch: string,
  id: string,
  attempts = 3,
): Promise<{ record: IndexRecord } | { error: string } | undefined> {
  const key = packageKey(arch, id);
  let error = "";
  for (let i = 0; i < attempts; i++) {
    if (i) await sleep(200 * i);
    const got = await store.get(key);
    if (!got) return undefined;
    try {
      const record = await recordFromBytes(got.body, `${store.location}/${key}`);
      if (idOf(record) !== id) return { error: `${store.location}/${key}: contains ${idOf(record)}` };
      if (record.arch !== arch) return { error: `${store.location}/${key}: a package for arch ${record.arch}` };
      return { record };
    } catch (e) {
      if (!(e instanceof ApkError)) throw e;
      error = e.message;
    }
  }
  return { error };
}

/** Architectures published under the store: directories holding an index. */
export async function discoverArchs(store: ObjectStore): Promise<string[]> {
  const archs = new Set<string>();
  for await (const o of store.list("")) {
    const m = /^([^/.][^/]*)\/APKINDEX\.tar\.gz$/.exec(o.key);
    if (m) archs.add(m[1]!);
  }
  return [...archs].sort();
}
