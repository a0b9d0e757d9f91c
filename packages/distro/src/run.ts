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

import { indexRecordForPackage, mergeIndexRecords, type IndexRecord, type SigningKey } from "@kiln/apk";
import { buildRecipe, type BuildEvent } from "@kiln/builder";
import { Resolver } from "@kiln/repo";
import type { Distro } from "./config.js";
import { closure, realPackages, type DistroGraph, type EnvPackage } from "./graph.js";
import { buildKey, KeyStore, type KeyRecord } from "./keys.js";
import { keyEnvironment, reasonText, type BuildPlan, type PlannedBuild } from "./plan.js";
import type { RecipeNode } from "./recipes.js";
import type { RepoState } from "./state.js";

export interface BuildJob {
  recipe: RecipeNode;
  planned: PlannedBuild;
  arch: string;
  /** The release number to build at. */
  epoch: number;
  fullVersion: string;
  /** What the build environment resolves to now, for builders that do not report their guest. */
  resolveEnvironment(): EnvPackage[];
}

export interface BuildOutcome {
  /** Index records of the packages written (main package and subpackages). */
  records: IndexRecord[];
  /** What the build guest resolved to; default: `resolveEnvironment()`. */
  guest?: Array<{ name: string; version: string; checksum: string }>;
  log?: string;
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
  const { plan, graph, state } = ctx;
  const jobs = Math.max(1, Math.floor(opts.jobs));
  const emit = opts.onEvent ?? (() => undefined);
  // Compaction rewrites the whole file: start from every record in it, not only this run's.
  await ctx.keys.load();
  const t0 = Date.now();
  const startedAt = new Date(t0).toISOString();
  const byName = new Map(graph.recipes.map((r) => [r.name, r]));
  const planned = new Map(plan.builds.map((b) => [b.recipe, b]));
  const position = new Map(plan.builds.map((b, i) => [b.recipe, i]));
  const producer = new Map<string, string>();
  for (const r of graph.recipes) for (const o of r.outputs) if (!producer.has(o.name)) producer.set(o.name, r.name);

  const entries = new Map<string, RunEntry>();
  for (const b of plan.builds)
    entries.set(b.recipe, {
      recipe: b.recipe,
      path: b.path,
      fullVersion: b.fullVersion,
      status: "not-started",
      reasons: b.reasons.map(reasonText),
    });
  const waiting = new Map(plan.builds.map((b) => [b.recipe, new Set(b.after)]));
  const dependents = new Map<string, string[]>();
  for (const b of plan.builds)
    for (const a of b.after) (dependents.get(a) ?? dependents.set(a, []).get(a)!).push(b.recipe);

  const ready: string[] = plan.builds.filter((b) => b.after.length === 0).map((b) => b.recipe);
  const done = new Set<string>();
  const running = new Map<string, Promise<void>>();
  let stopped = false;
  let started = 0;

  const skipDependents = (failed: string) => {
    const queue = [...(dependents.get(failed) ?? [])];
    while (queue.length) {
      const d = queue.shift()!;
      const e = entries.get(d)!;
      if (e.status !== "not-started" || done.has(d)) continue;
      e.status = "skipped";
      e.blockedBy = failed;
      done.add(d);
      emit({ kind: "finish", entry: e });
      queue.push(...(dependents.get(d) ?? []));
    }
  };

  const finish = (name: string, ok: boolean) => {
    done.add(name);
    if (ok) {
      for (const d of dependents.get(name) ?? []) {
        const w = waiting.get(d)!;
        w.delete(name);
        if (w.size === 0 && !done.has(d) && entries.get(d)!.status === "not-started") {
          ready.push(d);
          ready.sort((a, b) => position.get(a)! - position.get(b)!);
        }
      }
    } else {
      skipDependents(name);
      if (!opts.keepGoing) stopped = true;
    }
  };

  let resolver: Resolver | undefined;
  const resolveEnvironment = (r: RecipeNode): EnvPackage[] => {
    resolver ??= new Resolver(realPackages(state), { arch: state.arch });
    return closure(resolver, r.buildRequests).packages.map((p) => {
      const e: EnvPackage = { name: p.record.name, version: p.record.version, repository: p.repo.url };
      if (p.record.checksum) e.checksum = p.record.checksum;
      const pr = producer.get(p.record.name);
      if (pr) e.recipe = pr;
      return e;
    });
  };

