// A conflict-driven clause-learning (CDCL) satisfiability engine for the
// resolver: unit propagation over two watched literals per clause, binary
// exclusions ("not both") applied the moment a variable becomes true,
// first-UIP learning with non-chronological backjumping, and a learned-clause
// database halved now and then. It never chooses a decision itself: the
// caller's `decide` callback does (the resolver's preference order), so the
// first model found is the one that order leads to.
//
// Variables are small integers; literal 2v is "v true", 2v+1 "v false".
// Two extensions serve the resolver's policies:
//
// * a *dependency constraint* `guard ∨ s1 ∨ … ∨ sk ∨ h1 ∨ … ∨ hj` whose
//   hidden literals h satisfy it when true but are never propagated (a
//   provider a dependency may be satisfied by but may not select); the
//   selectable literals s are not propagated either: choosing one is the
//   caller's decision. Only what every model needs is propagated (the guard,
//   when nothing at all can satisfy the constraint), and a falsified one is a
//   conflict. A constraint left with only hidden literals open waits; the
//   caller checks such constraints when it runs out of decisions, and
//   answers RETRY when one is still unsatisfied;
// * RETRY makes the search backtrack chronologically: the deepest decision
//   not yet flipped is replaced by its negation (a depth-first step, as in a
//   plain backtracking search).
//
// Everything is bounded: `search` stops with "budget" after a given number
// of conflicts (RETRY steps count as conflicts).

export const UNASSIGNED = 0;
export const TRUE = 1;
export const FALSE = -1;

/** `decide` answers: a literal to assign, or one of these. */
export const DONE = -1;
export const RETRY = -2;

export type Outcome = "sat" | "unsat" | "budget";

export const pos = (v: number): number => v << 1;
export const neg = (v: number): number => (v << 1) | 1;

interface Clause {
  lits: number[];
  /** Learned (dropped by forgetLearned or when the learned set is reduced). */
  learnt: boolean;
  removed: boolean;
  /** Distinct decision levels among a learned clause's literals when learned (lower is more useful). */
  lbd: number;
}

/** A dependency constraint with hidden literals (see above). */
interface Dependency {
  /** `¬parent`, or -1 for a request. */
  guard: number;
  sel: readonly number[];
  hidden: readonly number[];
}

/** Why a variable has its value. */
export const R_DECISION = 0;
export const R_CLAUSE = 1;
/** False because a variable it excludes is true. */
export const R_EXCLUSION = 2;
/** Fixed at level 0 by the caller. */
export const R_FACT = 3;

/** Learned clauses are halved after this many conflicts, then after REDUCE_STEP more each time. */
const REDUCE_FIRST = 2000;
const REDUCE_STEP = 300;

export class Cdcl {
  private readonly vals: Int8Array;
  private readonly levels: Int32Array;
  private readonly reasonKind: Uint8Array;
  private readonly reasonClause: Array<Clause | null> = [];
  private readonly reasonVar: Int32Array;
  private readonly seen: Uint8Array;
  private nVars = 0;
  private readonly excl: number[][] = [];
  private readonly watches: Clause[][] = [];
  /** Per variable, the dependency constraints mentioning it. */
  private readonly occurs: Dependency[][] = [];
  private readonly learnts: Clause[] = [];
  private nextReduce = REDUCE_FIRST;
  private reductions = 0;
  /** Assigned literals in assignment order. */
  readonly trail: number[] = [];
  private readonly trailLim: number[] = [];
  private readonly flipped: boolean[] = [];
  private qhead = 0;
  /** An exclusion violated by an assignment, waiting for propagate() to report it. */
  private clash: number[] | null = null;
  /** A conflict at level 0: no assignment satisfies the constraints. */
  private dead = false;
  conflicts = 0;
  decisions = 0;
  propagations = 0;

  /** An engine for at most `capacity` variables. */
  constructor(readonly capacity: number) {
    this.vals = new Int8Array(capacity);
    this.levels = new Int32Array(capacity);
    this.reasonKind = new Uint8Array(capacity);
    this.reasonVar = new Int32Array(capacity);
    this.seen = new Uint8Array(capacity);
  }

  get vars(): number {
    return this.nVars;
  }

  newVar(): number {
    if (this.nVars >= this.capacity) throw new Error("internal: more variables than the engine was sized for");
    const v = this.nVars++;
    this.reasonClause.push(null);
    this.excl.push([]);
    this.watches.push([], []);
    this.occurs.push([]);
    return v;
  }

  value(v: number): number {
    return this.vals[v]!;
  }

