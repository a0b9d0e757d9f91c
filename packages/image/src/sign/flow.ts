// Sign an image in a registry and attach kiln's attestations to it: what
// `kiln image sign`, `kiln image push --sign` and `kiln images --push --sign` run.

import type { KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { ResolvedImage } from "../build.js";
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
    /** Attach the attestations only when the signature is new (an image signed before is left as it is). */
    onlyIfUnsigned?: boolean;
  } = {},
): Promise<SignAndAttestResult> {
  const reg = new SigningRegistry(ref, opts);
  const subject = opts.subject ?? (await resolveSubject(reg));
  const name = `${reg.ref.registry}/${reg.ref.repository}`;
  const signature = await signImage(reg, subject, key);
  const out: SignAndAttestResult = { image: `${name}@${subject.digest}`, digest: subject.digest, signature };
  if (opts.build && !(opts.onlyIfUnsigned && signature.unchanged)) {
    const statements = imageStatements({ ...opts.build, name, digest: subject.digest });
    const r = await attestImage(reg, subject, key, statements);
    out.attestations = { ...r, predicateTypes: statements.map((s) => s.predicateType) };
  }
  return out;
}

/** What the attestations of a built image are made from: its config, its packages and the SPDX SBOMs the build wrote. */
export async function attestationInputs(
  config: object,
  built: { resolved: ResolvedImage[]; sboms: string[]; created: string },
  distro: string,
): Promise<Omit<AttestedImage, "name" | "digest">> {
  const archs: AttestedImage["archs"] = [];
  for (const [i, r] of built.resolved.entries()) {
    const file = built.sboms[i];
    const doc = file ? (JSON.parse(await readFile(file, "utf8")) as { name?: unknown }) : undefined;
    // The build writes one SBOM per architecture, named NAME-ARCH; one that is not this arch's is not used.
    const spdx = typeof doc?.name === "string" && doc.name.endsWith(`-${r.arch}`) ? doc : undefined;
    archs.push({ arch: r.arch, packages: r.resolution.packages, ...(spdx ? { spdx } : {}) });
  }
  return { config, archs, created: built.created, distro };
}
