// `kiln update --check`: which recipes whose sources come from the Debian
// archive are behind the newest upstream release the archive's suites offer.

import { readFile } from "node:fs/promises";
import { stat } from "node:fs/promises";
import { compareVersions, isValidVersion } from "@kiln/apk";
import { httpGet } from "@kiln/core";
import { compileRecipe, parseRecipe, type LoadedRecipe } from "../compile.js";
import type { Recipe } from "../recipe-schema.js";
import { debianMirror, localFilePath, substituteMirrors, type MirrorOptions } from "../source/mirrors.js";
import { readAptSources } from "../source/apt.js";
import {
  DEBIAN_SOURCE_RE,
  readSuiteIndex,
  checkSuite,
  type IndexedSource,
  type IndexFetchOptions,
} from "./sources-index.js";
import { debianUpstream, refusedBy, transformVersion, upstreamRelease, type UpdateBlock } from "./versions.js";

/** A fetch step reading the archive's pool: ${{mirror.debian}}/pool/COMPONENT/P/SOURCE/FILE (or the security mirror's pool/updates/...). */
const POOL_URI =
  /^(\$\{\{\s*mirror\.debian(?:-security)?\s*\}\}|mirror:\/\/debian(?:-security)?)\/(pool\/(?:updates\/)?[a-z-]+\/[a-z0-9]+\/([^/]+))\/([^/]+)$/;
const ORIG_RE = /^(.+?)_(.+)\.orig\.tar\.(gz|xz|bz2|lzma|zst)$/;
const DEB_RE = /^[^_]+_([^_]+)_[a-z0-9-]+\.deb$/;

/** Suites tried when none are given: apt's and the Debian releases a mirror serves today (a missing one is skipped). */
export const DEFAULT_SUITES = ["bookworm", "bookworm-updates", "trixie", "trixie-updates", "forky", "sid"];

export type UpdateStatus = "current" | "outdated" | "disabled" | "not-in-archive" | "not-from-archive";

export interface UpdateCandidate {
  /** The package version to bump to (the update block's version-transform applied). */
  version: string;
  /** Debian's version of the source holding it. */
  debianVersion: string;
  /** Suites holding that Debian version, in the order tried. */
  suites: string[];
  /** The orig tarball (or a native source's tarball) as a recipe writes it, and its index checksum. */
  uri?: string;
  file?: string;
  sha256?: string;
  size?: number;
}

export interface UpdateReport {
  file: string;
  name: string;
  /** The recipe's version; for a .deb import, the upstream version of the imported .deb. */
  current: string;
  status: UpdateStatus;
  /** The Debian source package, when the recipe fetches from the archive's pool. */
  source?: string;
  /** "orig" for an upstream tarball, "deb" for an imported binary (bumped by hand or its generator). */
  kind?: "orig" | "deb";
  manual?: boolean;
  newest?: UpdateCandidate;
  note?: string;
  /** Set by --apply: the version the recipe had before it was bumped. */
  bumpedFrom?: string;
}

interface ArchiveUse {
  source: string;
  kind: "orig" | "deb";
  /** How a recipe names the main mirror. */
  mirrorPrefix: string;
  /** For a .deb import: the upstream version of the imported binary. */
  debUpstream?: string;
}

function archiveUse(loaded: LoadedRecipe, arch: string | undefined): ArchiveUse | undefined {
  const compiled = compileRecipe(loaded, arch ? { arch } : {});
  const debs: ArchiveUse[] = [];
  for (const s of [...compiled.pipeline, ...compiled.subpackages.flatMap((x) => x.pipeline)]) {
    if (s.native !== "fetch") continue;
    const m = POOL_URI.exec(String(s.with?.uri ?? "").trim());
    if (!m || !DEBIAN_SOURCE_RE.test(m[3]!)) continue;
    const mirrorPrefix = "${{mirror.debian}}"; // as recipes write it (the compiler's form is mirror://debian)
    if (ORIG_RE.test(m[4]!)) return { source: m[3]!, kind: "orig", mirrorPrefix };
    const deb = DEB_RE.exec(m[4]!);
    if (deb) debs.push({ source: m[3]!, kind: "deb", mirrorPrefix, debUpstream: debianUpstream(deb[1]!) });
  }
  // Of several imported .debs, the one built from the package's own source (perl-bootstrap: perl, not db5.3).
  const name = loaded.recipe.package.name;
  return debs.find((d) => d.source === name) ?? debs.find((d) => name.startsWith(d.source)) ?? debs[0];
}

