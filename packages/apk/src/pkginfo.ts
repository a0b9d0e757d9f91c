// Package metadata: the `.PKGINFO` file inside a package and the mapping of its
// keys to APKINDEX / installed-database single-letter fields.

import { ApkError } from "./errors.js";
import { checkArch, checkFileName, checkPackageName, checkVersion } from "./names.js";

/** Metadata of one package, as carried by `.PKGINFO` and by index records. */
export interface PackageInfo {
  name: string;
  /** Full version including `-rN`. */
  version: string;
  arch: string;
  description?: string;
  url?: string;
  license?: string;
  origin?: string;
  maintainer?: string;
  /** Unix seconds. */
  buildDate?: number;
  commit?: string;
  packager?: string;
  /** Installed size in bytes. */
  installedSize?: number;
  providerPriority?: number;
  depends: string[];
  provides: string[];
  installIf: string[];
  replaces: string[];
  replacesPriority?: number;
  triggers: string[];
  /** Lowercase hex SHA-256 of the compressed data member. */
  dataHash?: string;
  /** Keys this library does not interpret, kept so they round-trip. */
  extra: Array<[string, string]>;
}

export function emptyPackageInfo(name: string, version: string, arch: string): PackageInfo {
  return { name, version, arch, depends: [], provides: [], installIf: [], replaces: [], triggers: [], extra: [] };
}

const intKeys = new Set(["builddate", "size", "provider_priority", "replaces_priority"]);

/** Parse `.PKGINFO` text. Unknown keys are kept in `extra`. */
export function parsePkgInfo(text: string, subject = ".PKGINFO"): PackageInfo {
  const info: PkgInfoDraft = {
    depends: [],
    provides: [],
    installIf: [],
    replaces: [],
    triggers: [],
    extra: [],
  };
  const lines = text.split("\n");
  // Line of each identity key, to name it if its value is refused.
  const at: Record<string, number> = {};
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === "" || line.startsWith("#")) continue;
    const sep = line.indexOf(" = ");
    if (sep < 0) {
      throw new ApkError(
        "INVALID_FIELD",
        `${subject}:${i + 1}: expected "key = value", got ${JSON.stringify(line.slice(0, 80))}`,
        { subject },
      );
    }
    const key = line.slice(0, sep);
    const value = line.slice(sep + 3);
    if (intKeys.has(key) && value !== "" && !/^\d+$/.test(value)) {
      throw new ApkError(
        "INVALID_FIELD",
        `${subject}:${i + 1}: ${key} must be a whole number, got ${JSON.stringify(value)}`,
        { subject },
      );
    }
    if (key === "pkgname" || key === "pkgver" || key === "arch") at[key] = i + 1;
    applyField(info, key, value);
  }
  if (!info.name) throw new ApkError("INVALID_FIELD", `${subject}: pkgname is missing`, { subject });
  if (!info.version) throw new ApkError("INVALID_FIELD", `${subject}: pkgver is missing`, { subject });
  if (info.arch === undefined) info.arch = "noarch";
  // Name, version and arch become file names and URL segments: refuse here what could not be one.
  checkPackageName(info.name, `${subject}:${at.pkgname}`, "pkgname");
  checkVersion(info.version, `${subject}:${at.pkgver}`, "pkgver");
  if (at.arch !== undefined) checkArch(info.arch, `${subject}:${at.arch}`, "arch");
  checkFileName(info.name, info.version, subject);
  return info as PackageInfo;
}

/** `.PKGINFO` fields as parsed so far; the lists start empty. */
type PkgInfoDraft = Partial<PackageInfo> &
  Pick<PackageInfo, "depends" | "provides" | "installIf" | "replaces" | "triggers" | "extra">;

/** Record one `key = value` line in `info`. */
function applyField(info: PkgInfoDraft, key: string, value: string): void {
  switch (key) {
    case "pkgname":
      info.name = value;
      break;
    case "pkgver":
      info.version = value;
      break;
    case "arch":
      info.arch = value;
      break;
    case "pkgdesc":
      info.description = value;
      break;
    case "url":
      info.url = value;
      break;
    case "license":
      info.license = value;
      break; // repeated lines: last wins, as apk does
    case "origin":
      info.origin = value;
      break;
    case "maintainer":
      info.maintainer = value;
      break;
    case "builddate":
      info.buildDate = Number(value);
      break;
    case "commit":
      info.commit = value;
      break;
    case "packager":
      info.packager = value;
      break;
    case "size":
      info.installedSize = Number(value);
      break;
    case "provider_priority":
      info.providerPriority = Number(value);
      break;
    case "replaces_priority":
      info.replacesPriority = Number(value);
      break;
    case "depend":
      info.depends.push(...splitList(value));
      break;
    case "provides":
      info.provides.push(...splitList(value));
      break;
    case "install_if":
      info.installIf.push(...splitList(value));
      break;
    case "replaces":
      info.replaces.push(...splitList(value));
      break;
    case "triggers":
      info.triggers.push(...splitList(value));
      break;
    case "datahash":
      info.dataHash = value;
      break;
    default:
      info.extra.push([key, value]);
  }
}

function splitList(value: string): string[] {
  return value.split(/\s+/).filter((s) => s !== "");
}

/** Serialize `.PKGINFO` deterministically. */
export function formatPkgInfo(info: PackageInfo): string {
  const out: string[] = ["# Generated by kiln"];
  const put = (k: string, v: string | number | undefined) => {
    if (v === undefined) return;
    const s = String(v);
    if (s.includes("\n"))
      throw new ApkError("INVALID_FIELD", `.PKGINFO ${k} must not contain a newline`, { subject: k });
    out.push(`${k} = ${s}`);
  };
  put("pkgname", info.name);
  put("pkgver", info.version);
  put("pkgdesc", info.description);
  put("url", info.url);
  put("builddate", info.buildDate);
  put("packager", info.packager);
  put("size", info.installedSize);
  put("arch", info.arch);
  put("origin", info.origin);
  put("commit", info.commit);
  put("maintainer", info.maintainer);
  put("license", info.license);
  put("provider_priority", info.providerPriority);
  put("replaces_priority", info.replacesPriority);
  for (const d of info.replaces) put("replaces", d);
  for (const d of info.depends) put("depend", d);
  for (const d of info.provides) put("provides", d);
  if (info.installIf.length) put("install_if", info.installIf.join(" "));
  if (info.triggers.length) put("triggers", info.triggers.join(" "));
  for (const [k, v] of info.extra) put(k, v);
  put("datahash", info.dataHash);
  return out.join("\n") + "\n";
}
