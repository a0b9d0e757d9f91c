// Turning a destdir into a signed package: entries from the directory (owners
// normalised), automatic dependencies merged with the declared ones, the
// compiled recipe embedded as `.melange.yaml`, an SPDX SBOM in the data.

import { constants as FS } from "node:fs";
import { lstat, open, unlink } from "node:fs/promises";
import { join } from "node:path";
import {
  emptyPackageInfo,
  entriesFromDirectory,
  writePackage,
  type PackageInfo,
  type ScriptName,
  type SigningKey,
  type WrittenPackage,
} from "@kiln/apk";
import { kilnVersion } from "@kiln/core";
import { apkPurl, spdxLicense } from "@kiln/image";
import { detectDependencies, mergeDependencies } from "./detect-deps.js";
import { ensureDirUnder, HostFileError } from "./host-files.js";

export interface EmitSpec {
  name: string;
  /** Full version, `VER-rN`. */
  version: string;
  arch: string;
  origin: string;
  description?: string;
  url?: string;
  license?: string;
  commit?: string;
  runtime: string[];
  provides: string[];
  replaces: string[];
  providerPriority?: number;
  replacesPriority?: number;
  options: { noProvides?: boolean; noDepends?: boolean; noCommands?: boolean };
  scripts: Partial<Record<ScriptName, string>>;
  triggers: string[];
  /** Extra control files, e.g. `.melange.yaml`. */
  controlFiles: Record<string, string>;
  /**
   * Sources for the SBOM, as the world may see them (see publicSource): a URL
   * (no mirror:// or file:// left; anything else becomes NOASSERTION), the
   * file name, checksums, and a git source's commit.
   */
  sources: Array<{ uri?: string; name?: string; sha256?: string; sha512?: string; commit?: string }>;
  /** purl namespace: the distribution id (default "kiln"). */
  distroId?: string;
  /** Where the package will be published (an http(s) URL), when known; else NOASSERTION. */
  downloadLocation?: string;
}

export interface EmittedPackage extends WrittenPackage {
  detected: { depends: string[]; provides: string[] };
}

/** An SBOM's download location: a public http(s)/ftp URL or a git+URL, never a path of the build machine. */
function downloadLocation(uri: string | undefined): string {
  if (uri && /^(https?|ftp):\/\/[^\s]+$|^git\+(https?|git):\/\/[^\s]+$/i.test(uri)) return uri;
  return "NOASSERTION";
}

