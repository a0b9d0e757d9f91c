// Running a plan: builds in dependency order, up to N at once. A failure
// skips everything that depends on it; independent branches go on when
// `keepGoing` is set, otherwise no new build starts after the first failure
// (the running ones finish), as `make` and `make -k`. After each successful
// build the new packages join the in-memory view of the repository (so the
// next builds' release numbers see them) and the build key is appended to
// OUT/ARCH/.kiln-build-keys.jsonl. The run's timeline is returned for the
// report.
//
// How one recipe is built is not this module's business: a `Builder` does it
// (`localBuilder` calls @kiln/builder's buildRecipe; tests and benchmarks can
// pass their own).

import type { IndexRecord, SigningKey } from "@kiln/apk";
import { buildRecipe, type BuildEvent } from "@kiln/builder";
import { Resolver, supersedeRecords, type RepoPackage } from "@kiln/repo";
import type { Distro } from "./config.js";
import { bootstrapMapOf, bootstrapPool, droppedNames, type BootstrapMap } from "./bootstrap.js";
import { closure, realPackages, type DistroGraph, type EnvPackage } from "./graph.js";
import { buildKey, KeyStore, type KeyRecord } from "./keys.js";
import { keyEnvironment, reasonText, type BuildPlan, type PlannedBuild } from "./plan.js";
import type { RecipeNode } from "./recipes.js";
import { overheadTotals, type BuildPhaseTimes, type OverheadTotals } from "./render.js";
import { bootstrapRepoDir, type RepoState } from "./state.js";

export interface BuildJob {
  recipe: RecipeNode;
  planned: PlannedBuild;
  arch: string;
  /** The release number to build at. */
  epoch: number;
  fullVersion: string;
  /** What the build environment resolves to now, for builders that do not report their guest. */
  resolveEnvironment(): EnvPackage[];
  /** Package names the build guest must not resolve to (the bootstrap's choice, see bootstrap.ts). */
  guestExclude: string[];
  /** A stage-0 recipe: its packages go to the bootstrap repository (OUT/bootstrap, see stage0-repo.ts), not OUT. */
  stage0Repository: boolean;
}

export interface BuildOutcome {
  /** Index records of the packages written (main package and subpackages). */
  records: IndexRecord[];
  /** What the build guest resolved to; default: `resolveEnvironment()`. */
  guest?: Array<{ name: string; version: string; checksum: string }>;
  log?: string;
  /** Time in the recipe's own build steps and test steps (ms), when the builder measures it. */
  work?: { steps: number; tests: number; parts?: Record<string, number> };
}

export type Builder = (job: BuildJob, progress: (e: BuildEvent) => void) => Promise<BuildOutcome>;

export type RunStatus = "built" | "failed" | "skipped" | "not-started";

export interface RunEntry {
  recipe: string;
  path: string;
  fullVersion: string;
  status: RunStatus;
  reasons: string[];
  /** ms since the run started. */
  start?: number;
  end?: number;
  ms?: number;
  error?: string;
  log?: string;
  packages?: string[];
  /** For skipped builds: the failed build they depended on. */
  blockedBy?: string;
  /** Where a build's time went (ms): its steps, its tests, and the rest (guests, packaging, signing, indexing, keys). */
  phases?: BuildPhaseTimes;
}

export interface RunReport {
  distro: string;
  arch: string;
  jobs: number;
  keepGoing: boolean;
  startedAt: string;
  ms: number;
  entries: RunEntry[];
  upToDate: number;
  /** Per-build overhead summed over the builds that measured it. */
  overhead: OverheadTotals;
}

export type RunEvent =
  | { kind: "start"; recipe: string; fullVersion: string; index: number; total: number; reasons: string[] }
  | { kind: "build"; recipe: string; event: BuildEvent }
  | { kind: "finish"; entry: RunEntry };

export interface RunOptions {
  jobs: number;
  keepGoing: boolean;
  builder: Builder;
  onEvent?: (e: RunEvent) => void;
}

export interface RunContext {
  distro: Pick<Distro, "name" | "outDir">;
  graph: DistroGraph;
  plan: BuildPlan;
  /** Updated as packages are built. */
  state: RepoState;
  keys: KeyStore;
}

