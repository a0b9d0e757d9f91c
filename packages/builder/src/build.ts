// Building a recipe: compile, assemble the guest, run the steps (kiln-native
// ones on the host, the rest in the runner's guest — bubblewrap today), emit
// the main package and its subpackages, run the recipe's tests against them
// in a fresh guest, and only then move them into the output repository and
// merge its signed index. A failed build leaves the previous packages and
// index untouched. `kiln test` runs the tests alone, from the same context.

import type { IndexRecord } from "@kiln/apk";
import { joinUnder } from "@kiln/core";
import { mkdir, readdir } from "node:fs/promises";
import { basename, join } from "node:path";
import type { CompiledRecipe, CompiledStep } from "./compile.js";
import { runAsIds } from "./compile/environment.js";
import {
  BuildError,
  openSession,
  outputRepository,
  packageRepository,
  prepareGuest,
  recipeContext,
  startPod,
  type BuildEvent,
  type BuildOptions,
  type RecipeContext,
  type Session,
} from "./context.js";
import { cacheCapFromEnv } from "./guest-cache.js";
import { pruneCache } from "./guest-prune.js";
import { copySourceDir, type FetchedSource } from "./native-steps.js";
import { emitPackages, publishPackages } from "./package-output.js";
import { runRecipeTests } from "./recipe-tests.js";
import type { Pod } from "./runner.js";
import { formatTail } from "./sandbox.js";
import { needsGuest, stepKindOf, type StepContext } from "./steps/index.js";

export { BuildError, type BuildEvent, type BuildOptions };

export interface BuildResult {
  recipe: string;
  name: string;
  fullVersion: string;
  skipped?: string;
  packages: Array<{
    name: string;
    file: string;
    /** Its SLSA provenance (in-toto statement) beside it. */
    provenance: string;
    size: number;
    checksum: string;
    depends: string[];
    provides: string[];
    /** Its index record (as in the repository's index). */
    record: IndexRecord;
  }>;
  log: string;
  ms: number;
  steps: Array<{ name: string; ms: number }>;
  /** Where the time went (ms): the recipe's own build steps and test steps, and everything else (overhead: guests, packaging, signing, indexing). */
  phases: BuildPhases;
  /** What the build guest resolved to (empty when the recipe needs no guest): the inputs of the distribution's build key. */
  guest: Array<{ name: string; version: string; checksum: string }>;
}

export interface BuildPhases {
  steps: number;
  tests: number;
  overhead: number;
  /** Where the overhead went (ms); what these do not cover (workspace setup, reading the recipe) is the rest. */
  parts: OverheadParts;
}

/** The named parts of a build's overhead (ms). */
export interface OverheadParts {
  /** Resolving and assembling the build guest, starting its sandbox. */
  guest: number;
  /** Writing the packages: tar, gzip, signing, dependency detection, SBOM, provenance. */
  package: number;
  /** The test guests: resolved, assembled and started, their workspaces copied. */
  testGuests: number;
  /** Moving the packages into the repository and merging its index (under the repository lock). */
  publish: number;
  /** Removing the build's workspace. */
  cleanup: number;
}

export const OVERHEAD_PARTS = ["guest", "package", "testGuests", "publish", "cleanup"] as const;

/** Run `f`, adding the time it took to `parts[key]`. */
export async function timed<T>(parts: OverheadParts, key: keyof OverheadParts, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await f();
  } finally {
    parts[key] += Date.now() - t0;
  }
}

function noParts(): OverheadParts {
  return { guest: 0, package: 0, testGuests: 0, publish: 0, cleanup: 0 };
}