  litValue(l: number): number {
    const x = this.vals[l >> 1]!;
    return l & 1 ? -x : x;
  }

  /** Why `v` has its value (R_* constant); meaningless while unassigned. */
  reason(v: number): number {
    return this.reasonKind[v]!;
  }

  /** The decision level `v` was assigned at. */
  levelOf(v: number): number {
    return this.levels[v]!;
  }

  /** How much of the trail is level 0. */
  rootTrailLength(): number {
    return this.trailLim.length ? this.trailLim[0]! : this.trail.length;
  }

  /** No assignment can satisfy what was added. */
  get unsatisfiable(): boolean {
    return this.dead;
  }

  // --- building (only at decision level 0) -----------------------------------

  /** At most one of `a` and `b` is true. */
  addExclusion(a: number, b: number): void {
    this.atRoot();
    this.excl[a]!.push(b);
    this.excl[b]!.push(a);
    const va = this.vals[a]!;
    const vb = this.vals[b]!;
    if (va === TRUE && vb === TRUE) this.dead = true;
    else if (va === TRUE && vb === UNASSIGNED) this.assign(neg(b), R_EXCLUSION, null, a);
    else if (vb === TRUE && va === UNASSIGNED) this.assign(neg(a), R_EXCLUSION, null, b);
    this.settle();
  }

  /** Fix a literal at level 0. */
  fact(l: number): void {
    this.atRoot();
    const x = this.litValue(l);
    if (x === FALSE) this.dead = true;
    else if (x === UNASSIGNED) this.assign(l, R_FACT, null, -1);
    this.settle();
  }

  /** Add a clause. */
  addClause(lits: readonly number[]): void {
    this.atRoot();
    const open: number[] = [];
    const closed: number[] = [];
    for (const l of lits) {
      const x = this.litValue(l);
      if (x === TRUE) return; // satisfied for good
      (x === UNASSIGNED ? open : closed).push(l);
    }
    if (open.length === 0) {
      this.dead = true;
      return;
    }
    const c: Clause = { lits: [...open, ...closed], learnt: false, removed: false, lbd: 0 };
    if (c.lits.length > 1) {
      this.watches[c.lits[0]!]!.push(c);
      this.watches[c.lits[1]!]!.push(c);
    }
    if (open.length === 1) this.assign(c.lits[0]!, R_CLAUSE, c, -1);
    this.settle();
  }

  /**
   * Add a dependency constraint: `guard` (or -1), selectable literals, hidden
   * literals. Without hidden literals it is a plain clause.
   */
  addDependency(guard: number, sel: readonly number[], hidden: readonly number[]): void {
    this.atRoot();
    if (hidden.length === 0) {
      this.addClause(guard >= 0 ? [guard, ...sel] : sel);
      return;
    }
    const dep: Dependency = { guard, sel, hidden };
    const vars = new Set<number>();
    if (guard >= 0) vars.add(guard >> 1);
    for (const l of sel) vars.add(l >> 1);
    for (const l of hidden) vars.add(l >> 1);
    for (const v of vars) this.occurs[v]!.push(dep);
    if (this.evaluate(dep)) this.dead = true;
    this.settle();
  }

  /** Drop every learned clause (assignments they implied at level 0 stay). */
  forgetLearned(): void {
    for (const c of this.learnts) c.removed = true;
    this.learnts.length = 0;
  }

  private atRoot(): void {
    if (this.trailLim.length) throw new Error("internal: constraints are added at decision level 0 only");
  }

  /** A clash found while building is a conflict at level 0. */
  private settle(): void {
    if (this.clash) {
      this.clash = null;
      this.dead = true;
    }
  }

  // --- search ------------------------------------------------------------------

  /**
   * Extend the assignment until `decide` answers DONE ("sat", assignment
   * kept), no assignment is left to try ("unsat"), or more than `budget`
   * conflicts have been counted in total ("budget"). `assumption`, when
   * given, is decided first and never flipped: "unsat" then means "not with
   * the assumption".
   */
  search(decide: () => number, budget: number, assumption?: number): Outcome {
    for (;;) {
      if (this.dead) return "unsat";
      const confl = this.propagate();
      if (confl) {
        if (this.trailLim.length === 0) {
          this.dead = true;
          return "unsat";
        }
        if (++this.conflicts > budget) return "budget";
        this.learn(confl);
        continue;
      }
      if (assumption !== undefined && this.trailLim.length === 0) {
        const x = this.litValue(assumption);
        if (x === FALSE) return "unsat";
        if (x === UNASSIGNED) {
          this.decideLit(assumption);
          continue;
        }
      }
      const d = decide();
      if (d >= 0) {
        this.decisions++;
        this.decideLit(d);
        continue;
      }
      if (d === DONE) return "sat";
      if (++this.conflicts > budget) return "budget";
      if (!this.flip(assumption)) return "unsat";
    }
  }