  const start = (name: string): Promise<void> => {
    const b = planned.get(name)!;
    const r = byName.get(name)!;
    const entry = entries.get(name)!;
    entry.start = Date.now() - t0;
    started++;
    emit({
      kind: "start",
      recipe: name,
      fullVersion: b.fullVersion,
      index: started,
      total: plan.builds.length,
      reasons: entry.reasons,
    });
    let openGate!: () => void;
    const gate = new Promise<void>((res) => (openGate = res));
    const job: BuildJob = {
      recipe: r,
      planned: b,
      arch: state.arch,
      epoch: b.epoch,
      fullVersion: b.fullVersion,
      resolveEnvironment: () => resolveEnvironment(r),
    };
    const progress = (e: BuildEvent) => {
      // The next build starts once this one has its guest: two builds never assemble the same guest at once.
      if (e.kind === "guest" || e.kind === "step" || e.kind === "done") openGate();
      emit({ kind: "build", recipe: name, event: e });
    };
    const p = (async () => {
      try {
        const out = await opts.builder(job, progress);
        state.local = mergeIndexRecords(state.local, out.records);
        resolver = undefined;
        const guest: EnvPackage[] = out.guest
          ? out.guest.map((g) => {
              const e: EnvPackage = { name: g.name, version: g.version, checksum: g.checksum, repository: "" };
              const pr = producer.get(g.name);
              if (pr) e.recipe = pr;
              return e;
            })
          : resolveEnvironment(r);
        const environment = keyEnvironment(guest, b.standIns);
        const rec: KeyRecord = {
          recipe: name,
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
        await ctx.keys.append(rec);
        state.keys.set(name, rec);
        entry.status = "built";
        entry.packages = out.records.map((x) => `${x.name}-${x.version}`);
        if (out.log) entry.log = out.log;
      } catch (e) {
        entry.status = "failed";
        entry.error = firstLines((e as Error).message ?? String(e), 30);
        const log = (e as { log?: unknown }).log;
        if (typeof log === "string") entry.log = log;
      } finally {
        entry.end = Date.now() - t0;
        entry.ms = entry.end - entry.start!;
        openGate();
        running.delete(name);
        emit({ kind: "finish", entry });
        finish(name, entry.status === "built");
      }
    })();
    running.set(name, p);
    return gate;
  };

  let gate: Promise<void> = Promise.resolve();
  for (;;) {
    while (!stopped && running.size < jobs && ready.length) {
      await gate;
      if (stopped) break;
      // A guest recipe waits until every planned import (kiln-native steps
      // only) has finished: what an imported package needs (binutils' perl
      // scripts, gcc's libraries) is only known once it is built.
      const importsPending = plan.builds.some((b) => byName.get(b.recipe)?.needsGuest === false && !done.has(b.recipe));
      const idx = ready.findIndex((n) => !importsPending || byName.get(n)?.needsGuest === false);
      if (idx < 0) break;
      const name = ready.splice(idx, 1)[0]!;
      if (done.has(name)) continue;
      gate = start(name);
    }
    if (running.size === 0) break;
    await Promise.race(running.values());
  }
  await ctx.keys.compact();
  return {
    distro: ctx.distro.name,
    arch: state.arch,
    jobs,
    keepGoing: opts.keepGoing,
    startedAt,
    ms: Date.now() - t0,
    entries: plan.builds.map((b) => entries.get(b.recipe)!),
    upToDate: plan.upToDate.length,
  };
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
      signingKey: o.signingKey,
      publicKeyPem: o.publicKeyPem,
      repositoryAppend: o.distro.upstream.repositories,
      keyringAppend: o.keyringAppend,
      pipelineDirs: o.distro.pipelineDirs,
      cacheDir: o.cacheDir,
      sourceDateEpoch: o.sourceDateEpoch,
      mirrors: { mirrors: o.distro.mirrors },
      runTests: o.runTests,
      onEvent: progress,
      epochOverride: job.epoch,
      ...(job.recipe.environment ? { environment: job.recipe.environment } : {}),
      ...(o.stepTimeoutMs ? { stepTimeoutMs: o.stepTimeoutMs } : {}),
    });
    const records = await Promise.all(result.packages.map((p) => indexRecordForPackage(p.file)));
    return { records, guest: result.guest, log: result.log };
  };
}
