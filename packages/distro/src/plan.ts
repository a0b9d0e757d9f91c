// The build plan: which recipes to build, why, in which order, at which
// release number, and which images change as a result. Pure: it reads the
// graph and the loaded repository state and returns plain data.
//
// Two ways to decide what changed:
// * by build key (the default): a recipe is rebuilt when it has no current
//   build, when its own hash differs from the recorded one (its file, the
//   pipelines it uses, its patches and sources, the default environment), when
//   a recipe it depends on is rebuilt, or when its build environment now
//   resolves to different packages (an upstream repository moved);
// * by git (`since`): the recipes whose files changed since a revision, and
//   everything that depends on them — for CI runs without the keys.
//
// Release numbers: a build gets the recipe's epoch, unless a build of the
// same version already exists with that epoch or higher (locally or in an
// upstream repository); then it gets the highest existing epoch + 1. So a
// rebuild caused by a dependency raises the release number by itself, a
// maintainer's epoch bump still wins when it is higher, and no two different
// builds share NAME-VERSION-rN.

import type { RepoPackage } from "@kiln/repo";
import type { Distro } from "./config.js";
import { closureStoreOf, poolClosures, type Closures } from "./closures.js";
import { bootstrapMapOf } from "./bootstrap.js";
import {
  imagePackages,
  realPackages,
  stage0Closures,
  type CycleReport,
  type DistroGraph,
  type EnvPackage,
} from "./graph.js";
import { identity } from "./keys.js";
import { displayPath, type RecipeNode } from "./recipes.js";
import { currentBuilds, type CurrentBuild, type RepoState } from "./state.js";

export type Reason =
  | { kind: "missing"; detail: string }
  | { kind: "changed-file"; files: string[] }
  | { kind: "changed-definition"; detail: string }
  | { kind: "changed-dependency"; recipes: string[] }
  | { kind: "environment"; changes: string[] };

export interface PlannedBuild {
  recipe: string;
  path: string;
  version: string;
  /** The release number this build gets. */
  epoch: number;
  fullVersion: string;
  /** The recipe's own epoch. */
  recipeEpoch: number;
  /** The current build's full version, if there is one. */
  current?: string;
  reasons: Reason[];
  /** Recipes of this plan that must be built first. */
  after: string[];
  /** Recipes whose existing packages this build uses to break a cycle (not waited for, not part of the key). */
  standIns: string[];
  /** Replacements whose stage-0 packages this build uses instead of theirs (distro.yaml `bootstrap:`). */
  stage0?: string[];
}

export interface PlannedImage {
  name: string;
  path: string;
  reasons: string[];
  /** Recipes of this plan whose packages the image contains. */
  recipes: string[];
}

export interface BuildPlan {
  distro: string;
  arch: string;
  mode: "keys" | "since";
  since?: string;
  /** In build order. */
  builds: PlannedBuild[];
  upToDate: string[];
  images: PlannedImage[];
  unchangedImages: string[];
  cycles: CycleReport[];
  warnings: string[];
  /** Problems that stop a build (invalid recipes, cycles nothing can break). */
  errors: string[];
}

export interface SinceChanges {
  rev: string;
  /** Absolute paths of files changed (added, modified, deleted) since `rev`. */
  files: string[];
  /** distro.yaml's default environment differs from the one at `rev`. */
  environmentChanged: boolean;
}

export interface PlanOptions {
  since?: SinceChanges;
  /** Errors found while loading (invalid recipes or images), carried into the plan. */
  errors?: string[];
}

export function reasonText(r: Reason): string {
  switch (r.kind) {
    case "missing":
      return r.detail;
    case "changed-file":
      return `changed: ${r.files.join(", ")}`;
    case "changed-definition":
      return r.detail;
    case "changed-dependency":
      return `dependency rebuilt: ${r.recipes.join(", ")}`;
    case "environment":
      return `build environment changed: ${r.changes.join(", ")}`;
  }
}

/** Split `NAME-VERSION-rN@C` into name and the rest. */
function splitIdentity(id: string): { name: string; version: string; checksum: string } {
  const at = id.lastIndexOf("@");
  const nv = id.slice(0, at);
  const m = /^(.*)-([^-]+-r\d+)$/.exec(nv);
  return m
    ? { name: m[1]!, version: m[2]!, checksum: id.slice(at + 1) }
    : { name: nv, version: "", checksum: id.slice(at + 1) };
}

