// Mirror substitution: `${{mirror.NAME}}` and `mirror://NAME/` resolved from
// an explicit setting, the environment or apt's configuration (never a host
// name written in the repository), and the file: URLs a mirror may name.

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FileRoot } from "../host-files.js";
import { aptMirrors } from "./apt.js";
import { SourceError } from "./errors.js";

export interface MirrorOptions {
  /** Explicit mirror settings (e.g. from distro.yaml): name → base URL. Highest precedence. */
  mirrors?: Record<string, string | undefined>;
  /** Environment to read `KILN_<NAME>_MIRROR` from; defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** Root of the filesystem whose apt configuration is read; defaults to "/". */
  aptRoot?: string;
}

function cleanMirrorUrl(u: string, what: string): string {
  const s = u.trim().replace(/\/+$/, "");
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new SourceError("MIRROR", `${what}: ${JSON.stringify(u)} is not a URL`);
  }
  if (!["http:", "https:", "file:"].includes(url.protocol)) {
    throw new SourceError("MIRROR", `${what}: ${JSON.stringify(u)} is not an http(s) or file URL`);
  }
  return s;
}

function envName(name: string): string {
  return `KILN_${name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_MIRROR`;
}

/**
 * The base URL (no trailing slash) of the mirror called `name`. Lookup order:
 * 1. `opts.mirrors[name]` (an explicit setting, e.g. from distro.yaml);
 * 2. the environment variable `KILN_<NAME>_MIRROR` (`KILN_DEBIAN_MIRROR`);
 * 3. for `debian` and `debian-security`, apt's configuration on this machine.
 * Throws SourceError MIRROR, saying where it looked, when none is found.
 */
export function resolveMirror(name: string, opts: MirrorOptions = {}): string {
  const explicit = opts.mirrors?.[name];
  if (explicit) return cleanMirrorUrl(explicit, `mirror ${name} (explicit setting)`);
  const env = opts.env ?? process.env;
  const fromEnv = env[envName(name)];
  if (fromEnv) return cleanMirrorUrl(fromEnv, `mirror ${name} (${envName(name)})`);
  const aptRoot = opts.aptRoot ?? "/";
  if (name === "debian" || name === "debian-security") {
    const apt = aptMirrors(aptRoot)[name];
    if (apt) return cleanMirrorUrl(apt, `mirror ${name} (apt configuration)`);
  }
  const aptPlaces =
    join(aptRoot, "etc/apt/sources.list") + " and " + join(aptRoot, "etc/apt/sources.list.d/*.{list,sources}");
  throw new SourceError(
    "MIRROR",
    `no mirror configured for ${JSON.stringify(name)}: set mirrors.${name}, or the environment variable ${envName(name)}` +
      (name === "debian" || name === "debian-security"
        ? `, or add a Debian source to apt (looked in ${aptPlaces})`
        : ""),
  );
}

/** The Debian archive mirror (e.g. for `${{mirror.debian}}/pool/main/...`); see resolveMirror for the lookup order. */
export function debianMirror(opts: MirrorOptions = {}): string {
  return resolveMirror("debian", opts);
}

const MIRROR_VAR = /\$\{\{\s*mirror\.([A-Za-z0-9_-]+)\s*\}\}/g;
const MIRROR_SCHEME = /^mirror:\/\/([A-Za-z0-9_-]+)(\/.*)?$/;

/** Replace `${{mirror.NAME}}` anywhere and a leading `mirror://NAME/` in a URI by the resolved mirror. */
export function substituteMirrors(uri: string, opts: MirrorOptions = {}): string {
  let out = uri.replace(MIRROR_VAR, (_m, name: string) => resolveMirror(name, opts));
  const m = MIRROR_SCHEME.exec(out);
  if (m) out = resolveMirror(m[1]!, opts) + (m[2] ?? "");
  return out;
}

/** The directories of the file:// mirrors a URI uses: a path under one of them may be read (and nothing else through it). */
export function mirrorFileRoots(uri: string, opts: MirrorOptions = {}): FileRoot[] {
  const names = [...uri.matchAll(MIRROR_VAR)].map((m) => m[1]!);
  const scheme = MIRROR_SCHEME.exec(uri);
  if (scheme) names.push(scheme[1]!);
  const out: FileRoot[] = [];
  for (const name of new Set(names)) {
    const base = resolveMirror(name, opts);
    if (/^file:/i.test(base))
      out.push({
        dir: localFilePath(new URL(base), `mirror ${name}`),
        what: `the ${name} mirror`,
        allowHardLinks: true,
      });
  }
  return out;
}

/** The local path a file: URL names; refuses other hosts and encodings that do not name a plain path. */
export function localFilePath(u: URL, subject: string): string {
  if (u.hostname !== "" && u.hostname !== "localhost")
    throw new SourceError(
      "BAD_URI",
      `${subject}: a file URL must name a local file, not one on ${JSON.stringify(u.hostname)}`,
    );
  try {
    return fileURLToPath(u);
  } catch (e) {
    throw new SourceError("BAD_URI", `${subject}: not a usable file URL (${(e as Error).message})`);
  }
}
