// The resolver on dependency sets that are hard combinatorial puzzles: random
// 3-SAT formulas written as packages, decided within a time bound and checked
// independently (a small DPLL in this file says which are satisfiable; a
// satisfying answer is checked clause by clause), and the conflict budget
// that keeps any resolution from running unbounded.

import { afterEach, describe, expect, it } from "vitest";
import { newIndexRecord, type IndexRecord } from "@kiln/apk";
import { DEFAULT_MAX_CONFLICTS, MAX_CONFLICTS_ENV, resolve, ResolveError, Resolver } from "./resolver.js";
import type { RepoPackage, RepositoryRef } from "./types.js";

const MAIN: RepositoryRef = { url: "main" };

function pkg(name: string, version: string, spec: { D?: string[]; p?: string[]; k?: number } = {}): RepoPackage {
  const record: IndexRecord = newIndexRecord();
  record.name = name;
  record.version = version;
  record.arch = "x86_64";
  record.depends = spec.D ?? [];
  record.provides = spec.p ?? [];
  if (spec.k !== undefined) record.providerPriority = spec.k;
  record.checksum = `Q1${name}${version}`;
  return { record, repo: MAIN, url: `main/x86_64/${name}-${version}.apk` };
}

function fails(fn: () => unknown): ResolveError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ResolveError) return e;
    throw e;
  }
  throw new Error("expected ResolveError");
}

// --- random 3-SAT as packages ---------------------------------------------------

function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** `m` clauses of three distinct variables out of 1..n, each negated or not: literal v is x_v, -v is ¬x_v. */
function formula(n: number, m: number, seed: number): number[][] {
  const r = rng(seed * 7919 + n);
  const out: number[][] = [];
  for (let k = 0; k < m; k++) {
    const vars = new Set<number>();
    while (vars.size < 3) vars.add(1 + Math.floor(r() * n));
    out.push([...vars].map((v) => (r() < 0.5 ? v : -v)));
  }
  return out;
}

/**
 * Variable v is package `vV` in two versions: 2-r0 means x_v true, 1-r0
 * false (one version per name keeps the assignment consistent). Clause k is
 * package `cK`, depending on the virtual name `sat-cK`, which the versions
 * making one of its literals true provide (all with provider_priority, so
 * each may be selected for it). The request is every clause package.
 */
function asPackages(n: number, clauses: number[][]): { repo: RepoPackage[]; requests: string[] } {
  const provides = new Map<string, string[]>();
  clauses.forEach((c, k) => {
    for (const l of c) {
      const id = `v${Math.abs(l)}-${l > 0 ? 2 : 1}`;
      provides.set(id, [...(provides.get(id) ?? []), `sat-c${k}`]);
    }
  });
  const repo: RepoPackage[] = [];
  for (let v = 1; v <= n; v++)
    for (const ver of [1, 2]) repo.push(pkg(`v${v}`, `${ver}-r0`, { p: provides.get(`v${v}-${ver}`) ?? [], k: 1 }));
  clauses.forEach((_, k) => repo.push(pkg(`c${k}`, "1-r0", { D: [`sat-c${k}`] })));
  return { repo, requests: clauses.map((_, k) => `c${k}`) };
}

/** A plain DPLL (unit propagation over occurrence lists, shortest clause first): whether the formula has a model. */
function satisfiable(clauses: number[][]): boolean {
  const n = Math.max(...clauses.flat().map(Math.abs));
  const val = new Int8Array(n + 1);
  const at = (l: number): number => (l > 0 ? 2 * l : -2 * l + 1);
  const occurs: number[][] = Array.from({ length: 2 * n + 2 }, () => []);
  clauses.forEach((c, i) => c.forEach((l) => occurs[at(l)]!.push(i)));
  const litVal = (l: number): number => (l > 0 ? val[l]! : -val[-l]!);
  const trail: number[] = [];
  const assign = (l: number): void => {
    val[Math.abs(l)] = l > 0 ? 1 : -1;
    trail.push(l);
  };
  const undoTo = (len: number): void => {
    while (trail.length > len) val[Math.abs(trail.pop()!)] = 0;
  };
  /** Unit propagation from trail[from]; false on a falsified clause. */
  const propagate = (from: number): boolean => {
    for (let i = from; i < trail.length; i++) {
      for (const ci of occurs[at(-trail[i]!)]!) {
        let open = 0;
        let last = 0;
        let done = false;
        for (const l of clauses[ci]!) {
          const x = litVal(l);
          if (x > 0) {
            done = true;
            break;
          }
          if (x === 0) {
            open++;
            last = l;
          }
        }
        if (done) continue;
        if (open === 0) return false;
        if (open === 1) assign(last);
      }
    }
    return true;
  };
  const search = (): boolean => {
    let best: number[] | undefined;
    let bestOpen = Infinity;
    for (const c of clauses) {
      if (c.some((l) => litVal(l) > 0)) continue;
      const open = c.filter((l) => litVal(l) === 0);
      if (open.length < bestOpen) {
        best = open;
        bestOpen = open.length;
      }
    }
    if (!best) return true;
    for (const choice of [best[0]!, -best[0]!]) {
      const len = trail.length;
      assign(choice);
      if (propagate(len) && search()) return true;
      undoTo(len);
    }
    return false;
  };
  return search();
}

