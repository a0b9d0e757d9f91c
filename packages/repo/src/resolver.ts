// Dependency resolution: requests (apk world syntax) against the packages of
// some repositories, to the set of packages to install, in install order.
//
// The search is a depth-first search over choice points with conflict-directed
// backjumping (CBJ): every selected package sits at a decision level, and a
// failure returns the set of levels that caused it, so the search backs up
// straight past choices that had nothing to do with the failure instead of
// enumerating their combinations. Dependencies with no or one viable candidate
// are taken first (unit propagation); among dependencies with several
// candidates, the one with the fewest is branched on (earliest wins ties),
// candidates tried in preference order (newest first). The first complete set
// found is the answer, so preference is lexicographic over the decisions.
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
//   already selected; repeated to a fixpoint, names in sorted order. One that
//   cannot be added consistently is skipped.
//
// * Install order: a depth-first post-order over "depends on" edges, roots and
//   edges in name order, so every package follows what it depends on; an edge
//   closing a cycle is the one dropped, decided by that same name order.
//
// * `preferNewest` is accepted and changes nothing: newest-first is the rule.
//
// Known limits: a dependency that has selectable candidates is always
// satisfied by selecting one of them, never left for a hidden (virtual
// without priority, or tag-excluded) provider to satisfy later; when a
// hidden provider is the only possibility the dependency is deferred as
// described above.

import { KilnError } from "@kiln/core";
import { compareVersions, isValidVersion, parseDependency, versionSatisfies, type Dependency, type IndexRecord } from "@kiln/apk";
import type { RepoPackage, RepositoryRef, Resolution } from "./types.js";

export type ResolveErrorCode = "UNSATISFIABLE" | "INVALID_REQUEST";

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
}

/** Resolve `requests` (apk world tokens) against `available`. Throws ResolveError. */
export function resolve(requests: string[], available: RepoPackage[], opts: ResolveOptions = {}): Resolution {
  return new Resolver(available, opts).resolve(requests);
}

// ---------------------------------------------------------------------------

interface Dep {
  d: Dependency;
  token: string;
  /** name, op and version: what decides which packages match. */
  key: string;
}

interface Pkg {
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
  parsed?: { deps: Dep[]; conflicts: Dep[]; installIf: Dep[] } | { broken: string };
}

interface Entry {
  pkg: number;
  /** Version the name is provided at; undefined for a virtual provide. */
  version: string | undefined;
  kind: 0 | 1 | 2; // 0 own name, 1 versioned provide, 2 virtual provide
}

interface StaticInfo {
  /** Every package satisfying the dependency (arch-filtered, ignoring tags). */
  match: Set<number>;
  /** Those the solver may select, in preference order. */
  order: number[];
  /** Some matching packages are not selectable by policy (virtual without priority). */
  policyHidden: boolean;
  /** The virtual providers left out, for explanations. */
  virtualOnly: number[];
}

interface PendingDep {
  dep: Dep;
  /** Package whose dependency this is; -1 for a request. */
  parent: number;
  /** Decision level of the parent; -1 for a request. */
  level: number;
  /** Repository tags this dependency may select from (untagged always). */
  allowed: readonly string[];
}

type Via = { kind: "dep"; pd: PendingDep } | { kind: "installIf"; entries: Dep[] };

interface Frame {
  pkg: number;
  via: Via;
  pendingLen: number;
}

type Block =
  | { kind: "broken"; why: string }
  | { kind: "tag" }
  | { kind: "slot"; by: number; slot: string }
  | { kind: "conflictBy"; by: number; dep: Dep }
  | { kind: "conflictsWith"; by: number; dep: Dep };

interface Evaluation {
  viable: number[];
  /** Levels of the selected packages that excluded other candidates. */
  blockers: number[];
  /** A matching package could still enter the set by another route. */
  hidden: boolean;
}

const MAX_EXPLANATION = 20;
const PROVIDE_JUNK = /[<>~\s]/;
const DEP_NAME_END = /[@<>=~]/;
const MAX_RECORDED = 400;

function repoKey(r: RepositoryRef): string {
  return `${r.tag ?? ""}\0${r.url}`;
}

function repoText(r: RepositoryRef): string {
  return r.tag !== undefined ? `@${r.tag} ${r.url}` : r.url;
}

