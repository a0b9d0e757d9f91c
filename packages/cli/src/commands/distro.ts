// The distribution commands: kiln plan, kiln graph, kiln images, kiln
// distro-build, and `kiln build --all | --changed` (called from build.ts).
// Argument handling and printing only; the work is @kiln/distro's (job.ts:
// buildDistro, rebuildImages, runDistroBuild).

import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import type { BuildEvent } from "@kiln/builder";
import {
  buildDistro,
  distroPlans,
  distroViews,
  findDistroFile,
  graphToDot,
  graphToJson,
  loadDistro,
  overheadText,
  planBuild,
  reasonText,
  rebuildImages,
  runDistroBuild,
  sumOverhead,
  type BuildPlan,
  type Distro,
  type DistroBuildOptions,
  type DistroBuildResult,
  type DistroJobEvent,
  type ImagesResult,
  type RunEvent,
} from "@kiln/distro";
import { ARCH_ALIASES } from "@kiln/core";
import { defaultCacheDir } from "@kiln/repo";
import { opt } from "../options.js";
import { choice, defineCommand, flag, number, string } from "../program.js";
import { sourceDateEpoch, UserError, type Io } from "../util.js";

async function openDistro(file: string | undefined): Promise<Distro> {
  const f = file ?? findDistroFile(process.cwd());
  if (!f) throw new UserError("no distro.yaml here or in any parent directory (give --distro FILE)");
  return loadDistro(f);
}

function archsOf(distro: Distro, list: string[]): string[] {
  if (!list.length) return distro.architectures;
  return list.map((a) => {
    const m = ARCH_ALIASES[a];
    if (!m) throw new UserError(`--arch: unknown architecture ${JSON.stringify(a)}`, 2);
    return m;
  });
}

const COMMON = {
  distro: opt.distro,
  arch: opt.archs.describe("only this architecture (default: distro.yaml's architectures)"),
  cacheDir: opt.cacheDir,
  json: opt.json,
} as const;

function printPlan(io: Io, plan: BuildPlan): void {
  const how = plan.mode === "since" ? `changed since ${plan.since}` : "by build key";
  io.out(`${plan.distro} (${plan.arch}), ${how}: ${plan.builds.length} to build, ${plan.upToDate.length} up to date`);
  const w = Math.max(0, ...plan.builds.map((b) => b.recipe.length));
  plan.builds.forEach((b, i) => {
    const ver = b.current && b.current !== b.fullVersion ? `${b.current} → ${b.fullVersion}` : b.fullVersion;
    io.out(`  ${String(i + 1).padStart(3)}. ${b.recipe.padEnd(w)}  ${ver}  ${b.reasons.map(reasonText).join("; ")}`);
    if (b.standIns.length)
      io.out(`       ${"".padEnd(w)}  uses the existing packages of ${b.standIns.join(", ")} (cycle)`);
  });
  if (plan.images.length) {
    io.out(`images that would change:`);
    for (const i of plan.images) io.out(`  ${i.name}: ${i.reasons.join("; ")}`);
  }
  if (plan.unchangedImages.length) io.out(`images unchanged: ${plan.unchangedImages.join(", ")}`);
  for (const c of plan.cycles.filter((c) => c.broken)) io.out(`note: ${c.message}`);
  for (const w2 of plan.warnings) io.err(`warning: ${w2}`);
  for (const e of plan.errors) io.err(`error: ${e}`);
}

export const planCmd = defineCommand({
  name: "plan",
  summary: "show what a distribution build would build and why, in order, and which images change",
  usage: "kiln plan [--since GIT-REV] [--json] [--distro FILE] [--arch A]... [--cache-dir D]",
  details: `By default a recipe is planned when it has no current build in OUT (or in an upstream
repository that carries this distribution's build keys), when its own build key changed (the
compiled recipe, the pipelines it uses, its patches and sources, distro.yaml's default
environment), when a recipe it depends on is rebuilt, or when its build environment now
resolves to different packages. --since REV plans from git instead: the recipes whose files
changed since REV (committed or not) and everything depending on them. Release numbers of
rebuilt packages are raised above every existing build of the same version.
Exit 1 if a recipe is invalid or a dependency cycle cannot be broken.`,
  options: {
    ...COMMON,
    since: string("--since <GIT-REV>", "plan from the git changes since GIT-REV instead"),
    // kiln plan --simulate: see commands/simulate.ts.
    simulate: flag("--simulate", "predict the whole distribution's build time on --workers N (kiln worker)"),
    workers: string("--workers <N,...>", "with --simulate: worker counts (default 1,2,8,64)"),
    synthetic: number("--synthetic <COUNT>", "with --simulate: a generated graph of COUNT recipes", { min: 1 }),
  },
  async run(values, _args, io) {
    if (values.simulate) return (await import("./simulate.js")).simulatePlan(values, io);
    const distro = await openDistro(values.distro);
    const cacheDir = values.cacheDir ?? defaultCacheDir(io.env);
    const plans = await distroPlans(
      distro,
      await distroViews(distro, archsOf(distro, values.arch), cacheDir),
      values.since,
    );
    if (values.json) io.out(JSON.stringify({ distro: distro.name, plans }, null, 2));
    else plans.forEach(printPlan.bind(null, io));
    return plans.some((p) => p.errors.length) ? 1 : 0;
  },
});

