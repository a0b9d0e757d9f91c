// One build context for `kiln build` and `kiln test`: the recipe loaded and
// compiled with the caller's overrides, its log, the keyring sources, the
// guest's base environment, the step time limit, the repositories guests
// resolve from (in one order) and the keys they trust. Both commands make
// theirs with recipeContext, so they cannot drift apart.

import { joinUnder, KilnError } from "@kiln/core";
import { mkdir, mkdtemp, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { SigningKey } from "@kiln/apk";
import type { ImageConfigInput } from "@kiln/image";
import {
  compileRecipe,
  environmentImageConfig,
  loadRecipe,
  type CompiledRecipe,
  type LoadedRecipe,
} from "./compile.js";
import type { MirrorOptions } from "./fetch-source.js";
import { assembleGuest, resolveGuest, type Guest } from "./guest.js";
import type { FileRoot } from "./host-files.js";
import type { BuildLog, LogLimits } from "./log-capture.js";
import { startBuildLog } from "./log-files.js";
import { keyringKeys, publicHalf, type KeyringSources } from "./native-steps.js";
import { removeAside, sweepStaleRemovals } from "./removal.js";
import type { Recipe } from "./recipe-schema.js";
import { defaultRunner, type Pod, type Runner } from "./runner.js";
import { GUEST_WORKSPACE, openLog, type StepResult } from "./sandbox.js";
import type { RepoPackage } from "@kiln/repo";

export type BuildEvent =
  | { kind: "start"; package: string }
  | { kind: "guest"; package: string; packages: number; reused: boolean; purpose: "build" | "test" }
  | { kind: "step"; package: string; step: string; index: number; total: number; native: boolean }
  | { kind: "step-done"; package: string; step: string; ms: number }
  | { kind: "emit"; package: string; file: string; size: number }
  | { kind: "test"; package: string; target: string }
  | { kind: "done"; package: string; ms: number; files: string[] }
  /** After a build, the cache was brought under its cap (or could not be: `error`). */
  | { kind: "cache"; package: string; evicted: number; freed: number; total: number; error?: string };

export interface BuildOptions {
  arch: string;
  /** Repository root: packages land in OUT/ARCH (unless `repositoryDir` is set), logs in OUT/logs/ARCH. */
  outDir: string;
  /**
   * The repository the packages are published into (REPO/ARCH and its
   * index), when it is not `outDir`: a distribution's bootstrap repository
   * for its stage-0 packages.
   */
  repositoryDir?: string;
  /** Further local repositories the build guest resolves from, each once it has an index for the arch (a distribution's bootstrap repository). */
  localRepositories?: string[];
  signingKey: SigningKey;
  /** The signing key's public half (trusted for the local repository). */
  publicKeyPem: Buffer;
  repositoryAppend?: string[];
  keyringAppend?: Array<{ name: string; pem: Buffer }>;
  pipelineDirs?: string[];
  /**
   * Copied into the workspace (patches, local sources); default: a directory
   * named after the package beside the recipe. Given explicitly (--source-dir),
   * it is also where file:// sources and keyring entries may be read besides
   * the recipe's own directory.
   */
  sourceDir?: string;
  cacheDir: string;
  /** Cap on the cache (bytes): after the build, guests and fetched packages are evicted least recently used first until it fits; $KILN_CACHE_MAX_SIZE overrides it; unset, no cap. */
  cacheMaxSize?: number;
  sourceDateEpoch: number;
  mirrors?: MirrorOptions;
  /** The distribution id: the namespace of the purls in SBOMs and provenance (default "kiln"). */
  distroId?: string;
  /** The http(s) URL the repository will be published at, when known: the SBOM's download location of each package. */
  packageBaseUrl?: string;
  runTests?: boolean;
  /** Default per-step limit when the recipe sets no timeout (3 h). */
  stepTimeoutMs?: number;
  /** The package log's size cap and line limit (defaults: 256 MiB, 64 KiB). */
  logLimits?: LogLimits;
  onEvent?: (e: BuildEvent) => void;
  /** Extra `${{ }}` variables. */
  variables?: Record<string, string>;
  /**
   * Build at this release number instead of `package.epoch` (`${{package.epoch}}`,
   * `${{package.full-version}}`, the file names and the embedded recipe follow).
   * The distribution raises it when only a dependency changed, so no two
   * different builds share NAME-VER-rN.
   */
  epochOverride?: number;
  /**
   * Package names the build guest must not resolve to, as if its
   * repositories did not have them (a distribution's bootstrap: the stage-0
   * zlib once zlib is built). The test guest is not affected.
   */
  guestExclude?: string[];
  /**
   * Use this as the recipe's `environment` (the distribution passes the
   * recipe's own environment merged with distro.yaml's default one). It is
   * embedded in the package's .melange.yaml, so a rebuild from the package sees it.
   */
  environment?: ImageConfigInput;
  /** Where steps execute (default: bubblewrap). */
  runner?: Runner;
}

export class BuildError extends KilnError {
  readonly code = "BUILD_FAILED";
  constructor(
    message: string,
    readonly recipe: string,
    readonly step?: string,
    readonly result?: StepResult,
    readonly log?: string,
  ) {
    super(message);
    this.name = "BuildError";
  }
}

/** The per-step limit when neither the recipe nor the caller sets one. */
export const DEFAULT_STEP_TIMEOUT_MS = 3 * 3600 * 1000;

export type Purpose = "build" | "test";

export interface RecipeContext {
  file: string;
  purpose: Purpose;
  opts: BuildOptions;
  loaded: LoadedRecipe;
  compiled: CompiledRecipe;
  /** NAME-VERSION-rEPOCH. */
  label: string;
  logPath: string;
  keyring: KeyringSources;
  /** The directory copied into every workspace. */
  sourceDir: string;
  /** The environment every step starts from. */
  baseEnv: Record<string, string>;
  timeoutMs: number;
  runner: Runner;
  emit: (e: BuildEvent) => void;
  /** The repositories guests resolve from: the environment's, --repository-append, then the output repository if it has an index. */
  repositories(): Promise<string[]>;
  /** The keys guests trust: the environment's keyring, the local signing key, --keyring-append (public halves). */
  keys(): Promise<Array<{ name: string; pem: Buffer }>>;
}

/** The directories a recipe may read local files from: its own, and an explicit --source-dir. */
function recipeRoots(file: string, sourceDir: string | undefined): FileRoot[] {
  return [
    { dir: resolve(dirname(file)), what: "the recipe's directory" },
    ...(sourceDir ? [{ dir: resolve(sourceDir), what: "--source-dir" }] : []),
  ];
}

/** Keyring entries a recipe names itself (build and test environments), as written. */
function ownKeyring(recipe: Recipe): Set<string> {
  const envs = [
    recipe.environment,
    recipe.test?.environment,
    ...(recipe.subpackages ?? []).map((s) => s.test?.environment),
  ];
  return new Set(envs.flatMap((e) => e?.contents?.keyring ?? []));
}

/** Every key a guest trusts, public halves only. */
export function publicKeys(keys: Array<{ name: string; pem: Buffer }>): Array<{ name: string; pem: Buffer }> {
  return keys.map((k) => ({ name: k.name, pem: publicHalf(k.pem, `key ${k.name}`) }));
}

async function localRepoUsable(outDir: string, arch: string): Promise<boolean> {
  return !!(await stat(join(outDir, arch, "APKINDEX.tar.gz")).catch(() => undefined));
}

/** The local repositories of `dirs` that have an index for `arch`, each once, in order. */
async function usableLocalRepos(dirs: readonly string[], arch: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of new Set(dirs)) if (await localRepoUsable(d, arch)) out.push(d);
  return out;
}

