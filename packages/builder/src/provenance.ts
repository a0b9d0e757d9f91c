// SLSA provenance v1 for each package a build writes: an in-toto Statement v1
// beside the .apk (NAME-VERSION.apk.intoto.json) naming the package file and
// its sha256 as the subject, the recipe (path, sha256, the git commit of its
// work tree and whether the recipe differs from it), the architecture and
// SOURCE_DATE_EPOCH, every source fetched (URL and sha256, git sources with
// their commit) and every package of the build guest (its apk C: identity),
// and kiln's version as the builder. Nothing in it depends on the clock or the
// build machine's paths, so a rebuild of the same inputs writes the same bytes.

import { kilnVersion } from "@kiln/core";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { substituteMirrors, type MirrorOptions } from "./fetch-source.js";
import type { FetchedSource } from "./native-steps.js";

export const PROVENANCE_SUFFIX = ".intoto.json";
export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
export const SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1";
/** What a kiln package build is: a recipe built in a sandboxed guest into signed .apk files. */
export const KILN_BUILD_TYPE = "https://kiln.invalid/build-types/apk-recipe/v1";

/** The provenance file of a package file: beside it, PACKAGE.apk.intoto.json. */
export function provenancePath(apkFile: string): string {
  return apkFile + PROVENANCE_SUFFIX;
}

/** The builder id: kiln at its version. */
export function kilnBuilderId(version = kilnVersion()): string {
  return `https://kiln.invalid/builder/kiln@${version}`;
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest("hex");
}

/** A source as the outside world may see it: a public URL (mirror:// resolved) or only its file name when it was a local file. */
export interface PublicSource {
  name: string;
  /** http(s)/ftp URL, or git+URL@COMMIT; absent for local files (their host path is not recorded). */
  uri?: string;
  sha256?: string;
  sha512?: string;
  /** git sources: the commit checked out. */
  commit?: string;
}

function isLocal(uri: string): boolean {
  return /^file:/i.test(uri) || !/^[a-z][a-z0-9+.-]*:/i.test(uri);
}

function fileName(uri: string): string {
  let path = uri;
  try {
    path = /^file:/i.test(uri) ? fileURLToPath(uri) : new URL(uri).pathname;
  } catch {
    // not a URL: keep the text
  }
  return basename(path.replace(/\/+$/, "")) || "source";
}

/** The public form of a fetched source: mirror:// becomes the configured mirror's URL (a build output may name a host). */
export function publicSource(src: FetchedSource, mirrors?: MirrorOptions): PublicSource {
  let uri = src.uri;
  if (/^mirror:\/\/|\$\{\{\s*mirror\./.test(uri)) {
    try {
      uri = substituteMirrors(uri, mirrors ?? {});
    } catch {
      // the fetch resolved it moments ago; if it no longer resolves, keep the symbolic form
    }
  }
  const git = /^git\+(.+)@([0-9a-f]{40,64})$/.exec(uri);
  const out: PublicSource = { name: git ? fileName(git[1]!).replace(/\.git$/, "") : fileName(uri) };
  if (git) {
    if (!isLocal(git[1]!)) out.uri = uri;
    out.commit = src.commit ?? git[2]!;
  } else if (!isLocal(uri)) out.uri = uri;
  if (src.sha256) out.sha256 = src.sha256;
  if (src.sha512) out.sha512 = src.sha512;
  return out;
}

export interface RecipeGit {
  /** The commit checked out in the recipe's work tree. */
  commit: string;
  /** The recipe file differs from that commit (or is not in it). */
  dirty: boolean;
  /** The recipe's path from the top of the work tree. */
  path: string;
}

function git(cwd: string, args: string[]): Promise<string | undefined> {
  return new Promise((done) => {
    execFile(
      "git",
      ["-c", "core.fsmonitor=false", "--no-optional-locks", ...args],
      { cwd, timeout: 10_000, maxBuffer: 1 << 20, encoding: "utf8", env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } },
      (err, stdout) => done(err ? undefined : stdout.trim()),
    );
  });
}

/**
 * The git commit of the work tree holding the recipe, or undefined when it is
 * in none (or git is missing). Dirty is decided by hashing the recipe file as
 * a blob and comparing with the commit's: no filter, hook or fsmonitor of the
 * repository runs.
 */
export async function recipeGit(file: string): Promise<RecipeGit | undefined> {
  const dir = dirname(resolve(file));
  const top = await git(dir, ["rev-parse", "--show-toplevel"]);
  const commit = top && (await git(dir, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]));
  if (!top || !commit || !/^[0-9a-f]{40,64}$/.test(commit)) return undefined;
  const path = relative(top, resolve(file)).split(sep).join("/");
  const committed = await git(top, ["rev-parse", "--verify", "--quiet", `HEAD:${path}`]);
  const text = await readFile(file);
  const algo = commit.length === 64 ? "sha256" : "sha1";
  const blob = createHash(algo).update(`blob ${text.length}\0`).update(text).digest("hex");
  return { commit, dirty: committed !== blob, path };
}