export const graphCmd = defineCommand({
  name: "graph",
  summary: "draw the distribution's dependency graph (dot, svg or json)",
  usage: "kiln graph [--format dot|svg|json] [-o FILE] [--distro FILE] [--arch A] [--cache-dir D]",
  details: `Recipes are boxes (subpackages in brackets), images folders; an edge A → B means A's build
environment needs packages of B (labelled). Dashed red edges were cut to break a cycle (A uses
B's existing packages); dotted edges are test-only. Recipes the current plan would build are
yellow, images it would change blue. svg needs Graphviz's dot (Debian: graphviz).`,
  options: {
    ...COMMON,
    arch: opt.archs.describe("for this architecture (default: distro.yaml's first)"),
    format: choice("--format <F>", "dot, svg or json (default dot)", ["dot", "svg", "json"]),
    output: opt.output,
  },
  async run(values, _args, io) {
    const format = values.format ?? "dot";
    const distro = await openDistro(values.distro);
    const arch = archsOf(distro, values.arch)[0]!;
    const [v] = await distroViews(distro, [arch], values.cacheDir ?? defaultCacheDir(io.env));
    const plan = planBuild(distro, v!.graph, v!.state, { errors: v!.errors });
    let text: string;
    if (format === "json") text = JSON.stringify(graphToJson(v!.graph, plan), null, 2) + "\n";
    else if (format === "dot") text = graphToDot(v!.graph, plan);
    else {
      const dot = graphToDot(v!.graph, plan);
      text = await new Promise<string>((resolve, reject) => {
        const p = execFile(
          "dot",
          ["-Tsvg"],
          { maxBuffer: 256 * 1024 * 1024, encoding: "utf8" },
          (err, stdout, stderr) => {
            if (err)
              reject(
                (err as NodeJS.ErrnoException).code === "ENOENT"
                  ? new UserError("svg needs Graphviz's dot (apt-get install graphviz), or use --format dot")
                  : new UserError(`dot: ${stderr || err.message}`),
              );
            else resolve(stdout);
          },
        );
        p.stdin!.end(dot);
      });
    }
    if (values.output) await writeFile(values.output, text);
    else io.out(text.replace(/\n$/, ""));
    for (const w of v!.graph.warnings) io.err(`warning: ${w}`);
    return 0;
  },
});

function buildProgress(io: Io, json: boolean): (e: RunEvent) => void {
  if (json) return () => undefined;
  return (e) => {
    if (e.kind === "start") io.err(`[${e.index}/${e.total}] ${e.recipe} ${e.fullVersion} — ${e.reasons.join("; ")}`);
    else if (e.kind === "build") {
      const b: BuildEvent = e.event;
      if (b.kind === "step") io.err(`  ${e.recipe}: [${b.index}/${b.total}] ${b.step}${b.native ? " (kiln)" : ""}`);
      else if (b.kind === "guest")
        io.err(`  ${e.recipe}: ${b.purpose} guest, ${b.packages} packages${b.reused ? " (cached)" : ""}`);
      else if (b.kind === "test") io.err(`  ${e.recipe}: test ${b.target}`);
      else if (b.kind === "emit") io.err(`  ${e.recipe}: wrote ${b.file}`);
    } else {
      const x = e.entry;
      if (x.status === "built")
        io.err(
          `✓ ${x.recipe} ${x.fullVersion} (${((x.ms ?? 0) / 1000).toFixed(1)} s${x.phases ? `, overhead ${(x.phases.overhead / 1000).toFixed(1)} s` : ""})`,
        );
      else if (x.status === "failed") {
        const lines = (x.error ?? "").split("\n").filter((l) => l.trim() && !/full log:/.test(l));
        io.err(
          `✗ ${x.recipe} ${x.fullVersion} failed (${((x.ms ?? 0) / 1000).toFixed(1)} s): ${lines[0] ?? ""}${lines
            .slice(1, 8)
            .map((l) => `\n    ${l.trim()}`)
            .join("")}${x.log ? `\n  log: ${x.log}` : ""}`,
        );
      } else if (x.status === "skipped") io.err(`- ${x.recipe} skipped: ${x.blockedBy} failed`);
    }
  };
}

