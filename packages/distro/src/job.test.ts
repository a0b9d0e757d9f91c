// The main job's round logic and wiring, with an injected builder (no
// bubblewrap): re-planning stops at a round that builds nothing, at a failing
// round, or after MAX_ROUNDS; progress arrives as events; the result says
// what happened. The real builder is covered by test/distro*.test.ts.

import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { newIndexRecord } from "@kiln/apk";
import { loadDistro } from "./config.js";
import {
  MAX_ROUNDS,
  replanRounds,
  runDistroBuild,
  buildDistro,
  type DistroBuildResult,
  type DistroJobEvent,
} from "./job.js";
import { reportEntries, type JobReport } from "./report.js";
import type { Builder } from "./run.js";

function round(built: number, status = 0): DistroBuildResult {
  return {
    distro: {} as DistroBuildResult["distro"],
    plans: [],
    reports: [],
    dryRun: false,
    total: built,
    counts: { built, failed: status ? 1 : 0, skipped: 0, notStarted: 0, upToDate: 0 },
    indexProblems: [],
    status,
  };
}

describe("replanRounds", () => {
  it("re-plans while a round builds something, and stops at the first round that builds nothing", async () => {
    const built = [3, 1, 0, 5];
    const events: DistroJobEvent[] = [];
    const calls: number[] = [];
    const rounds = await replanRounds(
      async (n) => (calls.push(n), round(built[n - 1]!)),
      (e) => events.push(e),
    );
    expect(calls).toEqual([1, 2, 3]);
    expect(rounds.map((r) => r.counts.built)).toEqual([3, 1, 0]);
    expect(
      events.map((e) =>
        e.kind === "round-done" ? `done ${e.round}` : e.kind === "replan" ? `replan ${e.round}` : e.kind,
      ),
    ).toEqual(["done 1", "replan 2", "done 2", "replan 3", "done 3"]);
  });

  it("does not re-plan after a failing round", async () => {
    const rounds = await replanRounds(async () => round(2, 1));
    expect(rounds).toHaveLength(1);
  });

  it("is bounded", async () => {
    const rounds = await replanRounds(async () => round(1));
    expect(rounds).toHaveLength(MAX_ROUNDS);
  });
});

// A 2048-bit key given as --signing-key would be (generating the 4096-bit local key is slow on a busy machine).
const KEY = (() => {
  const d = mkdtempSync(join(tmpdir(), "kiln-job-key-"));
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  writeFileSync(join(d, "job.rsa"), privateKey.export({ type: "pkcs1", format: "pem" }).toString(), { mode: 0o600 });
  return join(d, "job.rsa");
})();

function distroDir(): string {
  const d = mkdtempSync(join(tmpdir(), "kiln-job-"));
  writeFileSync(join(d, "distro.yaml"), "name: Test\nid: test\narchitectures: [x86_64]\n");
  mkdirSync(join(d, "recipes"));
  mkdirSync(join(d, "images"));
  return d;
}

const RECIPE = `package:
  name: hello
  version: 1.0.0
  epoch: 0
  description: hello
environment:
  contents:
    packages: []
pipeline:
  - runs: echo hello
`;

