// One resolution as a satisfiability problem: the packages the requests can
// reach become variables ("selected"), the rules of ../resolver.ts become
// constraints, and the CDCL engine (cdcl.ts) searches with the resolver's
// own decision order.
//
// Encoding, for a package p and each of its dependencies d:
//   ¬p ∨ s1 ∨ … ∨ sk ∨ h1 ∨ … ∨ hj
// where s1…sk are the candidates p may select for d in preference order and
// h1…hj the other packages that satisfy d (virtual providers without
// provider_priority, packages of tags d may not use) as hidden literals:
// they count when selected by another route but are never selected for d.
// A request is the same clause without ¬p. One package per name and the
// same-name-provided rule are exclusions between every two packages holding
// a name (two virtual holders excepted); `!name` in a package's depends
// excludes it and every package matching; `!name` in the requests and an
// unparseable dependency list fix a package unselected.
//
// Decisions are those of the depth-first resolver this replaced. First its
// steps before any choice, which it never revisited (cascade(), committed
// at level 0). Then, among the dependencies of selected packages (requests
// first, then in selection order) that nothing selected satisfies yet, the
// one with the fewest candidates still possible, earliest on ties, one
// candidate only at once; its most preferred open candidate is selected.
// "Still possible" counts as that resolver did: a candidate ruled out by
// something selected (an exclusion) does not count, one ruled out by a
// learned clause or by its own dependencies still does, so learning changes
// how fast the answer is found more than which answer. When no dependency is
// open, every unassigned package is left out, so only what was chosen or
// forced is installed.
// That answer is accepted only if every dependency is satisfied (a hidden
// provider may not have turned up) and every selected package is reachable
// from the requests by selectable candidates (a learned clause may force
// one the policy would never pick); otherwise the search backtracks as the
// previous resolver did (RETRY).

import { Cdcl, DONE, FALSE, RETRY, R_EXCLUSION, R_FACT, TRUE, UNASSIGNED, neg, pos, type Outcome } from "./cdcl.js";
import { allowedTags, type Dep, type PackageIndex, type Pins, type Pkg } from "./model.js";

export interface DepRec {
  dep: Dep;
  /** Variable of the package whose dependency this is; -1 for a request. */
  parent: number;
  /** Variables this dependency may select, in preference order. */
  selectable: number[];
  /** Other variables satisfying it. */
  hidden: number[];
  /** False when the package provides the dependency itself. */
  active: boolean;
  /** The variable last seen satisfying it (a cache; -1 for none). */
  by: number;
}

export class Problem {
  readonly sat: Cdcl;
  private readonly P: readonly Pkg[];
  private readonly varOf: Int32Array;
  /** Variable → package id. */
  readonly pkgOf: number[] = [];
  private readonly deps: DepRec[][] = [];
  private readonly requests: DepRec[] = [];
  private readonly versionedHolders = new Map<string, number[]>();
  private readonly virtualHolders = new Map<string, number[]>();
  private readonly conflictDecls = new Map<string, Array<{ v: number; dep: Dep }>>();
  /** Variables installed for good: the answer so far (after the main search). */
  private readonly committed: number[] = [];
  private readonly committedSet = new Set<number>();
  /** Extra reachability roots during a search (an install_if candidate). */
  private extraRoot = -1;
  /**
   * The pending dependencies of level 0 (requests, then the dependencies of
   * packages selected at level 0) that level 0 does not satisfy, and how much
   * of the trail they cover: a level-0 value never changes, so the rest need
   * not be looked at again.
   */
  private rootPending: DepRec[] = [];
  private rootCovered = -1;

  constructor(
    private readonly index: PackageIndex,
    requestDeps: readonly Dep[],
    private readonly requestConflicts: readonly Dep[],
    private readonly pinned: Pins,
    private readonly budget: number,
  ) {
    this.P = index.packages;
    this.varOf = new Int32Array(this.P.length).fill(-1);
    this.sat = new Cdcl(this.P.length);
    const work: number[] = [];
    for (const dep of requestDeps) {
      const rec = this.record(dep, -1, undefined, work);
      this.requests.push(rec);
    }
    this.expandAll(work);
    this.cascade();
    for (const rec of this.requests) this.addDepClause(rec);
  }

  /**
   * The steps a depth-first resolver takes before its first choice, which it
   * never revisits: while some dependency (requests first, then those of
   * what was selected, earliest first) has exactly one candidate not ruled
   * out by the selection, select it. Candidates that would fail only through
   * their own dependencies still count here, as they did there: a request
   * whose other candidates are merely broken is not forced this way, so a
   * provider selected later may still satisfy it. Committed at level 0.
   */
  private cascade(): void {
    const sat = this.sat;
    const pending: DepRec[] = [...this.requests];
    let cursor = 0;
    for (;;) {
      while (cursor < pending.length && (!pending[cursor]!.active || this.satisfied(pending[cursor]!))) cursor++;
      let pick = -1;
      for (let i = cursor; i < pending.length && pick < 0; i++) {
        const rec = pending[i]!;
        if (!rec.active || this.satisfied(rec)) continue;
        let viable = 0;
        let only = -1;
        for (const s of rec.selectable) {
          const x = sat.value(s);
          if (x === UNASSIGNED || (x === FALSE && !this.excludedBySelection(s))) {
            viable++;
            only = s;
          }
        }
        if (viable === 0 && rec.hidden.length === 0) return; // a dead end: the search will say so
        if (viable === 1) pick = only;
      }
      if (pick < 0 || sat.value(pick) !== UNASSIGNED) return;
      sat.fact(pos(pick));
      if (sat.unsatisfiable) return;
      for (const rec of this.deps[pick]!) if (rec.active) pending.push(rec);
    }
  }

