// The main job of a distribution, as a library: plan → build rounds → images
// → report. `kiln build --all | --changed` is one build round (buildDistro),
// `kiln images` the image step (rebuildImages) and `kiln distro-build` the
// whole job (runDistroBuild). Progress goes out as events; each call returns
// a result object the CLI prints (or writes as --json). Nothing here prints.

import { resolve as resolvePath } from "node:path";
import { localKeyPath, resolveSigningKey, type ResolvedKey } from "@kiln/apk";
import { KilnError } from "@kiln/core";
import { loadSigningKey } from "@kiln/image";
import { loadDistroAdvisories, writeDistroFeed } from "./advisories.js";
import { analyzeDistro, saveAnalysisCaches, type DistroView } from "./analyze.js";
import type { Distro } from "./config.js";
import { changedSince } from "./git.js";
import { runImages, type ImageResult, type ImageRunOptions } from "./image-run.js";
import { loadImages } from "./images.js";
import { KeyStore } from "./keys.js";
import type { DistroGraph } from "./graph.js";
import { planBuild, type BuildPlan } from "./plan.js";
import { checkMainIndex, moveSuperseded, type IndexProblem, type SupersededMove } from "./index-policy.js";
import { imageReport, withOverhead, writeJobReport, type JobReport, type RoundReport } from "./report.js";
import { seedDistroSources } from "./sources.js";
import { localBuilder, runPlan, type Builder, type LocalBuilderOptions, type RunEvent, type RunReport } from "./run.js";
import { bootstrapRepoDir, readKeys } from "./state.js";
import { bootstrapMapOf } from "./bootstrap.js";
import { placeStage0Packages, placementNeeded, stage0PackageNames, type Stage0Placement } from "./stage0-repo.js";

/** The distribution cannot be built as it stands (invalid recipes or images, an unbreakable cycle). */
export class DistroJobError extends KilnError {
  readonly code = "DISTRO_JOB";
}

export type DistroJobEvent =
  /** A plan's warning (printed as `warning: …`). */
  | { kind: "warning"; message: string }
  /** A plan's error; a DistroJobError follows. */
  | { kind: "problem"; message: string }
  /** Something the user should know (a signing-key variable not set). */
  | { kind: "note"; message: string }
  | { kind: "key-generated"; path: string }
  /** One architecture's builds start. */
  | { kind: "arch"; distro: string; arch: string; builds: number; upToDate: number; jobs: number }
  | { kind: "run"; event: RunEvent }
  /** A build round finished (its reports are written). */
  | { kind: "round-done"; round: number; result: DistroBuildResult }
  /** distro-build re-plans: the previous round's builds changed other recipes' build environments. */
  | { kind: "replan"; round: number }
  /** distro-build builds the imports (recipes that need no guest) first, as a round of their own: stage 0 of the bootstrap. */
  | { kind: "stage"; round: number; stage: "imports"; builds: number; deferred: number }
  /** Image progress, one line. */
  | { kind: "image"; message: string }
  /** After a round: superseded package files moved out of OUT/ARCH, and what the main index's check found. */
  | { kind: "index"; arch: string; superseded: SupersededMove; problems: IndexProblem[] }
  /** Before a round: packages moved between OUT/ARCH and the bootstrap repository OUT/bootstrap/ARCH. */
  | { kind: "stage0-placement"; placement: Stage0Placement };

export type DistroJobListener = (e: DistroJobEvent) => void;

export interface DistroBuildOptions {
  distro: Distro;
  /** Architectures to build (default: distro.yaml's). */
  archs?: string[];
  cacheDir: string;
  env: NodeJS.ProcessEnv;
  /** Builds at once (default 1). */
  jobs?: number;
  keepGoing?: boolean;
  /** `--changed`: only recipes changed since this git revision (and their dependents), where out of date. */
  changedSince?: string;
  /** Plan only. */
  dryRun?: boolean;
  /** --signing-key. */
  signingKey?: string;
  /** Run the recipes' tests (default true). */
  runTests?: boolean;
  /** SOURCE_DATE_EPOCH; undefined when not set (builds use 0, images their own default). */
  sourceDateEpoch?: number;
  /** How packages are built (default: @kiln/builder in bubblewrap). */
  makeBuilder?: (o: LocalBuilderOptions) => Builder;
  /** The run's report so far: this round is added to it and it is written (default: a report of this round alone). */
  report?: JobReport;
  /** This round's number in the run (default 1). */
  round?: number;
  /**
   * `imports`: build only the out-of-date recipes that need no guest (and
   * whose planned dependencies are such recipes too): stage 0 of a
   * bootstrap, so the plan of everything else sees their real packages.
   */
  stage?: "imports";
}

