// The in-toto statements kiln attests about an image: SLSA provenance v1 (the
// image config and every resolved package), and per architecture an SPDX 2.3
// and a CycloneDX 1.6 SBOM. Deterministic: the same build gives the same statements.

import { createHash } from "node:crypto";
import { basename } from "node:path";
import { kilnVersion } from "@kiln/core";
import type { RepoPackage } from "@kiln/repo";
import { imageSbom } from "../sbom.js";

export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
export const SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1";
export const SPDX_DOCUMENT = "https://spdx.dev/Document";
export const CYCLONEDX_BOM = "https://cyclonedx.org/bom";
/** What a kiln image build is: its externalParameters are the image config, its dependencies the packages. */
export const IMAGE_BUILD_TYPE = "https://kiln.invalid/buildtypes/image/v1";

export interface AttestedImage {
  /** registry/repository the image is pushed to (the statements' subject name). */
  name: string;
  /** The image's digest (its index, as pushed). */
  digest: string;
  /** The image config as loaded (ImageConfig); its file path is reduced to the file name. */
  config: object;
  /** Per architecture: the packages installed and, when the build wrote one, its SPDX SBOM document. */
  archs: Array<{ arch: string; packages: RepoPackage[]; spdx?: object }>;
  /** The image's creation time (RFC 3339). */
  created: string;
  /** purl namespace of the packages: the distribution id. */
  distro: string;
}

export interface Statement {
  _type: string;
  subject: Array<{ name: string; digest: Record<string, string> }>;
  predicateType: string;
  predicate: object;
}

function statement(img: AttestedImage, predicateType: string, predicate: object): Statement {
  return {
    _type: STATEMENT_TYPE,
    subject: [{ name: img.name, digest: { sha256: img.digest.replace(/^sha256:/, "") } }],
    predicateType,
    predicate,
  };
}

/** The config as JSON: byte strings as their sha256, the config file as its name (not a path on this machine). */
function configJson(cfg: object): unknown {
  return JSON.parse(
    JSON.stringify(cfg, function (this: unknown, k, v: unknown) {
      if (k === "file" && this === cfg && typeof v === "string") return basename(v);
      const b = v as { type?: unknown; data?: unknown };
      if (b && b.type === "Buffer" && Array.isArray(b.data))
        return {
          sha256: createHash("sha256")
            .update(Buffer.from(b.data as number[]))
            .digest("hex"),
        };
      return v;
    }),
  );
}

/** apk's C: checksum ("Q1" + base64 SHA-1 of the package's control segment) as hex, or undefined. */
export function apkChecksumHex(c: string | undefined): string | undefined {
  if (!c?.startsWith("Q1")) return undefined;
  const hex = Buffer.from(c.slice(2), "base64").toString("hex");
  return hex.length === 40 ? hex : undefined;
}

/** The digest-set key for apk's C: checksum: it hashes the control segment, not the whole .apk file. */
export const APK_CHECKSUM_DIGEST = "apk-control-sha1";

export function purl(distro: string, p: RepoPackage, arch: string): string {
  const r = p.record;
  const e = encodeURIComponent;
  return `pkg:apk/${e(distro)}/${e(r.name)}@${e(r.version)}?arch=${e(r.arch || arch)}${r.origin ? `&origin=${e(r.origin)}` : ""}`;
}

/** name@version → the SHA-256 of its .apk file, as the build's SPDX document records it. */
export function spdxSha256s(doc: object | undefined): Map<string, string> {
  const out = new Map<string, string>();
  const pkgs = (doc as { packages?: unknown } | undefined)?.packages;
  if (!Array.isArray(pkgs)) return out;
  for (const p of pkgs as Array<{ name?: unknown; versionInfo?: unknown; checksums?: unknown }>) {
    if (typeof p?.name !== "string" || typeof p.versionInfo !== "string" || !Array.isArray(p.checksums)) continue;
    const c = (p.checksums as Array<{ algorithm?: unknown; checksumValue?: unknown }>).find(
      (x) => x?.algorithm === "SHA256" && typeof x.checksumValue === "string" && /^[0-9a-f]{64}$/.test(x.checksumValue),
    );
    if (c) out.set(`${p.name}@${p.versionInfo}`, c.checksumValue as string);
  }
  return out;
}

/** A package's digest set: the SHA-256 of its .apk when known, and apk's C: checksum. */
function packageDigests(p: RepoPackage, sha256: Map<string, string>): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  const file = sha256.get(`${p.record.name}@${p.record.version}`);
  if (file) out.sha256 = file;
  const hex = apkChecksumHex(p.record.checksum);
  if (hex) out[APK_CHECKSUM_DIGEST] = hex;
  return Object.keys(out).length ? out : undefined;
}

