// Dependency resolution: requests (apk world syntax) against the packages of
// some repositories, to the set of packages to install, in install order.
//
// The rules below are encoded as a satisfiability problem over the packages
// the requests can reach (solver/problem.ts) and decided by a conflict-driven
// clause-learning search (solver/cdcl.ts): unit propagation, first-UIP
// learning, non-chronological backjumping. Its decisions are those of the
// depth-first resolver it replaces: first the steps that one never revisited
// (while a dependency — requests first, then those of what was selected,
// earliest first — has exactly one candidate the selection does not rule
// out, select it); then, among the dependencies nothing selected satisfies
// yet, the one with the fewest candidates still possible (earliest wins
// ties), its most preferred candidate first (newest first). When nothing is
// open every other package is left out. So the answer is the one a
// depth-first search in that order finds first (learning only prunes and
// sharpens what "still possible" means), and a set of dependencies that is a
// hard combinatorial puzzle is decided by learning rather than by
// enumerating combinations. When no answer exists, a bounded depth-first walk
// over the same rules (solver/explain.ts) writes the explanation: one chain
// per dead end.
//
// The search is bounded: more than `maxConflicts` conflicts (ResolveOptions,
// else KILN_MAX_RESOLVE_CONFLICTS, else DEFAULT_MAX_CONFLICTS), counted over
// the requested closure and install_if together, ends it with a ResolveError
// TOO_HARD instead of an answer.
//
// Rules (what "satisfies" and "may be selected" mean):
//
// * A dependency `name[op version]` is satisfied by a package named `name`
//   whose version matches, by a package with a versioned provide
//   `name=version` that matches, or — only when the dependency has no version
//   constraint — by a package with a virtual (unversioned) provide `name`.
//   Whatever package in the selected set satisfies it counts, however it got
//   there (so a virtual provider pulled in by something else satisfies an
//   unversioned dependency: apk's "already required by something else").
//
// * Candidates the solver may *select* for a dependency, in preference order:
//   1. packages named `name`: newest version first, then the repository listed
//      first in `available` (repositories are ordered by first appearance);
//   2. packages with a versioned provide of `name`: highest provider_priority,
//      then newest provided version, then repository order, then name;
//   3. packages with a virtual provide of `name` that have provider_priority:
//      highest priority first, then name;
//   4. only when 1–3 are empty and every virtual provider has the same package
//      name (exactly one candidate package), that package.
//   A virtual provider without provider_priority among several is never
//   selected on its own (apk's is_provider_auto_selectable): the dependency
//   waits until everything else is chosen, and if nothing selected by then
//   provides the name, resolution fails naming the providers.
//   Unlike apk, which compares provided versions before provider_priority
//   across real and providing packages alike, a package of the requested name
//   always comes first: `dnsmasq` gets dnsmasq, not dnsmasq-dnssec.
//   Remaining ties (the same name and version in one repository twice) are
//   broken by checksum, so the output does not depend on input order.
//
// * Repository tags: a package from a repository with `tag` set may be
//   selected only for a dependency that may use that tag: a request or
//   dependency written `name@tag`; any dependency on a name the world pins
//   with `name@tag`; or a dependency of a package that itself came from a
//   repository with that tag (apk's pinning inheritance). Untagged
//   repositories serve every dependency.
//
// * One package per name. Names also hold versioned provides: two selected
//   packages may not provide the same name with a version, nor may one
//   provide it with a version while another provides it virtually (apk's
//   "conflict: same name provided"). Several virtual providers coexist.
//
// * `!name[op version]` in the requests or in a selected package's depends:
//   no selected package (other than the one declaring it) may satisfy
//   `name[op version]`.
//
// * install_if: once the requested closure is found, any package (the
//   preferred candidate of its name whose install_if entries are all
//   satisfied by the selected set, from an untagged repository or a tag in
//   use) is added together with its dependencies, without changing what is
//   already selected; repeated to a fixpoint, names in sorted order. An entry
//   `!name[op version]` holds while no selected package satisfies
//   `name[op version]`, before and after the package and its dependencies
//   are added. One that cannot be added consistently is skipped.
//
// * Install order: a depth-first post-order over "depends on" edges, roots and
//   edges in name order, so every package follows what it depends on; an edge
//   closing a cycle is the one dropped, decided by that same name order.
//
// * `preferNewest` is accepted and changes nothing: newest-first is the rule.
//
// Known limits: a dependency with selectable candidates open when the search
// reaches it selects one of them rather than wait for a hidden (virtual
// without priority, or tag-excluded) provider that might be selected later;
// one with only hidden providers possible waits, as described above. So the
// answer can depend on the order of the requests: in Alpine 3.16 `vim gvim`
// fails (vim is selected first, and both provide cmd:ex) while `gvim vim`
// installs gvim, which provides vim.