/** The suites to read: those given, else apt's Debian suites for this mirror and DEFAULT_SUITES (backports, experimental and security only when asked). */
export function defaultSuites(aptRoot = "/"): string[] {
  const out: string[] = [];
  for (const src of readAptSources(aptRoot))
    for (const s of src.suites) {
      const x = s.replace(/\/+$/, "");
      if (/^[a-z]+(-updates)?$/.test(x) && !/^(stable|testing|unstable|oldstable|oldoldstable|experimental)$/.test(x))
        out.push(x);
    }
  return [...new Set([...out, ...DEFAULT_SUITES])];
}

function pickFile(src: IndexedSource, prefix: string): Pick<UpdateCandidate, "uri" | "file" | "sha256" | "size"> {
  const up = debianUpstream(src.version);
  const orig = src.files.find((f) => {
    const m = ORIG_RE.exec(f.name);
    return m && m[1] === src.name && m[2] === up;
  });
  const native = src.files.find((f) => f.name.startsWith(`${src.name}_${src.version.replace(/^\d+:/, "")}.tar.`));
  const f = orig ?? native;
  if (!f) return {};
  return { uri: `${prefix}/${src.directory}/${f.name}`, file: f.name, sha256: f.sha256, size: f.size };
}

/** The releases of a source among the indexed paragraphs, as this recipe's update block takes them, newest first. */
function candidatesFor(
  found: readonly IndexedSource[],
  update: UpdateBlock | undefined,
  prefix: string,
): { candidates: UpdateCandidate[]; refused: string[] } {
  const byVersion = new Map<string, UpdateCandidate>();
  const refused: string[] = [];
  for (const src of found) {
    const up = upstreamRelease(debianUpstream(src.version));
    if (!up) continue;
    const why = refusedBy(update, up);
    if (why) {
      refused.push(`${up} (${why})`);
      continue;
    }
    const version = transformVersion(update, up);
    if (!isValidVersion(`${version}-r0`)) continue; // a transform giving no apk version: not a candidate
    const had = byVersion.get(version);
    if (!had)
      byVersion.set(version, { version, debianVersion: src.version, suites: [src.suite], ...pickFile(src, prefix) });
    else if (!had.suites.includes(src.suite)) had.suites.push(src.suite);
  }
  const candidates = [...byVersion.values()].sort((x, y) => compareVersions(y.version, x.version));
  return { candidates, refused: [...new Set(refused)] };
}

/** Whether the mirror has the file (a listed file is not always served: a partial mirror or one that lags its index). */
async function available(uri: string, opts: MirrorOptions): Promise<boolean> {
  const url = substituteMirrors(uri, opts);
  if (/^file:/i.test(url))
    return (await stat(localFilePath(new URL(url), uri)).catch(() => undefined))?.isFile() ?? false;
  try {
    const res = await httpGet(url, { subject: uri, headers: { "user-agent": "kiln" }, timeoutMs: 60_000 });
    await res.body?.cancel().catch(() => undefined);
    return res.ok;
  } catch {
    return false;
  }
}

export interface CheckOptions extends MirrorOptions, IndexFetchOptions {
  suites?: string[];
  arch?: string;
}

interface Loaded {
  file: string;
  recipe: Recipe;
  use?: ArchiveUse;
}

async function loadRecipe(file: string, arch: string | undefined): Promise<Loaded> {
  const loaded = parseRecipe(file, await readFile(file, "utf8"));
  return { file, recipe: loaded.recipe, use: archiveUse(loaded, arch) };
}

