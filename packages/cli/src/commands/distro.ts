// The distribution commands: kiln plan, kiln graph, kiln images, kiln
// distro-build, and `kiln build --all | --changed` (called from build.ts).
// Argument handling and printing only; the work is @kiln/distro's.

import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { relative, resolve as resolvePath } from "node:path";
import { parseSigningKey } from "@kiln/apk";
import type { BuildEvent } from "@kiln/builder";
import {
  analyzeDistro,
  changedSince,
  findDistroFile,
  graphToDot,
  graphToJson,
  KeyStore,
  loadDistro,
  loadImages,
  localBuilder,
  planBuild,
  readKeys,
  reasonText,
  renderRunReport,
  runImages,
  runPlan,
  type BuildPlan,
  type Distro,
  type DistroView,
  type ImageResult,
  type RunEvent,
  type RunReport,
} from "@kiln/distro";
import { ARCH_ALIASES } from "@kiln/image";
import { defaultCacheDir } from "@kiln/repo";
import { asArray, help, parse, sourceDateEpoch, UserError, type Command, type Io } from "../util.js";
import { obtainSigningKey, type LocalKey } from "./build.js";

async function openDistro(file: string | undefined): Promise<Distro> {
  const f = file ?? findDistroFile(process.cwd());
  if (!f) throw new UserError("no distro.yaml here or in any parent directory (give --distro FILE)");
  return loadDistro(f);
}

function archsOf(distro: Distro, given: unknown): string[] {
  const list = asArray(given);
  if (!list.length) return distro.architectures;
  return list.map((a) => {
    const m = ARCH_ALIASES[a];
    if (!m) throw new UserError(`--arch: unknown architecture ${JSON.stringify(a)}`, 2);
    return m;
  });
}

/** --signing-key, else distro.yaml's signing-key (a path, or env:VAR holding a path or the PEM), else the local key beside OUT. */
export async function distroSigningKey(distro: Distro, explicit: string | undefined, io: Io): Promise<LocalKey> {
  if (explicit) return obtainSigningKey(explicit, distro.outDir, io.env);
  const ref = distro.signingKey;
  if (ref?.kind === "path") return obtainSigningKey(ref.path, distro.outDir, io.env);
  if (ref?.kind === "env") {
    const v = io.env[ref.variable];
    if (v && v.includes("-----BEGIN")) {
      const key = parseSigningKey(Buffer.from(v), `${distro.id}.rsa.pub`, `$${ref.variable}`);
      const publicPem = Buffer.from(key.publicKey.export({ type: "spki", format: "pem" }).toString());
      return { key, publicPem, privatePath: `$${ref.variable}`, generated: false };
    }
    if (v) return obtainSigningKey(v, distro.outDir, io.env);
    io.err(`note: $${ref.variable} is not set; signing with a local key (not for publishing)`);
  }
  return obtainSigningKey(undefined, distro.outDir, { ...io.env, KILN_SIGNING_KEY: undefined });
}

const COMMON = {
  distro: { type: "string" },
  arch: { type: "string", multiple: true },
  "cache-dir": { type: "string" },
  json: { type: "boolean" },
} as const;

const COMMON_HELP = `--distro FILE    distro.yaml (default: ./distro.yaml or the nearest parent's)
--arch A         only this architecture (repeatable; default: distro.yaml's architectures)
--cache-dir DIR  download cache (default $KILN_CACHE_DIR or ~/.cache/kiln)
--json           machine-readable output`;

async function views(distro: Distro, archs: string[], cacheDir: string): Promise<DistroView[]> {
  const images = await loadImages(distro);
  const out: DistroView[] = [];
  for (const arch of archs) out.push(await analyzeDistro(distro, arch, { cacheDir, images }));
  return out;
}

async function plansFor(distro: Distro, vs: DistroView[], since: string | undefined): Promise<BuildPlan[]> {
  const changes = since !== undefined ? await changedSince(distro, since) : undefined;
  return vs.map((v) =>
    planBuild(distro, v.graph, v.state, { errors: v.errors, ...(changes ? { since: changes } : {}) }),
  );
}