  /** Undo every decision. */
  reset(): void {
    this.backtrack(0);
  }

  private decideLit(l: number): void {
    this.trailLim.push(this.trail.length);
    this.flipped.push(false);
    this.assign(l, R_DECISION, null, -1);
  }

  /** Replace the deepest unflipped decision (above the assumption) by its negation; false when there is none. */
  private flip(assumption: number | undefined): boolean {
    const floor =
      assumption !== undefined && this.trailLim.length > 0 && this.trail[this.trailLim[0]!] === assumption ? 1 : 0;
    let j = this.trailLim.length;
    while (j > floor && this.flipped[j - 1]) j--;
    if (j <= floor) return false;
    const l = this.trail[this.trailLim[j - 1]!]!;
    this.backtrack(j - 1);
    this.decideLit(l ^ 1);
    this.flipped[j - 1] = true;
    return true;
  }

  /** Assign a literal; a variable made true excludes its exclusions at once. */
  private assign(l: number, kind: number, c: Clause | null, by: number): void {
    this.set(l, kind, c, by);
    if (l & 1) return;
    const v = l >> 1;
    for (const u of this.excl[v]!) {
      const x = this.vals[u]!;
      if (x === UNASSIGNED) this.set(neg(u), R_EXCLUSION, null, v);
      else if (x === TRUE) this.clash ??= [neg(v), neg(u)];
    }
  }

  private set(l: number, kind: number, c: Clause | null, by: number): void {
    const v = l >> 1;
    this.vals[v] = l & 1 ? FALSE : TRUE;
    this.levels[v] = this.trailLim.length;
    this.reasonKind[v] = kind;
    this.reasonClause[v] = c;
    this.reasonVar[v] = by;
    this.trail.push(l);
  }

  private backtrack(level: number): void {
    this.clash = null;
    if (this.trailLim.length <= level) return;
    const to = this.trailLim[level]!;
    for (let i = this.trail.length - 1; i >= to; i--) {
      const v = this.trail[i]! >> 1;
      this.vals[v] = UNASSIGNED;
      this.reasonClause[v] = null;
    }
    this.trail.length = to;
    this.trailLim.length = level;
    this.flipped.length = level;
    if (this.qhead > to) this.qhead = to;
  }

  private takeClash(): readonly number[] | null {
    const c = this.clash;
    this.clash = null;
    return c;
  }

  /** Propagate every pending assignment; the literals of a falsified constraint, or null. */
  private propagate(): readonly number[] | null {
    if (this.clash) return this.takeClash();
    while (this.qhead < this.trail.length) {
      const p = this.trail[this.qhead++]!;
      this.propagations++;
      const confl = this.propagateWatches(p ^ 1);
      if (confl) return confl;
      for (const dep of this.occurs[p >> 1]!) {
        const c = this.evaluate(dep);
        if (c) return c;
        if (this.clash) return this.takeClash();
      }
    }
    return null;
  }

  /** Propagate a dependency constraint; its literals if falsified. */
  private evaluate(dep: Dependency): readonly number[] | null {
    const g = dep.guard >= 0 ? this.litValue(dep.guard) : FALSE;
    if (g === TRUE) return null;
    for (const l of dep.sel) if (this.litValue(l) !== FALSE) return null;
    for (const l of dep.hidden) if (this.litValue(l) !== FALSE) return null;
    const lits = dep.guard >= 0 ? [dep.guard, ...dep.sel, ...dep.hidden] : [...dep.sel, ...dep.hidden];
    if (g === FALSE) return lits;
    // Nothing can satisfy it: the package that has it cannot be selected.
    this.assign(dep.guard, R_CLAUSE, { lits, learnt: false, removed: false, lbd: 0 }, -1);
    return null;
  }