export interface DistroBuildResult {
  distro: Distro;
  plans: BuildPlan[];
  reports: RunReport[];
  /** Only planned (dryRun). */
  dryRun: boolean;
  /** Builds planned over all architectures. */
  total: number;
  counts: { built: number; failed: number; skipped: number; notStarted: number; upToDate: number };
  /** OUT/report.html when something was built. */
  reportFile?: string;
  /** What the main index's check found after the round (every architecture built). */
  indexProblems: IndexProblem[];
  /** 0, or 1 when a build failed, was skipped or did not start. */
  status: number;
}

/** Load and analyse the distribution for each architecture. */
export async function distroViews(distro: Distro, archs: string[], cacheDir: string): Promise<DistroView[]> {
  const images = await loadImages(distro);
  const out: DistroView[] = [];
  for (const arch of archs) out.push(await analyzeDistro(distro, arch, { cacheDir, images }));
  return out;
}

/** One plan per view: by build key, or (since) from the git changes since that revision. */
export async function distroPlans(distro: Distro, vs: DistroView[], since: string | undefined): Promise<BuildPlan[]> {
  const changes = since !== undefined ? await changedSince(distro, since) : undefined;
  const plans = vs.map((v) =>
    planBuild(distro, v.graph, v.state, { errors: v.errors, ...(changes ? { since: changes } : {}) }),
  );
  for (const v of vs) await saveAnalysisCaches(v);
  return plans;
}

/** Builds of `since` that the build keys also say are out of date (what `build --changed` runs). */
export function narrowToChanged(sincePlan: BuildPlan, keyPlan: BuildPlan): BuildPlan {
  const why = new Map(sincePlan.builds.map((b) => [b.recipe, b.reasons]));
  // The git reasons say more than "not in the repository" (a CI checkout without keys).
  const builds = keyPlan.builds
    .filter((b) => why.has(b.recipe))
    .map((b) => ({ ...b, reasons: b.reasons.every((r) => r.kind === "missing") ? why.get(b.recipe)! : b.reasons }));
  const kept = new Set(builds.map((b) => b.recipe));
  return {
    ...keyPlan,
    mode: "since",
    ...(sincePlan.since !== undefined ? { since: sincePlan.since } : {}),
    builds: builds.map((b) => ({ ...b, after: b.after.filter((a) => kept.has(a)) })),
    upToDate: keyPlan.upToDate.concat(keyPlan.builds.filter((b) => !kept.has(b.recipe)).map((b) => b.recipe)),
    images: keyPlan.images.filter(
      (i) => i.recipes.some((r) => kept.has(r)) || sincePlan.images.some((s) => s.name === i.name),
    ),
  };
}

/**
 * The distribution's signing key: --signing-key, else distro.yaml's
 * signing-key (a path, or env:VAR holding a path or the PEM), else the local
 * key beside OUT ($KILN_SIGNING_KEY is not consulted: distro.yaml says which key).
 */
export async function distroSigningKey(
  distro: Distro,
  explicit: string | undefined,
  env: NodeJS.ProcessEnv,
  onEvent: DistroJobListener = () => undefined,
): Promise<ResolvedKey> {
  const ref = distro.signingKey;
  const localKey = localKeyPath(distro.outDir);
  const path = explicit ?? (ref?.kind === "path" ? ref.path : undefined);
  if (path) return (await resolveSigningKey({ path, env, localKey }))!;
  if (ref?.kind === "env") {
    const found = await resolveSigningKey({
      env,
      variable: ref.variable,
      pemInVariable: true,
      pemName: `${distro.id}.rsa.pub`,
    });
    if (found) return found;
    onEvent({ kind: "note", message: `$${ref.variable} is not set; signing with a local key (not for publishing)` });
  }
  return (await resolveSigningKey({ env, variable: false, localKey }))!;
}