/** Read the suites' indexes once for every source the recipes use. */
async function readIndexes(
  sources: ReadonlySet<string>,
  opts: CheckOptions,
): Promise<{ found: Map<string, IndexedSource[]>; served: string[] }> {
  const mirror = debianMirror(opts);
  const suites = (opts.suites?.length ? opts.suites : defaultSuites(opts.aptRoot)).map((s) => checkSuite(s, "--suite"));
  const found = new Map<string, IndexedSource[]>();
  const served: string[] = [];
  for (const suite of suites) {
    opts.onProgress?.(`reading ${suite}'s source index`);
    const got = await readSuiteIndex(mirror, suite, sources, opts);
    if (!got) {
      opts.onProgress?.(`${suite}: not on this mirror, skipped`);
      continue;
    }
    served.push(suite);
    for (const s of got) found.set(s.name, [...(found.get(s.name) ?? []), s]);
  }
  return { found, served };
}

async function reportOne(
  l: Loaded,
  found: Map<string, IndexedSource[]>,
  served: string[],
  opts: CheckOptions,
): Promise<UpdateReport> {
  const { recipe, use } = l;
  const current = use?.debUpstream
    ? (upstreamRelease(use.debUpstream) ?? use.debUpstream)
    : String(recipe.package.version);
  const base = { file: l.file, name: recipe.package.name, current };
  const update = recipe.update;
  if (update?.enabled === false)
    return {
      ...base,
      status: "disabled",
      note: `update.enabled is false${update["exclude-reason"] ? `: ${update["exclude-reason"]}` : ""}`,
    };
  if (!use) return { ...base, status: "not-from-archive", note: "no fetch from the Debian archive's pool" };
  const more = { source: use.source, kind: use.kind, ...(update?.manual ? { manual: true } : {}) };
  const paras = found.get(use.source) ?? [];
  if (paras.length === 0)
    return {
      ...base,
      ...more,
      status: "not-in-archive",
      note: `source ${use.source} is in none of ${served.join(", ") || "the suites"}`,
    };
  const { candidates, refused } = candidatesFor(paras, update, use.mirrorPrefix);
  const notes = refused.length ? [`ignored: ${refused.join(", ")}`] : [];
  let best: UpdateCandidate | undefined;
  for (const c of candidates) {
    const newer = (() => {
      try {
        return compareVersions(current, c.version) < 0;
      } catch {
        return true;
      }
    })();
    // The recipe's own version or older needs no download; a newer orig tarball must be on the mirror.
    if (!newer || use.kind !== "orig" || (c.uri !== undefined && (await available(c.uri, opts)))) {
      best = c;
      break;
    }
    notes.push(`${c.version} is listed but ${c.file ?? "its tarball"} is not on the mirror`);
  }
  const note = notes.length ? notes.join("; ") : undefined;
  if (!best) return { ...base, ...more, status: "not-in-archive", note: note ?? `no release version of ${use.source}` };
  let behind: boolean;
  try {
    behind = compareVersions(base.current, best.version) < 0;
  } catch {
    behind = true;
  }
  return { ...base, ...more, status: behind ? "outdated" : "current", newest: best, ...(note ? { note } : {}) };
}

/** Check each recipe against the archive: one report per recipe, in the order given. */
export async function checkUpdates(
  files: readonly string[],
  opts: CheckOptions = {},
): Promise<{ reports: UpdateReport[]; suites: string[] }> {
  const loaded: Loaded[] = [];
  for (const f of files) loaded.push(await loadRecipe(f, opts.arch));
  const sources = new Set(loaded.flatMap((l) => (l.use && l.recipe.update?.enabled !== false ? [l.use.source] : [])));
  const { found, served } = sources.size ? await readIndexes(sources, opts) : { found: new Map(), served: [] };
  const reports: UpdateReport[] = [];
  for (const l of loaded) reports.push(await reportOne(l, found, served, opts));
  return { reports, suites: served };
}