export function diffIdentities(before: readonly string[], after: readonly string[]): string[] {
  // The usual case, an unchanged environment: the same identities in the same order differ in nothing.
  if (before.length === after.length && before.every((x, i) => x === after[i])) return [];
  const a = new Map(before.map((i) => [splitIdentity(i).name, splitIdentity(i)]));
  const b = new Map(after.map((i) => [splitIdentity(i).name, splitIdentity(i)]));
  const out: string[] = [];
  for (const name of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const x = a.get(name);
    const y = b.get(name);
    if (x && !y) out.push(`- ${name}-${x.version}`);
    else if (!x && y) out.push(`+ ${name}-${y.version}`);
    else if (x && y && x.version !== y.version) out.push(`${name} ${x.version} → ${y.version}`);
    else if (x && y && x.checksum !== y.checksum) out.push(`${name}-${x.version} rebuilt with different bytes`);
  }
  return out;
}

function diffFiles(before: Record<string, string>, after: Record<string, string>): string[] {
  const out: string[] = [];
  for (const f of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
    if (before[f] === after[f]) continue;
    out.push(before[f] === undefined ? `${f} (added)` : after[f] === undefined ? `${f} (removed)` : f);
  }
  return out;
}

/** Recipes `r` takes as already published (cut cycle edges) and so leaves out of its key. */
export function standInsOf(graph: DistroGraph, recipe: string): string[] {
  return graph.edges.filter((e) => e.from === recipe && e.cut === "stand-in").map((e) => e.to);
}

/** Identities of a build environment as the key counts them: stand-ins left out. */
export function keyEnvironment(pkgs: readonly EnvPackage[], standIns: readonly string[]): string[] {
  return pkgs
    .filter((p) => !(p.recipe && standIns.includes(p.recipe)))
    .map((p) => identity(p))
    .sort();
}

/** Existing epochs of `version` for any of the recipe's package names. */
export function takenEpochs(r: Pick<RecipeNode, "outputs" | "version">, versions: Map<string, string[]>): number[] {
  const out: number[] = [];
  const prefix = `${r.version}-r`;
  for (const o of r.outputs) {
    for (const v of versions.get(o.name) ?? []) {
      if (v.startsWith(prefix) && /^\d+$/.test(v.slice(prefix.length))) out.push(Number(v.slice(prefix.length)));
    }
  }
  return out;
}

export function chooseEpoch(recipeEpoch: number, taken: readonly number[]): number {
  return taken.length ? Math.max(recipeEpoch, Math.max(...taken) + 1) : recipeEpoch;
}

export function versionsByName(pkgs: readonly RepoPackage[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const p of pkgs) {
    const l = m.get(p.record.name);
    if (l) l.push(p.record.version);
    else m.set(p.record.name, [p.record.version]);
  }
  return m;
}

function envFromPackages(pkgs: RepoPackage[], producer: Map<string, string>): EnvPackage[] {
  return pkgs.map((p) => {
    const e: EnvPackage = { name: p.record.name, version: p.record.version, repository: p.repo.url };
    if (p.record.checksum) e.checksum = p.record.checksum;
    const r = producer.get(p.record.name);
    if (r) e.recipe = r;
    return e;
  });
}

function missingDetail(r: RecipeNode, state: RepoState): string {
  const rec = state.keys.get(r.name);
  if (rec)
    return `its recorded build ${r.name}-${rec.fullVersion} is no longer in the repository (or its bytes changed)`;
  if (state.local.some((p) => p.name === r.name)) return `built outside the distribution (no build key recorded)`;
  return "not in the repository";
}

/** What deciding and numbering the builds of a plan needs, computed once from the graph and the state. */
interface PlanContext {
  byName: Map<string, RecipeNode>;
  current: Map<string, CurrentBuild>;
  versions: Map<string, string[]>;
  /** Package name → the recipe that produces it. */
  producer: Map<string, string>;
  standInsFor: (name: string) => string[];
  /** Closures over the packages an image installs from: the upstream and output repositories, not the bootstrap one. */
  imageClosure: Closures;
  /** Closures over the packages that exist as the recipe's build guest would see them (bootstrap: see bootstrap.ts). */
  buildClosure: (recipe: string) => Closures;
  /** Uncut build edges (the dependencies whose rebuild forces one). */
  depsOf: Map<string, string[]>;
  /** Uncut edges of either kind (the dependencies built first). */
  orderDepsOf: Map<string, string[]>;
}