function tally(plans: BuildPlan[], reports: RunReport[]): DistroBuildResult["counts"] {
  const all = reports.flatMap((r) => r.entries);
  const n = (s: string) => all.filter((e) => e.status === s).length;
  return {
    built: n("built"),
    failed: n("failed"),
    skipped: n("skipped"),
    notStarted: n("not-started"),
    upToDate: plans.reduce((k, p) => k + p.upToDate.length, 0),
  };
}

async function planDistro(
  o: DistroBuildOptions,
  emit: DistroJobListener,
): Promise<{ vs: DistroView[]; plans: BuildPlan[] }> {
  const vs = await distroViews(o.distro, o.archs ?? o.distro.architectures, o.cacheDir);
  let plans = await distroPlans(o.distro, vs, undefined);
  if (o.changedSince !== undefined) {
    const since = await distroPlans(o.distro, vs, o.changedSince);
    plans = plans.map((p, i) => narrowToChanged(since[i]!, p));
  }
  const errors = plans.flatMap((p) => p.errors);
  if (errors.length) {
    for (const e of errors) emit({ kind: "problem", message: e });
    throw new DistroJobError(
      `${errors.length} problem${errors.length === 1 ? "" : "s"} in the distribution; nothing was built`,
    );
  }
  for (const p of plans) for (const w of p.warnings) emit({ kind: "warning", message: w });
  return { vs, plans };
}

/** A plan narrowed to its imports: builds that need no guest and wait only for other such builds (none of its images). */
export function importsOnly(plan: BuildPlan, graph: DistroGraph): BuildPlan {
  const needsGuest = new Map(graph.recipes.map((r) => [r.name, r.needsGuest]));
  const kept = new Set<string>();
  for (const b of plan.builds) if (!needsGuest.get(b.recipe) && b.after.every((a) => kept.has(a))) kept.add(b.recipe);
  return {
    ...plan,
    builds: plan.builds.filter((b) => kept.has(b.recipe)),
    images: [],
    unchangedImages: [],
  };
}

/** A new report of a run (written as rounds finish). */
export function newJobReport(distro: Distro, command: JobReport["command"], t0 = Date.now()): JobReport {
  return withOverhead({
    format: 2,
    distro: distro.name,
    command,
    startedAt: new Date(t0).toISOString(),
    ms: 0,
    rounds: [],
  });
}

/** Move stage-0 packages into the bootstrap repository (and others out of it) where a view's state has them on the wrong side. */
async function placeStage0(o: DistroBuildOptions, vs: DistroView[], emit: DistroJobListener): Promise<void> {
  const todo = vs
    .map((v) => ({ v, names: stage0PackageNames(v.graph.recipes, bootstrapMapOf(v.graph.bootstrap)) }))
    .filter(({ v, names }) => placementNeeded(v.state, names));
  if (!todo.length) return;
  const key = await distroSigningKey(o.distro, o.signingKey, o.env, emit);
  for (const { v, names } of todo) {
    const placement = await placeStage0Packages(v.state, names, {
      signingKey: key.key,
      publicKeyPem: key.publicPem,
      sourceDateEpoch: o.sourceDateEpoch ?? 0,
    });
    emit({ kind: "stage0-placement", placement });
  }
}

/** After a round: move superseded files out of each built architecture's directory and check its index. */
async function settleIndexes(
  distro: Distro,
  archs: string[],
  index: Parameters<typeof moveSuperseded>[2],
  emit: DistroJobListener,
): Promise<IndexProblem[]> {
  const problems: IndexProblem[] = [];
  for (const arch of archs) {
    await moveSuperseded(bootstrapRepoDir(distro.outDir), arch, index);
    const superseded = await moveSuperseded(distro.outDir, arch, index);
    const found = await checkMainIndex(distro.outDir, arch);
    problems.push(...found);
    emit({ kind: "index", arch, superseded, problems: found });
  }
  return problems;
}

