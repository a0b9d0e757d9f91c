// Sign an image in a registry and attach kiln's attestations to it: what
// `kiln image sign`, `kiln image push --sign` and `kiln images --push --sign` run.

import type { KeyObject } from "node:crypto";
import type { PushOptions } from "../oci/push.js";
import { attestImage, resolveSubject, signImage, type AttachResult, type Descriptor } from "./cosign.js";
import { SigningRegistry } from "./registry.js";
import { imageStatements, type AttestedImage } from "./statements.js";

export interface SignAndAttestResult {
  /** registry/repository@digest of the image signed. */
  image: string;
  digest: string;
  signature: AttachResult;
  /** Present when attestations were attached: the predicate types, in order. */
  attestations?: AttachResult & { predicateTypes: string[] };
}

/**
 * Sign the image REF (or SUBJECT, when the caller just pushed it) with KEY and,
 * given what the build resolved (BUILD), attach its provenance and SBOMs.
 */
export async function signAndAttest(
  ref: string,
  key: KeyObject,
  opts: PushOptions & {
    subject?: Descriptor;
    build?: Omit<AttestedImage, "name" | "digest">;
  } = {},
): Promise<SignAndAttestResult> {
  const reg = new SigningRegistry(ref, opts);
  const subject = opts.subject ?? (await resolveSubject(reg));
  const name = `${reg.ref.registry}/${reg.ref.repository}`;
  const signature = await signImage(reg, subject, key);
  const out: SignAndAttestResult = { image: `${name}@${subject.digest}`, digest: subject.digest, signature };
  if (opts.build) {
    const statements = imageStatements({ ...opts.build, name, digest: subject.digest });
    const r = await attestImage(reg, subject, key, statements);
    out.attestations = { ...r, predicateTypes: statements.map((s) => s.predicateType) };
  }
  return out;
}
