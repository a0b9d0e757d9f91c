// Signatures and attestations stored the way cosign stores them, so that
// `cosign verify` / `cosign verify-attestation` (legacy, non-bundle format)
// read them: an image manifest under the tag sha256-<hex>.sig (.att) whose
// layers are the signed payloads, each with its signature in an annotation.
// Each new payload is also pushed as an OCI 1.1 referrer of the image
// (subject = the image); registries without the referrers API get the
// referrers tag schema's index (tag sha256-<hex>) kept up to date instead.

import { createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { formatImageRef } from "../oci/push.js";
import { SignError } from "./errors.js";
import { MAX_MANIFEST_BYTES, sha256Digest, type SigningRegistry } from "./registry.js";

export const SIMPLE_SIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json";
export const DSSE_TYPE = "application/vnd.dsse.envelope.v1+json";
export const IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";
export const SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
/** cosign's artifactType for an attachment NAME ("sig", "att") stored as an OCI 1.1 referrer. */
export const artifactType = (name: "sig" | "att") => `application/vnd.dev.cosign.artifact.${name}.v1+json`;

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_EMPTY = "application/vnd.oci.empty.v1+json";
const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** Attestation envelopes kiln reads back (to replace its own) are at most this big. */
const MAX_ENVELOPE_BYTES = 64 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  artifactType?: string;
}

/** A payload to attach: its bytes, media type and layer annotations. */
interface Attachment {
  bytes: Buffer;
  mediaType: string;
  annotations: Record<string, string>;
}

/** cosign's "simple signing" payload for the image DIGEST in repository DOCKERREF (registry/repository). */
export function simpleSigningPayload(dockerReference: string, digest: string): Buffer {
  const payload = {
    critical: {
      identity: { "docker-reference": dockerReference },
      image: { "docker-manifest-digest": digest },
      type: "cosign container image signature",
    },
    optional: null,
  };
  return Buffer.from(JSON.stringify(payload));
}

/** DSSE's pre-authentication encoding of a payload, what its signature covers. */
export function dssePae(payloadType: string, payload: Buffer): Buffer {
  const t = Buffer.from(payloadType);
  return Buffer.concat([Buffer.from(`DSSEv1 ${t.length} `), t, Buffer.from(` ${payload.length} `), payload]);
}

/** A DSSE envelope of an in-toto statement, signed with KEY (ECDSA-SHA256, DER signature). */
export function dsseEnvelope(statement: object, key: KeyObject): Buffer {
  const payload = Buffer.from(JSON.stringify(statement));
  const sig = sign("sha256", dssePae(IN_TOTO_PAYLOAD_TYPE, payload), key);
  return Buffer.from(
    JSON.stringify({
      payloadType: IN_TOTO_PAYLOAD_TYPE,
      payload: payload.toString("base64"),
      signatures: [{ keyid: "", sig: sig.toString("base64") }],
    }),
  );
}

/** The cosign tag of an attachment of the image DIGEST: sha256-<hex>.sig / .att. */
export function cosignTag(digest: string, suffix: "sig" | "att"): string {
  return `${digest.replace(":", "-")}.${suffix}`;
}

function canonical(o: unknown): Buffer {
  return Buffer.from(JSON.stringify(o));
}

/** The layers of an existing cosign attachment manifest, each checked to be a descriptor. */
function existingLayers(json: Record<string, unknown> | undefined, what: string): Descriptor[] {
  if (!json) return [];
  const layers = json.layers;
  if (!Array.isArray(layers)) throw new SignError("BAD_MANIFEST", `${what}: "layers" is not a list`);
  return layers.map((l: unknown, i) => {
    const d = l as Partial<Descriptor>;
    if (!d || typeof d.mediaType !== "string" || typeof d.digest !== "string" || !DIGEST.test(d.digest))
      throw new SignError("BAD_MANIFEST", `${what}: layers[${i}] is not a descriptor (mediaType, sha256 digest, size)`);
    if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0)
      throw new SignError("BAD_MANIFEST", `${what}: layers[${i}].size is not a byte count`);
    const ann = d.annotations && typeof d.annotations === "object" ? d.annotations : undefined;
    return { mediaType: d.mediaType, digest: d.digest, size: d.size, ...(ann ? { annotations: ann } : {}) };
  });
}