/** The answer, read back as an assignment, makes every clause true. */
function checkModel(clauses: number[][], answer: readonly RepoPackage[]): void {
  const version = new Map<string, string>();
  for (const p of answer) {
    expect(version.has(p.record.name), `${p.record.name} twice`).toBe(false);
    version.set(p.record.name, p.record.version);
  }
  clauses.forEach((c, k) => {
    expect(version.get(`c${k}`), `clause package c${k}`).toBe("1-r0");
    const made = c.some((l) => version.get(`v${Math.abs(l)}`) === (l > 0 ? "2-r0" : "1-r0"));
    expect(made, `clause ${k} (${c.join(" ")}) has no true literal among the selected versions`).toBe(true);
  });
}

/** Conflicts each random instance may take: a tenth of the default budget. */
const DECIDE_BUDGET = 5000;

function decide(n: number, m: number, seed: number): { sat: boolean; ms: number } {
  const clauses = formula(n, m, seed);
  const { repo, requests } = asPackages(n, clauses);
  const expected = satisfiable(clauses);
  const t0 = performance.now();
  let got: RepoPackage[] | ResolveError;
  try {
    // The work is bounded deterministically (a conflict budget far below the default);
    // how long it takes is `npm run bench`'s business, not a timed test's.
    got = resolve(requests, repo, { maxConflicts: DECIDE_BUDGET }).packages;
  } catch (e) {
    if (!(e instanceof ResolveError)) throw e;
    got = e;
  }
  const ms = performance.now() - t0;
  console.log(
    `3-SAT ${n} variables, ${m} clauses, seed ${seed}: ${expected ? "satisfiable" : "unsatisfiable"}, decided in ${ms.toFixed(0)} ms`,
  );
  if (expected) {
    expect(got, `seed ${seed}: ${got instanceof ResolveError ? got.message.slice(0, 300) : ""}`).not.toBeInstanceOf(
      ResolveError,
    );
    checkModel(clauses, got as RepoPackage[]);
  } else {
    expect(got).toBeInstanceOf(ResolveError);
    const e = got as ResolveError;
    expect(e.code).toBe("UNSATISFIABLE");
    expect(e.explanation.length).toBeGreaterThan(0);
    expect(e.explanation.length).toBeLessThanOrEqual(22);
    expect(e.message.split("\n")[0]).toBe(`cannot resolve c0 c1 c2 c3 c4 c5 c6 c7 … (${m} requests):`);
  }
  if (got instanceof ResolveError) expect(got.code, `seed ${seed}`).not.toBe("TOO_HARD");
  return { sat: expected, ms };
}

describe("resolve: random 3-SAT as packages", () => {
  it("decides 40 variables / 172 clauses (ratio 4.3) within a 5,000-conflict budget each, satisfiable or not", () => {
    const outcomes = [1, 2, 3, 4, 5, 6, 7, 8].map((seed) => decide(40, 172, seed));
    // the seeds cover both answers, so both paths are exercised
    expect(outcomes.some((o) => o.sat)).toBe(true);
    expect(outcomes.some((o) => !o.sat)).toBe(true);
  });

  it("decides 100 variables / 430 clauses within a 5,000-conflict budget each, satisfiable or not", () => {
    const outcomes = [1, 2, 3, 4, 5, 6].map((seed) => decide(100, 430, seed));
    expect(outcomes.some((o) => o.sat)).toBe(true);
    expect(outcomes.some((o) => !o.sat)).toBe(true);
  });
});

// --- the budget ----------------------------------------------------------------

