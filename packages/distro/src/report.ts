// The report of a whole run: every build round of every architecture, the
// images built and their smoke tests, and what the index check found.
// `kiln distro-build` writes it after each round and once more at the end
// (so a run stopped half way leaves the rounds it finished), `kiln build
// --all | --changed` writes its one round. OUT/build-report.json for
// machines, OUT/report.html for people; each build's log link names the log
// of that build (OUT/logs/ARCH/NAME-VERSION-rN.log), which later rounds do
// not overwrite.

import { mkdir } from "node:fs/promises";
import { relative, resolve as resolvePath } from "node:path";
import { writeFileAtomic } from "@kiln/core";
import type { Distro } from "./config.js";
import type { ImageResult } from "./image-run.js";
import type { IndexProblem } from "./index-policy.js";
import { overheadText, renderReportSection, reportCss, sumOverhead, type OverheadTotals } from "./render.js";
import type { RunReport } from "./run.js";

export const REPORT_FORMAT = 2;

export interface RoundReport {
  /** 1 for the first round. */
  round: number;
  /** One per architecture that built something. */
  reports: RunReport[];
  counts: { built: number; failed: number; skipped: number; notStarted: number; upToDate: number };
}

/** An image as the report shows it (the test's output cut to its verdict). */
export interface ImageReport {
  name: string;
  path: string;
  status: ImageResult["status"];
  reasons: string[];
  digest?: string;
  previous?: string;
  changed: boolean;
  pushed?: string;
  ms?: number;
  error?: string;
  test?: { ok: boolean; exitCode: number; detail: string };
}

export interface JobReport {
  format: typeof REPORT_FORMAT;
  distro: string;
  /** distro-build or build (one round). */
  command: "distro-build" | "build";
  startedAt: string;
  /** Wall time so far (ms). */
  ms: number;
  /** Set once the run ended: 0 when every build and image succeeded. */
  status?: number;
  rounds: RoundReport[];
  /** The images step; absent until it ran (and for `kiln build`). */
  images?: ImageReport[];
  /** What the index check found in the main index after the last round. */
  index?: IndexProblem[];
  overhead: OverheadTotals;
}

export function imageReport(r: ImageResult): ImageReport {
  const out: ImageReport = { name: r.name, path: r.path, status: r.status, reasons: r.reasons, changed: r.changed };
  if (r.digest !== undefined) out.digest = r.digest;
  if (r.previous !== undefined) out.previous = r.previous;
  if (r.pushed !== undefined) out.pushed = r.pushed;
  if (r.ms !== undefined) out.ms = r.ms;
  if (r.error !== undefined) out.error = r.error;
  if (r.test) out.test = { ok: r.test.ok, exitCode: r.test.exitCode, detail: r.test.detail };
  return out;
}

/** Every build entry of the run, with its round. */
export function reportEntries(
  report: Pick<JobReport, "rounds">,
): Array<RunReport["entries"][number] & { round: number; arch: string }> {
  return report.rounds.flatMap((r) =>
    r.reports.flatMap((x) => x.entries.map((e) => ({ ...e, round: r.round, arch: x.arch }))),
  );
}

export function withOverhead(report: Omit<JobReport, "overhead">): JobReport {
  return { ...report, overhead: sumOverhead(report.rounds.flatMap((r) => r.reports.map((x) => x.overhead))) };
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function secs(ms: number | undefined): string {
  return ms === undefined ? "" : `${(ms / 1000).toFixed(1)} s`;
}

function imagesSection(images: ImageReport[]): string {
  const rows = images.map((i) => {
    const test = !i.test
      ? ""
      : i.test.detail === "no test"
        ? "no test"
        : i.test.ok
          ? "passed"
          : `FAILED (${esc(i.test.detail)})`;
    const digest = i.digest ? `<code>${esc(i.digest)}</code>` : "";
    const what =
      i.status === "not-selected" ? "unchanged inputs" : i.changed ? (i.previous ? "changed" : "new") : "unchanged";
    const cls = i.status === "failed" ? "failed" : i.status === "built" ? "built" : "skipped";
    return (
      `<tr class="${cls}"><td>${esc(i.name)}<br><small>${esc(i.path)}</small></td><td class="st">${i.status}</td><td>${what}</td>` +
      `<td>${digest}${i.pushed ? `<br><small>pushed ${esc(i.pushed)}</small>` : ""}</td><td>${test}</td><td>${secs(i.ms)}</td>` +
      `<td>${i.reasons.map(esc).join("<br>")}${i.error ? `<pre>${esc(i.error)}</pre>` : ""}</td></tr>`
    );
  });
  return (
    `<h2>Images</h2><table><tr><th>image</th><th>status</th><th>digest</th><th></th><th>smoke test</th><th>duration</th><th>why</th></tr>\n` +
    `${rows.join("\n")}</table>`
  );
}

/** The whole run as one self-contained page: a summary, each round's builds per architecture, the images, the index check. */
export function renderJobReport(report: JobReport, logHref: (log: string) => string = (l) => l): string {
  const parts = [
    `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${esc(report.distro)}: kiln ${report.command} report</title><style>${reportCss}</style></head><body>`,
    `<h1>${esc(report.distro)} — kiln ${report.command}</h1>`,
  ];
  const entries = reportEntries(report);
  const n = (s: string) => entries.filter((e) => e.status === s).length;
  const state = report.status === undefined ? "running" : report.status === 0 ? "succeeded" : "failed";
  parts.push(
    `<p>started ${esc(report.startedAt)}, ${secs(report.ms)}, ${state}: ${report.rounds.length} round${report.rounds.length === 1 ? "" : "s"}, ` +
      `<b>${n("built")}</b> builds, <b>${n("failed")}</b> failed, ${n("skipped")} skipped, ${n("not-started")} not started` +
      `${report.images ? `; ${report.images.filter((i) => i.status !== "not-selected").length} images built, ${report.images.filter((i) => i.status === "failed").length} failed` : ""}.</p>`,
  );
  const overhead = overheadText(report.overhead);
  if (overhead) parts.push(`<p>${esc(overhead)}.</p>`);
  for (const r of report.rounds) {
    parts.push(
      `<h2>Round ${r.round}</h2>`,
      ...(r.reports.length ? [] : [`<p>nothing to build (${r.counts.upToDate} up to date)</p>`]),
    );
    for (const x of r.reports) parts.push(renderReportSection(x, logHref, "h3"));
  }
  if (report.images) parts.push(imagesSection(report.images));
  if (report.index?.length)
    parts.push(
      `<h2>Index check</h2><ul>${report.index.map((p) => `<li class="failed">${esc(p.message)}</li>`).join("")}</ul>`,
    );
  parts.push(`</body></html>\n`);
  return parts.join("\n");
}

/** Write OUT/build-report.json and OUT/report.html (each replaced atomically); returns the HTML's path. */
export async function writeJobReport(distro: Pick<Distro, "outDir">, report: JobReport): Promise<string> {
  await mkdir(distro.outDir, { recursive: true });
  await writeFileAtomic(resolvePath(distro.outDir, "build-report.json"), JSON.stringify(report, null, 2) + "\n");
  const html = resolvePath(distro.outDir, "report.html");
  await writeFileAtomic(
    html,
    renderJobReport(report, (l) => relative(distro.outDir, l)),
  );
  return html;
}
