// The signature member shared by packages and indexes: a gzip member holding
// one `.SIGN.<TYPE>.<keyname>` file per signature and no end-of-archive blocks.

import { createHash } from "node:crypto";
import { gzipMember } from "./gzip.js";
import {
  DIGEST_OF,
  MIN_KEY_BITS,
  signDigestInput,
  signatureEntryName,
  verifySignature,
  type Keyring,
  type SignatureType,
  type Signer,
  type SigningKey,
} from "./keys.js";
import { encodeHeader, padding } from "./tar.js";
import type { SignatureEntry } from "./package-read.js";

export interface SignOptions {
  type?: SignatureType;
  /** mtime of the signature entry. */
  sourceDateEpoch?: number;
}

/** Build the compressed signature member over `signed` with one or more keys. */
export function buildSignatureMember(
  signed: Uint8Array | Uint8Array[],
  keys: ReadonlyArray<SigningKey | Signer>,
  opts: SignOptions = {},
): Buffer {
  const type = opts.type ?? "RSA256";
  const parts: Uint8Array[] = [];
  for (const key of keys) {
    const sig = signDigestInput(signed, key, type);
    parts.push(
      encodeHeader({
        path: signatureEntryName(type, key.name),
        type: "file",
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: sig.length,
        mtime: opts.sourceDateEpoch ?? 0,
      }),
      sig,
      new Uint8Array(padding(sig.length)),
    );
  }
  return gzipMember(Buffer.concat(parts));
}

export type Verdict = "OK" | "UNTRUSTED" | "BAD signature" | "BAD archive";

export interface SignatureCheck {
  verdict: Verdict;
  reason: string;
  keyName?: string;
}

/**
 * apk uses the first signature whose key name exists in the keys directory
 * (and loads); later signatures are not tried even if that one fails. A key
 * below MIN_KEY_BITS counts as not loadable.
 */
export function chooseSignature(signatures: readonly SignatureEntry[], keyring: Keyring): SignatureEntry | undefined {
  return signatures.find((s) => keyring.trusted(s.keyName) !== undefined);
}

export function checkSignature(
  signatures: readonly SignatureEntry[],
  signed: Uint8Array | Uint8Array[],
  keyring: Keyring,
): SignatureCheck {
  if (signatures.length === 0) return { verdict: "UNTRUSTED", reason: "not signed" };
  const sig = chooseSignature(signatures, keyring);
  if (!sig) {
    const weak = signatures.find((s) => keyring.get(s.keyName) !== undefined);
    if (weak) {
      return {
        verdict: "UNTRUSTED",
        reason: `key ${weak.keyName} is a ${keyring.bits(weak.keyName)}-bit RSA key, too weak to trust (at least ${MIN_KEY_BITS} bits)`,
        keyName: weak.keyName,
      };
    }
    return { verdict: "UNTRUSTED", reason: `no trusted key named ${signatures.map((s) => s.keyName).join(", ")}` };
  }
  const ok = verifySignature(signed, sig.signature, keyring.trusted(sig.keyName)!, sig.type);
  return ok
    ? { verdict: "OK", reason: `signed by ${sig.keyName} (${sig.type})`, keyName: sig.keyName }
    : {
        verdict: "BAD signature",
        reason: `signature by ${sig.keyName} (${sig.type}) does not match`,
        keyName: sig.keyName,
      };
}

export function digestHex(type: SignatureType, data: Uint8Array[]): string {
  const h = createHash(DIGEST_OF[type]);
  for (const d of data) h.update(d);
  return h.digest("hex");
}