/** Builds of `since` that the build keys also say are out of date (what `build --changed` runs). */
function narrow(sincePlan: BuildPlan, keyPlan: BuildPlan): BuildPlan {
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

export const planCmd: Command = {
  name: "plan",
  summary: "show what a distribution build would build and why, in order, and which images change",
  usage: "kiln plan [--since GIT-REV] [--json] [--distro FILE] [--arch A]... [--cache-dir D]",
  async run(argv, io) {
    const { values } = parse(this, argv, { ...COMMON, since: { type: "string" } });
    if (values.help)
      return help(
        this,
        io,
        `By default a recipe is planned when it has no current build in OUT (or in an upstream
repository that carries this distribution's build keys), when its own build key changed (the
compiled recipe, the pipelines it uses, its patches and sources, distro.yaml's default
environment), when a recipe it depends on is rebuilt, or when its build environment now
resolves to different packages. --since REV plans from git instead: the recipes whose files
changed since REV (committed or not) and everything depending on them. Release numbers of
rebuilt packages are raised above every existing build of the same version.
Exit 1 if a recipe is invalid or a dependency cycle cannot be broken.
${COMMON_HELP}`,
      );
    const distro = await openDistro(values.distro);
    const cacheDir = values["cache-dir"] ?? defaultCacheDir(io.env);
    const plans = await plansFor(distro, await views(distro, archsOf(distro, values.arch), cacheDir), values.since);
    if (values.json) io.out(JSON.stringify({ distro: distro.name, plans }, null, 2));
    else plans.forEach(printPlan.bind(null, io));
    return plans.some((p) => p.errors.length) ? 1 : 0;
  },
};

export const graphCmd: Command = {
  name: "graph",
  summary: "draw the distribution's dependency graph (dot, svg or json)",
  usage: "kiln graph [--format dot|svg|json] [-o FILE] [--distro FILE] [--arch A] [--cache-dir D]",
  async run(argv, io) {
    const { values } = parse(this, argv, {
      ...COMMON,
      format: { type: "string" },
      output: { type: "string", short: "o" },
    });
    if (values.help)
      return help(
        this,
        io,
        `Recipes are boxes (subpackages in brackets), images folders; an edge A → B means A's build
environment needs packages of B (labelled). Dashed red edges were cut to break a cycle (A uses
B's existing packages); dotted edges are test-only. Recipes the current plan would build are
yellow, images it would change blue. svg needs Graphviz's dot (Debian: graphviz).
${COMMON_HELP}`,
      );
    const format = values.format ?? "dot";
    if (!["dot", "svg", "json"].includes(format)) throw new UserError("--format must be dot, svg or json", 2);
    const distro = await openDistro(values.distro);
    const arch = archsOf(distro, values.arch)[0]!;
    const [v] = await views(distro, [arch], values["cache-dir"] ?? defaultCacheDir(io.env));
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
};

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
      if (x.status === "built") io.err(`✓ ${x.recipe} ${x.fullVersion} (${((x.ms ?? 0) / 1000).toFixed(1)} s)`);
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

export interface DistroBuildValues {
  distro?: string;
  arch?: string[];
  "cache-dir"?: string;
  json?: boolean;
  all?: boolean;
  changed?: boolean;
  since?: string;
  jobs?: string;
  "keep-going"?: boolean;
  "signing-key"?: string;
  "no-test"?: boolean;
  "dry-run"?: boolean;
}

/** `kiln build --all | --changed`: plan, then run the plan. Returns the exit status and the reports. */
export async function distroBuild(
  values: DistroBuildValues,
  io: Io,
): Promise<{ status: number; reports: RunReport[]; distro: Distro }> {
  const jobs = values.jobs === undefined ? 1 : Number(values.jobs);
  if (!Number.isInteger(jobs) || jobs < 1)
    throw new UserError(`--jobs must be a whole number ≥ 1, got ${JSON.stringify(values.jobs)}`, 2);
  const distro = await openDistro(values.distro);
  const cacheDir = values["cache-dir"] ?? defaultCacheDir(io.env);
  const archs = archsOf(distro, values.arch);
  const vs = await views(distro, archs, cacheDir);
  let plans = await plansFor(distro, vs, undefined);
  if (values.changed) {
    const since = await plansFor(distro, vs, values.since ?? "HEAD");
    plans = plans.map((p, i) => narrow(since[i]!, p));
  }
  const errors = plans.flatMap((p) => p.errors);
  if (errors.length) {
    for (const e of errors) io.err(`error: ${e}`);
    throw new UserError(
      `${errors.length} problem${errors.length === 1 ? "" : "s"} in the distribution; nothing was built`,
    );
  }
  for (const p of plans) for (const w of p.warnings) io.err(`warning: ${w}`);
  if (values["dry-run"]) {
    if (values.json) io.out(JSON.stringify({ distro: distro.name, plans }, null, 2));
    else plans.forEach(printPlan.bind(null, io));
    return { status: 0, reports: [], distro };
  }
  const reports: RunReport[] = [];
  const total = plans.reduce((n, p) => n + p.builds.length, 0);
  if (total > 0) {
    const key = await distroSigningKey(distro, values["signing-key"], io);
    if (key.generated) io.err(`generated a local signing key ${key.privatePath}`);
    const upstreamKeys = await readKeys(distro.upstream.keyring);
    for (const [i, plan] of plans.entries()) {
      const v = vs[i]!;
      if (!plan.builds.length) continue;
      if (!values.json)
        io.err(
          `${distro.name} (${plan.arch}): building ${plan.builds.length}, ${plan.upToDate.length} up to date, ${jobs} at a time`,
        );
      const builder = localBuilder({
        distro,
        arch: plan.arch,
        signingKey: key.key,
        publicKeyPem: key.publicPem,
        keyringAppend: upstreamKeys,
        cacheDir,
        sourceDateEpoch: sourceDateEpoch(io.env),
        runTests: !values["no-test"],
      });
      reports.push(
        await runPlan(
          { distro, graph: v.graph, plan, state: v.state, keys: new KeyStore(resolvePath(distro.outDir, plan.arch)) },
          { jobs, keepGoing: !!values["keep-going"], builder, onEvent: buildProgress(io, !!values.json) },
        ),
      );
    }
    await mkdir(distro.outDir, { recursive: true });
    await writeFile(resolvePath(distro.outDir, "build-report.json"), JSON.stringify(reports, null, 2) + "\n");
    await writeFile(
      resolvePath(distro.outDir, "report.html"),
      renderRunReport(reports, (l) => relative(distro.outDir, l)),
    );
  }
  const all = reports.flatMap((r) => r.entries);
  const n = (s: string) => all.filter((e) => e.status === s).length;
  const upToDate = plans.reduce((k, p) => k + p.upToDate.length, 0);
  if (values.json) io.out(JSON.stringify({ distro: distro.name, plans, reports }, null, 2));
  else {
    const secs = reports.reduce((s, r) => s + r.ms, 0) / 1000;
    io.out(
      `${distro.name}: ${n("built")} built, ${n("failed")} failed, ${n("skipped")} skipped, ${n("not-started")} not started, ${upToDate} up to date${total ? ` in ${secs.toFixed(1)} s` : ""}`,
    );
    for (const e of all)
      if (e.status === "built") io.out(`  built ${e.recipe} ${e.fullVersion}: ${(e.packages ?? []).join(", ")}`);
    for (const e of all)
      if (e.status === "failed") io.out(`  FAILED ${e.recipe} ${e.fullVersion}${e.log ? ` (log: ${e.log})` : ""}`);
    for (const e of all) if (e.status === "skipped") io.out(`  skipped ${e.recipe} (${e.blockedBy} failed)`);
    if (total) io.out(`  report: ${resolvePath(distro.outDir, "report.html")}`);
  }
  return { status: n("failed") + n("skipped") + n("not-started") ? 1 : 0, reports, distro };
}

export interface ImagesValues {
  distro?: string;
  arch?: string[];
  "cache-dir"?: string;
  json?: boolean;
  all?: boolean;
  changed?: boolean;
  push?: string;
  publish?: boolean;
  insecure?: boolean;
  test?: boolean;
  "signing-key"?: string;
}

export async function distroImages(values: ImagesValues, io: Io): Promise<{ status: number; results: ImageResult[] }> {
  if (values.all && values.changed) throw new UserError("--all or --changed, not both", 2);
  const distro = await openDistro(values.distro);
  const cacheDir = values["cache-dir"] ?? defaultCacheDir(io.env);
  const images = await loadImages(distro);
  if (images.problems.length)
    throw new UserError(
      images.problems
        .map((p) => `${p.file}${p.line ? `:${p.line}:${p.col ?? 1}` : ""}: ${p.path ? `${p.path}: ` : ""}${p.message}`)
        .join("\n"),
    );
  let select: "all" | Map<string, string[]> = "all";
  if (!values.all) {
    const plans = await plansFor(distro, await views(distro, archsOf(distro, values.arch), cacheDir), undefined);
    const m = new Map<string, string[]>();
    for (const p of plans)
      for (const i of p.images) m.set(i.name, [...new Set([...(m.get(i.name) ?? []), ...i.reasons])]);
    select = m;
  }
  let push: { registry: string; insecure?: boolean; username?: string; password?: string } | undefined;
  const registry = values.push ?? (values.publish ? distro.publish.registry : undefined);
  if (values.publish && !registry) throw new UserError(`--publish: distro.yaml has no publish.registry`, 2);
  if (registry) {
    push = { registry };
    if (values.insecure ?? distro.publish.insecure) push.insecure = true;
    if (io.env.KILN_REGISTRY_USERNAME) push.username = io.env.KILN_REGISTRY_USERNAME;
    if (io.env.KILN_REGISTRY_PASSWORD) push.password = io.env.KILN_REGISTRY_PASSWORD;
  }
  const key = await distroSigningKey(distro, values["signing-key"], io);
  const keys = [{ name: key.key.name, pem: key.publicPem }, ...(await readKeys(distro.upstream.keyring))];
  const results = await runImages({
    distro,
    images: images.images,
    select,
    keys,
    cacheDir,
    ...(io.env.SOURCE_DATE_EPOCH ? { sourceDateEpoch: sourceDateEpoch(io.env) } : {}),
    ...(push ? { push } : {}),
    test: !!values.test,
    onEvent: values.json ? undefined : (m) => io.err(m),
  } as Parameters<typeof runImages>[0]);
  if (values.json)
    io.out(
      JSON.stringify(
        {
          distro: distro.name,
          images: results.map((r) => ({
            ...r,
            test: r.test ? { ok: r.test.ok, detail: r.test.detail, exitCode: r.test.exitCode } : undefined,
          })),
        },
        null,
        2,
      ),
    );
  else {
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
        `${r.name}: ${what}${r.pushed ? `; pushed ${r.pushed}` : ""}${r.test ? (r.test.detail === "no test" ? "; no test" : `; test ${r.test.ok ? "passed" : `FAILED (${r.test.detail})`}`) : ""}`,
      );
    }
    const built = results.filter((r) => r.status !== "not-selected");
    io.out(
      `${built.length} image${built.length === 1 ? "" : "s"} built, ${built.filter((r) => r.changed).length} with a new digest, ${results.filter((r) => r.pushed).length} pushed, ${results.filter((r) => r.status === "failed").length} failed`,
    );
  }
  return { status: results.some((r) => r.status === "failed") ? 1 : 0, results };
}