import { KilnError } from "@kiln/core";
import { compareVersions, isValidVersion, parseDependency, versionSatisfies } from "@kiln/apk";
import type { RepoPackage, RepositoryRef, Resolution } from "./types.js";
import { explainFailure } from "./solver/explain.js";
import {
  cmpStr,
  depKey,
  nameDep,
  type Dep,
  type Entry,
  type PackageIndex,
  type ParsedDeps,
  type Pkg,
  type StaticInfo,
} from "./solver/model.js";
import { Problem } from "./solver/problem.js";

export type ResolveErrorCode = "UNSATISFIABLE" | "INVALID_REQUEST" | "TOO_HARD" | "INVALID_LIMIT";

/** Resolution failed. `explanation` has one line per failed attempt: the chain from a request to the constraint that could not be met, and why. */
export class ResolveError extends KilnError {
  readonly code: ResolveErrorCode;

  constructor(code: ResolveErrorCode, message: string, explanation: string[]) {
    super(explanation.length ? `${message}:\n  ${explanation.join("\n  ")}` : message, { explanation });
    this.code = code;
  }
}

export interface ResolveOptions {
  /** Ignore packages whose arch is neither this nor "noarch". */
  arch?: string;
  /** Newest-first is always the preference; accepted for callers that state it. */
  preferNewest?: true;
  /** Conflicts the search may meet before it gives up (TOO_HARD); default KILN_MAX_RESOLVE_CONFLICTS, else DEFAULT_MAX_CONFLICTS. */
  maxConflicts?: number;
}

/** How many conflicts a resolution may meet by default. */
export const DEFAULT_MAX_CONFLICTS = 50_000;
export const MAX_CONFLICTS_ENV = "KILN_MAX_RESOLVE_CONFLICTS";

/** Resolve `requests` (apk world tokens) against `available`. Throws ResolveError. */
export function resolve(requests: string[], available: RepoPackage[], opts: ResolveOptions = {}): Resolution {
  return new Resolver(available, opts).resolve(requests);
}

// ---------------------------------------------------------------------------

const MAX_EXPLANATION = 20;
/** Candidate evaluations the explanation walk may make before it stops. */
const EXPLAIN_BUDGET = 1_000_000;
const PROVIDE_JUNK = /[<>~\s]/;
const DEP_NAME_END = /[@<>=~]/;

function repoKey(r: RepositoryRef): string {
  return `${r.tag ?? ""}\0${r.url}`;
}

/**
 * Add PKG's provided names to its name slots and ENTRIES (one per name, in
 * the order of pkg.names), after its own name.
 */
function addProvides(pkg: Pkg, entries: Entry[], provides: readonly string[]): void {
  for (const tok of provides) {
    // Split by hand: the index has thousands of provides, and parseProvide
    // also validates names. A provide whose version apk cannot order
    // (`pc:librtmp=v2.4` is in Alpine 3.16) still provides the name, to
    // unversioned dependencies only (see info()).
    if (tok === "" || PROVIDE_JUNK.test(tok)) continue;
    const eq = tok.indexOf("=");
    const name = eq < 0 ? tok : tok.slice(0, eq);
    if (name === "") continue;
    const at = pkg.names.indexOf(name);
    if (at >= 0) {
      // Repeated name: a versioned provide beats a virtual one.
      const prev = entries[at]!;
      if (prev.kind === 2 && eq >= 0) {
        prev.kind = 1;
        prev.version = tok.slice(eq + 1);
        pkg.virtualSlots.splice(pkg.virtualSlots.indexOf(name), 1);
        pkg.versionedSlots.push(name);
      }
      continue;
    }
    pkg.names.push(name);
    if (eq >= 0) {
      entries.push({ pkg: pkg.id, version: tok.slice(eq + 1), kind: 1 });
      pkg.versionedSlots.push(name);
    } else {
      entries.push({ pkg: pkg.id, version: undefined, kind: 2 });
      pkg.virtualSlots.push(name);
    }
  }
}

