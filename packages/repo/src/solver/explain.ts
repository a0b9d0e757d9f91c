// Why a resolution failed, as chains: once the CDCL search (problem.ts) has
// proved that no answer exists, this depth-first search over the same
// rules, with conflict-directed backjumping, walks the attempts a person
// would make and records one line per dead end: the chain from a request to
// the dependency that could not be met, and why each candidate was ruled out
// (`app-1.0-r0 → libbar-2.0-r0 → libfoo>=3 : only libfoo-2.0-r0 in main`).
//
// Dependencies with one viable candidate are taken first; among the others
// the one with the fewest (earliest on ties), candidates in preference order.
// The walk is bounded: it stops after MAX_RECORDED distinct lines, after
// `budget` candidate evaluations, or — once it has a line to show — after
// `budget / 20` of them, whichever comes first, and says so when it stopped
// before seeing every attempt.

import { allowedTags, label, repoText, type Dep, type PackageIndex, type Pins, type Pkg } from "./model.js";

/** Distinct dead ends recorded before the walk stops. */
export const MAX_RECORDED = 400;

export interface Explanation {
  /** One line per dead end met, in the order met. */
  lines: string[];
  /** The walk ended before it had seen every attempt. */
  truncated: boolean;
  /** The walk found an answer after all (the solver and the walk disagree: a bug). */
  solved: boolean;
}