/** The config of a cosign attachment image: one uncompressed layer per payload. */
function attachmentConfig(layers: Descriptor[]): Buffer {
  const epoch = "0001-01-01T00:00:00Z";
  return canonical({
    architecture: "",
    created: epoch,
    history: layers.map(() => ({ created: epoch })),
    os: "",
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
    config: {},
  });
}

export interface AttachResult {
  /** The tag written (sha256-<hex>.sig / .att). */
  tag: string;
  /** Digest of the manifest under that tag. */
  manifestDigest: string;
  /** Digests of the referrer manifests pushed (one per new payload). */
  referrers: string[];
  /** How referrers are found: the registry's referrers API, or the tag schema's index kiln maintains. */
  referrersVia: "api" | "tag-schema";
  /** Payloads already attached (and signed with this key), so not added again. */
  unchanged: number;
}

/**
 * Attach PAYLOADS to the image DIGEST as cosign does under the tag
 * sha256-<hex>.SUFFIX, keeping the layers already there except those KEEP
 * rejects, and push each new payload as an OCI 1.1 referrer of the image.
 */
async function attach(
  reg: SigningRegistry,
  subject: Descriptor,
  suffix: "sig" | "att",
  payloads: Attachment[],
  keep: (layer: Descriptor) => Promise<"keep" | "drop" | "same">,
): Promise<AttachResult> {
  const tag = cosignTag(subject.digest, suffix);
  const old = await reg.getManifest(tag);
  const layers: Descriptor[] = [];
  let unchanged = 0;
  const fresh: Attachment[] = [];
  const have = new Set<string>();
  for (const l of existingLayers(old?.json, `${formatImageRef({ ...reg.ref, tag })}`)) {
    const verdict = await keep(l);
    if (verdict === "drop") continue;
    layers.push(l);
    if (verdict === "same") have.add(l.digest);
  }
  for (const p of payloads) {
    if (have.has(sha256Digest(p.bytes))) {
      unchanged++;
      continue;
    }
    const digest = await reg.putBlob(p.bytes);
    layers.push({ mediaType: p.mediaType, digest, size: p.bytes.length, annotations: p.annotations });
    fresh.push(p);
  }
  const config = attachmentConfig(layers);
  const configDigest = await reg.putBlob(config);
  const manifest = canonical({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, size: config.length, digest: configDigest },
    layers,
  });
  await reg.putManifest(tag, OCI_MANIFEST, manifest);
  const referrers = await pushReferrers(reg, subject, suffix, fresh);
  return { tag, manifestDigest: sha256Digest(manifest), ...referrers, unchanged };
}

async function pushReferrers(
  reg: SigningRegistry,
  subject: Descriptor,
  suffix: "sig" | "att",
  fresh: Attachment[],
): Promise<{ referrers: string[]; referrersVia: "api" | "tag-schema" }> {
  const type = artifactType(suffix);
  const empty = Buffer.from("{}");
  const emptyDigest = fresh.length ? await reg.putBlob(empty) : "";
  const pushed: Descriptor[] = [];
  let api = false;
  for (const p of fresh) {
    const layer = {
      mediaType: p.mediaType,
      digest: sha256Digest(p.bytes),
      size: p.bytes.length,
      annotations: p.annotations,
    };
    const m = canonical({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: type,
      config: { mediaType: OCI_EMPTY, size: empty.length, digest: emptyDigest },
      layers: [layer],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    });
    const digest = sha256Digest(m);
    const r = await reg.putManifest(digest, OCI_MANIFEST, m);
    api ||= r.subjectTaken;
    const ann = p.annotations.predicateType ? { predicateType: p.annotations.predicateType } : undefined;
    pushed.push({
      mediaType: OCI_MANIFEST,
      digest,
      size: m.length,
      artifactType: type,
      ...(ann ? { annotations: ann } : {}),
    });
  }
  if (!pushed.length) return { referrers: [], referrersVia: "api" };
  if (api || (await reg.hasReferrersApi(subject.digest)))
    return { referrers: pushed.map((d) => d.digest), referrersVia: "api" };
  // The referrers tag schema (OCI distribution 1.1): an index at sha256-<hex> listing the referrers.
  const tag = subject.digest.replace(":", "-");
  const old = await reg.getManifest(tag);
  const listed = Array.isArray(old?.json.manifests) ? (old.json.manifests as Descriptor[]) : [];
  const mine = new Set(pushed.map((d) => d.digest));
  const index = canonical({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [...listed.filter((d) => d && typeof d.digest === "string" && !mine.has(d.digest)), ...pushed],
  });
  if (index.length > MAX_MANIFEST_BYTES)
    throw new SignError("BAD_MANIFEST", `the referrers index ${tag} would exceed ${MAX_MANIFEST_BYTES} bytes`);
  await reg.putManifest(tag, OCI_INDEX, index);
  return { referrers: pushed.map((d) => d.digest), referrersVia: "tag-schema" };
}

