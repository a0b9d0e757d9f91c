// DSSE envelopes (the signature wrapper of in-toto attestations) around a
// provenance statement, signed with the repository's RSA key: the signature
// covers DSSE's pre-authentication encoding of the payload type and bytes,
// with RSA PKCS#1 v1.5 over SHA-256, which is deterministic, so the same
// statement and key give the same envelope bytes.

import { sign } from "node:crypto";
import { verifySignature, type Keyring, type SigningKey } from "@kiln/apk";

export const IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";

export interface Envelope {
  payloadType: string;
  payload: string;
  signatures: Array<{ keyid: string; sig: string }>;
}

/** DSSE's pre-authentication encoding: "DSSEv1 LEN(type) type LEN(body) body". */
export function pae(payloadType: string, body: Buffer): Buffer {
  const type = Buffer.from(payloadType, "utf8");
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body]);
}

/** The statement wrapped and signed by `key` (keyid = the key's file name, as apk names keys). */
export function signEnvelope(statement: string, key: SigningKey): string {
  const body = Buffer.from(statement, "utf8");
  const sig = sign("sha256", pae(IN_TOTO_PAYLOAD_TYPE, body), key.privateKey).toString("base64");
  const env: Envelope = {
    payloadType: IN_TOTO_PAYLOAD_TYPE,
    payload: body.toString("base64"),
    signatures: [{ keyid: key.name, sig }],
  };
  return JSON.stringify(env, null, 2) + "\n";
}

export function isEnvelope(v: unknown): v is Envelope {
  const e = v as Envelope;
  return (
    typeof e === "object" &&
    e !== null &&
    typeof e.payloadType === "string" &&
    typeof e.payload === "string" &&
    Array.isArray(e.signatures) &&
    e.signatures.every((s) => typeof s?.keyid === "string" && typeof s?.sig === "string")
  );
}

/** The key names among the envelope's signatures that a trusted key of the ring verifies. */
export function verifiedSigners(env: Envelope, ring: Keyring): string[] {
  const data = pae(env.payloadType, Buffer.from(env.payload, "base64"));
  return env.signatures
    .filter((s) => {
      const key = ring.trusted(s.keyid);
      return key !== undefined && verifySignature(data, Buffer.from(s.sig, "base64"), key, "RSA256");
    })
    .map((s) => s.keyid);
}
