// ECDSA P-256 keys in the PEM forms cosign reads: the public key as an SPKI
// "PUBLIC KEY" block (what `cosign verify --key` takes), the private key as
// PKCS#8 "PRIVATE KEY" (what `cosign import-key-pair --key` turns into its
// own encrypted key file). Keys read from files are checked before use.

import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { SignError } from "./errors.js";

export interface SigningKeyPair {
  privatePem: string;
  publicPem: string;
}

/** A new ECDSA P-256 key pair: PKCS#8 PEM private key, SPKI PEM public key. */
export function generateSigningKey(): SigningKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return {
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

/** Key files are small; anything bigger is not a key. */
const MAX_KEY_BYTES = 64 * 1024;

async function readKeyFile(file: string, what: string): Promise<string> {
  let size: number;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new SignError("BAD_KEY", `${what} ${file}: not a regular file`);
    size = st.size;
  } catch (e) {
    if (e instanceof SignError) throw e;
    throw new SignError("BAD_KEY", `${what} ${file}: ${(e as Error).message}`);
  }
  if (size > MAX_KEY_BYTES)
    throw new SignError("BAD_KEY", `${what} ${file}: ${size} bytes; a PEM key is at most ${MAX_KEY_BYTES} bytes`);
  return readFile(file, "utf8");
}

function pemLabel(text: string): string | undefined {
  return /-----BEGIN ([A-Z0-9 ]+)-----/.exec(text)?.[1];
}

function requireP256(key: KeyObject, file: string, what: string): void {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType !== "ec" || curve !== "prime256v1")
    throw new SignError(
      "BAD_KEY",
      `${what} ${file}: a ${key.asymmetricKeyType}${curve ? ` ${curve}` : ""} key; expected ECDSA P-256 (kiln keygen --type ecdsa-p256)`,
    );
}

/** The private signing key in FILE: PKCS#8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY") PEM, P-256. */
export async function loadSigningKey(file: string): Promise<KeyObject> {
  const what = "signing key";
  const text = await readKeyFile(file, what);
  const label = pemLabel(text);
  if (label === "ENCRYPTED SIGSTORE PRIVATE KEY" || label === "ENCRYPTED COSIGN PRIVATE KEY")
    throw new SignError(
      "BAD_KEY",
      `${what} ${file}: a cosign-encrypted key; kiln signs with an unencrypted PKCS#8 P-256 key (kiln keygen --type ecdsa-p256)`,
    );
  if (label !== "PRIVATE KEY" && label !== "EC PRIVATE KEY")
    throw new SignError(
      "BAD_KEY",
      `${what} ${file}: ${label ? `a PEM "${label}" block` : "no PEM block"}; expected a "PRIVATE KEY" (PKCS#8) ECDSA P-256 key`,
    );
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: "pem" });
  } catch (e) {
    throw new SignError("BAD_KEY", `${what} ${file}: cannot be read as a private key (${(e as Error).message})`);
  }
  requireP256(key, file, what);
  return key;
}

/** The public key in FILE (SPKI "PUBLIC KEY" PEM, P-256). */
export async function loadVerifyKey(file: string): Promise<KeyObject> {
  const what = "public key";
  const text = await readKeyFile(file, what);
  if (pemLabel(text) !== "PUBLIC KEY")
    throw new SignError("BAD_KEY", `${what} ${file}: expected a PEM "PUBLIC KEY" (SPKI) block`);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: text, format: "pem" });
  } catch (e) {
    throw new SignError("BAD_KEY", `${what} ${file}: cannot be read as a public key (${(e as Error).message})`);
  }
  requireP256(key, file, what);
  return key;
}
