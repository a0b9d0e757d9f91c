// RSA keys and APK signatures. Private keys are PKCS#1 PEM, public keys PKIX
// PEM; the public key's file name is the name signatures carry.

import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  sign as rsaSign,
  verify as rsaVerify,
  type KeyObject,
} from "node:crypto";
import { promisify } from "node:util";
import { ApkError } from "./errors.js";

export type SignatureType = "RSA" | "RSA256" | "RSA512";

export const DIGEST_OF: Record<SignatureType, "sha1" | "sha256" | "sha512"> = {
  RSA: "sha1",
  RSA256: "sha256",
  RSA512: "sha512",
};

export const MIN_KEY_BITS = 2048;
export const DEFAULT_KEY_BITS = 4096;

export interface SigningKey {
  /** Name signatures carry: the public key's file name, e.g. `acme.rsa.pub`. */
  name: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/**
 * Whatever makes signatures: an in-process RSA key today (signer.ts's
 * RsaSigner), room for a KMS or cosign-style signer later. It signs the bytes
 * a signature covers with the digest of `type`, and names the public key
 * signatures carry.
 */
export interface Signer {
  /** Name signatures carry: the public key's file name, e.g. `acme.rsa.pub`. */
  readonly name: string;
  readonly publicKey: KeyObject;
  sign(data: Buffer, type: SignatureType): Buffer;
}

function keyBits(k: KeyObject): number {
  return k.asymmetricKeyDetails?.modulusLength ?? 0;
}

function checkRsa(k: KeyObject, subject: string) {
  if (k.asymmetricKeyType !== "rsa") {
    throw new ApkError("INVALID_KEY", `${subject}: expected an RSA key, got ${k.asymmetricKeyType ?? "unknown"}`, {
      subject,
    });
  }
  const bits = keyBits(k);
  if (bits < MIN_KEY_BITS) {
    throw new ApkError(
      "INVALID_KEY",
      `${subject}: RSA key of ${bits} bits is too weak (at least ${MIN_KEY_BITS} required)`,
      { subject },
    );
  }
}

export interface GeneratedKey {
  privatePem: string;
  publicPem: string;
}

export async function generateKey(bits = DEFAULT_KEY_BITS): Promise<GeneratedKey> {
  if (bits < MIN_KEY_BITS)
    throw new ApkError("INVALID_KEY", `refusing to generate a ${bits}-bit key (at least ${MIN_KEY_BITS} required)`);
  const { privateKey, publicKey } = await promisify(generateKeyPair)("rsa", {
    modulusLength: bits,
    publicExponent: 65537,
  });
  return {
    privatePem: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

/** Load a private key; `name` defaults to `<basename>.pub` as abuild and melange do. */
export function parseSigningKey(pem: string | Buffer, name: string, subject = name): SigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: "pem" });
  } catch (e) {
    throw new ApkError("INVALID_KEY", `${subject}: not a PEM private key (${(e as Error).message})`, {
      subject,
      cause: e,
    });
  }
  checkRsa(privateKey, subject);
  return { name, privateKey, publicKey: createPublicKey(privateKey) };
}

export function parsePublicKey(pem: string | Buffer, subject: string): KeyObject {
  let k: KeyObject;
  try {
    k = createPublicKey({ key: pem, format: "pem" });
  } catch (e) {
    throw new ApkError("INVALID_KEY", `${subject}: not a PEM public key (${(e as Error).message})`, {
      subject,
      cause: e,
    });
  }
  if (k.asymmetricKeyType !== "rsa")
    throw new ApkError("INVALID_KEY", `${subject}: expected an RSA public key`, { subject });
  return k;
}

/**
 * Trusted public keys by file name, like /etc/apk/keys. A key below
 * MIN_KEY_BITS may sit in the directory but is never trusted to verify: a
 * signature naming it is UNTRUSTED, as apk-tools 2.14 reports it.
 */
export class Keyring {
  private readonly keys = new Map<string, KeyObject>();

  add(name: string, key: KeyObject | string | Buffer): this {
    this.keys.set(name, typeof key === "string" || Buffer.isBuffer(key) ? parsePublicKey(key, name) : key);
    return this;
  }

  get(name: string): KeyObject | undefined {
    return this.keys.get(name);
  }

  /** Size in bits of the key of that name, if present. */
  bits(name: string): number | undefined {
    const k = this.keys.get(name);
    return k ? keyBits(k) : undefined;
  }

  /** The key of that name if it may verify signatures: present, RSA, at least MIN_KEY_BITS. */
  trusted(name: string): KeyObject | undefined {
    const k = this.keys.get(name);
    return k && k.asymmetricKeyType === "rsa" && keyBits(k) >= MIN_KEY_BITS ? k : undefined;
  }

  names(): string[] {
    return [...this.keys.keys()].sort();
  }

  get size(): number {
    return this.keys.size;
  }
}

export function signDigestInput(
  data: Uint8Array | Uint8Array[],
  key: SigningKey | Signer,
  type: SignatureType,
): Buffer {
  const parts = Array.isArray(data) ? data : [data];
  if ("sign" in key) return key.sign(Buffer.concat(parts), type);
  return rsaSign(DIGEST_OF[type], Buffer.concat(parts), key.privateKey);
}

export function verifySignature(
  data: Uint8Array | Uint8Array[],
  signature: Uint8Array,
  key: KeyObject,
  type: SignatureType,
): boolean {
  // Refused here too, so no caller can be talked into trusting a weak key.
  if (key.asymmetricKeyType !== "rsa" || keyBits(key) < MIN_KEY_BITS) return false;
  const input = Array.isArray(data) ? (data.length === 1 ? data[0]! : Buffer.concat(data)) : data;
  try {
    return rsaVerify(DIGEST_OF[type], input, key, signature);
  } catch {
    // A signature of the wrong length for the key is a mismatch, not a crash.
    return false;
  }
}

/** `.SIGN.RSA256.name` → { type, keyName }; undefined for other names. */
export function parseSignatureName(entryName: string): { type: SignatureType; keyName: string } | undefined {
  const m = /^\.SIGN\.(RSA|RSA256|RSA512)\.(.+)$/.exec(entryName);
  if (!m) return undefined;
  return { type: m[1] as SignatureType, keyName: m[2]! };
}

export function signatureEntryName(type: SignatureType, keyName: string): string {
  return `.SIGN.${type}.${keyName}`;
}
