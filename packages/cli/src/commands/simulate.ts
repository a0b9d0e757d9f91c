// `kiln plan --simulate --workers N[,N…]`: how long building the whole
// distribution would take on N workers (kiln worker), from the durations the
// last builds recorded (OUT/build-report.json, OUT/queue-report.json), by
// @kiln/queue's list-scheduling simulation. `--synthetic COUNT` simulates a
// generated graph of COUNT recipes instead.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { defaultCacheDir } from "@kiln/repo";
import { distroViews, findDistroFile, loadDistro } from "@kiln/distro";
import { UserError, type Io } from "../util.js";

export interface SimulateValues {
  distro?: string | undefined;
  arch: string[];
  cacheDir?: string | undefined;
  json: boolean;
  workers?: string | undefined;
  synthetic?: number | undefined;
  dispatchMs?: number | undefined;
}

function workerCounts(raw: string | undefined): number[] {
  const list = (raw ?? "1,2,8,64").split(",").map((s) => s.trim());
  const out: number[] = [];
  for (const s of list) {
    if (!/^\d{1,6}$/.test(s) || Number(s) < 1)
      throw new UserError(`--workers: expected worker counts such as 1,2,8,64, got ${JSON.stringify(raw)}`, 2);
    out.push(Number(s));
  }
  return out;
}

/** Recorded build durations by recipe: the latest of the run report and the queue report. */
async function recordedDurations(outDir: string): Promise<Map<string, number>> {
  const ms = new Map<string, number>();
  const report = await readFile(join(outDir, "build-report.json"), "utf8").catch(() => undefined);
  if (report) {
    try {
      type Entries = { entries?: Array<{ recipe?: unknown; ms?: unknown; status?: unknown }> };
      const parsed = JSON.parse(report) as Entries[] | { rounds?: Array<{ reports?: Entries[] }> };
      // An older kiln wrote one round's reports as an array; now the whole run, round by round (later rounds win).
      const reports = Array.isArray(parsed) ? parsed : (parsed.rounds ?? []).flatMap((r) => r.reports ?? []);
      for (const r of reports)
        for (const e of r.entries ?? [])
          if (typeof e.recipe === "string" && typeof e.ms === "number" && e.status === "built") ms.set(e.recipe, e.ms);
    } catch {
      // An unreadable report records nothing.
    }
  }
  return ms;
}

function fmt(ms: number): string {
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export async function simulatePlan(v: SimulateValues, io: Io): Promise<number> {
  const { simulate, syntheticGraph } = await import("@kiln/queue");
  const counts = workerCounts(v.workers);
  let jobs: Array<{ name: string; ms: number; deps: string[] }>;
  let what: string;
  let note = "";
  if (v.synthetic !== undefined) {
    jobs = syntheticGraph(v.synthetic, 1);
    what = `a generated graph of ${v.synthetic} recipes (log-normal build times, median 60 s)`;
  } else {
    const f = v.distro ?? findDistroFile(process.cwd());
    if (!f) throw new UserError("no distro.yaml here or in any parent directory (give --distro FILE)");
    const distro = await loadDistro(f);
    const arch = v.arch[0] ?? distro.architectures[0]!;
    const [view] = await distroViews(distro, [arch], v.cacheDir ?? defaultCacheDir(io.env));
    const g = view!.graph;
    const recorded = await recordedDurations(distro.outDir);
    const known = g.recipes.map((r) => recorded.get(r.name)).filter((x): x is number => x !== undefined);
    const sorted = [...known].sort((a, b) => a - b);
    const fallback = sorted.length ? sorted[Math.floor(sorted.length / 2)]! : 60_000;
    const deps = new Map<string, string[]>();
    for (const e of g.edges)
      if (!e.cut && e.from !== e.to) (deps.get(e.from) ?? deps.set(e.from, []).get(e.from)!).push(e.to);
    jobs = g.recipes.map((r) => ({ name: r.name, ms: recorded.get(r.name) ?? fallback, deps: deps.get(r.name) ?? [] }));
    what = `${distro.name} (${arch}), ${jobs.length} recipes`;
    note = `${known.length} durations recorded in ${join(distro.outDir, "build-report.json")}; the other ${jobs.length - known.length} taken as the median (${fmt(fallback)})`;
  }
  const results = counts.map((n) => simulate(jobs, n, { dispatchMs: v.dispatchMs ?? 0 }));
  if (v.json) {
    io.out(JSON.stringify({ graph: what, note, results }, null, 2));
    return 0;
  }
  io.out(`${what}${note ? `\n${note}` : ""}`);
  io.out(`workers  makespan    critical path  total work  utilization  mean queue wait`);
  for (const r of results)
    io.out(
      `${String(r.workers).padEnd(8)} ${fmt(r.makespanMs).padEnd(11)} ${fmt(r.criticalPathMs).padEnd(14)} ${fmt(r.totalWorkMs).padEnd(11)} ${(r.utilization * 100).toFixed(0).padStart(4)} %       ${fmt(r.meanWaitMs)}`,
    );
  return 0;
}