export interface GuestPackage {
  name: string;
  version: string;
  /** The apk C: identity (Q1 + base64 SHA-1 of the control segment), as the index gives it. */
  checksum: string;
}

export interface ProvenanceInput {
  /** The package file name (NAME-VERSION.apk) and its sha256. */
  file: string;
  sha256: string;
  package: { name: string; version: string; origin: string };
  arch: string;
  sourceDateEpoch: number;
  /** purl namespace of the guest's packages: the distribution id. */
  distroId: string;
  recipe: { path: string; sha256: string; git?: RecipeGit };
  sources: PublicSource[];
  guest: GuestPackage[];
  builderVersion?: string;
}

function purl(distroId: string, name: string, version: string, arch: string): string {
  const e = encodeURIComponent;
  return `pkg:apk/${e(distroId)}/${e(name)}@${e(version)}?arch=${e(arch)}`;
}

function sourceDependency(s: PublicSource): Record<string, unknown> {
  const digest: Record<string, string> = {};
  if (s.sha256) digest.sha256 = s.sha256;
  if (s.sha512) digest.sha512 = s.sha512;
  if (s.commit) digest.gitCommit = s.commit;
  return {
    name: s.name,
    ...(s.uri ? { uri: s.uri } : {}),
    ...(Object.keys(digest).length ? { digest } : {}),
    annotations: { kind: "source", ...(s.uri ? {} : { location: "a local file (host path not recorded)" }) },
  };
}

/** The statement as JSON text: keys in a fixed order, two-space indented, one trailing newline. */
export function provenanceStatement(p: ProvenanceInput): string {
  const version = p.builderVersion ?? kilnVersion();
  const recipe = {
    path: p.recipe.path,
    digest: { sha256: p.recipe.sha256 },
    ...(p.recipe.git ? { git: { commit: p.recipe.git.commit, dirty: p.recipe.git.dirty } } : {}),
  };
  const guest = p.guest.map((g) => ({
    name: `${g.name}-${g.version}`,
    uri: purl(p.distroId, g.name, g.version, p.arch),
    annotations: { kind: "guest-package", apkChecksum: g.checksum },
  }));
  const statement = {
    _type: STATEMENT_TYPE,
    subject: [{ name: p.file, digest: { sha256: p.sha256 } }],
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: KILN_BUILD_TYPE,
        externalParameters: { recipe, package: p.package },
        internalParameters: { arch: p.arch, sourceDateEpoch: p.sourceDateEpoch, distro: p.distroId },
        resolvedDependencies: [...p.sources.map(sourceDependency), ...guest],
      },
      runDetails: { builder: { id: kilnBuilderId(version), version: { kiln: version } }, metadata: {} },
    },
  };
  return JSON.stringify(statement, null, 2) + "\n";
}

/** The recipe as provenance names it: its path in its git work tree (else its file name), its sha256 and commit. */
export async function recipeIdentity(file: string): Promise<ProvenanceInput["recipe"]> {
  const sha256 = await sha256File(file);
  const g = await recipeGit(file);
  return g ? { path: g.path, sha256, git: g } : { path: basename(file), sha256 };
}