/** Walk the attempts to satisfy the requests and record every dead end, within `budget` candidate evaluations. */
export function explainFailure(
  index: PackageIndex,
  requests: readonly Dep[],
  requestConflicts: readonly Dep[],
  pinned: Pins,
  budget: number,
): Explanation {
  return new Walk(index, pinned, budget).run(requests, requestConflicts);
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

interface Frame {
  pkg: number;
  pd: PendingDep;
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

class Failed {
  constructor(readonly levels: Set<number>) {}
}

/** Thrown to end the walk early. */
class Stop {}

class Walk {
  private readonly P: readonly Pkg[];
  private readonly stack: Frame[] = [];
  private readonly levelOf: Int32Array;
  private readonly providers = new Map<string, number[]>();
  private readonly slotHolder = new Map<string, number>();
  private readonly virtualHolders = new Map<string, number[]>();
  private readonly conflicts = new Map<string, Array<{ dep: Dep; owner: number }>>();
  private readonly pending: PendingDep[] = [];
  private cursor = 0;
  private work = 0;
  private truncated = false;
  private readonly failures = new Set<string>();

  constructor(
    private readonly r: PackageIndex,
    private readonly pinned: Pins,
    private readonly budget: number,
  ) {
    this.P = r.packages;
    this.levelOf = new Int32Array(this.P.length).fill(-1);
  }

  run(requests: readonly Dep[], requestConflicts: readonly Dep[]): Explanation {
    for (const dep of requestConflicts) this.addConflict(dep, -1);
    for (const dep of requests)
      this.pending.push({ dep, parent: -1, level: -1, allowed: allowedTags(dep, undefined, this.pinned) });
    let solved = false;
    try {
      solved = this.search() === null;
    } catch (e) {
      if (!(e instanceof Stop)) throw e;
    }
    return { lines: [...this.failures], truncated: this.truncated, solved };
  }

  // --- state -----------------------------------------------------------------

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

  private choose(c: number, pd: PendingDep): void {
    const p = this.P[c]!;
    const parsed = this.r.parsed(p);
    if ("broken" in parsed) throw new Error(`internal: selecting broken package ${label(p)}`);
    const level = this.stack.length;
    this.stack.push({ pkg: c, pd });
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
    for (const d of parsed.deps)
      this.pending.push({ dep: d, parent: c, level, allowed: allowedTags(d, p.tag, this.pinned) });
  }

  private undo(pendingLen: number): void {
    const f = this.stack.pop()!;
    const p = this.P[f.pkg]!;
    const parsed = this.r.parsed(p) as { conflicts: Dep[] };
    this.pending.length = pendingLen;
    for (let i = parsed.conflicts.length - 1; i >= 0; i--) this.conflicts.get(parsed.conflicts[i]!.d.name)!.pop();
    for (const s of p.virtualSlots) this.virtualHolders.get(s)!.pop();
    for (const s of p.versionedSlots) this.slotHolder.delete(s);
    for (const n of p.names) this.providers.get(n)!.pop();
    this.levelOf[f.pkg] = -1;
  }

  /** Why candidate `c` cannot be selected now, or null if it can. */
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
      for (const cf of list)
        if (cf.owner !== c && this.r.info(cf.dep).match.has(c))
          return { kind: "conflictBy", by: cf.owner, dep: cf.dep };
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
    this.work += info.order.length + 1;
    if (this.work > (this.failures.size ? this.budget / 20 : this.budget)) {
      this.truncated = true;
      throw new Stop();
    }
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

  /** Extend the selection until every pending dependency holds: null on success, else the conflict levels. */
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
        // Only a provider that is never picked by itself could satisfy it,
        // and nothing selected did: fail, blaming every decision (any of
        // them might have pulled such a provider in).
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
      const pendingLen = this.pending.length;
      this.choose(c, pd);
      const r = this.search();
      if (r === null) return null;
      this.undo(pendingLen);
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

  // --- lines -------------------------------------------------------------------

  private record(pd: PendingDep): void {
    this.failures.add(`${this.chainOf(pd)} : ${this.reason(pd)}`);
    if (this.failures.size >= MAX_RECORDED) throw new Stop();
  }

  /** `app-1.0-r0 → libbar-1.0-r0 → libfoo>=2`, or `request foo`. */
  private chainOf(pd: PendingDep): string {
    if (pd.parent < 0) return `request ${pd.dep.token}`;
    return `${this.chainOfPkg(pd.parent)} → ${pd.dep.token}`;
  }

  private chainOfPkg(id: number): string {
    const p = this.P[id]!;
    const level = this.levelOf[id]!;
    const pd = level >= 0 ? this.stack[level]!.pd : undefined;
    if (!pd) return label(p);
    if (pd.parent < 0) return pd.dep.d.name === p.name ? label(p) : `request ${pd.dep.token} → ${label(p)}`;
    return `${this.chainOfPkg(pd.parent)} → ${label(p)}`;
  }

  /** How a selected package got selected: ` (selected by app-1.0-r0 → libfoo<2)`. */
  private selectedBy(id: number): string {
    const level = this.levelOf[id]!;
    return level >= 0 ? ` (selected by ${this.chainOf(this.stack[level]!.pd)})` : "";
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
    return [...groups]
      .sort((a, b) => a[0] - b[0])
      .map(([o, g]) => `${g.join(", ")} in ${repoText(this.r.repositories[o]!)}`)
      .join("; ");
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
      const ids = [...new Set(entries.map((e) => e.pkg))].sort(
        (a, b) => -r.compareLoose(this.P[a]!.version, this.P[b]!.version) || a - b,
      );
      const provided = new Map(entries.map((e) => [e.pkg, e] as const));
      return `only ${this.listWithRepos(ids, (p) => {
        const e = provided.get(p.id)!;
        if (e.kind === 0) return label(p);
        return e.kind === 1
          ? `${label(p)} (provides ${name}=${e.version})`
          : `${label(p)} (provides ${name} without a version)`;
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
      parts.push(
        `${JSON.stringify(name)} is virtual, provided by ${names.slice(0, 12).join(", ")}${names.length > 12 ? ", …" : ""} with no provider_priority and none of them selected; request one of them`,
      );
    } else if (info.virtualOnly.length && parts.length === 0) {
      parts.push(
        `only providers without provider_priority remain (${info.virtualOnly.map((id) => label(this.P[id]!)).join(", ")}), and none is selected`,
      );
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
        if (q.name === p.name)
          return `${label(p)} cannot be installed: ${label(q)} is already selected${this.selectedBy(b.by)}`;
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
