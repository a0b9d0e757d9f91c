// Renderings of the graph (Graphviz, JSON) and of a build run (HTML report).

import type { DistroGraph } from "./graph.js";
import type { BuildPlan } from "./plan.js";
import type { RunEntry, RunReport } from "./run.js";

/** Where one build's time went (ms). */
export interface BuildPhaseTimes {
  /** The recipe's own build steps. */
  steps: number;
  /** Its test steps. */
  tests: number;
  /** Everything else: guest assembly, packaging, signing, indexing, the build key. */
  overhead: number;
  /** Named parts of the overhead (ms), as the builder measured them (guest, package, testGuests, publish, cleanup). */
  parts?: Record<string, number>;
}

/** The overhead's parts as reports name them; what they do not cover is "other". */
const PART_LABELS: Record<string, string> = {
  guest: "build guests",
  package: "packaging",
  testGuests: "test guests",
  publish: "publishing",
  cleanup: "cleanup",
};

function addParts(into: Record<string, number>, from: Record<string, number> | undefined): void {
  for (const [k, v] of Object.entries(from ?? {})) into[k] = (into[k] ?? 0) + v;
}

/** "build guests 3.1 s, packaging 1.0 s, …, other 0.2 s": the parts, largest first, and the rest of `overhead`. */
export function overheadPartsText(overhead: number, parts: Record<string, number> | undefined): string {
  const named = Object.entries(parts ?? {}).filter(([, v]) => v > 0);
  if (!named.length) return "";
  const other = Math.max(0, overhead - named.reduce((n, [, v]) => n + v, 0));
  return [...named.sort((a, b) => b[1] - a[1]), ["other", other] as [string, number]]
    .map(([k, v]) => `${PART_LABELS[k] ?? k} ${secs(v)}`)
    .join(", ");
}

/** Per-build overhead summed over builds; `percent` is overhead as a share of the steps' time (steps + tests). */
export interface OverheadTotals extends BuildPhaseTimes {
  /** How many builds measured their phases. */
  builds: number;
  percent: number | null;
}

/** The totals of the entries that measured their phases (built or failed after building). */
export function overheadTotals(entries: readonly Pick<RunEntry, "phases">[]): OverheadTotals {
  const t: OverheadTotals = { builds: 0, steps: 0, tests: 0, overhead: 0, parts: {}, percent: null };
  for (const e of entries) {
    if (!e.phases) continue;
    t.builds++;
    t.steps += e.phases.steps;
    t.tests += e.phases.tests;
    t.overhead += e.phases.overhead;
    addParts(t.parts!, e.phases.parts);
  }
  return withPercent(t);
}

/** One line about the overhead: "overhead 1.2 s over 30.0 s of steps and tests (4.0%) in 3 builds", or undefined when nothing measured it. */
export function overheadText(t: OverheadTotals): string | undefined {
  if (!t.builds) return undefined;
  const pct = t.percent === null ? "" : ` (${t.percent.toFixed(1)}%)`;
  const parts = overheadPartsText(t.overhead, t.parts);
  return `per-build overhead ${secs(t.overhead)} over ${secs(t.steps + t.tests)} of steps and tests${pct} in ${t.builds} build${t.builds === 1 ? "" : "s"}${parts ? `: ${parts}` : ""}`;
}

/** Several reports' totals summed (every architecture and round of a run). */
export function sumOverhead(ts: readonly OverheadTotals[]): OverheadTotals {
  const t: OverheadTotals = { builds: 0, steps: 0, tests: 0, overhead: 0, parts: {}, percent: null };
  for (const x of ts) {
    t.builds += x.builds;
    t.steps += x.steps;
    t.tests += x.tests;
    t.overhead += x.overhead;
    addParts(t.parts!, x.parts);
  }
  return withPercent(t);
}

function withPercent(t: OverheadTotals): OverheadTotals {
  const work = t.steps + t.tests;
  t.percent = t.builds && work > 0 ? Math.round((t.overhead / work) * 1000) / 10 : null;
  return t;
}