async function seedSources(distro: Distro, cacheDir: string, emit: DistroJobListener): Promise<void> {
  if (!distro.sources.length) return;
  const seeded = await seedDistroSources(distro, cacheDir);
  emit({
    kind: "note",
    message: `${seeded.length} source file${seeded.length === 1 ? "" : "s"} seeded into the source cache (${seeded.filter((s) => s.existed).length} there already)`,
  });
}

/** Add a round to the run's report (or a new one-round report) and write it. */
async function addRound(
  o: DistroBuildOptions,
  round: RoundReport,
  index: IndexProblem[] | undefined,
  status: number,
): Promise<string> {
  const report = o.report ?? newJobReport(o.distro, "build", Date.now() - round.reports.reduce((n, r) => n + r.ms, 0));
  if (!round.round) round.round = report.rounds.length + 1;
  Object.assign(report, withOverhead({ ...report, rounds: [...report.rounds, round], ...(index ? { index } : {}) }));
  report.ms = Date.now() - Date.parse(report.startedAt);
  if (!o.report) report.status = status;
  return writeJobReport(o.distro, report);
}

/** One architecture's plan run with the round's builder. */
async function runArch(
  o: DistroBuildOptions,
  v: DistroView,
  plan: BuildPlan,
  key: ResolvedKey,
  upstreamKeys: Array<{ name: string; pem: Buffer }>,
  emit: DistroJobListener,
): Promise<RunReport> {
  const { distro } = o;
  const arch = plan.arch;
  const builder = (o.makeBuilder ?? localBuilder)({
    distro,
    arch,
    signingKey: key.key,
    publicKeyPem: key.publicPem,
    keyringAppend: upstreamKeys,
    cacheDir: o.cacheDir,
    sourceDateEpoch: o.sourceDateEpoch ?? 0,
    runTests: o.runTests ?? true,
  });
  const ctx = { distro, graph: v.graph, plan, state: v.state, keys: new KeyStore(resolvePath(distro.outDir, arch)) };
  return runPlan(ctx, {
    jobs: o.jobs ?? 1,
    keepGoing: !!o.keepGoing,
    builder,
    onEvent: (event) => emit({ kind: "run", event }),
  });
}

/** One build round (`kiln build --all | --changed`): plan, then run the plan, and write OUT/build-report.json and OUT/report.html. */
export async function buildDistro(
  o: DistroBuildOptions,
  emit: DistroJobListener = () => undefined,
): Promise<DistroBuildResult> {
  const { distro } = o;
  const jobs = o.jobs ?? 1;
  const planned = await planDistro(o, emit);
  const { vs } = planned;
  let plans = planned.plans;
  if (o.stage === "imports") {
    const all = plans.reduce((n, p) => n + p.builds.length, 0);
    plans = plans.map((p, i) => importsOnly(p, vs[i]!.graph));
    const builds = plans.reduce((n, p) => n + p.builds.length, 0);
    if (builds) emit({ kind: "stage", round: o.round ?? 1, stage: "imports", builds, deferred: all - builds });
  }
  const total = plans.reduce((n, p) => n + p.builds.length, 0);
  const reports: RunReport[] = [];
  let reportFile: string | undefined;
  let indexProblems: IndexProblem[] = [];
  if (!o.dryRun) await placeStage0(o, vs, emit);
  if (!o.dryRun && total > 0) {
    await seedSources(distro, o.cacheDir, emit);
    const key = await distroSigningKey(distro, o.signingKey, o.env, emit);
    if (key.generated) emit({ kind: "key-generated", path: key.privatePath });
    const upstreamKeys = await readKeys(distro.upstream.keyring);
    for (const [i, plan] of plans.entries()) {
      if (!plan.builds.length) continue;
      emit({
        kind: "arch",
        distro: distro.name,
        arch: plan.arch,
        builds: plan.builds.length,
        upToDate: plan.upToDate.length,
        jobs,
      });
      reports.push(await runArch(o, vs[i]!, plan, key, upstreamKeys, emit));
    }
    indexProblems = await settleIndexes(
      distro,
      reports.map((r) => r.arch),
      { signingKey: key.key, sourceDateEpoch: o.sourceDateEpoch ?? 0 },
      emit,
    );
  }
  const counts = tally(plans, reports);
  const status = counts.failed + counts.skipped + counts.notStarted ? 1 : 0;
  if (!o.dryRun && (total > 0 || (o.report && o.stage !== "imports")))
    reportFile = await addRound(
      o,
      { round: o.round ?? 0, reports, counts },
      total > 0 ? indexProblems : undefined,
      status,
    );
  const dryRun = !!o.dryRun;
  return {
    distro,
    plans,
    reports,
    dryRun,
    total,
    counts,
    ...(reportFile ? { reportFile } : {}),
    indexProblems,
    status,
  };
}