/** Prints the main job's events: progress to stderr (quiet under --json, but warnings, errors and notes always). */
function jobPrinter(io: Io, json: boolean, printRounds = false): (e: DistroJobEvent) => void {
  const run = buildProgress(io, json);
  return (e) => {
    if (e.kind === "warning") io.err(`warning: ${e.message}`);
    else if (e.kind === "problem") io.err(`error: ${e.message}`);
    else if (e.kind === "note") io.err(`note: ${e.message}`);
    else if (e.kind === "key-generated") io.err(`generated a local signing key ${e.path}`);
    else if (e.kind === "arch") {
      if (!json) io.err(`${e.distro} (${e.arch}): building ${e.builds}, ${e.upToDate} up to date, ${e.jobs} at a time`);
    } else if (e.kind === "run") run(e.event);
    else if (e.kind === "stage") {
      if (!json)
        io.err(
          `round ${e.round}: stage 0 of the bootstrap: the ${e.builds} import${e.builds === 1 ? "" : "s"} first; the other ${e.deferred} build${e.deferred === 1 ? "" : "s"} are planned once they are in the repository`,
        );
    } else if (e.kind === "replan")
      io.err(`round ${e.round}: re-planning, since this run's builds changed other recipes' build environments`);
    else if (e.kind === "image") {
      if (!json) io.err(e.message);
    } else if (e.kind === "index") {
      const m = e.superseded;
      if (!json && m.dropped.length)
        io.err(
          `${e.arch}: the index listed ${m.dropped.length} superseded build${m.dropped.length === 1 ? "" : "s"} (written before the newest-build policy): dropped`,
        );
      if (!json && m.moved.length)
        io.err(
          `${e.arch}: ${m.moved.length} superseded package file${m.moved.length === 1 ? "" : "s"} moved out of the index into superseded/${e.arch}/` +
            `${m.removed.length ? ` (${m.removed.length} older removed)` : ""}`,
        );
      for (const p of e.problems) io.err(`warning: ${p.message}`);
    } else if (e.kind === "stage0-placement") {
      const p = e.placement;
      const n = (k: number) => `${k} package${k === 1 ? "" : "s"}`;
      if (!json && p.toBootstrap.length)
        io.err(
          `${p.arch}: ${n(p.toBootstrap.length)} of stage-0 recipes moved into the bootstrap repository bootstrap/${p.arch}/: ${p.toBootstrap.join(", ")}`,
        );
      if (!json && p.toMain.length)
        io.err(
          `${p.arch}: ${n(p.toMain.length)} moved out of the bootstrap repository into ${p.arch}/ (their recipes are no longer stage-0 ones): ${p.toMain.join(", ")}`,
        );
    } else if (e.kind === "round-done" && printRounds && !json) printBuild(io, e.result, json);
  };
}

/** A build round's plan (--dry-run) or outcome, as text or --json. */
function printBuild(io: Io, r: DistroBuildResult, json: boolean): void {
  const { distro, plans, reports } = r;
  if (r.dryRun) {
    if (json) io.out(JSON.stringify({ distro: distro.name, plans }, null, 2));
    else plans.forEach(printPlan.bind(null, io));
    return;
  }
  if (json) {
    io.out(JSON.stringify({ distro: distro.name, plans, reports, index: r.indexProblems }, null, 2));
    return;
  }
  const c = r.counts;
  const secs = reports.reduce((s, x) => s + x.ms, 0) / 1000;
  io.out(
    `${distro.name}: ${c.built} built, ${c.failed} failed, ${c.skipped} skipped, ${c.notStarted} not started, ` +
      `${c.upToDate} up to date${r.total ? ` in ${secs.toFixed(1)} s` : ""}`,
  );
  const overhead = overheadText(sumOverhead(reports.map((x) => x.overhead)));
  if (overhead) io.out(`  ${overhead}`);
  const all = reports.flatMap((x) => x.entries);
  for (const e of all)
    if (e.status === "built") io.out(`  built ${e.recipe} ${e.fullVersion}: ${(e.packages ?? []).join(", ")}`);
  for (const e of all)
    if (e.status === "failed") io.out(`  FAILED ${e.recipe} ${e.fullVersion}${e.log ? ` (log: ${e.log})` : ""}`);
  for (const e of all) if (e.status === "skipped") io.out(`  skipped ${e.recipe} (${e.blockedBy} failed)`);
  for (const p of r.indexProblems) io.out(`  INDEX ${p.message}`);
  if (r.reportFile) io.out(`  report: ${r.reportFile}`);
}