/**
 * A resolver over a fixed set of available packages. Building it indexes the
 * packages (by name and provided name); `resolve` can then be called any
 * number of times. `resolve()` above builds one per call.
 */
export class Resolver implements PackageIndex {
  private readonly pkgs: Pkg[] = [];
  private readonly byName = new Map<string, Entry[]>();
  private readonly archDropped = new Map<string, Set<string>>();
  private readonly repos: RepositoryRef[] = [];
  private readonly tags = new Set<string>();
  private readonly statics = new Map<string, StaticInfo>();
  private readonly depCache = new Map<string, Dep>();
  private readonly installIfNames: string[];
  private readonly triggers = new Map<number, string[]>();
  private readonly maxConflicts: number | undefined;

  constructor(available: readonly RepoPackage[], opts: ResolveOptions = {}) {
    this.maxConflicts = opts.maxConflicts;
    const repoOrder = new Map<string, number>();
    const repoOrderByRef = new Map<RepositoryRef, number>();
    const installIf = new Set<string>();
    const byName = this.byName;
    for (const rp of available) {
      const rec = rp.record;
      let order = repoOrderByRef.get(rp.repo);
      if (order === undefined) {
        const rk = repoKey(rp.repo);
        order = repoOrder.get(rk);
        if (order === undefined) {
          order = repoOrder.size;
          repoOrder.set(rk, order);
          this.repos.push(rp.repo);
          if (rp.repo.tag !== undefined) this.tags.add(rp.repo.tag);
        }
        repoOrderByRef.set(rp.repo, order);
      }
      if (opts.arch !== undefined && rec.arch !== opts.arch && rec.arch !== "noarch") {
        let s = this.archDropped.get(rec.name);
        if (!s) this.archDropped.set(rec.name, (s = new Set()));
        s.add(rec.arch);
        continue;
      }
      const id = this.pkgs.length;
      const pkg: Pkg = {
        id,
        rp,
        rec,
        name: rec.name,
        version: rec.version,
        repoOrder: order,
        tag: rp.repo.tag,
        priority: rec.providerPriority,
        names: [rec.name],
        versionedSlots: [rec.name],
        virtualSlots: [],
      };
      const entries: Entry[] = [{ pkg: id, version: rec.version, kind: 0 }];
      addProvides(pkg, entries, rec.provides);
      for (let i = 0; i < entries.length; i++) {
        const name = pkg.names[i]!;
        const list = byName.get(name);
        if (list) list.push(entries[i]!);
        else byName.set(name, [entries[i]!]);
      }
      if (rec.installIf.length) {
        installIf.add(rec.name);
        const triggers: string[] = [];
        for (const t of rec.installIf) if (!t.startsWith("!")) triggers.push(t.split(DEP_NAME_END, 1)[0]!);
        this.triggers.set(id, triggers);
      }
      this.pkgs.push(pkg);
    }
    this.installIfNames = [...installIf].sort();
  }

  /** Resolve `requests` against this resolver's packages. Throws ResolveError. */
  resolve(requests: readonly string[]): Resolution {
    return new Resolving(this, requests, conflictBudget(this.maxConflicts)).run();
  }

  // --- shared, request-independent lookups (used by Search) ---

  /** @internal */
  get packages(): readonly Pkg[] {
    return this.pkgs;
  }
  /** @internal */
  get repositories(): readonly RepositoryRef[] {
    return this.repos;
  }
  /** @internal */
  get repositoryTags(): ReadonlySet<string> {
    return this.tags;
  }
  /** @internal */
  get installIfCandidates(): readonly string[] {
    return this.installIfNames;
  }
  /** @internal Names the package's non-conflict install_if entries refer to (unparsed, for a quick check). */
  installIfTriggerNames(id: number): readonly string[] | undefined {
    return this.triggers.get(id);
  }
  /** @internal */
  entries(name: string): readonly Entry[] {
    return this.byName.get(name) ?? [];
  }
  /** @internal */
  droppedArches(name: string): ReadonlySet<string> | undefined {
    return this.archDropped.get(name);
  }

  private readonly validity = new Map<string, boolean>();

  private validVersion(v: string): boolean {
    let ok = this.validity.get(v);
    if (ok === undefined) this.validity.set(v, (ok = isValidVersion(v)));
    return ok;
  }