describe("runDistroBuild", () => {
  it("with nothing to build: one round, no images, status 0", async () => {
    const d = distroDir();
    const distro = await loadDistro(join(d, "distro.yaml"));
    const events: DistroJobEvent[] = [];
    const r = await runDistroBuild({ distro, cacheDir: join(d, "cache"), env: {}, signingKey: KEY }, (e) =>
      events.push(e),
    );
    expect(r.status).toBe(0);
    expect(r.rounds).toHaveLength(1);
    expect(r.rounds[0]!.total).toBe(0);
    expect(r.images.results).toEqual([]);
    expect(events.filter((e) => e.kind === "round-done")).toHaveLength(1);
  }, 60_000);

  it("builds through the injected builder, reports failures as events and a result, and writes the run's report", async () => {
    const d = distroDir();
    writeFileSync(join(d, "recipes", "hello.yaml"), RECIPE);
    const distro = await loadDistro(join(d, "distro.yaml"));
    const events: DistroJobEvent[] = [];
    const failing: Builder = async () => {
      throw new Error("step 1 failed: exit 2");
    };
    const r = await runDistroBuild(
      { distro, cacheDir: join(d, "cache"), env: {}, signingKey: KEY, makeBuilder: () => failing },
      (e) => events.push(e),
    );
    expect(r.rounds[0]!.plans[0]!.errors).toEqual([]);
    expect(r.status).toBe(1);
    expect(r.rounds).toHaveLength(1);
    expect(r.rounds[0]!.counts).toMatchObject({ built: 0, failed: 1 });
    expect(events.find((e) => e.kind === "key-generated")).toBeUndefined();
    expect(events.find((e) => e.kind === "arch")).toMatchObject({ arch: "x86_64", builds: 1, jobs: 1 });
    const finish = events.find((e) => e.kind === "run" && e.event.kind === "finish");
    expect(finish).toMatchObject({ event: { entry: { recipe: "hello", status: "failed" } } });
    const report = JSON.parse(readFileSync(join(d, "out", "build-report.json"), "utf8")) as JobReport;
    expect(report).toMatchObject({ format: 2, command: "distro-build", status: 1, images: [] });
    expect(report.rounds.map((x) => x.reports.flatMap((y) => y.entries.map((e) => [e.recipe, e.status])))).toEqual([
      [["hello", "failed"]],
    ]);
    expect(r.rounds[0]!.reportFile).toBe(join(d, "out", "report.html"));
    expect(r.reportFile).toBe(join(d, "out", "report.html"));
  }, 60_000);

  it("re-plans while builds do not leave the recipes up to date, at most MAX_ROUNDS rounds", async () => {
    const d = distroDir();
    writeFileSync(join(d, "recipes", "hello.yaml"), RECIPE);
    const distro = await loadDistro(join(d, "distro.yaml"));
    // Builds "succeed" without writing the repository: every round plans hello again.
    const builder: Builder = async (job) => ({
      records: [{ ...newIndexRecord(), name: "hello", version: job.fullVersion, arch: "x86_64", checksum: "Q1x" }],
      guest: [],
    });
    const events: DistroJobEvent[] = [];
    const r = await runDistroBuild(
      { distro, cacheDir: join(d, "cache"), env: {}, signingKey: KEY, makeBuilder: () => builder },
      (e) => events.push(e),
    );
    expect(r.rounds).toHaveLength(MAX_ROUNDS);
    expect(events.filter((e) => e.kind === "replan").map((e) => (e as { round: number }).round)).toEqual([2, 3, 4]);
    expect(r.status).toBe(0);
    // The report covers every round, not only the last one (this builder writes nothing, so each round builds r0 again).
    const report = JSON.parse(readFileSync(join(d, "out", "build-report.json"), "utf8")) as JobReport;
    expect(report).toEqual(r.report);
    expect(reportEntries(report).map((e) => [e.round, e.recipe, e.fullVersion, e.status])).toEqual([
      [1, "hello", "1.0.0-r0", "built"],
      [2, "hello", "1.0.0-r0", "built"],
      [3, "hello", "1.0.0-r0", "built"],
      [4, "hello", "1.0.0-r0", "built"],
    ]);
    expect(report.status).toBe(0);
    const html = readFileSync(join(d, "out", "report.html"), "utf8");
    for (const n of [1, 2, 3, 4]) expect(html).toContain(`<h2>Round ${n}</h2>`);
    expect(html).toContain("1.0.0-r0");
    expect(html).toContain("<h2>Images</h2>");
  }, 60_000);

  it("with a bootstrap: the imports first, as a round of their own, then the rest planned (rounds numbered on)", async () => {
    const d = distroDir();
    writeFileSync(join(d, "distro.yaml"), "name: Test\nid: test\narchitectures: [x86_64]\nbootstrap:\n  boot: hello\n");
    writeFileSync(join(d, "recipes", "hello.yaml"), RECIPE);
    writeFileSync(
      join(d, "recipes", "boot.yaml"),
      "package:\n  name: boot\n  version: 1.0.0\n  epoch: 0\n  description: stage 0\npipeline: []\n",
    );
    const distro = await loadDistro(join(d, "distro.yaml"));
    expect(distro.bootstrap).toEqual({ boot: "hello" });
    const calls: string[][] = [];
    let round = 0;
    const builder: Builder = async (job) => ({
      records: [
        { ...newIndexRecord(), name: job.recipe.name, version: job.fullVersion, arch: "x86_64", checksum: "Q1x" },
      ],
      guest: [],
    });
    const events: DistroJobEvent[] = [];
    const r = await runDistroBuild(
      {
        distro,
        cacheDir: join(d, "cache"),
        env: {},
        signingKey: KEY,
        makeBuilder: () => {
          calls[round++] = [];
          return async (job, progress) => (calls[round - 1]!.push(job.recipe.name), builder(job, progress));
        },
      },
      (e) => events.push(e),
    );
    expect(r.status).toBe(0);
    expect(events.find((e) => e.kind === "stage")).toEqual({
      kind: "stage",
      round: 1,
      stage: "imports",
      builds: 1,
      deferred: 1,
    });
    // This builder writes nothing, so each later round plans both again (as in the test above).
    expect(calls[0]).toEqual(["boot"]);
    expect(calls[1]!.sort()).toEqual(["boot", "hello"]);
    expect(r.rounds).toHaveLength(1 + MAX_ROUNDS);
    expect(events.filter((e) => e.kind === "round-done").map((e) => (e as { round: number }).round)).toEqual([
      1, 2, 3, 4, 5,
    ]);
    expect(
      reportEntries(r.report)
        .filter((e) => e.round === 1)
        .map((e) => e.recipe),
    ).toEqual(["boot"]);
  }, 60_000);

  it("a dry run plans only", async () => {
    const d = distroDir();
    writeFileSync(join(d, "recipes", "hello.yaml"), RECIPE);
    const distro = await loadDistro(join(d, "distro.yaml"));
    const r = await buildDistro({
      distro,
      cacheDir: join(d, "cache"),
      env: {},
      dryRun: true,
      makeBuilder: () => {
        throw new Error("no builder on a dry run");
      },
    });
    expect(r).toMatchObject({ dryRun: true, total: 1, reports: [], status: 0 });
    expect(r.plans[0]!.builds.map((b) => b.recipe)).toEqual(["hello"]);
  }, 60_000);
});