function depKey(d: Dependency): string {
  return `${d.name}\0${d.op ?? ""}\0${d.version ?? ""}`;
}

/**
 * A resolver over a fixed set of available packages. Building it indexes the
 * packages (by name and provided name); `resolve` can then be called any
 * number of times. `resolve()` above builds one per call.
 */
export class Resolver {
  private readonly pkgs: Pkg[] = [];
  private readonly byName = new Map<string, Entry[]>();
  private readonly archDropped = new Map<string, Set<string>>();
  private readonly repos: RepositoryRef[] = [];
  private readonly tags = new Set<string>();
  private readonly statics = new Map<string, StaticInfo>();
  private readonly depCache = new Map<string, Dep>();
  private readonly installIfNames: string[];
  private readonly triggers = new Map<number, string[]>();

  constructor(available: readonly RepoPackage[], opts: ResolveOptions = {}) {
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
      for (const tok of rec.provides) {
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
          entries.push({ pkg: id, version: tok.slice(eq + 1), kind: 1 });
          pkg.versionedSlots.push(name);
        } else {
          entries.push({ pkg: id, version: undefined, kind: 2 });
          pkg.virtualSlots.push(name);
        }
      }
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
    return new Search(this, requests).run();
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
  parsed(p: Pkg): { deps: Dep[]; conflicts: Dep[]; installIf: Dep[] } | { broken: string } {
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
      return pa.repoOrder - pb.repoOrder || cmpStr(pa.name, pb.name) || -compareVersions(pa.version, pb.version) || cmpStr(pa.rec.checksum ?? "", pb.rec.checksum ?? "") || cmpStr(pa.rp.url, pb.rp.url);
    };
    real.sort((a, b) => -compareVersions(a.version!, b.version!) || tie(a, b));
    versioned.sort((a, b) => (P[b.pkg]!.priority ?? 0) - (P[a.pkg]!.priority ?? 0) || -this.compareLoose(a.version!, b.version!) || tie(a, b));
    const byPriorityThenName = (a: Entry, b: Entry): number =>
      (P[b.pkg]!.priority ?? 0) - (P[a.pkg]!.priority ?? 0) || cmpStr(P[a.pkg]!.name, P[b.pkg]!.name) || -compareVersions(P[a.pkg]!.version, P[b.pkg]!.version) || tie(a, b);
    const prioritized = virtual.filter((e) => P[e.pkg]!.priority !== undefined).sort(byPriorityThenName);
    let order = [...real, ...versioned, ...prioritized];
    if (order.length === 0 && virtual.length > 0 && new Set(virtual.map((e) => P[e.pkg]!.name)).size === 1) {
      order = virtual.slice().sort(byPriorityThenName);
    }
    const inOrder = new Set(order.map((e) => e.pkg));
    const virtualOnly = virtual.filter((e) => !inOrder.has(e.pkg)).sort(byPriorityThenName).map((e) => e.pkg);
    s = { match, order: order.map((e) => e.pkg), policyHidden: virtualOnly.length > 0, virtualOnly };
    this.statics.set(dep.key, s);
    return s;
  }
}