function planContext(graph: DistroGraph, state: RepoState): PlanContext {
  const current = currentBuilds(state, graph.recipes);
  const real = realPackages(state);
  const producer = new Map<string, string>();
  for (const r of graph.recipes) for (const o of r.outputs) if (!producer.has(o.name)) producer.set(o.name, r.name);
  const standIns = new Map<string, string[]>();
  for (const e of graph.edges)
    if (e.cut === "stand-in") (standIns.get(e.from) ?? standIns.set(e.from, []).get(e.from)!).push(e.to);
  const stage0 = stage0Closures(real, state, bootstrapMapOf(graph.bootstrap), (n) => producer.get(n));
  const depsOf = new Map<string, string[]>();
  const orderDepsOf = new Map<string, string[]>();
  for (const e of graph.edges) {
    if (e.cut) continue;
    if (e.from === e.to) continue;
    const o = orderDepsOf.get(e.from);
    if (o) o.push(e.to);
    else orderDepsOf.set(e.from, [e.to]);
    if (e.kind !== "build") continue;
    const l = depsOf.get(e.from);
    if (l) l.push(e.to);
    else depsOf.set(e.from, [e.to]);
  }
  return {
    byName: new Map(graph.recipes.map((r) => [r.name, r])),
    current,
    versions: versionsByName(real),
    producer,
    standInsFor: (name) => standIns.get(name) ?? [],
    imageClosure: poolClosures(imagePackages(state), state.arch, closureStoreOf(state)),
    buildClosure: (name) => stage0(new Set(graph.stage0?.[name] ?? [])),
    depsOf,
    orderDepsOf,
  };
}

export function planBuild(
  distro: Pick<Distro, "name" | "recipesDir" | "root">,
  graph: DistroGraph,
  state: RepoState,
  opts: PlanOptions = {},
): BuildPlan {
  const ctx = planContext(graph, state);
  const since = opts.since;
  const dirty = since ? dirtySince(distro, graph, ctx, since) : dirtyByKey(graph, state, ctx);
  const { builds, upToDate } = plannedBuilds(graph, ctx, dirty);
  const { images, unchangedImages } = plannedImages(graph, state, ctx, dirty, since);
  const errors = [...(opts.errors ?? []), ...graph.cycles.filter((c) => !c.broken).map((c) => c.message)];
  const plan: BuildPlan = {
    distro: distro.name,
    arch: state.arch,
    mode: since ? "since" : "keys",
    builds,
    upToDate,
    images,
    unchangedImages,
    cycles: graph.cycles,
    warnings: graph.warnings,
    errors,
  };
  if (since) plan.since = since.rev;
  return plan;
}

/** By git: the recipes whose files changed since the revision, and (in build order) everything depending on them. */
function dirtySince(
  distro: Pick<Distro, "recipesDir" | "root">,
  graph: DistroGraph,
  ctx: PlanContext,
  since: SinceChanges,
): Map<string, Reason[]> {
  const dirty = new Map<string, Reason[]>();
  const changed = new Set(since.files);
  const seeds = new Map<string, string[]>();
  for (const r of graph.recipes) {
    const files = r.absFiles.filter((f) => changed.has(f));
    const srcPrefix = `${distro.recipesDir}/${r.name}/`;
    for (const f of since.files) if (f.startsWith(srcPrefix) && !files.includes(f)) files.push(f);
    const names = files.map((f) => displayPath(distro, f));
    if (since.environmentChanged && r.environment) names.push("distro.yaml (environment)");
    if (names.length) seeds.set(r.name, [...new Set(names)].sort());
  }
  for (const name of graph.order) {
    const reasons: Reason[] = [];
    const files = seeds.get(name);
    if (files) reasons.push({ kind: "changed-file", files });
    const deps = (ctx.depsOf.get(name) ?? []).filter((d) => dirty.has(d) && d !== name);
    if (deps.length) reasons.push({ kind: "changed-dependency", recipes: [...new Set(deps)].sort() });
    if (reasons.length) dirty.set(name, reasons);
  }
  return dirty;
}