function firstLines(s: string, n: number): string {
  return s.split("\n").slice(0, n).join("\n");
}

export async function runPlan(ctx: RunContext, opts: RunOptions): Promise<RunReport> {
  // Compaction rewrites the whole file: start from every record in it, not only this run's.
  await ctx.keys.load();
  const run = new PlanRun(ctx, opts);
  await run.schedule();
  await ctx.keys.compact();
  return run.report();
}

/** One run of a plan: the scheduler's state and the builds it starts. */
class PlanRun {
  private readonly jobs: number;
  private readonly emit: (e: RunEvent) => void;
  private readonly t0 = Date.now();
  private readonly startedAt = new Date(this.t0).toISOString();
  private readonly byName: Map<string, RecipeNode>;
  private readonly planned: Map<string, PlannedBuild>;
  private readonly position: Map<string, number>;
  /** Package name → the recipe that produces it. */
  private readonly producer = new Map<string, string>();
  private readonly entries = new Map<string, RunEntry>();
  /** The planned builds each build still waits for. */
  private readonly waiting: Map<string, Set<string>>;
  private readonly dependents = new Map<string, string[]>();
  /** Builds whose dependencies are done, in plan order. */
  private readonly ready: string[];
  private readonly done = new Set<string>();
  private readonly running = new Map<string, Promise<void>>();
  private stopped = false;
  private started = 0;
  /** Over the repository as it is now (dropped when a build adds packages). */
  private resolver: Resolver | undefined;
  private readonly bootstrap: BootstrapMap;

  constructor(
    private readonly ctx: RunContext,
    private readonly opts: RunOptions,
  ) {
    const { plan, graph } = ctx;
    this.jobs = Math.max(1, Math.floor(opts.jobs));
    this.emit = opts.onEvent ?? (() => undefined);
    this.byName = new Map(graph.recipes.map((r) => [r.name, r]));
    this.bootstrap = bootstrapMapOf(graph.bootstrap);
    this.planned = new Map(plan.builds.map((b) => [b.recipe, b]));
    this.position = new Map(plan.builds.map((b, i) => [b.recipe, i]));
    for (const r of graph.recipes)
      for (const o of r.outputs) if (!this.producer.has(o.name)) this.producer.set(o.name, r.name);
    for (const b of plan.builds)
      this.entries.set(b.recipe, {
        recipe: b.recipe,
        path: b.path,
        fullVersion: b.fullVersion,
        status: "not-started",
        reasons: b.reasons.map(reasonText),
      });
    this.waiting = new Map(plan.builds.map((b) => [b.recipe, new Set(b.after)]));
    for (const b of plan.builds)
      for (const a of b.after) (this.dependents.get(a) ?? this.dependents.set(a, []).get(a)!).push(b.recipe);
    this.ready = plan.builds.filter((b) => b.after.length === 0).map((b) => b.recipe);
  }

  /** Start ready builds (up to `jobs` at once) until nothing is left to start and nothing runs. */
  async schedule(): Promise<void> {
    const { plan } = this.ctx;
    let gate: Promise<void> = Promise.resolve();
    for (;;) {
      while (!this.stopped && this.running.size < this.jobs && this.ready.length) {
        await gate;
        if (this.stopped) break;
        // A guest recipe waits until every planned import (kiln-native steps
        // only) has finished: what an imported package needs (binutils' perl
        // scripts, gcc's libraries) is only known once it is built.
        const importsPending = plan.builds.some(
          (b) => this.byName.get(b.recipe)?.needsGuest === false && !this.done.has(b.recipe),
        );
        const idx = this.ready.findIndex((n) => !importsPending || this.byName.get(n)?.needsGuest === false);
        if (idx < 0) break;
        const name = this.ready.splice(idx, 1)[0]!;
        if (this.done.has(name)) continue;
        gate = this.start(name);
      }
      if (this.running.size === 0) break;
      await Promise.race(this.running.values());
    }
  }

  report(): RunReport {
    const { plan } = this.ctx;
    const entries = plan.builds.map((b) => this.entries.get(b.recipe)!);
    return {
      distro: this.ctx.distro.name,
      arch: this.ctx.state.arch,
      jobs: this.jobs,
      keepGoing: this.opts.keepGoing,
      startedAt: this.startedAt,
      ms: Date.now() - this.t0,
      entries,
      upToDate: plan.upToDate.length,
      overhead: overheadTotals(entries),
    };
  }