export interface ImagesOptions {
  distro: Distro;
  archs?: string[];
  cacheDir: string;
  env: NodeJS.ProcessEnv;
  /** Rebuild every image; default: only those whose inputs changed. */
  all?: boolean;
  /** Push to this registry, or (publish) to distro.yaml's publish.registry. */
  push?: string;
  publish?: boolean;
  insecure?: boolean;
  /** Run each image's smoke test. */
  test?: boolean;
  signingKey?: string;
  /** Sign each pushed image and attach its provenance and SBOMs with this ECDSA P-256 key (cosign-compatible). */
  signImages?: string;
  sourceDateEpoch?: number;
}

export interface ImagesResult {
  results: ImageResult[];
  status: number;
}

/** Rebuild the images (`kiln images`): the changed ones, or all; test and push them as asked. */
export async function rebuildImages(
  o: ImagesOptions,
  emit: DistroJobListener = () => undefined,
): Promise<ImagesResult> {
  const { distro } = o;
  const images = await loadImages(distro);
  if (images.problems.length)
    throw new DistroJobError(
      images.problems
        .map((p) => `${p.file}${p.line ? `:${p.line}:${p.col ?? 1}` : ""}: ${p.path ? `${p.path}: ` : ""}${p.message}`)
        .join("\n"),
    );
  let select: "all" | Map<string, string[]> = "all";
  if (!o.all) {
    const plans = await distroPlans(
      distro,
      await distroViews(distro, o.archs ?? distro.architectures, o.cacheDir),
      undefined,
    );
    const m = new Map<string, string[]>();
    for (const p of plans)
      for (const i of p.images) m.set(i.name, [...new Set([...(m.get(i.name) ?? []), ...i.reasons])]);
    select = m;
  }
  let push: ImageRunOptions["push"];
  const registry = o.push ?? (o.publish ? distro.publish.registry : undefined);
  if (o.publish && !registry)
    throw new DistroJobError(`--publish: distro.yaml has no publish.registry`, { kind: "usage" });
  if (registry) {
    push = { registry };
    if (o.insecure ?? distro.publish.insecure) push.insecure = true;
    if (o.env.KILN_REGISTRY_USERNAME) push.username = o.env.KILN_REGISTRY_USERNAME;
    if (o.env.KILN_REGISTRY_PASSWORD) push.password = o.env.KILN_REGISTRY_PASSWORD;
    if (o.signImages) push.sign = await loadSigningKey(o.signImages);
  } else if (o.signImages) throw new DistroJobError(`--sign: signing needs --push or --publish`, { kind: "usage" });
  const key = await distroSigningKey(distro, o.signingKey, o.env, emit);
  const keys = [{ name: key.key.name, pem: key.publicPem }, ...(await readKeys(distro.upstream.keyring))];
  const results = await runImages({
    distro,
    images: images.images,
    select,
    keys,
    cacheDir: o.cacheDir,
    ...(o.sourceDateEpoch !== undefined ? { sourceDateEpoch: o.sourceDateEpoch } : {}),
    ...(push ? { push } : {}),
    test: !!o.test,
    onEvent: (message) => emit({ kind: "image", message }),
  });
  return { results, status: results.some((r) => r.status === "failed") ? 1 : 0 };
}

export const MAX_ROUNDS = 4;

