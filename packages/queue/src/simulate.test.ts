import { describe, expect, it } from "vitest";
import { simulate, syntheticGraph, type SimJob } from "./simulate.js";

const chain: SimJob[] = [
  { name: "a", ms: 10, deps: [] },
  { name: "b", ms: 20, deps: ["a"] },
  { name: "c", ms: 30, deps: ["b"] },
];

describe("simulate", () => {
  it("a chain takes its critical path whatever the workers", () => {
    for (const w of [1, 2, 8]) {
      const r = simulate(chain, w);
      expect(r.makespanMs).toBe(60);
      expect(r.criticalPathMs).toBe(60);
    }
  });

  it("independent jobs: total work on one worker, the longest on enough", () => {
    const jobs = [5, 7, 11, 13].map((ms, i) => ({ name: `j${i}`, ms, deps: [] }));
    expect(simulate(jobs, 1).makespanMs).toBe(36);
    expect(simulate(jobs, 4).makespanMs).toBe(13);
    // Longest first on 2 workers: 13+5 | 11+7 = 18.
    expect(simulate(jobs, 2).makespanMs).toBe(18);
    expect(simulate(jobs, 1).meanWaitMs).toBeGreaterThan(0);
    expect(simulate(jobs, 4).meanWaitMs).toBe(0);
  });

  it("the job on the longest path goes first, and dispatch overhead counts per job", () => {
    const jobs: SimJob[] = [
      { name: "short", ms: 10, deps: [] },
      { name: "head", ms: 10, deps: [] },
      { name: "tail", ms: 50, deps: ["head"] },
    ];
    // One worker must still do all of it; two: head, then tail while short runs.
    expect(simulate(jobs, 2).makespanMs).toBe(60);
    expect(simulate(jobs, 2, { dispatchMs: 5 }).makespanMs).toBe(70);
  });

  it("refuses a cycle", () => {
    expect(() =>
      simulate(
        [
          { name: "x", ms: 1, deps: ["y"] },
          { name: "y", ms: 1, deps: ["x"] },
        ],
        2,
      ),
    ).toThrow(/cycle/);
  });

  it("the generated graph is the same for the same seed, and more workers never make it slower than the bound", () => {
    const g = syntheticGraph(3400, 7);
    expect(syntheticGraph(3400, 7)).toEqual(g);
    expect(g).toHaveLength(3400);
    let last = Infinity;
    for (const w of [1, 2, 8, 64]) {
      const r = simulate(g, w);
      expect(r.makespanMs).toBeGreaterThanOrEqual(r.lowerBoundMs - 1e-6);
      expect(r.makespanMs).toBeLessThanOrEqual(last);
      last = r.makespanMs;
    }
    expect(simulate(g, 1).makespanMs).toBe(simulate(g, 1).totalWorkMs);
  });
});