/** The repository a build publishes into: `repositoryDir`, else `outDir`. */
export function packageRepository(opts: Pick<BuildOptions, "outDir" | "repositoryDir">): string {
  return opts.repositoryDir ?? opts.outDir;
}

/** The environment every step of a recipe starts from (build and test alike). */
function guestEnvironment(compiled: CompiledRecipe, sourceDateEpoch: number): Record<string, string> {
  return {
    HOME: GUEST_WORKSPACE,
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin",
    SOURCE_DATE_EPOCH: String(sourceDateEpoch),
    ...(compiled.environment.environment ?? {}),
  };
}

/**
 * Load and compile `file` for `opts.arch` (with the caller's epoch and
 * environment overrides) and start its log (OUT/logs/ARCH/NAME-VERSION-rN.log, with
 * NAME.log linking to it; NAME.test.log for tests).
 */
export async function recipeContext(file: string, opts: BuildOptions, purpose: Purpose): Promise<RecipeContext> {
  const recipeDir = dirname(file);
  // ${{mirror.NAME}} compiles to mirror://NAME, resolved at fetch time from this
  // machine's configuration, so compiled recipes do not depend on the mirror.
  const variables = { ...opts.variables };
  const copts = { arch: opts.arch, ...(opts.pipelineDirs ? { pipelineDirs: opts.pipelineDirs } : {}), variables };
  const loaded = await loadRecipe(file, copts);
  // The recipe's own keyring entries are read only where its local files may be; the distribution's as given.
  const recipeKeyring = ownKeyring(loaded.recipe);
  const keyring: KeyringSources = {
    trusted: new Set((opts.environment?.contents?.keyring ?? []).filter((k) => !recipeKeyring.has(k))),
    roots: recipeRoots(file, opts.sourceDir),
    baseDir: recipeDir,
    subject: file,
  };
  if (opts.epochOverride !== undefined) loaded.recipe.package.epoch = opts.epochOverride;
  if (opts.environment !== undefined) loaded.recipe.environment = structuredClone(opts.environment);
  const compiled = compileRecipe(loaded, copts);
  const pkg = compiled.package;
  const label = `${pkg.name}-${pkg.fullVersion}`;
  const logDir = joinUnder(opts.outDir, "logs", { value: opts.arch, what: "architecture" });
  await mkdir(logDir, { recursive: true });
  let logPath: string;
  if (purpose === "build")
    logPath = await startBuildLog(logDir, pkg.name, pkg.fullVersion, `# kiln build ${file} (${label}, ${opts.arch})\n`);
  else {
    logPath = joinUnder(logDir, { value: `${pkg.name}.test.log`, what: "log file" });
    await writeFile(logPath, `# kiln test ${file} (${label})\n`);
  }
  const localKey = { name: opts.signingKey.name, pem: opts.publicKeyPem };
  return {
    file,
    purpose,
    opts,
    loaded,
    compiled,
    label,
    logPath,
    keyring,
    sourceDir: opts.sourceDir ?? joinUnder(recipeDir, { value: pkg.name, what: "package name" }),
    baseEnv: guestEnvironment(compiled, opts.sourceDateEpoch),
    timeoutMs: pkg.timeoutSeconds ? pkg.timeoutSeconds * 1000 : (opts.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS),
    runner: opts.runner ?? defaultRunner,
    emit: opts.onEvent ?? (() => undefined),
    repositories: async () => [
      ...(compiled.environment.contents?.repositories ?? []),
      ...(opts.repositoryAppend ?? []),
      ...(await usableLocalRepos([opts.outDir, ...(opts.localRepositories ?? [])], opts.arch)),
    ],
    keys: async () => [
      ...(await keyringKeys(compiled.environment.contents?.keyring ?? [], keyring)),
      localKey,
      ...(opts.keyringAppend ?? []),
    ],
  };
}