export async function buildRecipe(file: string, opts: BuildOptions): Promise<BuildResult> {
  const t0 = Date.now();
  const cap = cacheCapFromEnv() ?? opts.cacheMaxSize; // a bad $KILN_CACHE_MAX_SIZE fails before any work
  const ctx = await recipeContext(file, opts, "build");
  const pkg = ctx.compiled.package;
  const result: BuildResult = {
    recipe: file,
    name: pkg.name,
    fullVersion: pkg.fullVersion,
    packages: [],
    log: ctx.logPath,
    ms: 0,
    steps: [],
    phases: { steps: 0, tests: 0, overhead: 0, parts: noParts() },
    guest: [],
  };
  if (!ctx.compiled.supportsArch) {
    result.skipped = `target-architecture excludes ${opts.arch}`;
    result.ms = Date.now() - t0;
    return result;
  }
  ctx.emit({ kind: "start", package: ctx.label });
  const session = await openSession(ctx);
  const parts = result.phases.parts;
  let closed = false;
  try {
    const workspace = await prepareWorkspace(ctx, session.work);
    const sources = await runBuildSteps(ctx, session, workspace, result);
    // Emit into a staging repository; tests install from there, ahead of the output repository.
    const staging = join(session.work, "staging");
    const staged = await timed(parts, "package", () => emitPackages(ctx, workspace, staging, sources, result.guest));
    if (opts.runTests !== false) await runRecipeTests(ctx, session, staging, result.phases);
    await timed(parts, "publish", () => publishPackages(opts, staged));
    closed = true;
    await timed(parts, "cleanup", () => session.close());
    result.packages = staged.emitted.map((e, i) => ({
      name: staged.records[i]!.name,
      file: join(packageRepository(opts), opts.arch, basename(e.path)),
      provenance: join(packageRepository(opts), opts.arch, basename(staged.provenance[i]!)),
      size: e.size,
      checksum: e.checksum,
      depends: e.info.depends,
      provides: e.info.provides,
      record: staged.records[i]!,
    }));
    result.ms = Date.now() - t0;
    result.phases.steps = result.steps.reduce((n, x) => n + x.ms, 0);
    result.phases.overhead = Math.max(0, result.ms - result.phases.steps - result.phases.tests);
    ctx.emit({ kind: "done", package: ctx.label, ms: result.ms, files: result.packages.map((p) => basename(p.file)) });
    return result;
  } finally {
    if (!closed) await session.close();
    if (cap !== undefined) await applyCacheCap(ctx, cap);
  }
}

/** Evict least recently used guests and packages until the cache fits `cap`; a failure is reported, not fatal. */
let pruning: Promise<unknown> = Promise.resolve();

async function applyCacheCap(ctx: RecipeContext, cap: number): Promise<void> {
  try {
    // One prune at a time in this process (builds run in parallel with --jobs).
    const run = pruning.then(() => pruneCache(ctx.opts.cacheDir, { maxSize: cap }));
    pruning = run.catch(() => undefined);
    const r = await run;
    ctx.emit({ kind: "cache", package: ctx.label, evicted: r.evicted.length, freed: r.freed, total: r.after });
  } catch (e) {
    const error = (e as Error).message;
    ctx.emit({ kind: "cache", package: ctx.label, evicted: 0, freed: 0, total: 0, error });
  }
}

/** The build workspace: a melange-out directory per package, and the source directory copied in. */
async function prepareWorkspace(ctx: RecipeContext, work: string): Promise<string> {
  const workspace = join(work, "ws");
  const names = [ctx.compiled.package.name, ...ctx.compiled.subpackages.map((sp) => sp.name)];
  for (const name of names)
    await mkdir(joinUnder(workspace, "melange-out", { value: name, what: "package name" }), { recursive: true });
  await copySourceDir(ctx.sourceDir, workspace, ctx.keyring.roots, ctx.file);
  return workspace;
}

