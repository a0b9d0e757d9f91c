// The publishing key: hashing, the published public key and the index signature checked against it, and the key published.

import { createHash } from "node:crypto";
import { checkSignature, Keyring, parsePublicKey, type IndexFile, type SigningKey } from "@kiln/apk";
import { isStoreError, type ObjectStore } from "../store/types.js";
import { PublishError } from "./errors.js";
import type { PublishEvent } from "./events.js";
import { CACHE_NO_CACHE, INDEX_NAME, TYPE_KEY } from "./remote.js";

export function sha256Hex(b: Uint8Array | string): string {
  return createHash("sha256").update(b).digest("hex");
}

export function publicPem(key: SigningKey): string {
  return key.publicKey.export({ type: "spki", format: "pem" }).toString();
}

export function keyring(key: SigningKey): Keyring {
  return new Keyring().add(key.name, key.publicKey);
}

/** Refuse a publishing key other than the one the repository is published with. */
export async function checkPublishedKey(store: ObjectStore, key: SigningKey): Promise<"absent" | "present"> {
  const pem = publicPem(key);
  const head = await store.head(key.name);
  if (!head) return "absent";
  if (head.sha256 === sha256Hex(pem)) return "present";
  const got = await store.get(key.name);
  if (!got) return "absent";
  let same = false;
  try {
    const theirs = parsePublicKey(got.body, `${store.location}/${key.name}`);
    same = theirs.export({ type: "spki", format: "der" }).equals(key.publicKey.export({ type: "spki", format: "der" }));
  } catch {
    same = false;
  }
  if (!same) {
    throw new PublishError(
      `${store.location}/${key.name}: the published public key ${key.name} is not the public half of the signing key; wrong --signing-key?`,
      "WRONG_KEY",
    );
  }
  return "present";
}

export function checkIndexKey(store: ObjectStore, arch: string, idx: IndexFile | undefined, key: SigningKey): void {
  if (!idx) return;
  const c = checkSignature(idx.signatures, idx.body, keyring(key));
  if (c.verdict !== "OK") {
    const names = idx.signatures.map((s) => s.keyName).join(", ") || "nobody (unsigned)";
    throw new PublishError(
      `${store.location}/${arch}/${INDEX_NAME}: signed by ${names}, which the signing key ${key.name} does not match (${c.reason}); wrong --signing-key?`,
      "WRONG_KEY",
    );
  }
}

export async function ensureKey(
  store: ObjectStore,
  key: SigningKey,
  state: "absent" | "present",
  emit: (e: PublishEvent) => void,
): Promise<void> {
  if (state === "present") return;
  const pem = Buffer.from(publicPem(key));
  try {
    await store.write(key.name, pem, {
      contentType: TYPE_KEY,
      cacheControl: CACHE_NO_CACHE,
      sha256: sha256Hex(pem),
      condition: { ifAbsent: true },
    });
    emit({ kind: "key", message: `${key.name}: published` });
  } catch (e) {
    if (!isStoreError(e, "PRECONDITION_FAILED")) throw e;
    await checkPublishedKey(store, key); // someone published it meanwhile: the same key?
  }
}