/** By build key: in build order, the recipes that are missing, changed, depend on a rebuilt one, or whose environment moved. */
function dirtyByKey(graph: DistroGraph, state: RepoState, ctx: PlanContext): Map<string, Reason[]> {
  const dirty = new Map<string, Reason[]>();
  for (const name of graph.order) {
    const r = ctx.byName.get(name)!;
    const cur = ctx.current.get(name);
    const reasons: Reason[] = [];
    if (!cur) reasons.push({ kind: "missing", detail: missingDetail(r, state) });
    else if (cur.record.own !== r.own) {
      const files = diffFiles(cur.record.files ?? {}, r.files);
      reasons.push(
        files.length
          ? { kind: "changed-file", files }
          : {
              kind: "changed-definition",
              detail:
                "its compiled form changed (distro.yaml's default environment, a built-in pipeline, or kiln itself)",
            },
      );
    }
    const deps = (ctx.depsOf.get(name) ?? []).filter((d) => dirty.has(d) && d !== name);
    if (deps.length) reasons.push({ kind: "changed-dependency", recipes: [...new Set(deps)].sort() });
    if (!reasons.length && cur) {
      const c = ctx.buildClosure(name)(r.buildRequests);
      if (c.unresolved.length)
        reasons.push({ kind: "environment", changes: c.unresolved.map((u) => `nothing satisfies ${u}`) });
      else {
        const now = keyEnvironment(envFromPackages(c.packages, ctx.producer), ctx.standInsFor(name));
        const changes = diffIdentities(cur.record.environment, now);
        if (changes.length) reasons.push({ kind: "environment", changes });
      }
    }
    if (reasons.length) dirty.set(name, reasons);
  }
  return dirty;
}

/** The dirty recipes as numbered builds (in build order), and the rest as up to date. */
function plannedBuilds(
  graph: DistroGraph,
  ctx: PlanContext,
  dirty: Map<string, Reason[]>,
): { builds: PlannedBuild[]; upToDate: string[] } {
  const builds: PlannedBuild[] = [];
  const upToDate: string[] = [];
  for (const name of graph.order) {
    const reasons = dirty.get(name);
    const r = ctx.byName.get(name)!;
    if (!reasons) {
      upToDate.push(name);
      continue;
    }
    const cur: CurrentBuild | undefined = ctx.current.get(name);
    const taken = takenEpochs(r, ctx.versions);
    if (cur && cur.record.version === r.version) taken.push(Number(cur.record.fullVersion.slice(r.version.length + 2)));
    const epoch = chooseEpoch(
      r.epoch,
      taken.filter((n) => Number.isFinite(n)),
    );
    const b: PlannedBuild = {
      recipe: name,
      path: r.path,
      version: r.version,
      epoch,
      fullVersion: `${r.version}-r${epoch}`,
      recipeEpoch: r.epoch,
      reasons,
      after: [...new Set((ctx.orderDepsOf.get(name) ?? []).filter((d) => dirty.has(d)))].sort(),
      standIns: ctx.standInsFor(name),
    };
    if (graph.stage0?.[name]) b.stage0 = [...graph.stage0[name]];
    if (cur) b.current = cur.record.fullVersion;
    builds.push(b);
  }
  return { builds, upToDate };
}

/** The images of this architecture that change (with why), and those that do not. */
function plannedImages(
  graph: DistroGraph,
  state: RepoState,
  ctx: PlanContext,
  dirty: Map<string, Reason[]>,
  since: SinceChanges | undefined,
): { images: PlannedImage[]; unchangedImages: string[] } {
  const images: PlannedImage[] = [];
  const unchangedImages: string[] = [];
  const changedFiles = new Set(since?.files ?? []);
  for (const img of graph.images) {
    if (img.archs && !img.archs.includes(state.arch)) continue;
    const recipes = (graph.imageRecipes[img.name] ?? []).filter((r) => dirty.has(r));
    const reasons: string[] = [];
    if (recipes.length) reasons.push(`contains rebuilt packages of ${recipes.join(", ")}`);
    if (since) {
      if (changedFiles.has(img.file)) reasons.push(`changed: ${img.path}`);
    } else {
      const rec = state.images.get(img.name);
      if (!rec) reasons.push("not built yet");
      else if (rec.config !== img.config) reasons.push(`changed: ${img.path}`);
      else if (!recipes.length) {
        const c = ctx.imageClosure(img.requests);
        const now = c.packages
          .map((p) => identity({ name: p.record.name, version: p.record.version, checksum: p.record.checksum }))
          .sort();
        const changes = diffIdentities(rec.packages[state.arch] ?? [], now);
        if (changes.length) reasons.push(`package set changed: ${changes.join(", ")}`);
      }
    }
    if (reasons.length) images.push({ name: img.name, path: img.path, reasons, recipes });
    else unchangedImages.push(img.name);
  }
  return { images, unchangedImages };
}