/**
 * Build rounds until one builds nothing (at most `max`, and not past a
 * failing round). A bootstrap changes its own build environments: once
 * stage-1 libraries exist, guests that used the imported ones resolve to
 * them, so those recipes are out of date again; re-planning until a round
 * builds nothing leaves the next run nothing to do.
 */
export async function replanRounds(
  round: (n: number) => Promise<DistroBuildResult>,
  emit: DistroJobListener = () => undefined,
  max = MAX_ROUNDS,
  /** Rounds already run before these (their numbers come first in events). */
  offset = 0,
): Promise<DistroBuildResult[]> {
  const rounds: DistroBuildResult[] = [];
  for (let n = 1; n <= max; n++) {
    if (n > 1) {
      const last = rounds[rounds.length - 1]!;
      if (last.status !== 0 || last.counts.built === 0) break;
      emit({ kind: "replan", round: n + offset });
    }
    const r = await round(n);
    rounds.push(r);
    emit({ kind: "round-done", round: n + offset, result: r });
  }
  return rounds;
}

export interface DistroJobOptions extends Omit<DistroBuildOptions, "changedSince" | "dryRun" | "keepGoing"> {
  /** Run the recipes' and the images' tests (default true). */
  runTests?: boolean;
}

export interface DistroJobResult {
  distro: Distro;
  /** Each build round's result, in order (at least one). */
  rounds: DistroBuildResult[];
  images: ImagesResult;
  ms: number;
  /** 0 when every build and image succeeded. */
  status: number;
  /** The whole run's report (also in OUT/build-report.json). */
  report: JobReport;
  /** OUT/report.html. */
  reportFile: string;
}

/**
 * `kiln distro-build`, the main job: build every out-of-date recipe (keep
 * going past failures, re-planning while builds change other recipes' build
 * environments), then rebuild and smoke-test the images whose inputs changed.
 */
export async function runDistroBuild(
  o: DistroJobOptions,
  emit: DistroJobListener = () => undefined,
): Promise<DistroJobResult> {
  const t0 = Date.now();
  const report = newJobReport(o.distro, "distro-build", t0);
  const advisories = await loadDistroAdvisories(o.distro);
  // Stage 0 of a bootstrap: the imports first, so the plan of the rest sees
  // what their packages need and provide (binutils' so:libz.so.1) and every
  // other recipe is planned, and built, once.
  const rounds: DistroBuildResult[] = [];
  if (Object.keys(o.distro.bootstrap ?? {}).length) {
    const r = await buildDistro({ ...o, keepGoing: true, report, round: 1, stage: "imports" }, emit);
    if (r.counts.built || r.status) {
      rounds.push(r);
      emit({ kind: "round-done", round: 1, result: r });
    }
  }
  if (!rounds.length || rounds[0]!.status === 0)
    rounds.push(
      ...(await replanRounds(
        (n) => buildDistro({ ...o, keepGoing: true, report, round: n + rounds.length }, emit),
        emit,
        MAX_ROUNDS,
        rounds.length,
      )),
    );
  const feed = await writeDistroFeed(o.distro, advisories, o.archs);
  emit({
    kind: "note",
    message: `advisories: ${o.distro.outDir}/security.json (${feed.secdbPackages} packages), osv/ (${feed.osvRecords} records)`,
  });
  const images = await rebuildImages(
    {
      distro: o.distro,
      ...(o.archs ? { archs: o.archs } : {}),
      cacheDir: o.cacheDir,
      env: o.env,
      test: o.runTests ?? true,
      ...(o.signingKey !== undefined ? { signingKey: o.signingKey } : {}),
      ...(o.sourceDateEpoch !== undefined ? { sourceDateEpoch: o.sourceDateEpoch } : {}),
    },
    emit,
  );
  const last = rounds[rounds.length - 1]!;
  const status = last.status || images.status;
  report.images = images.results.map(imageReport);
  report.ms = Date.now() - t0;
  report.status = status;
  const reportFile = await writeJobReport(o.distro, report);
  return { distro: o.distro, rounds, images, ms: report.ms, status, report, reportFile };
}
