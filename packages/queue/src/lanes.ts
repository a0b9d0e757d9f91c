// The run's timeline with one lane per worker: OUT/queue-report.json for
// machines and OUT/queue-report.html (a small self-contained page) for people.

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "@kiln/core";
import type { LaneEntry } from "./coordinator.js";

const esc = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

export interface LaneReport {
  startedAt: string;
  ms: number;
  workers: Array<{ worker: string; jobs: number; busyMs: number }>;
  entries: LaneEntry[];
}

export function laneReport(entries: readonly LaneEntry[]): LaneReport {
  const t0 = Math.min(...entries.map((e) => e.queued), Date.now());
  const t1 = Math.max(...entries.map((e) => e.end), t0);
  const by = new Map<string, LaneEntry[]>();
  for (const e of entries) {
    const w = e.worker ?? "(none)";
    (by.get(w) ?? by.set(w, []).get(w)!).push(e);
  }
  return {
    startedAt: new Date(t0).toISOString(),
    ms: t1 - t0,
    workers: [...by.entries()]
      .sort((a, b) => a[0].localeCompare(b[0]))
      .map(([worker, l]) => ({
        worker,
        jobs: l.length,
        busyMs: l.reduce((n, e) => n + (e.end - (e.start ?? e.end)), 0),
      })),
    entries: [...entries].sort((a, b) => a.queued - b.queued || a.recipe.localeCompare(b.recipe)),
  };
}

export function renderLanes(r: LaneReport): string {
  const t0 = Date.parse(r.startedAt);
  const span = Math.max(1, r.ms);
  const pct = (t: number) => (((t - t0) / span) * 100).toFixed(2);
  const rows = r.workers.map((w) => {
    const bars = r.entries
      .filter((e) => (e.worker ?? "(none)") === w.worker)
      .map((e) => {
        const s = e.start ?? e.queued;
        const width = Math.max(0.3, ((e.end - s) / span) * 100).toFixed(2);
        const title = `${e.recipe} ${e.fullVersion} (${e.arch}): ${e.status}, ${((e.end - s) / 1000).toFixed(1)} s, ${e.attempts} attempt(s)${e.error ? `: ${e.error}` : ""}`;
        return `<div class="bar ${e.status}" style="left:${pct(s)}%;width:${width}%" title="${esc(title)}">${esc(e.recipe)}</div>`;
      })
      .join("");
    return `<div class="lane"><div class="name">${esc(w.worker)}<br><small>${w.jobs} job(s), busy ${(w.busyMs / 1000).toFixed(1)} s</small></div><div class="track">${bars}</div></div>`;
  });
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>kiln queue run</title><style>
body{font:14px sans-serif;margin:1em}.lane{display:flex;margin:4px 0}.name{width:14em;flex:none}
.track{position:relative;flex:1;height:2.2em;background:#f3f3f3}.bar{position:absolute;top:2px;bottom:2px;overflow:hidden;
white-space:nowrap;font-size:11px;padding:0 2px;border-right:1px solid #fff;box-sizing:border-box}
.built{background:#9bd19b}.failed{background:#e89a9a}
</style></head><body>
<h1>Queue run, ${esc(r.startedAt)}: ${(r.ms / 1000).toFixed(1)} s, ${r.entries.length} job(s), ${r.workers.length} lane(s)</h1>
${rows.join("\n")}
</body></html>
`;
}

/** Write OUT/queue-report.json and OUT/queue-report.html; returns the HTML's path. */
export async function writeLaneReport(outDir: string, entries: readonly LaneEntry[]): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const r = laneReport(entries);
  await writeFileAtomic(join(outDir, "queue-report.json"), JSON.stringify(r, null, 2) + "\n");
  const html = join(outDir, "queue-report.html");
  await writeFileAtomic(html, renderLanes(r));
  return html;
}