describe("resolve: bounded search", () => {
  const saved = process.env[MAX_CONFLICTS_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[MAX_CONFLICTS_ENV];
    else process.env[MAX_CONFLICTS_ENV] = saved;
  });

  // An unsatisfiable instance that needs hundreds of conflicts.
  let hardOne: { repo: RepoPackage[]; requests: string[] } | undefined;
  const hard = (): { repo: RepoPackage[]; requests: string[] } => {
    for (let seed = 1; !hardOne && seed < 50; seed++) {
      const clauses = formula(100, 430, seed);
      if (!satisfiable(clauses)) hardOne = asPackages(100, clauses);
    }
    if (!hardOne) throw new Error("no unsatisfiable seed");
    return hardOne;
  };

  it("gives up with TOO_HARD, saying how to raise the limit, instead of running on", () => {
    const { repo, requests } = hard();
    const e = fails(() => resolve(requests, repo, { maxConflicts: 10 }));
    expect(e.code).toBe("TOO_HARD");
    expect(e.kind).toBe("input");
    expect(e.exitCode).toBe(1);
    expect(e.message).toMatch(
      /^cannot resolve c0 c1 .* \(430 requests\): the dependency problem is too hard to decide within 10 conflicts; raise the limit with KILN_MAX_RESOLVE_CONFLICTS=N \(or ResolveOptions.maxConflicts\)$/,
    );
    expect(e.message).not.toContain("\n");
    // the same problem is decided with the default budget
    expect(fails(() => resolve(requests, repo)).code).toBe("UNSATISFIABLE");
    expect(DEFAULT_MAX_CONFLICTS).toBeGreaterThan(1000);
  });

  it("takes the limit from KILN_MAX_RESOLVE_CONFLICTS, and rejects a bad value", () => {
    const { repo, requests } = hard();
    process.env[MAX_CONFLICTS_ENV] = "5";
    const resolver = new Resolver(repo);
    expect(fails(() => resolver.resolve(requests)).message).toContain("within 5 conflicts");
    // an explicit option wins over the environment
    expect(fails(() => new Resolver(repo, { maxConflicts: 7 }).resolve(requests)).message).toContain(
      "within 7 conflicts",
    );
    for (const bad of ["many", "0", "-3", "1.5"]) {
      process.env[MAX_CONFLICTS_ENV] = bad;
      const e = fails(() => resolve(["c0"], repo));
      expect(e.code).toBe("INVALID_LIMIT");
      expect(e.message).toBe(`KILN_MAX_RESOLVE_CONFLICTS must be a positive whole number, got ${JSON.stringify(bad)}`);
    }
    delete process.env[MAX_CONFLICTS_ENV];
    expect(fails(() => resolve(["c0"], repo, { maxConflicts: 0 })).code).toBe("INVALID_LIMIT");
  });

  it("counts install_if work against the same budget", () => {
    // A satisfiable main request, then an install_if package whose
    // dependencies are the hard formula: the budget stops the second phase too.
    const { repo, requests } = hard();
    const trigger = pkg("docs", "1-r0");
    const heavy = pkg("heavy-doc", "1-r0", { D: requests });
    heavy.record.installIf = ["docs"];
    const all = [...repo, trigger, heavy];
    expect(fails(() => resolve(["docs"], all, { maxConflicts: 10 })).code).toBe("TOO_HARD");
    expect(resolve(["docs"], all).packages.map((p) => p.record.name)).toEqual(["docs"]);
  });
});

// --- policies that the search must keep ------------------------------------------

describe("resolve: providers without priority and the order requests are taken in", () => {
  it("lets a provider without priority, selected by the rest of the resolution, satisfy a dependency whose preferred provider is excluded", () => {
    const repo = [
      pkg("app", "1-r0", { D: ["sh", "tool"] }),
      pkg("bash", "5-r0", { p: ["sh"], k: 10 }),
      pkg("mksh", "59-r0", { p: ["sh"] }),
      pkg("dash", "0.5-r0", { p: ["sh"] }),
      pkg("tool", "1-r0", { D: ["mksh"] }),
    ];
    expect(
      resolve(["app", "!bash"], repo)
        .packages.map((p) => p.record.name)
        .sort(),
    ).toEqual(["app", "mksh", "tool"]);
    expect(
      resolve(["app"], repo)
        .packages.map((p) => p.record.name)
        .sort(),
    ).toEqual(["app", "bash", "mksh", "tool"]);
    // nothing selects one of them: the resolver does not guess
    const noTool = repo.map((p) => (p.record.name === "app" ? pkg("app", "1-r0", { D: ["sh"] }) : p));
    expect(fails(() => resolve(["app", "!bash"], noTool)).explanation).toEqual([
      "app-1-r0 → sh : bash-5-r0 conflicts with request !bash",
    ]);
  });

  it("does not force a request's last open candidate while another request may still provide it", () => {
    // `vb`'s prioritized providers: c (broken below) and a (whose library is
    // missing two levels down). The request `b` selects b, which provides vb.
    const repo = [
      pkg("a", "1-r0", { D: ["liba"], p: ["vb"], k: 2 }),
      pkg("liba", "1-r0", { D: ["missing"] }),
      pkg("c", "1-r0", { D: ["missing"], p: ["vb"], k: 1 }),
      pkg("b", "3-r0", { p: ["vb"] }),
      pkg("x", "1-r0", { p: ["vb"] }),
    ];
    for (const requests of [
      ["vb", "b"],
      ["b", "vb"],
    ])
      expect(resolve(requests, repo).packages.map((p) => `${p.record.name}-${p.record.version}`)).toEqual(["b-3-r0"]);
  });
});
