// The bootstrap, planned once. distro.yaml's `bootstrap:` names stage-0
// recipes (imported binaries) and the recipe that replaces each
// (`zlib-bootstrap: zlib`). Without it a fresh build resolves every guest
// against whatever exists at the time — the stage-0 zlib until zlib is
// built, zlib afterwards — so the recipes built early see their environment
// move and are rebuilt in a second round. With it, each recipe's build
// environment is decided by the recipes alone:
//
// * a stage-0 package is left out of a build environment once its
//   replacement exists (in the graph's view: always, as the replacement's
//   planned packages), so builds wait for the replacement;
// * except where the replacement cannot be used: in its own build, and in
//   the builds of a dependency cycle through it (zstd's build needs binutils,
//   which needs libzstd): there the replacement's packages are left out and
//   the stage-0 ones stay. These cuts are found from the recipes' resolved
//   environments, not from what happens to be built, so they are the same on
//   a fresh machine and on a full repository.
//
// The graph's view learns what a replacement will provide (so:libz.so.1)
// from its stage-0 recipe's built packages, since the replacement's own
// so:/cmd:/pc: provides are only detected when it is built.

import type { IndexRecord } from "@kiln/apk";
import type { RepoPackage } from "@kiln/repo";
import type { RecipeNode } from "./recipes.js";

export interface BootstrapMap {
  /** Stage-0 recipe → the recipe that replaces it (both recipes of this architecture). */
  replacementOf: Map<string, string>;
  /** Replacement → its stage-0 recipes. */
  stage0Of: Map<string, string[]>;
}

/** The active part of distro.yaml's `bootstrap:` for these recipes; entries naming a recipe that is not here are reported in `warnings`. */
export function bootstrapMap(
  map: Readonly<Record<string, string>> | undefined,
  recipes: readonly RecipeNode[],
  warnings: string[],
): BootstrapMap {
  const names = new Set(recipes.map((r) => r.name));
  const active: Record<string, string> = {};
  for (const [stage0, replacement] of Object.entries(map ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const missing = [stage0, replacement].filter((n) => !names.has(n));
    if (missing.length)
      warnings.push(
        `distro.yaml: bootstrap: ${stage0}: ${missing.join(" and ")} ${missing.length === 1 ? "is not a recipe" : "are not recipes"} of this architecture; the entry is ignored`,
      );
    else active[stage0] = replacement;
  }
  return bootstrapMapOf(active);
}

/**
 * The packages of `pool` a build environment may use when it builds against
 * the stage-0 packages of the replacements in `useStage0`: their own
 * packages are left out, and every other replacement's stage-0 packages are
 * left out where the pool has that replacement's packages. `producer` maps a
 * package name to its recipe.
 */
export function bootstrapPool(
  pool: readonly RepoPackage[],
  bs: BootstrapMap,
  producer: (pkg: string) => string | undefined,
  useStage0: ReadonlySet<string>,
): RepoPackage[] {
  if (!bs.replacementOf.size) return [...pool];
  const present = new Set<string>();
  for (const p of pool) {
    const r = producer(p.record.name);
    if (r && bs.stage0Of.has(r)) present.add(r);
  }
  return pool.filter((p) => {
    const r = producer(p.record.name);
    if (!r) return true;
    if (useStage0.has(r)) return false;
    const replacement = bs.replacementOf.get(r);
    return !(replacement && !useStage0.has(replacement) && present.has(replacement));
  });
}

/** Names of the packages bootstrapPool leaves out of `pool` (what a build guest is told to ignore). */
export function bootstrapExcluded(
  pool: readonly RepoPackage[],
  bs: BootstrapMap,
  producer: (pkg: string) => string | undefined,
  useStage0: ReadonlySet<string>,
): string[] {
  return droppedNames(pool, bootstrapPool(pool, bs, producer, useStage0));
}

/** Names of the packages of `pool` that are not in `kept` (a filtered copy of it), sorted. */
export function droppedNames(pool: readonly RepoPackage[], kept: readonly RepoPackage[]): string[] {
  const k = new Set(kept);
  return [...new Set(pool.filter((p) => !k.has(p)).map((p) => p.record.name))].sort();
}

/** The recipes a recipe starts out building against the stage-0 packages of: itself, when it is a replacement. */
export function initialStage0(r: RecipeNode, bs: BootstrapMap): Set<string> {
  return new Set(bs.stage0Of.has(r.name) ? [r.name] : []);
}

/** so:/cmd:/pc: provides of the stage-0 recipes' packages: what their replacement is expected to provide before its first build. */
export function borrowedProvides(
  replacement: string,
  bs: BootstrapMap,
  records: ReadonlyMap<string, IndexRecord[]>,
): string[] {
  const out: string[] = [];
  for (const s of bs.stage0Of.get(replacement) ?? [])
    for (const rec of records.get(s) ?? [])
      for (const p of rec.provides) if (/^(so|cmd|pc):/.test(p) && !out.includes(p)) out.push(p);
  return out;
}

export function stage0Key(use: ReadonlySet<string>): string {
  return [...use].sort().join(" ");
}

/** The BootstrapMap of a graph's `bootstrap` record. */
export function bootstrapMapOf(rec: Readonly<Record<string, string>> | undefined): BootstrapMap {
  const replacementOf = new Map(Object.entries(rec ?? {}));
  const stage0Of = new Map<string, string[]>();
  for (const [s, r] of replacementOf) {
    const l = stage0Of.get(r);
    if (l) l.push(s);
    else stage0Of.set(r, [s]);
  }
  return { replacementOf, stage0Of };
}
