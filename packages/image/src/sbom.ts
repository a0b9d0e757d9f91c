// SPDX 2.3 SBOM of an image: every installed package, not only those that
// ship an SBOM file of their own. Each package is named by its purl, its
// published URL (NOASSERTION when it came from a local directory: a path of
// the build machine is no download location) and the SHA-256 of its .apk.

import { kilnVersion } from "@kiln/core";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { RepoPackage } from "@kiln/repo";

export interface SbomOptions {
  name: string;
  arch: string;
  created: string;
  /** purl namespace, e.g. the distribution id. */
  namespace: string;
  imageDigest?: string;
  /** The SHA-256 (hex) of each package's .apk file, in the order of the packages. */
  sha256?: ReadonlyArray<string | undefined>;
}

function spdxId(s: string): string {
  return "SPDXRef-Package-" + s.replace(/[^A-Za-z0-9.-]/g, "-");
}

/** `pkg:apk/NAMESPACE/NAME@VERSION?arch=ARCH[&origin=ORIGIN]` (purl-spec's apk type: the namespace is the distribution). */
export function apkPurl(namespace: string, name: string, version: string, arch: string, origin?: string): string {
  const e = encodeURIComponent;
  return `pkg:apk/${e(namespace)}/${e(name)}@${e(version)}?arch=${e(arch)}${origin ? `&origin=${e(origin)}` : ""}`;
}

/** A license field as SPDX accepts it: an expression of identifiers, else NOASSERTION. */
export function spdxLicense(license: string | undefined): string {
  return license && /^[A-Za-z0-9.+\-() ]+$/.test(license) && /[A-Za-z0-9]/.test(license) ? license : "NOASSERTION";
}

/** A package's download location: its http(s) URL; a local directory or file:// repository gives NOASSERTION. */
export function packageDownloadLocation(url: string): string {
  return /^https?:\/\/[^\s]+$/i.test(url) ? url : "NOASSERTION";
}

/** The SHA-256 (hex) of each file, in order. */
export async function fileSha256s(files: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) {
    const h = createHash("sha256");
    for await (const c of createReadStream(f)) h.update(c as Buffer);
    out.push(h.digest("hex"));
  }
  return out;
}

export function imageSbom(pkgs: RepoPackage[], opts: SbomOptions): object {
  const packages = pkgs.map((p, i) => {
    const r = p.record;
    const sha256 = opts.sha256?.[i];
    return {
      SPDXID: spdxId(`${r.name}-${r.version}`),
      name: r.name,
      versionInfo: r.version,
      supplier: "NOASSERTION",
      originator: r.maintainer ? `Person: ${r.maintainer}` : "NOASSERTION",
      downloadLocation: packageDownloadLocation(p.url),
      filesAnalyzed: false,
      licenseConcluded: "NOASSERTION",
      licenseDeclared: spdxLicense(r.license),
      copyrightText: "NOASSERTION",
      description: r.description ?? "",
      ...(r.origin
        ? { sourceInfo: `built from origin package ${r.origin}${r.commit ? ` at commit ${r.commit}` : ""}` }
        : {}),
      checksums: sha256 ? [{ algorithm: "SHA256", checksumValue: sha256 }] : [],
      externalRefs: [
        {
          referenceCategory: "PACKAGE-MANAGER",
          referenceType: "purl",
          referenceLocator: apkPurl(opts.namespace, r.name, r.version, r.arch || opts.arch, r.origin),
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
    creationInfo: { created: opts.created, creators: [`Tool: kiln-${kilnVersion()}`] },
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
    relationships: [
      { spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES", relatedSpdxElement: imageId },
      ...packages.map((p) => ({
        spdxElementId: imageId,
        relationshipType: "CONTAINS",
        relatedSpdxElement: p.SPDXID,
      })),
    ],
  };
}
