// SPDX 2.3 SBOM of an image: every installed package, not only those that
// ship an SBOM file of their own.

import { createHash } from "node:crypto";
import type { RepoPackage } from "@kiln/repo";

export interface SbomOptions {
  name: string;
  arch: string;
  created: string;
  /** purl namespace, e.g. the distribution id. */
  namespace: string;
  imageDigest?: string;
}

function spdxId(s: string): string {
  return "SPDXRef-Package-" + s.replace(/[^A-Za-z0-9.-]/g, "-");
}

export function imageSbom(pkgs: RepoPackage[], opts: SbomOptions): object {
  const packages = pkgs.map((p) => {
    const r = p.record;
    const checksums = [];
    if (r.checksum?.startsWith("Q1"))
      checksums.push({ algorithm: "SHA1", checksumValue: Buffer.from(r.checksum.slice(2), "base64").toString("hex") });
    return {
      SPDXID: spdxId(`${r.name}-${r.version}`),
      name: r.name,
      versionInfo: r.version,
      supplier: "NOASSERTION",
      originator: r.maintainer ? `Person: ${r.maintainer}` : "NOASSERTION",
      downloadLocation: p.url,
      filesAnalyzed: false,
      licenseConcluded: "NOASSERTION",
      licenseDeclared: r.license && /^[A-Za-z0-9.+\-() ]+$/.test(r.license) ? r.license : "NOASSERTION",
      copyrightText: "NOASSERTION",
      description: r.description ?? "",
      ...(r.origin
        ? { sourceInfo: `built from origin package ${r.origin}${r.commit ? ` at commit ${r.commit}` : ""}` }
        : {}),
      checksums,
      externalRefs: [
        {
          referenceCategory: "PACKAGE-MANAGER",
          referenceType: "purl",
          referenceLocator: `pkg:apk/${encodeURIComponent(opts.namespace)}/${encodeURIComponent(r.name)}@${encodeURIComponent(r.version)}?arch=${encodeURIComponent(r.arch || opts.arch)}${r.origin ? `&origin=${encodeURIComponent(r.origin)}` : ""}`,
        },
      ],
    };
  });
  const imageId = "SPDXRef-Image";
  const ns = createHash("sha256").update(JSON.stringify(packages)).update(opts.name).digest("hex");
  return {
    spdxVersion: "SPDX-2.3",
    dataLicense: "CC0-1.0",
    SPDXID: "SPDXRef-DOCUMENT",
    name: `${opts.name}-${opts.arch}`,
    documentNamespace: `https://kiln.invalid/spdx/${ns}`,
    creationInfo: { created: opts.created, creators: ["Tool: kiln"] },
    documentDescribes: [imageId],
    packages: [
      {
        SPDXID: imageId,
        name: opts.name,
        versionInfo: opts.imageDigest ?? "NOASSERTION",
        downloadLocation: "NOASSERTION",
        filesAnalyzed: false,
        licenseConcluded: "NOASSERTION",
        licenseDeclared: "NOASSERTION",
        copyrightText: "NOASSERTION",
        primaryPackagePurpose: "CONTAINER",
      },
      ...packages,
    ],
    relationships: packages.map((p) => ({
      spdxElementId: imageId,
      relationshipType: "CONTAINS",
      relatedSpdxElement: p.SPDXID,
    })),
  };
}