  /** compareVersions, with versions apk cannot order sorting below all others. */
  compareLoose(a: string, b: string): number {
    const va = this.validVersion(a);
    const vb = this.validVersion(b);
    if (va && vb) return compareVersions(a, b);
    return va === vb ? cmpStr(a, b) : va ? 1 : -1;
  }

  /** @internal Parse a dependency token once. Throws ApkError. */
  dep(token: string): Dep {
    let d = this.depCache.get(token);
    if (!d) {
      const parsed = parseDependency(token);
      d = { d: parsed, token, key: depKey(parsed) };
      this.depCache.set(token, d);
    }
    return d;
  }

  /** @internal */
  parsed(p: Pkg): ParsedDeps | { broken: string } {
    if (!p.parsed) {
      try {
        const deps: Dep[] = [];
        const conflicts: Dep[] = [];
        for (const t of p.rec.depends) {
          const d = this.dep(t);
          (d.d.conflict ? conflicts : deps).push(d);
        }
        p.parsed = { deps, conflicts, installIf: p.rec.installIf.map((t) => this.dep(t)) };
      } catch (e) {
        p.parsed = { broken: (e as Error).message };
      }
    }
    return p.parsed;
  }

  /** @internal Which packages match `dep` and which may be selected, in preference order. */
  info(dep: Dep): StaticInfo {
    let s = this.statics.get(dep.key);
    if (s) return s;
    const { name, op, version } = dep.d;
    const match = new Set<number>();
    const real: Entry[] = [];
    const versioned: Entry[] = [];
    const virtual: Entry[] = [];
    for (const e of this.entries(name)) {
      if (!this.validVersion(this.pkgs[e.pkg]!.version)) continue; // apk cannot order it: never selectable
      let ok: boolean;
      if (op === undefined || version === undefined) ok = true;
      else if (e.version === undefined || !this.validVersion(e.version)) ok = false;
      else ok = versionSatisfies(e.version, op, version);
      if (!ok) continue;
      match.add(e.pkg);
      (e.kind === 0 ? real : e.kind === 1 ? versioned : virtual).push(e);
    }
    const P = this.pkgs;
    const tie = (a: Entry, b: Entry): number => {
      const pa = P[a.pkg]!;
      const pb = P[b.pkg]!;
      return (
        pa.repoOrder - pb.repoOrder ||
        cmpStr(pa.name, pb.name) ||
        -compareVersions(pa.version, pb.version) ||
        cmpStr(pa.rec.checksum ?? "", pb.rec.checksum ?? "") ||
        cmpStr(pa.rp.url, pb.rp.url)
      );
    };
    real.sort((a, b) => -compareVersions(a.version!, b.version!) || tie(a, b));
    versioned.sort(
      (a, b) =>
        (P[b.pkg]!.priority ?? 0) - (P[a.pkg]!.priority ?? 0) ||
        -this.compareLoose(a.version!, b.version!) ||
        tie(a, b),
    );
    const byPriorityThenName = (a: Entry, b: Entry): number =>
      (P[b.pkg]!.priority ?? 0) - (P[a.pkg]!.priority ?? 0) ||
      cmpStr(P[a.pkg]!.name, P[b.pkg]!.name) ||
      -compareVersions(P[a.pkg]!.version, P[b.pkg]!.version) ||
      tie(a, b);
    const prioritized = virtual.filter((e) => P[e.pkg]!.priority !== undefined).sort(byPriorityThenName);
    let order = [...real, ...versioned, ...prioritized];
    if (order.length === 0 && virtual.length > 0 && new Set(virtual.map((e) => P[e.pkg]!.name)).size === 1) {
      order = virtual.slice().sort(byPriorityThenName);
    }
    const inOrder = new Set(order.map((e) => e.pkg));
    const virtualOnly = virtual
      .filter((e) => !inOrder.has(e.pkg))
      .sort(byPriorityThenName)
      .map((e) => e.pkg);
    s = { match, order: order.map((e) => e.pkg), policyHidden: virtualOnly.length > 0, virtualOnly };
    this.statics.set(dep.key, s);
    return s;
  }
}
/** The conflict budget: the option, else the environment, else the default. Throws ResolveError. */
function conflictBudget(option: number | undefined): number {
  if (option !== undefined) {
    if (!Number.isSafeInteger(option) || option <= 0)
      throw new ResolveError("INVALID_LIMIT", `maxConflicts must be a positive whole number, got ${option}`, []);
    return option;
  }
  const v = process.env[MAX_CONFLICTS_ENV];
  if (v === undefined || v === "") return DEFAULT_MAX_CONFLICTS;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) <= 0) {
    throw new ResolveError(
      "INVALID_LIMIT",
      `${MAX_CONFLICTS_ENV} must be a positive whole number, got ${JSON.stringify(v)}`,
      [],
    );
  }
  return Number(v);
}