function q(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** The graph as Graphviz: recipes as boxes (with their subpackages), images as folders; dashed edges stand in for a cycle, dotted ones are test-only. Planned builds are filled. */
export function graphToDot(graph: DistroGraph, plan?: BuildPlan): string {
  const planned = new Set(plan?.builds.map((b) => b.recipe) ?? []);
  const changedImages = new Set(plan?.images.map((i) => i.name) ?? []);
  const lines = [
    `digraph distro {`,
    `  rankdir=LR;`,
    `  node [fontname="monospace", fontsize=10];`,
    `  edge [fontname="monospace", fontsize=8];`,
  ];
  for (const r of graph.recipes) {
    const subs = r.outputs.slice(1).map((o) => o.name);
    const label = `${r.name}\\n${r.fullVersion}${subs.length ? `\\n(${subs.join(", ")})` : ""}`;
    lines.push(
      `  ${q(`recipe:${r.name}`)} [shape=box, label="${label}"${planned.has(r.name) ? ', style=filled, fillcolor="#ffe08a"' : ""}];`,
    );
  }
  for (const i of graph.images)
    lines.push(
      `  ${q(`image:${i.name}`)} [shape=folder, label="${i.name}"${changedImages.has(i.name) ? ', style=filled, fillcolor="#9fd3ff"' : ""}];`,
    );
  for (const e of graph.edges) {
    if (e.from === e.to && e.cut !== "stand-in") continue;
    const attrs = [`label=${q(e.packages.join(" "))}`];
    if (e.cut === "stand-in")
      attrs.push(
        "style=dashed",
        'color="#c0392b"',
        `tooltip=${q(`uses existing ${e.standIns?.map((s) => `${s.name}-${s.version}`).join(", ")}`)}`,
      );
    else if (e.kind === "test") attrs.push("style=dotted");
    lines.push(`  ${q(`recipe:${e.from}`)} -> ${q(`recipe:${e.to}`)} [${attrs.join(", ")}];`);
  }
  for (const i of graph.images)
    for (const r of graph.imageRecipes[i.name] ?? [])
      lines.push(`  ${q(`image:${i.name}`)} -> ${q(`recipe:${r}`)} [color="#2980b9"];`);
  lines.push("}");
  return lines.join("\n") + "\n";
}

export function graphToJson(graph: DistroGraph, plan?: BuildPlan): unknown {
  const planned = new Map(plan?.builds.map((b) => [b.recipe, b]) ?? []);
  return {
    arch: graph.arch,
    order: graph.order,
    recipes: graph.recipes.map((r) => ({
      name: r.name,
      path: r.path,
      version: r.fullVersion,
      packages: r.outputs.map((o) => o.name),
      requests: r.buildRequests,
      ...(planned.has(r.name) ? { planned: planned.get(r.name)!.fullVersion } : {}),
    })),
    images: graph.images.map((i) => ({
      name: i.name,
      path: i.path,
      requests: i.requests,
      recipes: graph.imageRecipes[i.name] ?? [],
      packages: (graph.imagePackages[i.name] ?? []).map((p) => `${p.name}-${p.version}`),
    })),
    edges: graph.edges.map((e) => ({
      from: e.from,
      to: e.to,
      kind: e.kind,
      packages: e.packages,
      ...(e.cut ? { cut: e.cut } : {}),
      ...(e.standIns ? { standIns: e.standIns } : {}),
    })),
    cycles: graph.cycles,
    warnings: graph.warnings,
  };
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function secs(ms: number | undefined): string {
  return ms === undefined ? "" : `${(ms / 1000).toFixed(1)} s`;
}

function phasesCell(p: BuildPhaseTimes | undefined): string {
  if (!p) return "";
  const parts = overheadPartsText(p.overhead, p.parts);
  return `${secs(p.steps)} / ${secs(p.tests)} / ${secs(p.overhead)}${parts ? `<br><small>${esc(parts)}</small>` : ""}`;
}

/** The report pages' style sheet. */
export const reportCss = `body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.tl{width:40%;position:relative}div.bar{position:absolute;top:5px;height:12px;border-radius:2px;min-width:2px}
tr.built div.bar{background:#2ecc71}tr.failed div.bar{background:#e74c3c}.built .st{color:#1e8449}.failed .st,li.failed{color:#c0392b;font-weight:bold}.skipped .st,.not-started .st{color:#888}
pre{margin:0;white-space:pre-wrap;font-size:12px;color:#c0392b}small{color:#666}`;

/** One architecture's builds of one round: a heading, a summary line and a table (status, duration, phases, why, a timeline bar, the log). */
export function renderReportSection(r: RunReport, logHref: (log: string) => string, heading = "h1"): string {
  const parts: string[] = [];
  const total = Math.max(1, r.ms);
  const count = (s: string) => r.entries.filter((e) => e.status === s).length;
  parts.push(`<${heading}>${esc(r.distro)} — ${esc(r.arch)}</${heading}>`);
  parts.push(
    `<p>started ${esc(r.startedAt)}, ${secs(r.ms)} with ${r.jobs} job${r.jobs === 1 ? "" : "s"}${r.keepGoing ? " (keep going)" : ""}: ` +
      `<b>${count("built")}</b> built, <b>${count("failed")}</b> failed, ${count("skipped")} skipped, ${count("not-started")} not started, ${r.upToDate} up to date.</p>`,
  );
  const overhead = r.overhead ? overheadText(r.overhead) : undefined;
  if (overhead) parts.push(`<p>${esc(overhead)}.</p>`);
  parts.push(
    `<table><tr><th>package</th><th>version</th><th>status</th><th>duration</th><th>steps / tests / overhead</th><th>why</th><th>timeline (0 – ${secs(r.ms)})</th><th>log</th></tr>`,
  );
  for (const e of r.entries) {
    const bar =
      e.start !== undefined && e.end !== undefined
        ? `<div class="bar" title="${secs(e.start)} – ${secs(e.end)}" style="left:${((e.start / total) * 100).toFixed(2)}%;width:${(((e.end - e.start) / total) * 100).toFixed(2)}%"></div>`
        : "";
    const status = e.status === "skipped" && e.blockedBy ? `skipped (${esc(e.blockedBy)} failed)` : e.status;
    parts.push(
      `<tr class="${e.status}"><td>${esc(e.recipe)}<br><small>${esc(e.path)}</small></td><td>${esc(e.fullVersion)}</td><td class="st">${status}</td><td>${secs(e.ms)}</td><td>${phasesCell(e.phases)}</td>` +
        `<td>${e.reasons.map(esc).join("<br>")}${e.error ? `<pre>${esc(e.error)}</pre>` : ""}</td><td class="tl">${bar}</td><td>${e.log ? `<a href="${esc(logHref(e.log))}">log</a>` : ""}</td></tr>`,
    );
  }
  parts.push(`</table>`);
  return parts.join("\n");
}

/** A self-contained HTML page of build runs: per package status, duration, why, a log link and a timeline bar. `logHref` maps a log path to a link. */
export function renderRunReport(reports: RunReport[], logHref: (log: string) => string = (l) => l): string {
  const parts = [
    `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>kiln build report</title><style>${reportCss}</style></head><body>`,
  ];
  for (const r of reports) parts.push(renderReportSection(r, logHref));
  parts.push(`</body></html>\n`);
  return parts.join("\n");
}
