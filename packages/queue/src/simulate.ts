// `kiln plan --simulate --workers N`: the makespan of building a graph on N
// workers, predicted by list scheduling (the coordinator's policy: a job is
// released when its inputs are built; among ready jobs the one with the
// longest path to the end of the graph goes first), from recorded build
// durations. Pure: jobs in, figures out.

export interface SimJob {
  name: string;
  ms: number;
  /** Jobs that must finish first. */
  deps: string[];
}

export interface SimResult {
  workers: number;
  jobs: number;
  makespanMs: number;
  /** The longest chain of dependent builds: no number of workers beats it. */
  criticalPathMs: number;
  totalWorkMs: number;
  /** max(total work / workers, critical path). */
  lowerBoundMs: number;
  /** Busy time / (workers × makespan). */
  utilization: number;
  /** Time ready jobs waited for a free worker. */
  meanWaitMs: number;
  maxWaitMs: number;
}

export interface SimOptions {
  /** Added to every job: taking it from the queue, syncing, uploading, merging. */
  dispatchMs?: number;
}

/** A binary heap: pop() returns the least element by `cmp`. */
class Heap<T> {
  private readonly a: T[] = [];
  constructor(private readonly cmp: (x: T, y: T) => number) {}
  get size(): number {
    return this.a.length;
  }
  peek(): T | undefined {
    return this.a[0];
  }
  push(v: T): void {
    const a = this.a;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.cmp(a[i]!, a[p]!) >= 0) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.cmp(a[l]!, a[m]!) < 0) m = l;
        if (r < a.length && this.cmp(a[r]!, a[m]!) < 0) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** Topological order; a cycle is a bug in the input (the graph cuts cycles first). */
function topo(jobs: readonly SimJob[]): { order: SimJob[]; dependents: Map<string, string[]> } {
  const by = new Map(jobs.map((j) => [j.name, j]));
  const indeg = new Map(jobs.map((j) => [j.name, 0]));
  const dependents = new Map<string, string[]>();
  for (const j of jobs)
    for (const d of new Set(j.deps)) {
      if (!by.has(d) || d === j.name) continue;
      indeg.set(j.name, indeg.get(j.name)! + 1);
      (dependents.get(d) ?? dependents.set(d, []).get(d)!).push(j.name);
    }
  const queue = jobs.filter((j) => indeg.get(j.name) === 0);
  const order: SimJob[] = [];
  for (let i = 0; i < queue.length; i++) {
    const j = queue[i]!;
    order.push(j);
    for (const d of dependents.get(j.name) ?? []) {
      indeg.set(d, indeg.get(d)! - 1);
      if (indeg.get(d) === 0) queue.push(by.get(d)!);
    }
  }
  if (order.length !== jobs.length)
    throw new Error(`simulate: the graph has a cycle (${jobs.length - order.length} jobs on it)`);
  return { order, dependents };
}

export function simulate(jobs: readonly SimJob[], workers: number, opts: SimOptions = {}): SimResult {
  const n = Math.max(1, Math.floor(workers));
  const extra = opts.dispatchMs ?? 0;
  const cost = (j: SimJob) => Math.max(0, j.ms) + extra;
  const { order, dependents } = topo(jobs);
  const by = new Map(jobs.map((j) => [j.name, j]));
  const level = new Map<string, number>();
  for (let i = order.length - 1; i >= 0; i--) {
    const j = order[i]!;
    let m = 0;
    for (const d of dependents.get(j.name) ?? []) m = Math.max(m, level.get(d)!);
    level.set(j.name, cost(j) + m);
  }
  const waiting = new Map(jobs.map((j) => [j.name, new Set(j.deps.filter((d) => by.has(d) && d !== j.name)).size]));
  const ready = new Heap<{ name: string; since: number; level: number }>(
    (a, b) => b.level - a.level || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  for (const j of jobs)
    if (waiting.get(j.name) === 0) ready.push({ name: j.name, since: 0, level: level.get(j.name)! });
  const running = new Heap<{ name: string; end: number }>((a, b) => a.end - b.end);
  let t = 0;
  let waitSum = 0;
  let waitMax = 0;
  let busy = 0;
  let done = 0;
  while (done < jobs.length) {
    while (running.size < n && ready.size) {
      const r = ready.pop()!;
      const w = t - r.since;
      waitSum += w;
      waitMax = Math.max(waitMax, w);
      const c = cost(by.get(r.name)!);
      busy += c;
      running.push({ name: r.name, end: t + c });
    }
    t = running.peek()!.end;
    while (running.size && running.peek()!.end === t) {
      const f = running.pop()!;
      done++;
      for (const d of dependents.get(f.name) ?? []) {
        const left = waiting.get(d)! - 1;
        waiting.set(d, left);
        if (left === 0) ready.push({ name: d, since: t, level: level.get(d)! });
      }
    }
  }
  const total = jobs.reduce((s, j) => s + cost(j), 0);
  const cp = Math.max(0, ...level.values());
  return {
    workers: n,
    jobs: jobs.length,
    makespanMs: t,
    criticalPathMs: cp,
    totalWorkMs: total,
    lowerBoundMs: Math.max(total / n, cp),
    utilization: t > 0 ? busy / (n * t) : 1,
    meanWaitMs: jobs.length ? waitSum / jobs.length : 0,
    maxWaitMs: waitMax,
  };
}

/** A deterministic pseudo-random generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A generated distribution-shaped graph of `n` recipes: a few foundational
 * recipes everything builds on, most recipes with 1–6 dependencies on
 * earlier ones (biased towards the base), build times log-normal around
 * `medianMs` (a long tail of big builds). Same n and seed, same graph.
 */
export function syntheticGraph(n: number, seed = 1, medianMs = 60_000): SimJob[] {
  const r = rng(seed);
  const jobs: SimJob[] = [];
  const base = Math.min(n, Math.max(1, Math.round(n * 0.01)));
  for (let i = 0; i < n; i++) {
    const deps = new Set<string>();
    if (i > 0) {
      const k = i < base ? 1 : 1 + Math.floor(r() * 6);
      for (let d = 0; d < k; d++) {
        const pick = r() < 0.5 ? Math.floor(r() * Math.min(i, base)) : Math.floor(r() * i);
        deps.add(`r${pick}`);
      }
    }
    // Box-Muller: a normal deviate for the log of the duration.
    const z = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    jobs.push({ name: `r${i}`, ms: Math.round(medianMs * Math.exp(1.1 * z)), deps: [...deps] });
  }
  return jobs;
}