/** The descriptor of the image to sign: REF's digest if it names one, else what its tag points at. */
export async function resolveSubject(reg: SigningRegistry): Promise<Descriptor> {
  const reference = reg.ref.digest ?? reg.ref.tag ?? "latest";
  const m = await reg.getManifest(reference);
  if (!m) throw new SignError("NOT_FOUND", `${formatImageRef(reg.ref)}: no such image in the registry (push it first)`);
  return { mediaType: m.mediaType || OCI_MANIFEST, digest: m.digest, size: m.bytes.length };
}

/**
 * Sign the image SUBJECT with KEY as `cosign sign --key` (legacy format):
 * the simple-signing payload, its ECDSA-SHA256 signature in the layer's
 * annotation. A signature by the same key over the same payload is kept, not doubled.
 */
export async function signImage(reg: SigningRegistry, subject: Descriptor, key: KeyObject): Promise<AttachResult> {
  const dockerRef = `${reg.ref.registry}/${reg.ref.repository}`;
  const payload = simpleSigningPayload(dockerRef, subject.digest);
  const pub = createPublicKey(key);
  const payloadDigest = sha256Digest(payload);
  const sig = sign("sha256", payload, key).toString("base64");
  return attach(
    reg,
    subject,
    "sig",
    [{ bytes: payload, mediaType: SIMPLE_SIGNING_TYPE, annotations: { [SIGNATURE_ANNOTATION]: sig } }],
    async (l) => {
      const s = l.annotations?.[SIGNATURE_ANNOTATION];
      if (l.digest !== payloadDigest || typeof s !== "string") return "keep";
      return verify("sha256", payload, pub, Buffer.from(s, "base64")) ? "same" : "keep";
    },
  );
}

/**
 * Attach in-toto STATEMENTS to the image SUBJECT as `cosign attest --key`
 * (legacy format): DSSE envelopes signed with KEY, one layer each with its
 * predicateType annotation. Attestations of the same predicate type signed by
 * this key are replaced; others' are kept.
 */
export async function attestImage(
  reg: SigningRegistry,
  subject: Descriptor,
  key: KeyObject,
  statements: Array<{ predicateType: string }>,
): Promise<AttachResult> {
  const pub = createPublicKey(key);
  const types = new Set(statements.map((s) => s.predicateType));
  const payloads = statements.map((s) => ({
    bytes: dsseEnvelope(s, key),
    mediaType: DSSE_TYPE,
    annotations: { [SIGNATURE_ANNOTATION]: "", predicateType: s.predicateType },
  }));
  return attach(reg, subject, "att", payloads, async (l) => {
    const t = l.annotations?.predicateType;
    if (l.mediaType !== DSSE_TYPE || !t || !types.has(t)) return "keep";
    const blob = await reg.getBlob(l.digest, MAX_ENVELOPE_BYTES);
    return blob && envelopeSignedBy(blob, pub) ? "drop" : "keep";
  });
}

/** Whether the DSSE envelope BYTES carries a signature PUB verifies. */
export function envelopeSignedBy(bytes: Buffer, pub: KeyObject): boolean {
  try {
    const env = JSON.parse(bytes.toString("utf8")) as {
      payloadType?: unknown;
      payload?: unknown;
      signatures?: Array<{ sig?: unknown }>;
    };
    if (typeof env.payloadType !== "string" || typeof env.payload !== "string" || !Array.isArray(env.signatures))
      return false;
    const pae = dssePae(env.payloadType, Buffer.from(env.payload, "base64"));
    return env.signatures.some(
      (s) => typeof s?.sig === "string" && verify("sha256", pae, pub, Buffer.from(s.sig, "base64")),
    );
  } catch {
    return false;
  }
}