  /** Visit the clauses watching `f`, which just became false. */
  private propagateWatches(f: number): readonly number[] | null {
    const ws = this.watches[f]!;
    let i = 0;
    let j = 0;
    try {
      while (i < ws.length) {
        const c = ws[i++]!;
        if (c.removed) continue;
        const lits = c.lits;
        if (lits[0] === f) {
          lits[0] = lits[1]!;
          lits[1] = f;
        }
        const first = lits[0]!;
        const fv = this.litValue(first);
        if (fv === TRUE) {
          ws[j++] = c;
          continue;
        }
        let moved = false;
        for (let k = 2; k < lits.length; k++) {
          if (this.litValue(lits[k]!) !== FALSE) {
            lits[1] = lits[k]!;
            lits[k] = f;
            this.watches[lits[1]!]!.push(c);
            moved = true;
            break;
          }
        }
        if (moved) continue;
        ws[j++] = c;
        if (fv === FALSE) return lits;
        this.assign(first, R_CLAUSE, c, -1);
        if (this.clash) return this.takeClash();
      }
      return null;
    } finally {
      while (i < ws.length) ws[j++] = ws[i++]!;
      ws.length = j;
    }
  }

  /** The literals of the constraint that implied `v`'s value. */
  private reasonLits(v: number): readonly number[] {
    if (this.reasonKind[v] === R_EXCLUSION) return [neg(v), neg(this.reasonVar[v]!)];
    return this.reasonClause[v]!.lits;
  }

  /** First-UIP learning: derive a clause from the conflict, backjump, assert it. */
  private learn(confl: readonly number[]): void {
    const seen = this.seen;
    const levels = this.levels;
    const level = this.trailLim.length;
    const out: number[] = [-1];
    let open = 0;
    let p = -1;
    let idx = this.trail.length - 1;
    let lits = confl;
    for (;;) {
      for (const q of lits) {
        const v = q >> 1;
        if (p >= 0 && v === p >> 1) continue;
        if (seen[v] || levels[v] === 0) continue;
        seen[v] = 1;
        if (levels[v]! >= level) open++;
        else out.push(q);
      }
      while (!seen[this.trail[idx]! >> 1]) idx--;
      p = this.trail[idx--]!;
      seen[p >> 1] = 0;
      if (--open === 0) break;
      lits = this.reasonLits(p >> 1);
    }
    out[0] = p ^ 1;
    for (let k = 1; k < out.length; k++) seen[out[k]! >> 1] = 0;
    const learnt = this.minimize(out);
    let back = 0;
    for (let k = 1; k < learnt.length; k++) {
      const lv = levels[learnt[k]! >> 1]!;
      if (lv > back) {
        back = lv;
        [learnt[1], learnt[k]] = [learnt[k]!, learnt[1]!];
      }
    }
    const lbd = new Set(learnt.map((l) => levels[l >> 1])).size;
    this.backtrack(back);
    const c: Clause = { lits: learnt, learnt: true, removed: false, lbd };
    if (learnt.length > 1) {
      this.watches[learnt[0]!]!.push(c);
      this.watches[learnt[1]!]!.push(c);
      this.learnts.push(c);
    }
    this.assign(learnt[0]!, R_CLAUSE, c, -1);
    if (this.conflicts >= this.nextReduce) this.reduceLearned();
  }

  /** Drop literals implied by the others (local minimization: each one's reason lies inside the clause). */
  private minimize(lits: number[]): number[] {
    const inClause = this.seen;
    for (const l of lits) inClause[l >> 1] = 1;
    const out = [lits[0]!];
    for (let k = 1; k < lits.length; k++) {
      const v = lits[k]! >> 1;
      const kind = this.reasonKind[v];
      let redundant = kind === R_CLAUSE || kind === R_EXCLUSION;
      if (redundant) {
        for (const q of this.reasonLits(v)) {
          const u = q >> 1;
          if (u !== v && !inClause[u] && this.levels[u] !== 0) {
            redundant = false;
            break;
          }
        }
      }
      if (!redundant) out.push(lits[k]!);
    }
    for (const l of lits) inClause[l >> 1] = 0;
    return out;
  }

  /** Drop the less useful half of the learned clauses (high LBD, older first), keeping those that imply a current value. */
  private reduceLearned(): void {
    this.nextReduce = this.conflicts + REDUCE_FIRST + REDUCE_STEP * ++this.reductions;
    const ranked = this.learnts.map((c, i) => ({ c, i })).sort((a, b) => a.c.lbd - b.c.lbd || b.i - a.i);
    const keep: Clause[] = [];
    for (let k = 0; k < ranked.length; k++) {
      const c = ranked[k]!.c;
      const v = c.lits[0]! >> 1;
      const locked = this.reasonClause[v] === c && this.litValue(c.lits[0]!) === TRUE;
      if (k < ranked.length / 2 || c.lbd <= 2 || locked) keep.push(c);
      else c.removed = true;
    }
    this.learnts.length = 0;
    this.learnts.push(...keep);
  }
}
