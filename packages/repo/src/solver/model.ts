// The resolver's view of the available packages, shared by its parts: the
// index built once per Resolver (../resolver.ts), the CNF encoding and
// search (problem.ts) and the explanation of failures (explain.ts).

import type { Dependency, IndexRecord } from "@kiln/apk";
import type { RepoPackage, RepositoryRef } from "../types.js";

export interface Dep {
  d: Dependency;
  token: string;
  /** name, op and version: what decides which packages match. */
  key: string;
}

export interface Pkg {
  id: number;
  rp: RepoPackage;
  rec: IndexRecord;
  name: string;
  version: string;
  repoOrder: number;
  tag: string | undefined;
  priority: number | undefined;
  /** Own name and every provided name, each once. */
  names: string[];
  versionedSlots: string[];
  virtualSlots: string[];
  parsed?: ParsedDeps | { broken: string };
}

export interface ParsedDeps {
  deps: Dep[];
  conflicts: Dep[];
  installIf: Dep[];
}

export interface Entry {
  pkg: number;
  /** Version the name is provided at; undefined for a virtual provide. */
  version: string | undefined;
  kind: 0 | 1 | 2; // 0 own name, 1 versioned provide, 2 virtual provide
}

export interface StaticInfo {
  /** Every package satisfying the dependency (arch-filtered, ignoring tags). */
  match: Set<number>;
  /** Those the solver may select, in preference order. */
  order: number[];
  /** Some matching packages are not selectable by policy (virtual without priority). */
  policyHidden: boolean;
  /** The virtual providers left out, for explanations. */
  virtualOnly: number[];
}

/** The request-independent lookups a resolution needs (implemented by Resolver). */
export interface PackageIndex {
  readonly packages: readonly Pkg[];
  readonly repositories: readonly RepositoryRef[];
  readonly repositoryTags: ReadonlySet<string>;
  readonly installIfCandidates: readonly string[];
  installIfTriggerNames(id: number): readonly string[] | undefined;
  entries(name: string): readonly Entry[];
  droppedArches(name: string): ReadonlySet<string> | undefined;
  compareLoose(a: string, b: string): number;
  dep(token: string): Dep;
  parsed(p: Pkg): ParsedDeps | { broken: string };
  info(dep: Dep): StaticInfo;
}

/** World pins: names requested as `name@tag`, with the tags they may come from. */
export type Pins = ReadonlyMap<string, readonly string[]>;

/**
 * Repository tags a dependency may select from (untagged repositories always
 * serve): its own `@tag`, the tag of the package declaring it, the world's
 * pins of that name.
 */
export function allowedTags(dep: Dep, parentTag: string | undefined, pinned: Pins): string[] {
  const out: string[] = [];
  if (dep.d.tag !== undefined) out.push(dep.d.tag);
  if (parentTag !== undefined && !out.includes(parentTag)) out.push(parentTag);
  for (const t of pinned.get(dep.d.name) ?? []) if (!out.includes(t)) out.push(t);
  return out;
}

export function depKey(d: Dependency): string {
  return `${d.name}\0${d.op ?? ""}\0${d.version ?? ""}`;
}

/** A dependency on a package's own name (what install_if candidates are looked up by). */
export function nameDep(name: string): Dep {
  const d = { name, conflict: false };
  return { d, token: name, key: depKey(d) };
}

export function label(p: Pkg): string {
  return `${p.name}-${p.version}`;
}

export function repoText(r: RepositoryRef): string {
  return r.tag !== undefined ? `@${r.tag} ${r.url}` : r.url;
}

export function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