export const imagesCmd: Command = {
  name: "images",
  summary: "rebuild the distribution's images from the current repository; push the ones whose digest changed",
  usage:
    "kiln images [--all | --changed] [--test] [--push REGISTRY | --publish] [--insecure] [--distro FILE] [--signing-key K] [--cache-dir D] [--json]",
  async run(argv, io) {
    const { values } = parse(this, argv, {
      ...COMMON,
      all: { type: "boolean" },
      changed: { type: "boolean" },
      push: { type: "string" },
      publish: { type: "boolean" },
      insecure: { type: "boolean" },
      test: { type: "boolean" },
      "signing-key": { type: "string" },
    });
    if (values.help)
      return help(
        this,
        io,
        `Builds each image config of IMAGES/ into OUT/images/NAME (an OCI layout, with its SBOM) from the
local repository OUT and distro.yaml's upstream repositories, and reports whether its digest
changed. --changed (the default) builds only images whose inputs changed (a package they contain,
their config, or a first build); --all builds every image (a night with no package changes gives
the same digests). --test runs each image's test: (command, expect, expect-exit) from the unpacked
image (umoci unpack --rootless) under bubblewrap, as the image's user, in its working directory
and environment; it passes when the exit status matches and stdout contains expect.
--push REGISTRY pushes REGISTRY/NAME:latest for each image whose digest differs from the last one
pushed there; --publish pushes to distro.yaml's publish.registry. Credentials:
KILN_REGISTRY_USERNAME / KILN_REGISTRY_PASSWORD; --insecure talks plain HTTP.
${COMMON_HELP}`,
      );
    return (await distroImages(values as ImagesValues, io)).status;
  },
};