/** Run the main pipeline, then each subpackage's; returns the sources fetched (for the SBOM). */
async function runBuildSteps(
  ctx: RecipeContext,
  session: Session,
  workspace: string,
  result: BuildResult,
): Promise<FetchedSource[]> {
  const { compiled, file } = ctx;
  const keys = await ctx.keys();
  const allSteps = [...compiled.pipeline, ...compiled.subpackages.flatMap((s) => s.pipeline)];
  const pod = needsGuest(allSteps, file)
    ? await timed(result.phases.parts, "guest", () => startBuildGuest(ctx, session, workspace, keys, result))
    : undefined;
  try {
    const stepCtx: StepContext = {
      file,
      workspace,
      fileRoots: ctx.keyring.roots,
      cacheDir: ctx.opts.cacheDir,
      ...(ctx.opts.mirrors ? { mirrors: ctx.opts.mirrors } : {}),
      log: session.log,
      ...(pod ? { pod } : {}),
      env: ctx.baseEnv,
      timeoutMs: ctx.timeoutMs,
    };
    const sources: FetchedSource[] = [];
    await runPipeline(ctx, compiled.pipeline, "pipeline", stepCtx, sources, result);
    for (const sp of compiled.subpackages)
      await runPipeline(ctx, sp.pipeline, `subpackage ${sp.name}:`, stepCtx, sources, result);
    return sources;
  } finally {
    await pod?.stop();
  }
}

/** The build guest: the environment's packages, resolved and assembled, with the workspace mounted. */
async function startBuildGuest(
  ctx: RecipeContext,
  session: Session,
  workspace: string,
  keys: Array<{ name: string; pem: Buffer }>,
  result: BuildResult,
): Promise<Pod> {
  const env = ctx.compiled.environment;
  const packages = env.contents?.packages ?? [];
  if (packages.length === 0)
    throw new BuildError(
      `${ctx.file}: the pipeline runs shell steps, so environment.contents.packages must name a guest (at least a shell)`,
      ctx.file,
    );
  const { guest, resolved } = await prepareGuest(ctx, {
    packages,
    repositories: await ctx.repositories(),
    keys,
    image: env,
    label: ctx.file,
    purpose: "build",
    ...(ctx.opts.guestExclude?.length ? { exclude: ctx.opts.guestExclude } : {}),
  });
  result.guest = resolved.map((p) => ({
    name: p.record.name,
    version: p.record.version,
    checksum: p.record.checksum ?? "",
  }));
  session.log.write(`# guest: ${resolved.map((p) => `${p.record.name}-${p.record.version}`).join(" ")}\n`);
  return startPod(ctx, guest, workspace, runAsIds(env.accounts));
}

async function runPipeline(
  ctx: RecipeContext,
  steps: CompiledStep[],
  what: string,
  stepCtx: StepContext,
  sources: FetchedSource[],
  result: BuildResult,
): Promise<void> {
  const { file, label } = ctx;
  for (const [i, step] of steps.entries()) {
    const s0 = Date.now();
    ctx.emit({
      kind: "step",
      package: label,
      step: step.name,
      index: i + 1,
      total: steps.length,
      native: !!step.native,
    });
    stepCtx.log.write(`\n# step ${i + 1}/${steps.length} ${step.name} (${step.origin})\n`);
    const { result: r, source } = await stepKindOf(step, file).run(step, stepCtx);
    if (source) sources.push(source);
    if (r && r.exitCode !== 0) {
      const why = r.timedOut ? `timed out after ${ctx.timeoutMs / 1000} s` : `exited with status ${r.exitCode}`;
      throw new BuildError(
        `${file}: ${what} step ${i + 1} "${step.name}" ${why}\n  last output:\n${formatTail(r.tail)}\n  full log: ${ctx.logPath}`,
        file,
        step.name,
        r,
        ctx.logPath,
      );
    }
    result.steps.push({ name: step.name, ms: Date.now() - s0 });
    ctx.emit({ kind: "step-done", package: label, step: step.name, ms: Date.now() - s0 });
  }
}

/**
 * `kiln test`: run a recipe's tests against its packages as they are in the
 * output repository (and the other repositories), without building.
 */
export async function testRecipe(
  file: string,
  opts: BuildOptions,
): Promise<{ tests: number; ms: number; log: string }> {
  const t0 = Date.now();
  const ctx = await recipeContext(file, opts, "test");
  const session = await openSession(ctx);
  try {
    const n = await runRecipeTests(ctx, session, await outputRepository(ctx));
    return { tests: n, ms: Date.now() - t0, log: ctx.logPath };
  } finally {
    await session.close();
  }
}

export async function listApks(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith(".apk")).sort();
}

export type { CompiledRecipe };
