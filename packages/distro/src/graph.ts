// The dependency graph of a distribution for one architecture: an edge
// A → B when A's build (or test) environment resolves to a package recipe B
// produces. Environments are resolved with kiln's resolver over the packages
// the distribution will have: for each recipe, its current build's real index
// records (with the so:/cmd:/pc: provides detected when it was built), or —
// not built yet, or out of date — records made from its declared provides;
// upstream packages a recipe also produces are shadowed by the recipe (its
// builds are always numbered above them). An image depends on the recipes of
// every package in its resolved (runtime) closure.
//
// Cycles: within a strongly connected component, test-only edges are dropped
// first; then, Wolfi's way, an edge A → B whose packages already exist in a
// repository is cut and A builds against that published B (a stand-in); an
// SCC that stays cyclic is reported with its full path.
//
// Bootstrap (distro.yaml `bootstrap:`, see bootstrap.ts): build environments
// use a stage-0 recipe's replacement instead of it, except in the replacement's
// own build and within cycles through it; those cuts come first and do not
// depend on what is built, so a fresh build needs one pass.

import { ResolveError, Resolver, type RepoPackage } from "@kiln/repo";
import { newIndexRecord, parseDependency, type IndexRecord } from "@kiln/apk";
import {
  bootstrapMap,
  bootstrapPool,
  borrowedProvides,
  initialStage0,
  stage0Key,
  type BootstrapMap,
} from "./bootstrap.js";
import { closureStoreOf, poolClosures, type Closures } from "./closures.js";
import type { ImageNode } from "./images.js";
import type { RecipeNode } from "./recipes.js";
import { currentBuilds, localPackages, type CurrentBuild, type RepoState } from "./state.js";

export interface EnvPackage {
  name: string;
  version: string;
  /** `C:` (absent for a package that is not built yet). */
  checksum?: string;
  /** The recipe that produces it, if the distribution does. */
  recipe?: string;
  repository: string;
}

export interface StandIn {
  name: string;
  version: string;
  repository: string;
}

export interface GraphEdge {
  /** The recipe whose environment needs… */
  from: string;
  /** …packages of this recipe. */
  to: string;
  kind: "build" | "test";
  /** Packages of `to` in `from`'s environment. */
  packages: string[];
  /** Set when the edge was cut to break a cycle: `stand-in` (existing packages are used instead) or `test` (a test-only edge). */
  cut?: "stand-in" | "test";
  standIns?: StandIn[];
}

export interface CycleReport {
  /** Every recipe of the strongly connected component. */
  recipes: string[];
  /** One cycle through them: first and last are the same recipe. */
  path: string[];
  broken: boolean;
  message: string;
}

export interface DistroGraph {
  arch: string;
  recipes: RecipeNode[];
  images: ImageNode[];
  edges: GraphEdge[];
  /** Build order: every recipe after the recipes it depends on (uncut edges). */
  order: string[];
  cycles: CycleReport[];
  /** Requests nothing satisfies, and similar findings (the build will explain them). */
  warnings: string[];
  /** What each recipe's build environment resolves to in the graph's view. */
  environments: Record<string, EnvPackage[]>;
  /** What each image's packages resolve to. */
  imagePackages: Record<string, EnvPackage[]>;
  imageRecipes: Record<string, string[]>;
  imageUnresolved: Record<string, string[]>;
  /** distro.yaml's `bootstrap:` entries in use: stage-0 recipe → its replacement. */
  bootstrap?: Record<string, string>;
  /** Recipe → the replacements whose stage-0 packages its build uses instead (only recipes with some). */
  stage0?: Record<string, string[]>;
}

/** Where records of packages that are not built yet come from (one repository, so explanations stay short). */
const SYNTHETIC_REPO = { url: "(recipes not built yet)" };

function repoName(p: RepoPackage): string {
  return p.repo.tag !== undefined ? `@${p.repo.tag} ${p.repo.url}` : p.repo.url;
}