function sbom(spec: EmitSpec, epoch: number): string {
  const id = (s: string) => "SPDXRef-" + s.replace(/[^A-Za-z0-9.-]/g, "-");
  const pkgId = id(`Package-${spec.name}-${spec.version}`);
  // A package made from Debian binary packages (.deb sources) says so: imported, not built from source.
  const isDeb = (s: EmitSpec["sources"][number]) => /\.deb$/.test(s.name ?? s.uri ?? "");
  const debs = spec.sources.filter(isDeb).map((s) => s.name ?? "");
  const imported = debs.length
    ? `imported from Debian's binary packages, not built from source: ${debs.join(", ")}`
    : "";
  const doc = {
    spdxVersion: "SPDX-2.3",
    dataLicense: "CC0-1.0",
    SPDXID: "SPDXRef-DOCUMENT",
    name: `apk-${spec.name}-${spec.version}`,
    documentNamespace: `https://kiln.invalid/spdx/apk/${encodeURIComponent(spec.name)}-${encodeURIComponent(spec.version)}`,
    creationInfo: {
      created: new Date(epoch * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"),
      creators: [`Tool: kiln-${kilnVersion()}`],
    },
    documentDescribes: [pkgId],
    packages: [
      {
        SPDXID: pkgId,
        name: spec.name,
        versionInfo: spec.version,
        // The package's own URL is known once published (spec.downloadLocation); its sha256 cannot be inside it.
        downloadLocation: downloadLocation(spec.downloadLocation),
        filesAnalyzed: false,
        licenseDeclared: spdxLicense(spec.license),
        licenseConcluded: "NOASSERTION",
        copyrightText: "NOASSERTION",
        supplier: "NOASSERTION",
        ...(imported ? { sourceInfo: imported, comment: imported } : {}),
        externalRefs: [
          {
            referenceCategory: "PACKAGE-MANAGER",
            referenceType: "purl",
            referenceLocator: apkPurl(spec.distroId ?? "kiln", spec.name, spec.version, spec.arch, spec.origin),
          },
        ],
      },
      ...spec.sources.map((s, i) => ({
        SPDXID: id(`Source-${i}`),
        name: s.name ?? (s.uri ?? "source").replace(/\/+$/, "").replace(/^.*\//, ""),
        downloadLocation: downloadLocation(s.uri),
        filesAnalyzed: false,
        licenseDeclared: "NOASSERTION",
        licenseConcluded: "NOASSERTION",
        copyrightText: "NOASSERTION",
        ...(isDeb(s) ? { comment: "a Debian binary package, imported as built" } : {}),
        checksums: [
          ...(s.sha256 ? [{ algorithm: "SHA256", checksumValue: s.sha256 }] : []),
          ...(s.sha512 ? [{ algorithm: "SHA512", checksumValue: s.sha512 }] : []),
        ],
      })),
    ],
    relationships: [
      { spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES", relatedSpdxElement: pkgId },
      ...spec.sources.map((_, i) => ({
        spdxElementId: pkgId,
        relationshipType: "GENERATED_FROM",
        relatedSpdxElement: id(`Source-${i}`),
      })),
    ],
  };
  return JSON.stringify(doc, null, 2) + "\n";
}

/** Write a new file in a directory the guest's steps wrote: whatever is at that name (a symlink out of it) is replaced, never written through. */
async function writeFresh(path: string, text: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (st?.isDirectory()) throw new HostFileError(`${path} is a directory`);
  if (st) await unlink(path);
  const fh = await open(path, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW, 0o644);
  try {
    await fh.writeFile(text);
  } finally {
    await fh.close();
  }
}

/** Write `destdir` as `outFile`. The SBOM is added to destdir first. */
export async function emitPackage(
  spec: EmitSpec,
  destdir: string,
  outFile: string,
  opts: { signingKeys: SigningKey[]; sourceDateEpoch: number },
): Promise<EmittedPackage> {
  const sbomDir = await ensureDirUnder(destdir, "var/lib/db/sbom", `${spec.name}: SBOM directory`);
  await writeFresh(join(sbomDir, `${spec.name}-${spec.version}.spdx.json`), sbom(spec, opts.sourceDateEpoch));
  const detected = await detectDependencies(destdir, { version: spec.version });
  const merged = mergeDependencies({
    declared: { runtime: spec.runtime, provides: spec.provides },
    detected,
    options: spec.options,
  });
  const info: PackageInfo = {
    ...emptyPackageInfo(spec.name, spec.version, spec.arch),
    origin: spec.origin,
    buildDate: opts.sourceDateEpoch,
    depends: merged.depends,
    provides: merged.provides,
    replaces: spec.replaces,
    triggers: spec.triggers,
  };
  if (spec.description !== undefined) info.description = spec.description;
  if (spec.url !== undefined) info.url = spec.url;
  if (spec.license !== undefined) info.license = spec.license;
  if (spec.commit !== undefined) info.commit = spec.commit;
  if (spec.providerPriority !== undefined) info.providerPriority = spec.providerPriority;
  if (spec.replacesPriority !== undefined) info.replacesPriority = spec.replacesPriority;
  const entries = await entriesFromDirectory(destdir);
  const w = await writePackage(
    {
      info,
      entries,
      scripts: spec.scripts,
      controlFiles: spec.controlFiles,
      signingKeys: opts.signingKeys,
      sourceDateEpoch: opts.sourceDateEpoch,
    },
    outFile,
  );
  return { ...w, detected: { depends: detected.depends, provides: detected.provides } };
}