  /** Mark `failed`'s dependents (transitively) skipped. */
  private skipDependents(failed: string): void {
    const queue = [...(this.dependents.get(failed) ?? [])];
    while (queue.length) {
      const d = queue.shift()!;
      const e = this.entries.get(d)!;
      if (e.status !== "not-started" || this.done.has(d)) continue;
      e.status = "skipped";
      e.blockedBy = failed;
      this.done.add(d);
      this.emit({ kind: "finish", entry: e });
      queue.push(...(this.dependents.get(d) ?? []));
    }
  }

  /** A build ended: its dependents become ready (in plan order), or are skipped when it failed. */
  private finish(name: string, ok: boolean): void {
    this.done.add(name);
    if (ok) {
      for (const d of this.dependents.get(name) ?? []) {
        const w = this.waiting.get(d)!;
        w.delete(name);
        if (w.size === 0 && !this.done.has(d) && this.entries.get(d)!.status === "not-started") {
          this.ready.push(d);
          this.ready.sort((a, b) => this.position.get(a)! - this.position.get(b)!);
        }
      }
    } else {
      this.skipDependents(name);
      if (!this.opts.keepGoing) this.stopped = true;
    }
  }

  /** The packages a build of `name` may resolve from now, and the names it must leave out. */
  private buildPool(name: string): { pool: RepoPackage[]; exclude: string[] } {
    const real = realPackages(this.ctx.state);
    const use = new Set(this.planned.get(name)?.stage0 ?? []);
    const producerOf = (n: string) => this.producer.get(n);
    if (!this.bootstrap.replacementOf.size) return { pool: real, exclude: [] };
    const pool = bootstrapPool(real, this.bootstrap, producerOf, use);
    return { pool, exclude: droppedNames(real, pool) };
  }

  private resolveEnvironment(r: RecipeNode): EnvPackage[] {
    const { state } = this.ctx;
    const resolver = this.bootstrap.replacementOf.size
      ? new Resolver(this.buildPool(r.name).pool, { arch: state.arch })
      : (this.resolver ??= new Resolver(realPackages(state), { arch: state.arch }));
    return closure(resolver, r.buildRequests).packages.map((p) => {
      const e: EnvPackage = { name: p.record.name, version: p.record.version, repository: p.repo.url };
      if (p.record.checksum) e.checksum = p.record.checksum;
      const pr = this.producer.get(p.record.name);
      if (pr) e.recipe = pr;
      return e;
    });
  }

  /** Start building `name`; the promise returned resolves once the next build may start (this one has its guest, or ended). */
  private start(name: string): Promise<void> {
    const b = this.planned.get(name)!;
    const r = this.byName.get(name)!;
    const entry = this.entries.get(name)!;
    entry.start = Date.now() - this.t0;
    this.started++;
    this.emit({
      kind: "start",
      recipe: name,
      fullVersion: b.fullVersion,
      index: this.started,
      total: this.ctx.plan.builds.length,
      reasons: entry.reasons,
    });
    let openGate!: () => void;
    const gate = new Promise<void>((res) => (openGate = res));
    const job: BuildJob = {
      recipe: r,
      planned: b,
      arch: this.ctx.state.arch,
      epoch: b.epoch,
      fullVersion: b.fullVersion,
      resolveEnvironment: () => this.resolveEnvironment(r),
      guestExclude: this.buildPool(name).exclude,
      stage0Repository: this.bootstrap.replacementOf.has(name),
    };
    const progress = (e: BuildEvent) => {
      // The next build starts once this one has its guest: two builds never assemble the same guest at once.
      if (e.kind === "guest" || e.kind === "step" || e.kind === "done") openGate();
      this.emit({ kind: "build", recipe: name, event: e });
    };
    const p = (async () => {
      try {
        await this.build(job, progress, entry);
      } catch (e) {
        entry.status = "failed";
        entry.error = firstLines((e as Error).message ?? String(e), 30);
        const log = (e as { log?: unknown }).log;
        if (typeof log === "string") entry.log = log;
      } finally {
        entry.end = Date.now() - this.t0;
        entry.ms = entry.end - entry.start!;
        if (entry.phases) entry.phases.overhead = Math.max(0, entry.ms - entry.phases.steps - entry.phases.tests);
        openGate();
        this.running.delete(name);
        this.emit({ kind: "finish", entry });
        this.finish(name, entry.status === "built");
      }
    })();
    this.running.set(name, p);
    return gate;
  }