function uniq(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** Records for a recipe's outputs as it declares them, borrowing what an earlier build of the same name detected. */
export function syntheticPackages(
  r: RecipeNode,
  arch: string,
  newest: Map<string, IndexRecord>,
  borrowed: readonly string[] = [],
): RepoPackage[] {
  const repo = SYNTHETIC_REPO;
  return r.outputs.map((o, i) => {
    const prev: IndexRecord | undefined =
      newest.get(o.name) ?? (i === 0 && borrowed.length ? { ...newIndexRecord(), provides: [...borrowed] } : undefined);
    const rec: IndexRecord = {
      ...newIndexRecord(),
      name: o.name,
      version: r.fullVersion,
      arch,
      origin: r.name,
      depends: uniq([...o.depends, ...(prev?.depends ?? [])]),
      provides: uniq([
        ...o.provides,
        ...(prev?.provides ?? []).filter((p) => !o.provides.some((q) => q.split("=")[0] === p.split("=")[0])),
      ]),
      replaces: o.replaces,
    };
    if (o.providerPriority !== undefined) rec.providerPriority = o.providerPriority;
    return { record: rec, repo, url: `${r.path}#${o.name}` };
  });
}

/** Resolve requests; on failure, each request on its own, collecting what nothing satisfies. */
export function closure(
  resolver: Resolver,
  requests: readonly string[],
): { packages: RepoPackage[]; unresolved: string[] } {
  if (!requests.length) return { packages: [], unresolved: [] };
  try {
    return { packages: resolver.resolve(requests).packages, unresolved: [] };
  } catch (e) {
    if (!(e instanceof ResolveError)) throw e;
  }
  const seen = new Set<RepoPackage>();
  const unresolved: string[] = [];
  for (const req of requests) {
    try {
      for (const p of resolver.resolve([req]).packages) seen.add(p);
    } catch (e) {
      if (!(e instanceof ResolveError)) throw e;
      const why = (e.explanation[0] ?? e.message.split("\n")[0] ?? "").replace(/ in [^"]*$/, "");
      unresolved.push(`${req} (${why})`);
    }
  }
  return { packages: [...seen], unresolved };
}

/** Every real package (upstream, then local): what a build guest can resolve from. */
export function realPackages(state: RepoState): RepoPackage[] {
  return [...state.upstream, ...localPackages(state)];
}

/** The packages images install from: upstream and the output repository, never the bootstrap repository's. */
export function imagePackages(state: RepoState): RepoPackage[] {
  return [...state.upstream, ...localPackages({ ...state, stage0: [] })];
}

function newestByName(pkgs: RepoPackage[]): Map<string, IndexRecord> {
  const out = new Map<string, IndexRecord>();
  for (const p of pkgs) {
    const prev = out.get(p.record.name);
    if (!prev || (p.record.buildDate ?? 0) >= (prev.buildDate ?? 0)) out.set(p.record.name, p.record);
  }
  return out;
}

/** The packages of the graph's view: recipes' current builds or declared outputs, and upstream packages no recipe produces. */
export function graphPool(
  recipes: RecipeNode[],
  state: RepoState,
  current: Map<string, CurrentBuild>,
  bs?: BootstrapMap,
): RepoPackage[] {
  const real = realPackages(state);
  const produced = new Set(recipes.flatMap((r) => r.outputs.map((o) => o.name)));
  const pool: RepoPackage[] = [];
  for (const r of recipes) {
    const cur = current.get(r.name);
    if (cur) pool.push(...cur.packages);
  }
  const newest = newestByName(real);
  const stage0Records = new Map<string, IndexRecord[]>();
  if (bs?.replacementOf.size)
    for (const r of recipes)
      if (bs.replacementOf.has(r.name))
        stage0Records.set(
          r.name,
          r.outputs.flatMap((o) => newest.get(o.name) ?? []),
        );
  for (const r of recipes)
    if (!current.has(r.name))
      pool.push(...syntheticPackages(r, state.arch, newest, bs ? borrowedProvides(r.name, bs, stage0Records) : []));
  for (const p of real) if (!produced.has(p.record.name)) pool.push(p);
  return recipes.some((r) => !current.has(r.name)) ? withoutUnknownProviders(pool) : pool;
}

const AUTO_DEP = /^(so|cmd|pc):/;

/**
 * The pool with the so:/cmd:/pc: requirements nothing in it provides left
 * out of the built packages' records: while some recipe is not built yet,
 * its so:/cmd:/pc: provides are unknown (they are detected when it is
 * built: glibc's so:libc.so.6), and one such requirement would leave
 * a whole environment unresolved in the graph's view (binutils, and with it
 * what binutils needs from recipes that are known). Guests resolve the real
 * records, where such a requirement still fails.
 */
function withoutUnknownProviders(pool: RepoPackage[]): RepoPackage[] {
  const provided = new Set<string>();
  for (const p of pool) {
    provided.add(p.record.name);
    for (const q of p.record.provides) provided.add(depName(q));
  }
  return pool.map((p) => {
    if (p.repo === SYNTHETIC_REPO) return p;
    const depends = p.record.depends.filter((d) => !AUTO_DEP.test(d) || provided.has(depName(d)));
    return depends.length === p.record.depends.length ? p : { ...p, record: { ...p.record, depends } };
  });
}

/** A dependency's or provide's name, as @kiln/apk parses it (the token itself if it does not parse). */
function depName(dep: string): string {
  try {
    return parseDependency(dep).name;
  } catch {
    return dep;
  }
}

function envPackages(pkgs: RepoPackage[], producer: Map<string, RecipeNode>): EnvPackage[] {
  return pkgs
    .map((p) => {
      const e: EnvPackage = { name: p.record.name, version: p.record.version, repository: repoName(p) };
      if (p.record.checksum) e.checksum = p.record.checksum;
      const r = producer.get(p.record.name);
      if (r) e.recipe = r.name;
      return e;
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Strongly connected components (Tarjan, iterative), each sorted; only nontrivial ones (size > 1 or a self-loop). */
export function cyclicComponents(nodes: readonly string[], succ: (n: string) => readonly string[]): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  let counter = 0;
  for (const root of nodes) {
    if (index.has(root)) continue;
    const work: Array<{ n: string; i: number; next: readonly string[] }> = [];
    const push = (n: string) => {
      index.set(n, counter);
      low.set(n, counter++);
      stack.push(n);
      onStack.add(n);
      work.push({ n, i: 0, next: succ(n) });
    };
    push(root);
    while (work.length) {
      const top = work[work.length - 1]!;
      if (top.i < top.next.length) {
        const m = top.next[top.i++]!;
        if (!index.has(m)) push(m);
        else if (onStack.has(m)) low.set(top.n, Math.min(low.get(top.n)!, index.get(m)!));
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1]!.n;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.n)!));
      }
      if (low.get(top.n) === index.get(top.n)) {
        const comp: string[] = [];
        for (;;) {
          const m = stack.pop()!;
          onStack.delete(m);
          comp.push(m);
          if (m === top.n) break;
        }
        if (comp.length > 1 || top.next.includes(top.n)) out.push(comp.sort());
      }
    }
  }
  return out;
}

function isAcyclic(members: readonly string[], edges: GraphEdge[]): boolean {
  const inSet = new Set(members);
  const outdeg = new Map(members.map((m) => [m, 0]));
  const rev = new Map<string, string[]>(members.map((m) => [m, []]));
  for (const e of edges) {
    if (e.cut || !inSet.has(e.from) || !inSet.has(e.to)) continue;
    if (e.from === e.to) return false;
    outdeg.set(e.from, outdeg.get(e.from)! + 1);
    rev.get(e.to)!.push(e.from);
  }
  const queue = members.filter((m) => outdeg.get(m) === 0);
  let seen = 0;
  while (queue.length) {
    const n = queue.pop()!;
    seen++;
    for (const p of rev.get(n)!) {
      const d = outdeg.get(p)! - 1;
      outdeg.set(p, d);
      if (d === 0) queue.push(p);
    }
  }
  return seen === members.length;
}

/** One cycle through the component (DFS from its first member), as a closed path. */
function findCycle(members: readonly string[], edges: GraphEdge[]): string[] {
  const inSet = new Set(members);
  const succ = new Map<string, string[]>(members.map((m) => [m, []]));
  for (const e of edges) if (!e.cut && inSet.has(e.from) && inSet.has(e.to)) succ.get(e.from)!.push(e.to);
  for (const s of succ.values()) s.sort();
  const start = members[0]!;
  // Prefer the longest simple cycle back to start that a bounded DFS finds, so a ring names every member.
  let best: string[] | undefined;
  let budget = 20000;
  const path = [start];
  const onPath = new Set([start]);
  const dfs = (n: string) => {
    if (budget-- <= 0 || best?.length === members.length + 1) return;
    for (const m of succ.get(n)!) {
      if (m === start) {
        if (!best || path.length + 1 > best.length) best = [...path, start];
      } else if (!onPath.has(m)) {
        path.push(m);
        onPath.add(m);
        dfs(m);
        onPath.delete(m);
        path.pop();
      }
    }
  };
  dfs(start);
  return best ?? [start, start];
}

function describeEdge(e: GraphEdge): string {
  return `${e.from} needs ${e.packages.join(", ")} from ${e.to}${e.kind === "test" ? " (for its tests)" : ""}`;
}

export interface GraphInput {
  recipes: RecipeNode[];
  images: ImageNode[];
  state: RepoState;
  /** distro.yaml's `bootstrap:` (stage-0 recipe → its replacement). */
  bootstrap?: Readonly<Record<string, string>>;
}

/** Build the graph (pure: everything it needs is in `input`). */
export function buildGraph(input: GraphInput): DistroGraph {
  const { state } = input;
  const recipes = [...input.recipes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const producer = new Map<string, RecipeNode>();
  for (const r of recipes) for (const o of r.outputs) if (!producer.has(o.name)) producer.set(o.name, r);
  const current = currentBuilds(state, recipes);
  const warnings: string[] = [];
  const bs = bootstrapMap(input.bootstrap, recipes, warnings);
  const closuresFor = stage0Closures(graphPool(recipes, state, current, bs), state, bs, (n) => producer.get(n)?.name);
  const useStage0 = bootstrapCuts(recipes, bs, closuresFor, producer);
  const resolve = closuresFor(new Set());

  const { environments, edges } = resolveEnvironments(
    recipes,
    (r) => closuresFor(useStage0.get(r.name) ?? new Set()),
    // A test guest sees the stage-0 packages its build saw, and the recipe's own new ones.
    (r) => closuresFor(new Set([...(useStage0.get(r.name) ?? [])].filter((n) => n !== r.name))),
    producer,
    warnings,
  );
  const names = recipes.map((r) => r.name);
  const cycles = breakCycles(names, edges, existingPackages(state));
  const order = buildOrder(recipes, names, edges);
  const images = resolveImages(input.images, resolve, producer, warnings);
  const stage0: Record<string, string[]> = {};
  for (const [name, use] of useStage0) if (use.size) stage0[name] = [...use].sort();
  return {
    arch: state.arch,
    recipes,
    images: input.images,
    edges,
    order,
    cycles,
    warnings,
    environments,
    bootstrap: Object.fromEntries(bs.replacementOf),
    stage0,
    ...images,
  };
}

/** Closures over `pool` as a build using the stage-0 packages of `use` sees it (one resolver per distinct set). */
export function stage0Closures(
  pool: readonly RepoPackage[],
  state: RepoState,
  bs: BootstrapMap,
  producerOf: (pkg: string) => string | undefined,
): (use: ReadonlySet<string>) => Closures {
  const store = closureStoreOf(state);
  if (!bs.replacementOf.size) {
    const one = poolClosures(pool, state.arch, store);
    return () => one;
  }
  const memo = new Map<string, Closures>();
  return (use) => {
    const key = stage0Key(use);
    let c = memo.get(key);
    if (!c) memo.set(key, (c = poolClosures(bootstrapPool(pool, bs, producerOf, use), state.arch, store)));
    return c;
  };
}

/**
 * `use` and the replacements whose stage-0 packages `r`'s environment asks
 * for by a name the replacement does not provide (glibc's build asks for
 * busybox-static, a shell for its scripts, which busybox does not provide):
 * with those the request resolves, without them it never would.
 */
function askedStage0(
  r: RecipeNode,
  bs: BootstrapMap,
  closuresFor: (use: ReadonlySet<string>) => Closures,
  use: ReadonlySet<string>,
): Set<string> {
  const out = new Set(use);
  let unresolved = closuresFor(out)(r.buildRequests).unresolved.length;
  for (const replacement of [...bs.stage0Of.keys()].sort()) {
    if (!unresolved) break;
    if (out.has(replacement)) continue;
    const trial = new Set([...out, replacement]);
    const n = closuresFor(trial)(r.buildRequests).unresolved.length;
    if (n < unresolved) {
      out.add(replacement);
      unresolved = n;
    }
  }
  return out;
}

/**
 * Which replacements each recipe builds against the stage-0 packages of: its
 * own, and within a dependency cycle every replacement the cycle runs
 * through (when the recipe's environment still resolves without it).
 */
function bootstrapCuts(
  recipes: readonly RecipeNode[],
  bs: BootstrapMap,
  closuresFor: (use: ReadonlySet<string>) => Closures,
  producer: ReadonlyMap<string, RecipeNode>,
): Map<string, Set<string>> {
  const use = new Map(recipes.map((r) => [r.name, initialStage0(r, bs)]));
  if (!bs.replacementOf.size) return use;
  const names = recipes.map((r) => r.name);
  const byName = new Map(recipes.map((r) => [r.name, r]));
  for (const r of recipes) use.set(r.name, askedStage0(r, bs, closuresFor, use.get(r.name)!));
  for (let pass = 0; pass <= recipes.length; pass++) {
    const succ = new Map<string, string[]>();
    const unresolved = new Map<string, number>();
    for (const r of recipes) {
      const c = closuresFor(use.get(r.name)!)(r.buildRequests);
      unresolved.set(r.name, c.unresolved.length);
      succ.set(
        r.name,
        uniq(c.packages.map((p) => producer.get(p.record.name)?.name ?? "").filter((n) => n && n !== r.name)),
      );
    }
    let added = false;
    for (const comp of cyclicComponents(names, (n) => succ.get(n) ?? [])) {
      const inComp = new Set(comp);
      for (const a of comp) {
        for (const b of succ.get(a)!) {
          if (!inComp.has(b) || !bs.stage0Of.has(b) || use.get(a)!.has(b)) continue;
          const trial = new Set([...use.get(a)!, b]);
          // A recipe that asks for the replacement's own packages (zlib-dev) cannot use the stage-0 ones.
          if (closuresFor(trial)(byName.get(a)!.buildRequests).unresolved.length > unresolved.get(a)!) continue;
          use.set(a, trial);
          added = true;
        }
      }
    }
    if (!added) break;
  }
  return use;
}

/**
 * Each recipe's build environment and the edges its build and test
 * environments imply (sorted, packages sorted); unresolved requests are
 * appended to `warnings`.
 */
function resolveEnvironments(
  recipes: readonly RecipeNode[],
  buildResolve: (r: RecipeNode) => Closures,
  testResolve: (r: RecipeNode) => Closures,
  producer: Map<string, RecipeNode>,
  warnings: string[],
): { environments: Record<string, EnvPackage[]>; edges: GraphEdge[] } {
  const environments: Record<string, EnvPackage[]> = {};
  const edgeMap = new Map<string, GraphEdge>();
  for (const r of recipes) {
    const b = buildResolve(r)(r.buildRequests);
    for (const u of b.unresolved) warnings.push(`${r.path}: build environment: nothing satisfies ${u}`);
    environments[r.name] = envPackages(b.packages, producer);
    addEdges(edgeMap, producer, r, b.packages, "build");
    if (r.testRequests.length) {
      const t = testResolve(r)(r.testRequests);
      for (const u of t.unresolved) warnings.push(`${r.path}: test environment: nothing satisfies ${u}`);
      addEdges(edgeMap, producer, r, t.packages, "test");
    }
  }
  const edges = [...edgeMap.values()].sort((a, b) =>
    a.from < b.from ? -1 : a.from > b.from ? 1 : a.to < b.to ? -1 : a.to > b.to ? 1 : 0,
  );
  for (const e of edges) e.packages.sort();
  return { environments, edges };
}

/** Record in `edgeMap` the edges from `r` to the producers of `pkgs`; a build edge supersedes a test edge. */
function addEdges(
  edgeMap: Map<string, GraphEdge>,
  producer: Map<string, RecipeNode>,
  r: RecipeNode,
  pkgs: RepoPackage[],
  kind: "build" | "test",
): void {
  for (const p of pkgs) {
    const to = producer.get(p.record.name);
    if (!to || (kind === "test" && to === r)) continue;
    const id = `${r.name}\0${to.name}`;
    let e = edgeMap.get(id);
    if (!e) edgeMap.set(id, (e = { from: r.name, to: to.name, kind, packages: [] }));
    else if (kind === "build" && e.kind === "test") {
      e.kind = "build";
      e.packages = [];
    } else if (kind === "test" && e.kind === "build") continue;
    if (!e.packages.includes(p.record.name)) e.packages.push(p.record.name);
  }
}

/** The first real (already built) package of each name: what can stand in for it. */
function existingPackages(state: RepoState): Map<string, StandIn> {
  const existing = new Map<string, StandIn>();
  for (const p of realPackages(state)) {
    const prev = existing.get(p.record.name);
    if (!prev) existing.set(p.record.name, { name: p.record.name, version: p.record.version, repository: repoName(p) });
  }
  return existing;
}

/** Find the cyclic components, cut edges to break them where possible (marking `edges`), and report each. */
function breakCycles(names: readonly string[], edges: GraphEdge[], existing: Map<string, StandIn>): CycleReport[] {
  const outEdges = new Map<string, GraphEdge[]>(names.map((n) => [n, []]));
  for (const e of edges) outEdges.get(e.from)!.push(e);
  const cycles: CycleReport[] = [];
  for (const comp of cyclicComponents(names, (n) =>
    outEdges
      .get(n)!
      .filter((e) => !e.cut)
      .map((e) => e.to),
  )) {
    const inComp = new Set(comp);
    const compEdges = edges.filter((e) => inComp.has(e.from) && inComp.has(e.to));
    const before = findCycle(comp, compEdges);
    for (const e of compEdges) if (e.kind === "test") e.cut = "test";
    if (!isAcyclic(comp, compEdges)) cutWithStandIns(comp, compEdges, existing);
    const broken = isAcyclic(comp, compEdges);
    const path = broken ? before : findCycle(comp, compEdges);
    cycles.push({ recipes: comp, path, broken, message: cycleMessage(comp, compEdges, path, broken) });
  }
  return cycles;
}

/**
 * Cut edges whose packages all exist already (stand-ins) until the component
 * is acyclic or none is left, then undo the cuts that turn out not to be needed.
 */
function cutWithStandIns(comp: readonly string[], compEdges: GraphEdge[], existing: Map<string, StandIn>): void {
  const cutNow: GraphEdge[] = [];
  for (const e of compEdges) {
    if (e.cut) continue;
    const standIns = e.packages.map((n) => existing.get(n));
    if (standIns.some((s) => !s)) continue;
    e.cut = "stand-in";
    e.standIns = standIns as StandIn[];
    cutNow.push(e);
    if (isAcyclic(comp, compEdges)) break;
  }
  // Keep only the cuts that are needed.
  for (const e of [...cutNow].reverse()) {
    const saved = e.standIns;
    delete e.cut;
    delete e.standIns;
    if (!isAcyclic(comp, compEdges)) {
      e.cut = "stand-in";
      e.standIns = saved!;
    }
  }
}

/** The report's message for a component: how it was broken, or the cycle that remains. */
function cycleMessage(comp: string[], compEdges: GraphEdge[], path: string[], broken: boolean): string {
  const ring = path.join(" → ");
  const via = path
    .slice(0, -1)
    .map((n, i) => compEdges.find((e) => e.from === n && e.to === path[i + 1]))
    .filter((e): e is GraphEdge => !!e)
    .map(describeEdge);
  const all = comp.length + 1 > path.length ? ` (the cycle involves ${comp.join(", ")})` : "";
  if (broken) {
    const cuts = compEdges
      .filter((e) => e.cut === "stand-in")
      .map(
        (e) =>
          `${e.from} builds against the existing ${e.standIns!.map((s) => `${s.name}-${s.version} (${s.repository})`).join(", ")} instead of waiting for ${e.to}`,
      );
    const tests = compEdges.filter((e) => e.cut === "test").map((e) => `${e.from}'s tests use whatever ${e.to} exists`);
    return `dependency cycle ${ring}${all} broken: ${[...cuts, ...tests].join("; ")}`;
  }
  return `dependency cycle: ${ring}${all}: ${via.join("; ")}; no package already in a repository can stand in for any of these edges — build one of them once from a bootstrap recipe or add an upstream repository that has it`;
}

/**
 * The build order: Kahn over uncut edges. Among ready recipes, those of
 * kiln-native steps only (imports: no guest, so no build dependencies) come
 * first, then by name: a guest recipe's needs can include dependencies that
 * only become known once an imported package is built and its so:/cmd:
 * requirements are detected (binutils' scripts needing perl), so every import
 * is in the repository before any guest is assembled. Recipes left on a cycle
 * follow, in name order.
 */
function buildOrder(recipes: readonly RecipeNode[], names: readonly string[], edges: readonly GraphEdge[]): string[] {
  const rank = new Map(recipes.map((r) => [r.name, `${r.needsGuest ? 1 : 0}\u0000${r.name}`]));
  const key = (n: string) => rank.get(n) ?? `1\u0000${n}`;
  const pending = new Map<string, number>(names.map((n) => [n, 0]));
  const dependents = new Map<string, string[]>(names.map((n) => [n, []]));
  for (const e of edges) {
    if (e.cut || e.from === e.to) continue;
    pending.set(e.from, pending.get(e.from)! + 1);
    dependents.get(e.to)!.push(e.from);
  }
  const ready = names
    .filter((n) => pending.get(n) === 0)
    .sort((a, b) => (key(a) < key(b) ? 1 : key(a) > key(b) ? -1 : 0));
  const order: string[] = [];
  while (ready.length) {
    const n = ready.pop()!;
    order.push(n);
    for (const d of dependents.get(n)!) {
      const left = pending.get(d)! - 1;
      pending.set(d, left);
      if (left === 0) {
        // Insert keeping `ready` sorted descending by key (pop takes the smallest).
        let lo = 0;
        let hi = ready.length;
        const kd = key(d);
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (key(ready[mid]!) > kd) lo = mid + 1;
          else hi = mid;
        }
        ready.splice(lo, 0, d);
      }
    }
  }
  if (order.length < names.length) {
    const placed = new Set(order);
    order.push(...names.filter((n) => !placed.has(n)));
  }
  return order;
}

/** Each image's resolved closure and the recipes it comes from; unresolved requests are appended to `warnings`. */
function resolveImages(
  images: readonly ImageNode[],
  resolve: Closures,
  producer: Map<string, RecipeNode>,
  warnings: string[],
): Pick<DistroGraph, "imagePackages" | "imageRecipes" | "imageUnresolved"> {
  const imagePackages: Record<string, EnvPackage[]> = {};
  const imageRecipes: Record<string, string[]> = {};
  const imageUnresolved: Record<string, string[]> = {};
  for (const img of images) {
    const c = resolve(img.requests);
    imagePackages[img.name] = envPackages(c.packages, producer);
    imageRecipes[img.name] = uniq(imagePackages[img.name]!.flatMap((p) => (p.recipe ? [p.recipe] : []))).sort();
    imageUnresolved[img.name] = c.unresolved;
    for (const u of c.unresolved) warnings.push(`${img.path}: nothing satisfies ${u}`);
  }
  return { imagePackages, imageRecipes, imageUnresolved };
}

/** Recipes that (transitively, over uncut build edges) depend on any of `seeds`, seeds included. */
export function dependentsOf(graph: DistroGraph, seeds: Iterable<string>): Set<string> {
  const rev = new Map<string, string[]>();
  for (const e of graph.edges) {
    if (e.cut || e.kind !== "build") continue;
    const l = rev.get(e.to);
    if (l) l.push(e.from);
    else rev.set(e.to, [e.from]);
  }
  const out = new Set<string>(seeds);
  const queue = [...out];
  while (queue.length) {
    for (const d of rev.get(queue.pop()!) ?? []) {
      if (!out.has(d)) {
        out.add(d);
        queue.push(d);
      }
    }
  }
  return out;
}