/** `a b c`, or its first tokens when the world is long. */
function worldText(world: readonly string[]): string {
  return world.length <= 12 ? world.join(" ") : `${world.slice(0, 8).join(" ")} … (${world.length} requests)`;
}

/** The packages of one answer, by what they provide. */
class Selected {
  readonly ids: number[] = [];
  private readonly providers = new Map<string, number[]>();

  constructor(private readonly r: Resolver) {}

  add(id: number): void {
    this.ids.push(id);
    for (const n of this.r.packages[id]!.names) {
      const l = this.providers.get(n);
      if (l) l.push(id);
      else this.providers.set(n, [id]);
    }
  }

  /** Selected packages satisfying `dep` (its conflict mark ignored). */
  holders(dep: Dep): number[] {
    const m = this.r.info(dep).match;
    return (this.providers.get(dep.d.name) ?? []).filter((h) => m.has(h));
  }

  provides(name: string): boolean {
    return this.providers.has(name);
  }

  hasNamed(name: string): boolean {
    return (this.providers.get(name) ?? []).some((h) => this.r.packages[h]!.name === name);
  }
}

/** One call of Resolver.resolve. */
class Resolving {
  private readonly world: string[];
  private readonly pinned = new Map<string, string[]>();

  constructor(
    private readonly r: Resolver,
    requests: readonly string[],
    private readonly budget: number,
  ) {
    this.world = [...requests];
  }

  run(): Resolution {
    const requestDeps = this.parseRequests();
    for (const dep of requestDeps) {
      if (dep.d.tag !== undefined && !dep.d.conflict) {
        const list = this.pinned.get(dep.d.name) ?? [];
        if (!list.includes(dep.d.tag)) list.push(dep.d.tag);
        this.pinned.set(dep.d.name, list);
      }
    }
    const wants = requestDeps.filter((d) => !d.d.conflict);
    const conflicts = requestDeps.filter((d) => d.d.conflict);
    const problem = new Problem(this.r, wants, conflicts, this.pinned, this.budget);
    const outcome = problem.solveMain();
    if (outcome === "budget") throw this.tooHard();
    if (outcome === "unsat") throw this.unsatisfiable(wants, conflicts);

    const selected = new Selected(this.r);
    for (const id of problem.answer) selected.add(id);
    this.addInstallIf(problem, selected);
    return { packages: this.installOrder(selected.ids).map((id) => this.r.packages[id]!.rp), world: [...this.world] };
  }

  private parseRequests(): Dep[] {
    const r = this.r;
    const out: Dep[] = [];
    const invalid: string[] = [];
    for (const tok of this.world) {
      let dep: Dep;
      try {
        dep = r.dep(tok);
      } catch (e) {
        invalid.push(`request ${JSON.stringify(tok)} : ${(e as Error).message}`);
        continue;
      }
      out.push(dep);
      const tag = dep.d.tag;
      if (tag !== undefined && !r.repositoryTags.has(tag)) {
        const tagged = [...r.repositoryTags].map((t) => "@" + t);
        invalid.push(
          `request ${tok} : no repository is tagged @${tag}${tagged.length ? ` (tagged: ${tagged.join(", ")})` : " (no repository has a tag)"}`,
        );
      }
    }
    if (invalid.length)
      throw new ResolveError("INVALID_REQUEST", `invalid request${invalid.length > 1 ? "s" : ""}`, invalid);
    return out;
  }

  private tooHard(): ResolveError {
    return new ResolveError(
      "TOO_HARD",
      `cannot resolve ${worldText(this.world)}: the dependency problem is too hard to decide within ${this.budget} conflicts; raise the limit with ${MAX_CONFLICTS_ENV}=N (or ResolveOptions.maxConflicts)`,
      [],
    );
  }