function printImages(io: Io, { results }: ImagesResult, json: boolean, distro: string): void {
  if (json) {
    io.out(
      JSON.stringify(
        {
          distro,
          images: results.map((r) => ({
            ...r,
            test: r.test ? { ok: r.test.ok, detail: r.test.detail, exitCode: r.test.exitCode } : undefined,
          })),
        },
        null,
        2,
      ),
    );
    return;
  }
  for (const r of results) {
    if (r.status === "not-selected") {
      io.out(`${r.name}: unchanged inputs, not rebuilt${r.digest ? ` (${r.digest})` : ""}`);
      continue;
    }
    const what =
      r.status === "failed" && !r.digest
        ? `FAILED: ${r.error}`
        : `${r.digest} ${r.changed ? (r.previous ? "changed" : "new") : "unchanged"}`;
    io.out(
      `${r.name}: ${what}${r.pushed ? `; pushed ${r.pushed}` : ""}` +
        `${r.test ? (r.test.detail === "no test" ? "; no test" : `; test ${r.test.ok ? "passed" : `FAILED (${r.test.detail})`}`) : ""}`,
    );
  }
  const built = results.filter((r) => r.status !== "not-selected");
  io.out(
    `${built.length} image${built.length === 1 ? "" : "s"} built, ${built.filter((r) => r.changed).length} with a new digest, ` +
      `${results.filter((r) => r.pushed).length} pushed, ${results.filter((r) => r.status === "failed").length} failed`,
  );
}

/** The options every distribution job takes, from the command line and the environment. */
async function jobBase(values: { distro?: string; archs: string[]; cacheDir?: string; signingKey?: string }, io: Io) {
  const distro = await openDistro(values.distro);
  return {
    distro,
    archs: archsOf(distro, values.archs),
    cacheDir: values.cacheDir ?? defaultCacheDir(io.env),
    env: io.env,
    ...(values.signingKey !== undefined ? { signingKey: values.signingKey } : {}),
    ...(io.env.SOURCE_DATE_EPOCH ? { sourceDateEpoch: sourceDateEpoch(io.env) } : {}),
  };
}

/** What `kiln build --all | --changed` passes on. */
export interface DistroBuildValues {
  distro?: string | undefined;
  archs: string[];
  cacheDir?: string | undefined;
  json: boolean;
  changed: boolean;
  since?: string | undefined;
  jobs?: number | undefined;
  keepGoing: boolean;
  signingKey?: string | undefined;
  noTest: boolean;
  dryRun: boolean;
  /** How packages are built (kiln build --queue: by workers). */
  makeBuilder?: DistroBuildOptions["makeBuilder"];
}

/** `kiln build --all | --changed`: plan, then run the plan (@kiln/distro's buildDistro). Returns the exit status. */
export async function distroBuild(values: DistroBuildValues, io: Io): Promise<number> {
  const r = await buildDistro(
    {
      ...(await jobBase(values, io)),
      jobs: values.jobs ?? 1,
      keepGoing: values.keepGoing,
      ...(values.changed ? { changedSince: values.since ?? "HEAD" } : {}),
      dryRun: values.dryRun,
      runTests: !values.noTest,
      ...(values.makeBuilder ? { makeBuilder: values.makeBuilder } : {}),
    },
    jobPrinter(io, values.json),
  );
  printBuild(io, r, values.json);
  return r.status;
}