  /** Run the builder, add its packages to the repository view, and record the build key. */
  private async build(job: BuildJob, progress: (e: BuildEvent) => void, entry: RunEntry): Promise<void> {
    const { state } = this.ctx;
    const { recipe: r, planned: b } = job;
    const out = await this.opts.builder(job, progress);
    if (out.work)
      entry.phases = {
        steps: out.work.steps,
        tests: out.work.tests,
        overhead: 0,
        ...(out.work.parts ? { parts: { ...out.work.parts } } : {}),
      };
    if (job.stage0Repository) state.stage0 = supersedeRecords(state.stage0 ?? [], out.records).records;
    else state.local = supersedeRecords(state.local, out.records).records;
    this.resolver = undefined;
    const guest: EnvPackage[] = out.guest
      ? out.guest.map((g) => {
          const e: EnvPackage = { name: g.name, version: g.version, checksum: g.checksum, repository: "" };
          const pr = this.producer.get(g.name);
          if (pr) e.recipe = pr;
          return e;
        })
      : this.resolveEnvironment(r);
    const environment = keyEnvironment(guest, b.standIns);
    const rec: KeyRecord = {
      recipe: r.name,
      path: r.path,
      arch: state.arch,
      version: r.version,
      epoch: r.epoch,
      fullVersion: b.fullVersion,
      key: buildKey(r.own, environment),
      own: r.own,
      files: r.files,
      environment,
      standIns: b.standIns,
      packages: out.records.map((x) => ({ name: x.name, version: x.version, checksum: x.checksum ?? "" })),
    };
    await this.ctx.keys.append(rec);
    state.keys.set(r.name, rec);
    entry.status = "built";
    entry.packages = out.records.map((x) => `${x.name}-${x.version}`);
    if (out.log) entry.log = out.log;
  }
}

export interface LocalBuilderOptions {
  distro: Distro;
  arch: string;
  signingKey: SigningKey;
  publicKeyPem: Buffer;
  /** Keys trusted for the upstream repositories. */
  keyringAppend: Array<{ name: string; pem: Buffer }>;
  cacheDir: string;
  sourceDateEpoch: number;
  runTests: boolean;
  stepTimeoutMs?: number;
}

/** Builds with @kiln/builder into the distribution's output repository. */
export function localBuilder(o: LocalBuilderOptions): Builder {
  return async (job, progress) => {
    const result = await buildRecipe(job.recipe.file, {
      arch: o.arch,
      outDir: o.distro.outDir,
      ...(job.stage0Repository ? { repositoryDir: bootstrapRepoDir(o.distro.outDir) } : {}),
      localRepositories: [bootstrapRepoDir(o.distro.outDir)],
      signingKey: o.signingKey,
      publicKeyPem: o.publicKeyPem,
      repositoryAppend: o.distro.upstream.repositories,
      keyringAppend: o.keyringAppend,
      pipelineDirs: o.distro.pipelineDirs,
      cacheDir: o.cacheDir,
      ...(o.distro.cacheMaxSize !== undefined ? { cacheMaxSize: o.distro.cacheMaxSize } : {}),
      sourceDateEpoch: o.sourceDateEpoch,
      mirrors: { mirrors: o.distro.mirrors },
      distroId: o.distro.id,
      runTests: o.runTests,
      onEvent: progress,
      epochOverride: job.epoch,
      ...(job.recipe.environment ? { environment: job.recipe.environment } : {}),
      ...(job.guestExclude.length ? { guestExclude: job.guestExclude } : {}),
      ...(o.stepTimeoutMs ? { stepTimeoutMs: o.stepTimeoutMs } : {}),
    });
    const records = result.packages.map((p) => p.record);
    return {
      records,
      guest: result.guest,
      log: result.log,
      work: { steps: result.phases.steps, tests: result.phases.tests, parts: { ...result.phases.parts } },
    };
  };
}