export const distroBuildCmd: Command = {
  name: "distro-build",
  summary: "the main job: build every out-of-date recipe, then rebuild and smoke-test the images that changed",
  usage: "kiln distro-build [--jobs N] [--no-test] [--distro FILE] [--arch A]... [--signing-key K] [--cache-dir D]",
  async run(argv, io) {
    const { values } = parse(this, argv, {
      ...COMMON,
      jobs: { type: "string" },
      "no-test": { type: "boolean" },
      "signing-key": { type: "string" },
    });
    if (values.help)
      return help(
        this,
        io,
        `kiln build --all --keep-going, then kiln images --changed --test. A second run builds nothing.\n${COMMON_HELP}`,
      );
    const t0 = Date.now();
    // A bootstrap changes its own build environments: once stage-1 libraries
    // exist, guests that used the imported ones resolve to them, so those
    // recipes are out of date again. Re-plan and build until a round builds
    // nothing (bounded), so the next run has nothing to do.
    let b = await distroBuild(
      { ...(values as DistroBuildValues), all: true, "keep-going": true, jobs: values.jobs ?? "1" },
      io,
    );
    for (let round = 2; round <= 4 && b.status === 0; round++) {
      const built = b.reports.flatMap((r) => r.entries).filter((e) => e.status === "built").length;
      if (built === 0) break;
      io.err(`round ${round}: re-planning, since this run's builds changed other recipes' build environments`);
      b = await distroBuild(
        { ...(values as DistroBuildValues), all: true, "keep-going": true, jobs: values.jobs ?? "1" },
        io,
      );
    }
    const i = await distroImages({ ...(values as ImagesValues), changed: true, test: !values["no-test"] }, io);
    io.out(
      `done in ${((Date.now() - t0) / 1000).toFixed(1)} s: repository ${b.distro.outDir}, images ${resolvePath(b.distro.outDir, "images")}`,
    );
    return b.status || i.status;
  },
};