function label(p: Pkg): string {
  return `${p.name}-${p.version}`;
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

class Failed {
  constructor(readonly levels: Set<number>) {}
}

/** One resolution: the mutable selection state and the search over it. */
class Search {
  private readonly P: readonly Pkg[];
  private readonly world: string[];
  private readonly pinned = new Map<string, string[]>();
  private readonly stack: Frame[] = [];
  private readonly levelOf: Int32Array;
  private readonly providers = new Map<string, number[]>();
  private readonly slotHolder = new Map<string, number>();
  private readonly virtualHolders = new Map<string, number[]>();
  private readonly conflicts = new Map<string, Array<{ dep: Dep; owner: number }>>();
  private readonly pending: PendingDep[] = [];
  private cursor = 0;
  private recording = true;
  private readonly failures = new Set<string>();

  constructor(
    private readonly r: Resolver,
    requests: readonly string[],
  ) {
    this.P = r.packages;
    this.world = [...requests];
    this.levelOf = new Int32Array(this.P.length).fill(-1);
  }

  run(): Resolution {
    const r = this.r;
    const requestDeps: Dep[] = [];
    const invalid: string[] = [];
    for (const tok of this.world) {
      try {
        requestDeps.push(r.dep(tok));
      } catch (e) {
        invalid.push(`request ${JSON.stringify(tok)} : ${(e as Error).message}`);
        continue;
      }
      const d = requestDeps[requestDeps.length - 1]!.d;
      if (d.tag !== undefined && !r.repositoryTags.has(d.tag)) {
        const tagged = [...r.repositoryTags].map((t) => "@" + t);
        invalid.push(`request ${tok} : no repository is tagged @${d.tag}${tagged.length ? ` (tagged: ${tagged.join(", ")})` : " (no repository has a tag)"}`);
      }
    }
    if (invalid.length) throw new ResolveError("INVALID_REQUEST", `invalid request${invalid.length > 1 ? "s" : ""}`, invalid);

    for (const dep of requestDeps) {
      if (dep.d.tag !== undefined && !dep.d.conflict) {
        const list = this.pinned.get(dep.d.name) ?? [];
        if (!list.includes(dep.d.tag)) list.push(dep.d.tag);
        this.pinned.set(dep.d.name, list);
      }
    }
    for (const dep of requestDeps) {
      if (dep.d.conflict) this.addConflict(dep, -1);
      else this.pending.push({ dep, parent: -1, level: -1, allowed: this.allowedTags(dep, undefined) });
    }

    const outcome = this.search();
    if (outcome !== null) {
      const lines = [...this.failures];
      const shown = lines.slice(0, MAX_EXPLANATION);
      if (lines.length > shown.length) shown.push(`… and ${lines.length - shown.length} more failed attempts`);
      if (shown.length === 0) shown.push("no combination of available packages satisfies the requests");
      throw new ResolveError("UNSATISFIABLE", `cannot resolve ${this.world.join(" ")}`, shown);
    }

    this.recording = false;
    this.addInstallIf();

    return { packages: this.installOrder().map((id) => this.P[id]!.rp), world: [...this.world] };
  }

  // --- state -----------------------------------------------------------------

  private allowedTags(dep: Dep, parent: Pkg | undefined): string[] {
    const out: string[] = [];
    if (dep.d.tag !== undefined) out.push(dep.d.tag);
    if (parent?.tag !== undefined && !out.includes(parent.tag)) out.push(parent.tag);
    for (const t of this.pinned.get(dep.d.name) ?? []) if (!out.includes(t)) out.push(t);
    return out;
  }

  private addConflict(dep: Dep, owner: number): void {
    let list = this.conflicts.get(dep.d.name);
    if (!list) this.conflicts.set(dep.d.name, (list = []));
    list.push({ dep, owner });
  }

  private satisfied(dep: Dep): boolean {
    const holders = this.providers.get(dep.d.name);
    if (!holders) return false;
    const m = this.r.info(dep).match;
    for (const h of holders) if (m.has(h)) return true;
    return false;
  }

  private choose(c: number, via: Via): void {
    const p = this.P[c]!;
    const parsed = this.r.parsed(p);
    if ("broken" in parsed) throw new Error(`internal: selecting broken package ${label(p)}`);
    const level = this.stack.length;
    this.stack.push({ pkg: c, via, pendingLen: this.pending.length });
    this.levelOf[c] = level;
    for (const n of p.names) {
      let l = this.providers.get(n);
      if (!l) this.providers.set(n, (l = []));
      l.push(c);
    }
    for (const s of p.versionedSlots) this.slotHolder.set(s, c);
    for (const s of p.virtualSlots) {
      let l = this.virtualHolders.get(s);
      if (!l) this.virtualHolders.set(s, (l = []));
      l.push(c);
    }
    for (const cf of parsed.conflicts) this.addConflict(cf, c);
    for (const d of parsed.deps) this.pending.push({ dep: d, parent: c, level, allowed: this.allowedTags(d, p) });
  }

  private undo(): void {
    const f = this.stack.pop()!;
    const p = this.P[f.pkg]!;
    const parsed = this.r.parsed(p) as { conflicts: Dep[] };
    this.pending.length = f.pendingLen;
    for (let i = parsed.conflicts.length - 1; i >= 0; i--) this.conflicts.get(parsed.conflicts[i]!.d.name)!.pop();
    for (const s of p.virtualSlots) this.virtualHolders.get(s)!.pop();
    for (const s of p.versionedSlots) this.slotHolder.delete(s);
    for (const n of p.names) this.providers.get(n)!.pop();
    this.levelOf[f.pkg] = -1;
  }

  /** Why candidate `c` cannot be selected now for `pd`, or null if it can. */
  private blockerOf(c: number, allowed: readonly string[]): Block | null {
    const p = this.P[c]!;
    const parsed = this.r.parsed(p);
    if ("broken" in parsed) return { kind: "broken", why: parsed.broken };
    if (p.tag !== undefined && !allowed.includes(p.tag)) return { kind: "tag" };
    for (const s of p.versionedSlots) {
      const h = this.slotHolder.get(s);
      if (h !== undefined && h !== c) return { kind: "slot", by: h, slot: s };
      const vh = this.virtualHolders.get(s);
      if (vh) for (const x of vh) if (x !== c) return { kind: "slot", by: x, slot: s };
    }
    for (const s of p.virtualSlots) {
      const h = this.slotHolder.get(s);
      if (h !== undefined && h !== c) return { kind: "slot", by: h, slot: s };
    }
    for (const n of p.names) {
      const list = this.conflicts.get(n);
      if (!list) continue;
      for (const cf of list) if (cf.owner !== c && this.r.info(cf.dep).match.has(c)) return { kind: "conflictBy", by: cf.owner, dep: cf.dep };
    }
    for (const cf of parsed.conflicts) {
      const holders = this.providers.get(cf.d.name);
      if (!holders) continue;
      const m = this.r.info(cf).match;
      for (const h of holders) if (h !== c && m.has(h)) return { kind: "conflictsWith", by: h, dep: cf };
    }
    return null;
  }

  private evaluate(pd: PendingDep): Evaluation {
    const info = this.r.info(pd.dep);
    const viable: number[] = [];
    const blockers: number[] = [];
    let hidden = info.policyHidden;
    for (const c of info.order) {
      const b = this.blockerOf(c, pd.allowed);
      if (b === null) viable.push(c);
      else if (b.kind === "tag") hidden = true;
      else if (b.kind !== "broken" && b.by >= 0) blockers.push(this.levelOf[b.by]!);
    }
    return { viable, blockers, hidden };
  }

  // --- search ------------------------------------------------------------------

  /** Extend the selection until every pending dependency holds: null on success (state kept), else the conflict levels. */
  private search(): Failed | null {
    const savedCursor = this.cursor;
    const pending = this.pending;
    while (this.cursor < pending.length && this.satisfied(pending[this.cursor]!.dep)) this.cursor++;

    let best: { pd: PendingDep; ev: Evaluation } | undefined;
    let deferred: PendingDep | undefined;
    for (let i = this.cursor; i < pending.length; i++) {
      const pd = pending[i]!;
      if (this.satisfied(pd.dep)) continue;
      const ev = this.evaluate(pd);
      if (ev.viable.length === 0) {
        if (ev.hidden) {
          deferred ??= pd;
          continue;
        }
        this.record(pd);
        this.cursor = savedCursor;
        const levels = new Set(ev.blockers);
        if (pd.level >= 0) levels.add(pd.level);
        return new Failed(levels);
      }
      if (ev.viable.length === 1) {
        best = { pd, ev };
        break;
      }
      if (!best || ev.viable.length < best.ev.viable.length) best = { pd, ev };
    }

    if (!best) {
      if (deferred) {
        // Only a provider the solver will not pick by itself could satisfy it,
        // and nothing selected did: fail, blaming every decision (any of them
        // might have pulled such a provider in).
        this.record(deferred);
        this.cursor = savedCursor;
        const all = new Set<number>();
        for (let l = 0; l < this.stack.length; l++) all.add(l);
        return new Failed(all);
      }
      return null;
    }

    const { pd, ev } = best;
    const levels = new Set(ev.blockers);
    if (pd.level >= 0) levels.add(pd.level);
    for (const c of ev.viable) {
      const level = this.stack.length;
      this.choose(c, { kind: "dep", pd });
      const r = this.search();
      if (r === null) return null;
      this.undo();
      if (!r.levels.has(level)) {
        // The failure did not depend on this choice: no other candidate can fix it.
        this.cursor = savedCursor;
        return r;
      }
      for (const l of r.levels) if (l !== level) levels.add(l);
    }
    this.cursor = savedCursor;
    return new Failed(levels);
  }

  private addInstallIf(): void {
    const r = this.r;
    const present = (n: string): boolean => (this.providers.get(n)?.length ?? 0) > 0;
    let changed = true;
    while (changed) {
      changed = false;
      for (const name of r.installIfCandidates) {
        const holder = this.slotHolder.get(name);
        if (holder !== undefined && this.P[holder]!.name === name) continue;
        // Quick check on unparsed trigger names before any real work.
        const own = r.entries(name).filter((e) => e.kind === 0);
        if (!own.some((e) => r.installIfTriggerNames(e.pkg)?.every(present))) continue;
        const self: Dep = { d: { name, conflict: false }, token: name, key: depKey({ name, conflict: false }) };
        for (const c of r.info(self).order) {
          const p = this.P[c]!;
          if (p.name !== name || p.rec.installIf.length === 0) continue;
          const parsed = r.parsed(p);
          if ("broken" in parsed) continue;
          const triggerTags: string[] = [];
          let all = true;
          for (const e of parsed.installIf) {
            if (e.d.conflict) {
              if (this.satisfied(e)) all = false;
            } else if (!this.satisfied(e)) all = false;
            else {
              const m = r.info(e).match;
              for (const h of this.providers.get(e.d.name) ?? []) {
                const t = this.P[h]!.tag;
                if (m.has(h) && t !== undefined && !triggerTags.includes(t)) triggerTags.push(t);
              }
            }
            if (!all) break;
          }
          if (!all) continue;
          const allowed = [...triggerTags, ...(this.pinned.get(name) ?? [])];
          if (this.blockerOf(c, allowed) !== null) continue;
          const depth = this.stack.length;
          const savedCursor = this.cursor;
          this.choose(c, { kind: "installIf", entries: parsed.installIf });
          if (this.search() === null) {
            changed = true;
            break;
          }
          while (this.stack.length > depth) this.undo();
          this.cursor = savedCursor;
        }
      }
    }
  }

  /** Depth-first post-order over depends edges; roots and edges by name. */
  private installOrder(): number[] {
    const chosen = this.stack.map((f) => f.pkg).sort((a, b) => cmpStr(this.P[a]!.name, this.P[b]!.name));
    const edges = (id: number): number[] => {
      const parsed = this.r.parsed(this.P[id]!) as { deps: Dep[] };
      const out = new Set<number>();
      for (const d of parsed.deps) {
        const m = this.r.info(d).match;
        for (const h of this.providers.get(d.d.name) ?? []) if (h !== id && m.has(h)) out.add(h);
      }
      return [...out].sort((a, b) => cmpStr(this.P[a]!.name, this.P[b]!.name));
    };
    const state = new Uint8Array(this.P.length); // 0 new, 1 on stack, 2 emitted
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

  // --- explanations ------------------------------------------------------------

  private record(pd: PendingDep): void {
    if (!this.recording || this.failures.size >= MAX_RECORDED) return;
    this.failures.add(`${this.chainOf(pd)} : ${this.reason(pd)}`);
  }

  /** `app-1.0-r0 → libbar-1.0-r0 → libfoo>=2`, or `request foo`. */
  private chainOf(pd: PendingDep): string {
    if (pd.parent < 0) return `request ${pd.dep.token}`;
    return `${this.chainOfPkg(pd.parent)} → ${pd.dep.token}`;
  }

  private chainOfPkg(id: number): string {
    const p = this.P[id]!;
    const level = this.levelOf[id]!;
    const via = level >= 0 ? this.stack[level]!.via : undefined;
    if (!via) return label(p);
    if (via.kind === "installIf") return `${label(p)} (install_if ${via.entries.map((e) => e.token).join(" ")})`;
    if (via.pd.parent < 0) return via.pd.dep.d.name === p.name ? label(p) : `request ${via.pd.dep.token} → ${label(p)}`;
    return `${this.chainOfPkg(via.pd.parent)} → ${label(p)}`;
  }

  /** How a selected package got selected: `by app-1.0-r0 → libfoo<2`. */
  private selectedBy(id: number): string {
    const level = this.levelOf[id]!;
    const via = level >= 0 ? this.stack[level]!.via : undefined;
    if (!via) return "";
    if (via.kind === "installIf") return ` (install_if ${via.entries.map((e) => e.token).join(" ")})`;
    return ` (selected by ${this.chainOf(via.pd)})`;
  }

  private reposText(): string {
    return this.r.repositories.length ? this.r.repositories.map(repoText).join(", ") : "no repositories";
  }

  private listWithRepos(ids: readonly number[], show: (p: Pkg) => string): string {
    const groups = new Map<number, string[]>();
    for (const id of ids) {
      const p = this.P[id]!;
      let g = groups.get(p.repoOrder);
      if (!g) groups.set(p.repoOrder, (g = []));
      if (g.length < 8) g.push(show(p));
      else if (g.length === 8) g.push("…");
    }
    return [...groups].sort((a, b) => a[0] - b[0]).map(([o, g]) => `${g.join(", ")} in ${repoText(this.r.repositories[o]!)}`).join("; ");
  }

  private reason(pd: PendingDep): string {
    const r = this.r;
    const { name } = pd.dep.d;
    const entries = r.entries(name);
    if (entries.length === 0) {
      const dropped = r.droppedArches(name);
      const archNote = dropped ? ` (only for arch ${[...dropped].sort().join(", ")})` : "";
      return `no package provides ${JSON.stringify(name)} in ${this.reposText()}${archNote}`;
    }
    const info = r.info(pd.dep);
    if (info.match.size === 0) {
      const ids = [...new Set(entries.map((e) => e.pkg))].sort((a, b) => -r.compareLoose(this.P[a]!.version, this.P[b]!.version) || a - b);
      const provided = new Map(entries.map((e) => [e.pkg, e] as const));
      return `only ${this.listWithRepos(ids, (p) => {
        const e = provided.get(p.id)!;
        if (e.kind === 0) return label(p);
        return e.kind === 1 ? `${label(p)} (provides ${name}=${e.version})` : `${label(p)} (provides ${name} without a version)`;
      })}`;
    }
    const parts: string[] = [];
    for (const c of info.order) {
      const b = this.blockerOf(c, pd.allowed);
      if (b) parts.push(this.blockText(c, b));
      if (parts.length >= 6) break;
    }
    if (info.order.length === 0 && info.virtualOnly.length) {
      const names = [...new Set(info.virtualOnly.map((id) => this.P[id]!.name))];
      parts.push(`${JSON.stringify(name)} is virtual, provided by ${names.slice(0, 12).join(", ")}${names.length > 12 ? ", …" : ""} with no provider_priority and none of them selected; request one of them`);
    } else if (info.virtualOnly.length && parts.length === 0) {
      parts.push(`only providers without provider_priority remain (${info.virtualOnly.map((id) => label(this.P[id]!)).join(", ")}), and none is selected`);
    }
    return parts.join("; ") || "no selectable candidate";
  }

  private blockText(c: number, b: Block): string {
    const p = this.P[c]!;
    switch (b.kind) {
      case "broken":
        return `${label(p)} has an unparseable dependency list (${b.why})`;
      case "tag":
        return `${label(p)} is only in repository ${repoText(p.rp.repo)}, which serves only ${p.name}@${p.tag} requests`;
      case "slot": {
        const q = this.P[b.by]!;
        if (q.name === p.name) return `${label(p)} cannot be installed: ${label(q)} is already selected${this.selectedBy(b.by)}`;
        return `${label(p)} and ${label(q)} both provide ${JSON.stringify(b.slot)}${this.selectedBy(b.by)}`;
      }
      case "conflictBy":
        if (b.by < 0) return `${label(p)} conflicts with request ${b.dep.token}`;
        return `${label(p)} conflicts with ${label(this.P[b.by]!)}, which depends on ${b.dep.token}${this.selectedBy(b.by)}`;
      case "conflictsWith":
        return `${label(p)} depends on ${b.dep.token} but ${label(this.P[b.by]!)} is selected${this.selectedBy(b.by)}`;
    }
  }
}