  /** Ruled out by what is selected or fixed (an exclusion, a request's `!name`, a broken dependency list), not by its own dependencies. */
  private excludedBySelection(v: number): boolean {
    const why = this.sat.reason(v);
    return why === R_EXCLUSION || why === R_FACT;
  }

  /** Search for the requests' closure; "sat" commits it. */
  solveMain(): Outcome {
    const out = this.sat.search(() => this.decide(), this.budget);
    if (out === "sat") this.commit();
    return out;
  }

  /**
   * Try to add package `id` and whatever its dependencies need, keeping
   * everything committed. "sat" commits it (unless `accept` refuses the
   * result); "unsat" leaves the committed set as it was.
   */
  tryAdd(id: number, accept: (selected: readonly number[]) => boolean): Outcome {
    const v = this.ensure(id);
    // Already true means committed (level 0 holds nothing else true), so the caller never asks.
    if (this.sat.value(v) !== UNASSIGNED) return "unsat";
    this.extraRoot = v;
    try {
      const out = this.sat.search(() => this.decide(), this.budget, pos(v));
      if (out !== "sat" || !accept(this.selectedPackages())) {
        this.sat.reset();
        this.sat.forgetLearned();
        return out === "sat" ? "unsat" : out;
      }
      this.commit();
      return "sat";
    } finally {
      this.extraRoot = -1;
    }
  }

  /** Whether package `id` could still be added: not excluded by what is committed. */
  excluded(id: number): boolean {
    return this.sat.value(this.ensure(id)) === FALSE;
  }

  /** Package ids committed so far, in the order they were selected. */
  get answer(): number[] {
    return this.committed.map((v) => this.pkgOf[v]!);
  }

  /** Package ids true in the current assignment, in trail order. */
  private selectedPackages(): number[] {
    const out: number[] = [];
    for (const l of this.sat.trail) if ((l & 1) === 0) out.push(this.pkgOf[l >> 1]!);
    return out;
  }

  private commit(): void {
    const chosen: number[] = [];
    for (const l of this.sat.trail) if ((l & 1) === 0 && !this.committedSet.has(l >> 1)) chosen.push(l >> 1);
    this.sat.reset();
    // Clauses learned under the policy need not hold for the answer's
    // completion; the next search starts from the committed set alone.
    this.sat.forgetLearned();
    for (const v of chosen) {
      this.committed.push(v);
      this.committedSet.add(v);
      this.sat.fact(pos(v));
    }
  }

  // --- encoding ------------------------------------------------------------------

  /** The variable of package `id`, adding it and everything its dependencies reach. */
  private ensure(id: number): number {
    const known = this.varOf[id]!;
    if (known >= 0) return known;
    const work: number[] = [];
    const v = this.alloc(id, work);
    this.expandAll(work);
    return v;
  }

  private expandAll(work: number[]): void {
    // First-in first-out, so variables (and clauses) follow the order the
    // requests reach them; no decision depends on it, only the order of
    // propagation at level 0.
    for (let i = 0; i < work.length; i++) this.expand(work[i]!, work);
  }

  private varFor(id: number, work: number[]): number {
    const v = this.varOf[id]!;
    return v >= 0 ? v : this.alloc(id, work);
  }

  private alloc(id: number, work: number[]): number {
    const v = this.sat.newVar();
    this.varOf[id] = v;
    this.pkgOf.push(id);
    this.deps.push([]);
    work.push(v);
    const p = this.P[id]!;
    const parsed = this.index.parsed(p);
    if ("broken" in parsed) {
      this.sat.fact(neg(v));
      return v;
    }
    const excluded = new Set<number>();
    const exclude = (x: number): void => {
      if (x === v || excluded.has(x)) return;
      excluded.add(x);
      this.sat.addExclusion(v, x);
    };
    for (const s of p.versionedSlots) {
      for (const x of this.versionedHolders.get(s) ?? []) exclude(x);
      for (const x of this.virtualHolders.get(s) ?? []) exclude(x);
      push(this.versionedHolders, s, v);
    }
    for (const s of p.virtualSlots) {
      for (const x of this.versionedHolders.get(s) ?? []) exclude(x);
      push(this.virtualHolders, s, v);
    }
    for (const n of p.names) {
      for (const cf of this.conflictDecls.get(n) ?? []) if (this.index.info(cf.dep).match.has(id)) exclude(cf.v);
    }
    for (const cf of parsed.conflicts) {
      push(this.conflictDecls, cf.d.name, { v, dep: cf });
      for (const m of this.index.info(cf).match) {
        const x = this.varOf[m]!;
        if (x >= 0) exclude(x);
      }
    }
    for (const cf of this.requestConflicts) {
      if (p.names.includes(cf.d.name) && this.index.info(cf).match.has(id)) this.sat.fact(neg(v));
    }
    return v;
  }

