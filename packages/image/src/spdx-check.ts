// The fields SPDX 2.3 requires of a JSON document kiln writes (the
// specification's mandatory document creation fields and, per package, the
// identifier, name, download location and — with filesAnalyzed — the
// verification code), as a schema: every problem names its JSON path.

import { z } from "zod";

const SPDX_ID = /^SPDXRef-[A-Za-z0-9.-]+$/;
const NONE = /^(NONE|NOASSERTION)$/;
/** A download location: NONE, NOASSERTION, a URL, or a VCS location (git+URL[@REV]). */
const LOCATION = /^(NONE|NOASSERTION|(https?|ftp|sftp):\/\/\S+|(git|hg|svn|bzr)\+\S+)$/;
const ALGORITHMS = ["SHA1", "SHA224", "SHA256", "SHA384", "SHA512", "SHA3-256", "SHA3-384", "SHA3-512", "MD5"];
const HEX_LENGTH: Record<string, number> = { SHA1: 40, SHA224: 56, SHA256: 64, SHA384: 96, SHA512: 128, MD5: 32 };

const checksum = z
  .object({ algorithm: z.enum(ALGORITHMS as [string, ...string[]]), checksumValue: z.string().regex(/^[0-9a-f]+$/) })
  .refine((c) => HEX_LENGTH[c.algorithm] === undefined || c.checksumValue.length === HEX_LENGTH[c.algorithm], {
    message: "checksumValue has the wrong length for its algorithm",
  });

const spdxPackage = z
  .object({
    SPDXID: z.string().regex(SPDX_ID),
    name: z.string().min(1),
    versionInfo: z.string().optional(),
    downloadLocation: z.string().regex(LOCATION, "expected NONE, NOASSERTION, a URL or a VCS location"),
    filesAnalyzed: z.boolean().optional(),
    packageVerificationCode: z.object({ packageVerificationCodeValue: z.string() }).optional(),
    checksums: z.array(checksum).optional(),
    licenseConcluded: z.string().optional(),
    licenseDeclared: z.string().optional(),
    copyrightText: z.string().optional(),
    externalRefs: z
      .array(
        z.object({
          referenceCategory: z.enum(["SECURITY", "PACKAGE-MANAGER", "PERSISTENT-ID", "OTHER"]),
          referenceType: z.string().min(1),
          referenceLocator: z.string().regex(/^\S+$/),
        }),
      )
      .optional(),
  })
  .refine((p) => p.filesAnalyzed === false || p.packageVerificationCode !== undefined, {
    message: "filesAnalyzed is true (the default) but there is no packageVerificationCode",
  });

export const spdx23Schema = z.object({
  spdxVersion: z.literal("SPDX-2.3"),
  dataLicense: z.literal("CC0-1.0"),
  SPDXID: z.literal("SPDXRef-DOCUMENT"),
  name: z.string().min(1),
  documentNamespace: z.string().url(),
  creationInfo: z.object({
    created: z.string().regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, "expected YYYY-MM-DDThh:mm:ssZ"),
    creators: z.array(z.string().regex(/^(Person|Organization|Tool): \S/)).min(1),
  }),
  packages: z.array(spdxPackage).optional(),
  relationships: z
    .array(
      z.object({
        spdxElementId: z.string().regex(SPDX_ID),
        relationshipType: z.string().regex(/^[A-Z_]+$/),
        relatedSpdxElement: z.string().regex(new RegExp(`${SPDX_ID.source}|${NONE.source}`)),
      }),
    )
    .optional(),
});

/** The problems of an SPDX 2.3 JSON document (empty when it has every required field). */
export function spdx23Problems(doc: unknown): string[] {
  const r = spdx23Schema.safeParse(doc);
  const problems = r.success ? [] : r.error.issues.map((i) => `${i.path.join(".") || "(document)"}: ${i.message}`);
  if (r.success) {
    const ids = new Set((r.data.packages ?? []).map((p) => p.SPDXID));
    for (const rel of r.data.relationships ?? [])
      for (const id of [rel.spdxElementId, rel.relatedSpdxElement])
        if (id !== "SPDXRef-DOCUMENT" && !NONE.test(id) && !ids.has(id))
          problems.push(`relationships: ${id} is not an element of the document`);
    if (
      !(r.data.relationships ?? []).some(
        (x) => x.spdxElementId === "SPDXRef-DOCUMENT" && x.relationshipType === "DESCRIBES",
      )
    )
      problems.push("relationships: the document DESCRIBES nothing");
  }
  return problems;
}