  private unsatisfiable(wants: readonly Dep[], conflicts: readonly Dep[]): ResolveError {
    const walk = explainFailure(this.r, wants, conflicts, this.pinned, EXPLAIN_BUDGET);
    if (walk.solved)
      throw new Error(
        `internal: the resolver found no answer for ${worldText(this.world)} but its explanation walk found one`,
      );
    const shown = walk.lines.slice(0, MAX_EXPLANATION);
    const more = walk.lines.length - shown.length;
    if (more > 0) shown.push(`… and ${more} more failed attempts`);
    if (walk.truncated) shown.push("(the search for an explanation stopped early: there are more)");
    if (walk.lines.length === 0) shown.push("no combination of available packages satisfies the requests");
    return new ResolveError("UNSATISFIABLE", `cannot resolve ${worldText(this.world)}`, shown);
  }

  private addInstallIf(problem: Problem, selected: Selected): void {
    const r = this.r;
    let changed = true;
    while (changed) {
      changed = false;
      for (const name of r.installIfCandidates) {
        if (selected.hasNamed(name)) continue;
        // Quick check on unparsed trigger names before any real work.
        const own = r.entries(name).filter((e) => e.kind === 0);
        if (!own.some((e) => r.installIfTriggerNames(e.pkg)?.every((n) => selected.provides(n)))) continue;
        for (const c of r.info(nameDep(name)).order) {
          if (this.tryInstallIf(problem, selected, name, c)) {
            changed = true;
            break;
          }
        }
      }
    }
  }

  /** Add install_if candidate `c` if its entries hold and it fits; whether it was added. */
  private tryInstallIf(problem: Problem, selected: Selected, name: string, c: number): boolean {
    const r = this.r;
    const p = r.packages[c]!;
    if (p.name !== name || p.rec.installIf.length === 0) return false;
    const parsed = r.parsed(p);
    if ("broken" in parsed) return false;
    const triggerTags: string[] = [];
    const negated: Dep[] = [];
    for (const e of parsed.installIf) {
      const holders = selected.holders(e);
      if (e.d.conflict) {
        if (holders.length) return false;
        negated.push(e);
        continue;
      }
      if (!holders.length) return false;
      for (const h of holders) {
        const t = r.packages[h]!.tag;
        if (t !== undefined && !triggerTags.includes(t)) triggerTags.push(t);
      }
    }
    const allowed = [...triggerTags, ...(this.pinned.get(p.name) ?? [])];
    if (p.tag !== undefined && !allowed.includes(p.tag)) return false;
    if (problem.excluded(c)) return false;
    const stillHolds = (ids: readonly number[]): boolean =>
      negated.every((e) => !ids.some((id) => id !== c && r.info(e).match.has(id)));
    const outcome = problem.tryAdd(c, stillHolds);
    if (outcome === "budget") throw this.tooHard();
    if (outcome !== "sat") return false;
    const known = new Set(selected.ids);
    for (const id of problem.answer) if (!known.has(id)) selected.add(id);
    return true;
  }

  /** Depth-first post-order over depends edges; roots and edges by name. */
  private installOrder(ids: readonly number[]): number[] {
    const P = this.r.packages;
    const byName = (a: number, b: number): number => cmpStr(P[a]!.name, P[b]!.name);
    const chosen = [...ids].sort(byName);
    const selected = new Selected(this.r);
    for (const id of ids) selected.add(id);
    const edges = (id: number): number[] => {
      const parsed = this.r.parsed(P[id]!) as ParsedDeps;
      const out = new Set<number>();
      for (const d of parsed.deps) for (const h of selected.holders(d)) if (h !== id) out.add(h);
      return [...out].sort(byName);
    };
    const state = new Uint8Array(P.length); // 0 new, 1 on stack, 2 emitted
    const order: number[] = [];
    for (const root of chosen) {
      if (state[root]) continue;
      const stack: Array<{ id: number; next: number[]; i: number }> = [{ id: root, next: edges(root), i: 0 }];
      state[root] = 1;
      while (stack.length) {
        const top = stack[stack.length - 1]!;
        if (top.i < top.next.length) {
          const n = top.next[top.i++]!;
          if (state[n] === 0) {
            state[n] = 1;
            stack.push({ id: n, next: edges(n), i: 0 });
          }
        } else {
          stack.pop();
          state[top.id] = 2;
          order.push(top.id);
        }
      }
    }
    return order;
  }
}