export function slsaProvenance(img: AttestedImage): Statement {
  const version = kilnVersion();
  const deps = img.archs.flatMap(({ arch, packages, spdx }) => {
    const sha256 = spdxSha256s(spdx);
    return packages.map((p) => {
      const digest = packageDigests(p, sha256);
      return {
        name: purl(img.distro, p, arch),
        uri: p.url,
        ...(digest ? { digest } : {}),
        annotations: { arch: p.record.arch || arch, version: p.record.version, repository: p.repo.url },
      };
    });
  });
  return statement(img, SLSA_PROVENANCE_V1, {
    buildDefinition: {
      buildType: IMAGE_BUILD_TYPE,
      externalParameters: { config: configJson(img.config), archs: img.archs.map((a) => a.arch) },
      internalParameters: { created: img.created },
      resolvedDependencies: deps,
    },
    runDetails: {
      builder: { id: `https://kiln.invalid/builder/kiln@${version}`, version: { kiln: version } },
      metadata: { invocationId: img.digest },
    },
  });
}

function imageName(img: AttestedImage): string {
  return img.name.split("/").pop() ?? img.name;
}

export function spdxSbom(img: AttestedImage, arch: string, packages: RepoPackage[], written?: object): Statement {
  if (written) return statement(img, SPDX_DOCUMENT, written);
  const doc = imageSbom(packages, {
    name: imageName(img),
    arch,
    created: img.created,
    namespace: img.distro,
    imageDigest: img.digest,
  });
  return statement(img, SPDX_DOCUMENT, doc);
}

/** A UUID made from a hash (version 5 layout), so the same BOM gets the same serial number. */
function hashUuid(h: string): string {
  const b = Buffer.from(h.slice(0, 32), "hex");
  b[6] = (b[6]! & 0x0f) | 0x50;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const x = b.toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

const SPDX_EXPRESSION = /^[A-Za-z0-9.+\-() ]+$/;

export function cyclonedxSbom(img: AttestedImage, arch: string, packages: RepoPackage[], spdx?: object): Statement {
  const sha256 = spdxSha256s(spdx);
  const components = packages.map((p) => {
    const r = p.record;
    const ref = purl(img.distro, p, arch);
    const file = sha256.get(`${r.name}@${r.version}`);
    const props = [
      ...(r.origin ? [{ name: "kiln:apk:origin", value: r.origin }] : []),
      ...(r.commit ? [{ name: "kiln:apk:commit", value: r.commit }] : []),
      ...(r.checksum ? [{ name: "kiln:apk:checksum", value: r.checksum }] : []),
    ];
    return {
      type: "library",
      "bom-ref": ref,
      name: r.name,
      version: r.version,
      ...(r.description ? { description: r.description } : {}),
      ...(r.license && SPDX_EXPRESSION.test(r.license) ? { licenses: [{ expression: r.license }] } : {}),
      ...(file ? { hashes: [{ alg: "SHA-256", content: file }] } : {}),
      purl: ref,
      ...(props.length ? { properties: props } : {}),
    };
  });
  const body = JSON.stringify(components) + img.digest + arch;
  const serial = hashUuid(createHash("sha256").update(body).digest("hex"));
  const imageRef = `image:${img.digest}`;
  return statement(img, CYCLONEDX_BOM, {
    bomFormat: "CycloneDX",
    specVersion: "1.6",
    serialNumber: `urn:uuid:${serial}`,
    version: 1,
    metadata: {
      timestamp: img.created,
      tools: { components: [{ type: "application", name: "kiln", version: kilnVersion() }] },
      component: { type: "container", "bom-ref": imageRef, name: imageName(img), version: img.digest },
      properties: [{ name: "kiln:arch", value: arch }],
    },
    components,
    dependencies: [{ ref: imageRef, dependsOn: components.map((c) => c["bom-ref"]) }],
  });
}

/** Every statement kiln attests about IMG: provenance, then an SPDX and a CycloneDX SBOM per architecture. */
export function imageStatements(img: AttestedImage): Statement[] {
  return [
    slsaProvenance(img),
    ...img.archs.flatMap(({ arch, packages, spdx }) => [
      spdxSbom(img, arch, packages, spdx),
      cyclonedxSbom(img, arch, packages, spdx),
    ]),
  ];
}