/** The output repository when it has an index (the packages `kiln test` tests), else undefined. */
export async function outputRepository(ctx: RecipeContext): Promise<string | undefined> {
  const repo = packageRepository(ctx.opts);
  return (await localRepoUsable(repo, ctx.opts.arch)) ? repo : undefined;
}

/** A run's scratch space and open log; `close` finishes the log and removes the work directory (see removeAside). */
export interface Session {
  work: string;
  log: BuildLog;
  close(): Promise<void>;
}

let sweptStale = false;

export async function openSession(ctx: RecipeContext): Promise<Session> {
  const work = await mkdtemp(
    joinUnder(tmpdir(), { value: `kiln-${ctx.purpose}-${ctx.compiled.package.name}-`, what: "work directory" }),
  );
  if (!sweptStale) {
    sweptStale = true;
    await sweepStaleRemovals(tmpdir());
  }
  const log = openLog(ctx.logPath, ctx.opts.logLimits);
  return {
    work,
    log,
    async close() {
      await log.close().catch(() => undefined); // a log that cannot be finished does not undo the build
      await removeAside(work);
    },
  };
}

export interface GuestRequest {
  packages: string[];
  repositories: string[];
  keys: Array<{ name: string; pem: Buffer }>;
  image: ImageConfigInput;
  /** For messages about the image config. */
  label: string;
  purpose: Purpose;
  /** Package names left out of the repositories for this guest. */
  exclude?: string[];
}

export interface StartedGuest {
  guest: Guest;
  resolved: RepoPackage[];
}

/** Resolve and assemble (or reuse) a guest for this recipe; reports it as a `guest` event. */
export async function prepareGuest(ctx: RecipeContext, req: GuestRequest): Promise<StartedGuest> {
  const spec = {
    arch: ctx.opts.arch,
    packages: req.packages,
    repositories: req.repositories,
    keys: publicKeys(req.keys),
    buildUid: 1000,
    cacheDir: ctx.opts.cacheDir,
    image: environmentImageConfig(req.image, req.label),
    ...(req.exclude?.length ? { exclude: req.exclude } : {}),
  };
  const resolved = await resolveGuest(spec);
  const guest = await assembleGuest(spec, resolved);
  ctx.emit({
    kind: "guest",
    package: ctx.label,
    packages: resolved.length,
    reused: guest.reused,
    purpose: req.purpose,
  });
  return { guest, resolved };
}

/** Start a pod over a guest with `workspace` mounted at /home/build, as the build user or `runAs` (accounts.run-as). */
export function startPod(
  ctx: RecipeContext,
  guest: Guest,
  workspace: string,
  runAs?: { uid: number; gid: number },
): Promise<Pod> {
  // The guest stays leased (safe from eviction) until the pod stops.
  return ctx.runner.start({ guestRoot: guest.dir, workspace, ...runAs }).then(
    (pod) => ({
      mounts: pod.mounts,
      run: (argv, opts) => pod.run(argv, opts),
      stop: () => pod.stop().finally(() => guest.release()),
    }),
    async (e: unknown) => {
      await guest.release();
      throw e;
    },
  );
}