export const imagesCmd = defineCommand({
  name: "images",
  summary: "rebuild the distribution's images from the current repository; push the ones whose digest changed",
  usage:
    "kiln images [--all | --changed] [--test] [--push REGISTRY | --publish] [--insecure] [--sign KEY] [--distro FILE] [--signing-key K] [--cache-dir D] [--json]",
  details: `Builds each image config of IMAGES/ into OUT/images/NAME (an OCI layout, with its SBOM) from the
local repository OUT and distro.yaml's upstream repositories, and reports whether its digest
changed. --changed (the default) builds only images whose inputs changed (a package they contain,
their config, or a first build); --all builds every image (a night with no package changes gives
the same digests). --test runs each image's test: (command, expect, expect-exit) from the unpacked
image (umoci unpack --rootless) under bubblewrap, as the image's user, in its working directory
and environment; it passes when the exit status matches and stdout contains expect.
--push REGISTRY pushes REGISTRY/NAME:latest for each image whose digest differs from the last one
pushed there; --publish pushes to distro.yaml's publish.registry. Credentials:
KILN_REGISTRY_USERNAME / KILN_REGISTRY_PASSWORD; --insecure talks plain HTTP. --sign KEY signs
each pushed image as cosign does and attaches SLSA provenance, SPDX and CycloneDX attestations
(kiln keygen --type ecdsa-p256; cosign verify --key KEY.pub --insecure-ignore-tlog=true REF).`,
  options: {
    ...COMMON,
    all: flag("--all", "build every image"),
    changed: flag("--changed", "build only the images whose inputs changed (the default)"),
    test: flag("--test", "run each image's smoke test"),
    push: string("--push <REGISTRY>", "push REGISTRY/NAME:latest where the digest changed"),
    publish: flag("--publish", "push to distro.yaml's publish.registry"),
    insecure: flag("--insecure", "talk plain HTTP to the registry"),
    sign: string("--sign <KEY>", "sign each pushed image and attach its provenance and SBOMs (ECDSA P-256 key)"),
    signingKey: opt.signingKey.describe(
      "the distribution's signing key (default: distro.yaml's signing-key, else the local key)",
    ),
  },
  async run(v, _args, io) {
    if (v.all && v.changed) throw new UserError("--all or --changed, not both", 2);
    const base = await jobBase({ ...v, archs: v.arch }, io);
    const r = await rebuildImages(
      {
        ...base,
        ...(v.all ? { all: true } : {}),
        ...(v.push !== undefined ? { push: v.push } : {}),
        ...(v.publish ? { publish: true } : {}),
        ...(v.insecure ? { insecure: true } : {}),
        ...(v.sign ? { signImages: v.sign } : {}),
        test: v.test,
      },
      jobPrinter(io, v.json),
    );
    printImages(io, r, v.json, base.distro.name);
    return r.status;
  },
});

export const distroBuildCmd = defineCommand({
  name: "distro-build",
  summary: "the main job: build every out-of-date recipe, then rebuild and smoke-test the images that changed",
  usage: "kiln distro-build [--jobs N] [--no-test] [--distro FILE] [--arch A]... [--signing-key K] [--cache-dir D]",
  details: `kiln build --all --keep-going (re-planned while a round's builds change other recipes' build
environments), then kiln images --changed --test. A second run builds nothing. OUT/report.html and
OUT/build-report.json (--json prints the same document) cover the whole run: every round's builds, the
images with their digests and smoke tests, and the main index's check; each build's log is
OUT/logs/ARCH/NAME-VERSION-rN.log (NAME.log links to the newest; the newest 5 per package are kept).
The index lists only each package's newest build: superseded files move to OUT/superseded/ARCH
(the newest 2 per package kept there).`,
  options: {
    ...COMMON,
    jobs: opt.jobs,
    noTest: flag("--no-test", "run neither the recipes' tests nor the images'"),
    signingKey: opt.signingKey.describe(
      "the distribution's signing key (default: distro.yaml's signing-key, else the local key)",
    ),
  },
  async run(v, _args, io) {
    const r = await runDistroBuild(
      { ...(await jobBase({ ...v, archs: v.arch }, io)), jobs: v.jobs ?? 1, runTests: !v.noTest },
      jobPrinter(io, v.json, true),
    );
    if (v.json) {
      // One document: the run's report as OUT/build-report.json holds it.
      io.out(JSON.stringify(r.report, null, 2));
      return r.status;
    }
    printImages(io, r.images, v.json, r.distro.name);
    const rounds = r.report.rounds;
    io.out(
      `${rounds.length} round${rounds.length === 1 ? "" : "s"}: ${rounds.map((x) => `round ${x.round} built ${x.counts.built}${x.counts.failed ? `, ${x.counts.failed} failed` : ""}`).join("; ")}; report ${r.reportFile}`,
    );
    io.out(
      `done in ${(r.ms / 1000).toFixed(1)} s: repository ${r.distro.outDir}, images ${resolvePath(r.distro.outDir, "images")}`,
    );
    return r.status;
  },
});
