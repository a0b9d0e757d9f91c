// A package's SLSA provenance (PACKAGE.apk.intoto.json, written by kiln build
// beside the .apk) travels with it: uploaded next to the package object when
// its subject is the bytes being published, deleted with it. A re-signed
// package is other bytes than the build wrote, so its provenance would not
// verify: it is left out, with a warning.

import { open } from "node:fs/promises";
import { isStoreError, type ObjectStore } from "../store/types.js";
import type { PublishEvent } from "./events.js";
import { CACHE_IMMUTABLE, packageKey } from "./remote.js";
import { createHash } from "node:crypto";

export const PROVENANCE_SUFFIX = ".intoto.json";
const MAX_BYTES = 16 * 1024 * 1024;

/** The object key of a package's provenance: ARCH/NAME-VERSION.apk.intoto.json. */
export function provenanceKey(arch: string, id: string): string {
  return packageKey(arch, id) + PROVENANCE_SUFFIX;
}

async function readSmall(file: string): Promise<Buffer | undefined> {
  const fh = await open(file, "r").catch(() => undefined);
  if (!fh) return undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > MAX_BYTES) return undefined;
    const buf = Buffer.alloc(st.size);
    await fh.read(buf, 0, st.size, 0);
    return buf;
  } finally {
    await fh.close();
  }
}

/** Whether the statement's subjects include the published bytes. */
function namesBytes(text: Buffer, sha256: string): boolean {
  try {
    let s = JSON.parse(text.toString("utf8")) as {
      subject?: Array<{ digest?: { sha256?: unknown } }>;
      payload?: unknown;
    };
    // A DSSE envelope (as kiln build writes it): the statement is its payload.
    if (typeof s.payload === "string") s = JSON.parse(Buffer.from(s.payload, "base64").toString("utf8")) as typeof s;
    return Array.isArray(s.subject) && s.subject.some((x) => x?.digest?.sha256 === sha256);
  } catch {
    return false;
  }
}

/** Upload LOCALFILE.intoto.json beside the package object, if there is one for exactly these bytes. */
export async function uploadProvenance(
  store: ObjectStore,
  p: { arch: string; id: string; file: string },
  prep: { sha256: string; resigned: boolean },
  emit: (e: PublishEvent) => void,
): Promise<boolean> {
  const text = await readSmall(p.file + PROVENANCE_SUFFIX);
  if (!text) return false;
  const key = provenanceKey(p.arch, p.id);
  if (prep.resigned || !namesBytes(text, prep.sha256)) {
    emit({
      kind: "warning",
      arch: p.arch,
      id: p.id,
      message: `${key}: not published: ${prep.resigned ? "the package was re-signed, so it is not the file the provenance names" : "its subject is not this package's sha256"}`,
    });
    return false;
  }
  try {
    await store.write(key, text, {
      contentType: "application/vnd.in-toto+json",
      cacheControl: CACHE_IMMUTABLE,
      sha256: createHash("sha256").update(text).digest("hex"),
      condition: { ifAbsent: true },
    });
  } catch (e) {
    if (!isStoreError(e, "PRECONDITION_FAILED")) throw e; // already there: the package was published before
  }
  return true;
}
