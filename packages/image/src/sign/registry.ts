// The few registry calls signing needs, on the push client's HTTP side:
// read a manifest (bounded, digest checked), put small blobs and manifests,
// and ask for the referrers API.

import { createHash } from "node:crypto";
import { OciError } from "../oci/errors.js";
import { parseImageRef, RegistryClient, type ImageRef, type PushOptions } from "../oci/push.js";
import { SignError } from "./errors.js";

/** Manifests and indexes kiln reads are small; a bigger answer is refused. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

const ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

export interface FetchedManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
  json: Record<string, unknown>;
}

export function sha256Digest(b: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(b).digest("hex");
}

async function drain(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    /* ignore */
  }
}

async function readBounded(res: Response, limit: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > limit) {
    await drain(res);
    throw new SignError("BAD_MANIFEST", `${what}: ${declared} bytes; at most ${limit} are read`);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  if (res.body)
    for await (const c of res.body as AsyncIterable<Uint8Array>) {
      n += c.length;
      if (n > limit) {
        await drain(res);
        throw new SignError("BAD_MANIFEST", `${what}: more than ${limit} bytes`);
      }
      chunks.push(Buffer.from(c));
    }
  return Buffer.concat(chunks);
}

export class SigningRegistry {
  readonly ref: ImageRef;
  private readonly c: RegistryClient;

  constructor(ref: string | ImageRef, opts: PushOptions = {}) {
    this.ref = typeof ref === "string" ? parseImageRef(ref) : ref;
    this.c = new RegistryClient(this.ref, opts);
  }

  private path(kind: "manifests" | "blobs" | "referrers", reference: string): string {
    return this.c.url(`/v2/${this.ref.repository}/${kind}/${reference}`);
  }

  /** The manifest or index at REFERENCE (tag or digest); undefined when the registry has none. */
  async getManifest(reference: string): Promise<FetchedManifest | undefined> {
    const what = `manifest ${this.ref.registry}/${this.ref.repository}:${reference}`;
    const res = await this.c.send("GET", this.path("manifests", reference), { headers: { accept: ACCEPT } });
    if (res.status === 404) {
      await drain(res);
      return undefined;
    }
    if (res.status !== 200) await this.c.fail(res, `GET ${what}`);
    const bytes = await readBounded(res, MAX_MANIFEST_BYTES, what);
    const digest = sha256Digest(bytes);
    if (reference.startsWith("sha256:") && reference !== digest)
      throw new SignError("BAD_MANIFEST", `${what}: the registry sent content whose digest is ${digest}`);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
    } catch {
      throw new SignError("BAD_MANIFEST", `${what}: not JSON`);
    }
    if (!json || typeof json !== "object" || Array.isArray(json))
      throw new SignError("BAD_MANIFEST", `${what}: not a JSON object`);
    const mediaType =
      typeof json.mediaType === "string"
        ? json.mediaType
        : (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
    return { digest, mediaType, bytes, json };
  }

  /** The blob DIGEST, at most LIMIT bytes, checked against its digest; undefined when absent. */
  async getBlob(digest: string, limit: number): Promise<Buffer | undefined> {
    const res = await this.c.send("GET", this.path("blobs", digest));
    if (res.status === 404) {
      await drain(res);
      return undefined;
    }
    if (res.status !== 200) await this.c.fail(res, `GET blob ${digest}`);
    const bytes = await readBounded(res, limit, `blob ${digest}`);
    if (sha256Digest(bytes) !== digest)
      throw new SignError(
        "BAD_MANIFEST",
        `blob ${digest}: the registry sent content whose digest is ${sha256Digest(bytes)}`,
      );
    return bytes;
  }

  /** Upload BYTES as a blob unless the registry has it. */
  async putBlob(bytes: Uint8Array): Promise<string> {
    const digest = sha256Digest(bytes);
    const head = await this.c.send("HEAD", this.path("blobs", digest));
    await drain(head);
    if (head.status === 200) return digest;
    const start = await this.c.send("POST", this.c.url(`/v2/${this.ref.repository}/blobs/uploads/`), {
      headers: { "content-length": "0" },
    });
    if (start.status !== 202) await this.c.fail(start, `starting the upload of ${digest}`);
    const location = start.headers.get("location");
    await drain(start);
    if (!location) throw new OciError("REGISTRY", `starting the upload of ${digest}: registry gave no Location`);
    const u = new URL(location, this.c.base);
    u.searchParams.set("digest", digest);
    const res = await this.c.send("PUT", u.toString(), {
      headers: { "content-type": "application/octet-stream", "content-length": String(bytes.length) },
      body: () => bytes,
    });
    if (res.status !== 201) await this.c.fail(res, `uploading ${digest}`);
    await drain(res);
    return digest;
  }

  /** Put a manifest at REFERENCE (a tag or its digest); returns whether the registry took its subject (OCI-Subject). */
  async putManifest(reference: string, mediaType: string, bytes: Uint8Array): Promise<{ subjectTaken: boolean }> {
    const res = await this.c.send("PUT", this.path("manifests", reference), {
      headers: { "content-type": mediaType, "content-length": String(bytes.length) },
      body: () => bytes,
    });
    if (res.status !== 201 && res.status !== 200) await this.c.fail(res, `putting manifest ${reference}`);
    const got = res.headers.get("docker-content-digest");
    await drain(res);
    const digest = sha256Digest(bytes);
    if (got && got !== digest)
      throw new OciError("REGISTRY", `registry stored the manifest ${digest} as ${got}`, { subject: digest });
    return { subjectTaken: res.headers.has("oci-subject") };
  }

  /** Whether the registry serves the referrers API (GET /v2/NAME/referrers/DIGEST answers 200). */
  async hasReferrersApi(digest: string): Promise<boolean> {
    const res = await this.c.send("GET", this.path("referrers", digest), {
      headers: { accept: "application/vnd.oci.image.index.v1+json" },
    });
    await drain(res);
    return res.status === 200;
  }
}