  private expand(v: number, work: number[]): void {
    const p = this.P[this.pkgOf[v]!]!;
    const parsed = this.index.parsed(p);
    if ("broken" in parsed) return;
    const recs = this.deps[v]!;
    for (const d of parsed.deps) recs.push(this.record(d, v, p, work));
    for (const rec of recs) if (rec.active) this.addDepClause(rec);
  }

  private record(dep: Dep, parent: number, parentPkg: Pkg | undefined, work: number[]): DepRec {
    const info = this.index.info(dep);
    const allowed = allowedTags(dep, parentPkg?.tag, this.pinned);
    const selectable: number[] = [];
    const inOrder = new Set<number>();
    for (const id of info.order) {
      const t = this.P[id]!.tag;
      if (t !== undefined && !allowed.includes(t)) continue;
      selectable.push(this.varFor(id, work));
      inOrder.add(id);
    }
    const hidden: number[] = [];
    for (const id of info.match) if (!inOrder.has(id)) hidden.push(this.varFor(id, work));
    const active = parent < 0 || (!selectable.includes(parent) && !hidden.includes(parent));
    return { dep, parent, selectable, hidden, active, by: -1 };
  }

  private addDepClause(rec: DepRec): void {
    this.sat.addDependency(rec.parent >= 0 ? neg(rec.parent) : -1, rec.selectable.map(pos), rec.hidden.map(pos));
  }

  // --- decisions -----------------------------------------------------------------

  private satisfied(rec: DepRec): boolean {
    const sat = this.sat;
    if (rec.by >= 0 && sat.value(rec.by) === TRUE) return true;
    for (const s of rec.selectable) {
      if (sat.value(s) === TRUE) {
        rec.by = s;
        return true;
      }
    }
    for (const h of rec.hidden) {
      if (sat.value(h) === TRUE) {
        rec.by = h;
        return true;
      }
    }
    return false;
  }

  /** Visit the dependencies of the selection: requests, then each selected package's in selection order. */
  private forEachPending(fn: (rec: DepRec) => boolean): boolean {
    const sat = this.sat;
    const trail = sat.trail;
    const root = sat.rootTrailLength();
    if (root !== this.rootCovered) this.coverRoot(root);
    for (const rec of this.rootPending) if (fn(rec)) return true;
    for (let i = root; i < trail.length; i++) {
      const l = trail[i]!;
      if (l & 1) continue;
      for (const rec of this.deps[l >> 1]!) if (rec.active && fn(rec)) return true;
    }
    return false;
  }

  private coverRoot(root: number): void {
    const out: DepRec[] = [];
    const keep = (rec: DepRec): void => {
      if (!this.satisfied(rec) || this.sat.levelOf(rec.by) !== 0) out.push(rec);
    };
    for (const rec of this.requests) keep(rec);
    const trail = this.sat.trail;
    for (let i = 0; i < root; i++) {
      const l = trail[i]!;
      if (l & 1) continue;
      for (const rec of this.deps[l >> 1]!) if (rec.active) keep(rec);
    }
    this.rootPending = out;
    this.rootCovered = root;
  }

  private decide(): number {
    const sat = this.sat;
    let best = -1;
    let bestCount = Infinity;
    this.forEachPending((rec) => {
      if (this.satisfied(rec)) return false;
      let count = 0;
      let first = -1;
      for (const s of rec.selectable) {
        const x = sat.value(s);
        if (x === UNASSIGNED) {
          count++;
          if (first < 0) first = s;
        } else if (x === FALSE && !this.excludedBySelection(s)) {
          count++;
        }
      }
      if (first < 0) return false; // only hidden providers could satisfy it: wait
      if (count < bestCount) {
        best = first;
        bestCount = count;
      }
      return count === 1;
    });
    if (best >= 0) return pos(best);
    if (this.forEachPending((rec) => !this.satisfied(rec))) return RETRY;
    return this.reachable() ? DONE : RETRY;
  }

  /** Every selected package can be reached from the requests through candidates its dependents may select. */
  private reachable(): boolean {
    const sat = this.sat;
    const seen = new Set<number>(this.committed);
    const todo: number[] = [...this.committed];
    const add = (v: number): void => {
      if (sat.value(v) === TRUE && !seen.has(v)) {
        seen.add(v);
        todo.push(v);
      }
    };
    for (const rec of this.requests) for (const s of rec.selectable) add(s);
    if (this.extraRoot >= 0) add(this.extraRoot);
    for (let i = 0; i < todo.length; i++)
      for (const rec of this.deps[todo[i]!]!) for (const s of rec.selectable) add(s);
    for (const l of sat.trail) if ((l & 1) === 0 && !seen.has(l >> 1)) return false;
    return true;
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const l = m.get(k);
  if (l) l.push(v);
  else m.set(k, [v]);
}
