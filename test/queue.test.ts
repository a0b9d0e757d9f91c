// The distribution built on several machines: a real Redis (redis-server on
// loopback, started here) carries BullMQ jobs from the coordinator
// (kiln build --all --queue) to workers (kiln worker, child processes), and a
// real S3 server (s3rver) carries the packages back. Synthetic recipes whose
// steps are cheap shell in a busybox guest (test/helpers/distro.ts). Checked:
// the result equals a local build byte for byte (the same C: for every
// package); a worker killed with kill -9 mid-build has its job taken over by
// another, and only one attempt is merged; a poisoned job stops after its
// retry budget with its dependents skipped; a restarted coordinator and a
// restarted Redis resume; hostile job payloads are refused by the worker.

import { spawn, type ChildProcess } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { readIndex } from "@kiln/apk";
import { Queue } from "bullmq";
import { kilnAsync, type Run } from "./helpers/cli.js";
import { makeUpstream, writeBootstrapSynth, writeDistro, type SynthRecipe, type Upstream } from "./helpers/distro.js";
import { KILN_BIN } from "./helpers/paths.js";
import { startRedis, type RedisServer } from "./helpers/redis.js";
import { aws, awsKeys, S3_ENV, startS3, type S3Server } from "./helpers/s3.js";

const BUCKET = "kiln-artifacts";
let work: string;
let up: Upstream;
let s3: S3Server;
const children: ChildProcess[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-queue-"));
  up = await makeUpstream(join(work, "up"));
  s3 = await startS3(join(work, "s3data"));
  aws(s3.endpoint, ["s3api", "create-bucket", "--bucket", BUCKET]);
}, 240_000);

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

afterAll(async () => {
  await s3?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const ENV = { ...S3_ENV, SOURCE_DATE_EPOCH: "1700000000" };

interface Proc {
  proc: ChildProcess;
  out: () => string;
  done: Promise<Run>;
  /** Resolves once the output (stdout + stderr) matches. */
  waitFor(re: RegExp, ms?: number): Promise<void>;
}

function spawnKiln(cwd: string, args: string[]): Proc {
  const proc = spawn(process.execPath, [KILN_BIN, ...args], { cwd, env: { ...process.env, ...ENV } });
  children.push(proc);
  let stdout = "",
    stderr = "",
    all = "";
  const waiters: Array<{ re: RegExp; res: () => void }> = [];
  const feed = () => {
    for (const w of waiters.splice(0))
      if (w.re.test(all)) w.res();
      else waiters.push(w);
  };
  proc.stdout!.on("data", (d) => ((stdout += d), (all += d), feed()));
  proc.stderr!.on("data", (d) => ((stderr += d), (all += d), feed()));
  const done = new Promise<Run>((r) =>
    proc.on("close", (code, sig) => r({ status: code ?? (sig ? 137 : -1), stdout, stderr })),
  );
  return {
    proc,
    out: () => all,
    done,
    waitFor: (re, ms = 120_000) =>
      new Promise<void>((res, rej) => {
        if (re.test(all)) return res();
        const t = setTimeout(() => rej(new Error(`timed out waiting for ${re}:\n${all}`)), ms);
        waiters.push({
          re,
          res: () => {
            clearTimeout(t);
            res();
          },
        });
      }),
  };
}

const s3Args = () => ["--endpoint-url", s3.endpoint, "--path-style"];

function worker(dir: string, redis: RedisServer, prefix: string, name: string): Proc {
  return spawnKiln(dir, [
    "worker",
    "--queue",
    redis.url,
    "--artifacts",
    `s3://${BUCKET}/${prefix}`,
    ...s3Args(),
    "--name",
    name,
    "--lock-seconds",
    "3",
    "--cache-dir",
    join(work, `cache-${name}`),
  ]);
}

function coordinator(dir: string, redis: RedisServer, prefix: string, extra: string[] = []): Proc {
  return spawnKiln(dir, [
    "build",
    "--all",
    "--queue",
    redis.url,
    "--artifacts",
    `s3://${BUCKET}/${prefix}`,
    ...s3Args(),
    "--cache-dir",
    join(work, "cache-coord"),
    ...extra,
  ]);
}

async function indexOf(dir: string): Promise<string[]> {
  const idx = await readIndex(readFileSync(join(dir, "out/x86_64/APKINDEX.tar.gz")));
  return idx.records.map((r) => `${r.name}-${r.version} C:${r.checksum}`).sort();
}

interface Lanes {
  workers: Array<{ worker: string; jobs: number }>;
  entries: Array<{ recipe: string; worker?: string; status: string; attempts: number }>;
}
const lanes = (dir: string) => JSON.parse(readFileSync(join(dir, "out/queue-report.json"), "utf8")) as Lanes;

interface ReportEntry {
  recipe: string;
  status: string;
  blockedBy?: string;
  error?: string;
}
const report = (dir: string): ReportEntry[] =>
  (
    JSON.parse(readFileSync(join(dir, "out/build-report.json"), "utf8")) as {
      rounds: Array<{ reports: Array<{ entries: ReportEntry[] }> }>;
    }
  ).rounds.flatMap((r) => r.reports.flatMap((x) => x.entries));

/** libbase (+libbase-dev) ← libmid ← app; libbase ← leaf; solo alone. */
const SHAPE: SynthRecipe[] = [
  { name: "libbase", subpackages: ["libbase-dev"] },
  { name: "libmid", deps: ["libbase-dev"], runtime: ["libbase"] },
  { name: "app", deps: ["libmid"], runtime: ["libmid"] },
  { name: "leaf", deps: ["libbase-dev"] },
  { name: "solo" },
];

/** A distribution in `name`, and an identical copy (same key) in `name-copy`. */
async function twoCopies(name: string, recipes: SynthRecipe[]): Promise<[string, string]> {
  const a = join(work, name);
  await writeDistro(a, { upstream: up, recipes });
  const b = join(work, `${name}-copy`);
  cpSync(a, b, { recursive: true });
  return [a, b];
}

describe("kiln build --all --queue", () => {
  it("three workers build the distribution; every package is byte-identical to a local build's", async () => {
    const [local, dist] = await twoCopies("eq", SHAPE);
    const redis = await startRedis(join(work, "redis-eq"));
    try {
      const l = await kilnAsync(["build", "--all", "--cache-dir", join(work, "cache-local")], { cwd: local, env: ENV });
      expect(l.status, l.stderr).toBe(0);
      const ws = ["w1", "w2", "w3"].map((n) => worker(dist, redis, "eq", n));
      await Promise.all(ws.map((w) => w.waitFor(/ready on redis:\/\//)));
      const c = coordinator(dist, redis, "eq");
      const r = await c.done;
      expect(r.status, c.out()).toBe(0);
      expect(r.stdout).toMatch(/5 built, 0 failed/);
      expect(await indexOf(dist)).toEqual(await indexOf(local));
      for (const f of readdirSync(join(local, "out/x86_64")).filter((x) => x.endsWith(".apk")))
        expect(readFileSync(join(dist, "out/x86_64", f)).equals(readFileSync(join(local, "out/x86_64", f))), f).toBe(
          true,
        );
      // The build keys recorded are the local build's too: a local plan afterwards has nothing to do.
      const p = await kilnAsync(["plan", "--json", "--cache-dir", join(work, "cache-local")], { cwd: dist, env: ENV });
      expect(JSON.parse(p.stdout).plans[0].builds).toEqual([]);
      const ln = lanes(dist);
      expect(ln.entries.map((e) => e.recipe).sort()).toEqual(["app", "leaf", "libbase", "libmid", "solo"]);
      expect(ln.entries.every((e) => e.status === "built" && /^w[123]$/.test(e.worker ?? ""))).toBe(true);
      expect(readFileSync(join(dist, "out/queue-report.html"), "utf8")).toMatch(/class="lane"/);
      // Progress per worker, and the artifact repository the workers built against holds the same packages.
      expect(c.out()).toMatch(/merged libbase from w[123]/);
      expect(awsKeys(s3.endpoint, BUCKET, "eq/repo/x86_64/").filter((k) => k.endsWith(".apk"))).toHaveLength(6);
    } finally {
      await redis.stop();
    }
  }, 600_000);

  it("with a bootstrap: the stage-0 package lands in the bootstrap repository, workers build against it, and every package is a local build's", async () => {
    const local = join(work, "boot");
    await writeBootstrapSynth(local, up, true);
    const dist = join(work, "boot-copy");
    cpSync(local, dist, { recursive: true });
    const redis = await startRedis(join(work, "redis-boot"));
    try {
      const l = await kilnAsync(["build", "--all", "--cache-dir", join(work, "cache-local")], { cwd: local, env: ENV });
      expect(l.status, l.stderr).toBe(0);
      const w = worker(dist, redis, "boot", "w1");
      await w.waitFor(/ready on redis:\/\//);
      const c = coordinator(dist, redis, "boot");
      const r = await c.done;
      expect(r.status, `${c.out()}\n--- worker:\n${w.out()}`).toBe(0);
      expect(r.stdout).toMatch(/4 built, 0 failed/);
      const idx = async (d: string, repo: string) =>
        (await readIndex(readFileSync(join(d, repo, "x86_64/APKINDEX.tar.gz")))).records
          .map((x) => `${x.name}-${x.version} C:${x.checksum}`)
          .sort();
      expect(await idx(dist, "out")).toEqual(await idx(local, "out"));
      expect(await idx(dist, "out/bootstrap")).toEqual(await idx(local, "out/bootstrap"));
      expect((await idx(dist, "out/bootstrap")).map((x) => x.split(" ")[0])).toEqual(["synth-bootstrap-1.0-r0"]);
      expect((await idx(dist, "out")).map((x) => x.split(" ")[0])).toEqual([
        "app-1.0-r0",
        "synth-1.0-r0",
        "tool-1.0-r0",
      ]);
      // The worker built synth against the stage-0 package it synced from the artifact store's bootstrap repository.
      expect(awsKeys(s3.endpoint, BUCKET, "boot/bootstrap/x86_64/").filter((k) => k.endsWith(".apk"))).toEqual([
        "boot/bootstrap/x86_64/synth-bootstrap-1.0-r0.apk",
      ]);
      expect(awsKeys(s3.endpoint, BUCKET, "boot/repo/x86_64/").filter((k) => k.includes("synth-bootstrap"))).toEqual(
        [],
      );
    } finally {
      await redis.stop();
    }
  }, 600_000);

  it("a worker killed with kill -9 mid-build: another takes its job over, and only one attempt is merged", async () => {
    const recipes: SynthRecipe[] = [
      { name: "slow", script: "sleep 6" },
      { name: "after", deps: ["slow"] },
    ];
    const [, dist] = await twoCopies("kill", recipes);
    const redis = await startRedis(join(work, "redis-kill"));
    try {
      const w1 = worker(dist, redis, "kill", "doomed");
      await w1.waitFor(/ready on/);
      const c = coordinator(dist, redis, "kill");
      await w1.waitFor(/doomed: {3}\[1\/\d+\]/);
      w1.proc.kill("SIGKILL");
      await w1.done;
      const w2 = worker(dist, redis, "kill", "rescuer");
      const r = await c.done;
      expect(r.status, `${c.out()}\n--- rescuer:\n${w2.out()}`).toBe(0);
      expect(w2.out()).toMatch(/rescuer: slow 1\.0-r0/);
      expect(await indexOf(dist)).toEqual([
        expect.stringMatching(/^after-1\.0-r0 C:/),
        expect.stringMatching(/^slow-1\.0-r0 C:/),
      ]);
      const ln = lanes(dist);
      expect(ln.entries.find((e) => e.recipe === "slow")?.worker).toBe("rescuer");
      // Only the rescuer committed an attempt of slow (the killed one never wrote result.json).
      const results = awsKeys(s3.endpoint, BUCKET, "kill/attempts/").filter((k) => k.endsWith("/result.json"));
      expect(results.filter((k) => k.includes(".slow-"))).toHaveLength(1);
    } finally {
      await redis.stop();
    }
  }, 600_000);

  it("a poisoned job stops after its retry budget; its dependents are skipped and reported", async () => {
    const recipes: SynthRecipe[] = [
      { name: "poison", fail: true },
      { name: "victim", deps: ["poison"] },
      { name: "bystander" },
    ];
    const [, dist] = await twoCopies("poison", recipes);
    const redis = await startRedis(join(work, "redis-poison"));
    try {
      const w = worker(dist, redis, "poison", "w1");
      await w.waitFor(/ready on/);
      const c = coordinator(dist, redis, "poison", ["--keep-going", "--attempts", "2"]);
      const r = await c.done;
      expect(r.status, c.out()).toBe(1);
      const rep = report(dist);
      expect(rep.find((e) => e.recipe === "poison")).toMatchObject({ status: "failed" });
      expect(rep.find((e) => e.recipe === "poison")?.error).toMatch(/failed after 2 attempt/);
      expect(rep.find((e) => e.recipe === "victim")).toMatchObject({ status: "skipped", blockedBy: "poison" });
      expect(rep.find((e) => e.recipe === "bystander")).toMatchObject({ status: "built" });
      expect(r.stdout).toMatch(/skipped victim \(poison failed\)/);
      expect(w.out().match(/✗ poison/g)).toHaveLength(2);
    } finally {
      await redis.stop();
    }
  }, 600_000);

  it("a coordinator killed with kill -9 and started again resumes from the queue: nothing is built twice", async () => {
    const recipes: SynthRecipe[] = [
      { name: "first", script: "sleep 2" },
      { name: "second", deps: ["first"], script: "sleep 2" },
      { name: "third", deps: ["second"] },
    ];
    const [local, dist] = await twoCopies("restart", recipes);
    const redis = await startRedis(join(work, "redis-restart"));
    try {
      const w = worker(dist, redis, "restart", "w1");
      await w.waitFor(/ready on/);
      const c1 = coordinator(dist, redis, "restart");
      await c1.waitFor(/merged first from w1/);
      c1.proc.kill("SIGKILL");
      await c1.done;
      const c2 = coordinator(dist, redis, "restart");
      const r = await c2.done;
      expect(r.status, c2.out()).toBe(0);
      const l = await kilnAsync(["build", "--all", "--cache-dir", join(work, "cache-local")], { cwd: local, env: ENV });
      expect(l.status, l.stderr).toBe(0);
      expect(await indexOf(dist)).toEqual(await indexOf(local));
      // One committed attempt per recipe: the second coordinator found the first one's jobs instead of adding new ones.
      const results = awsKeys(s3.endpoint, BUCKET, "restart/attempts/").filter((k) => k.endsWith("/result.json"));
      expect(results.map((k) => /attempts\/x86_64\.(.+)-1\.0-r0\./.exec(k)?.[1]).sort()).toEqual([
        "first",
        "second",
        "third",
      ]);
    } finally {
      await redis.stop();
    }
  }, 600_000);

  it("Redis killed mid-build and restarted on its data: the build resumes and completes", async () => {
    const recipes: SynthRecipe[] = [
      { name: "slow", script: "sleep 5" },
      { name: "after", deps: ["slow"] },
    ];
    const [, dist] = await twoCopies("redis-restart", recipes);
    const dir = join(work, "redis-persist");
    let redis = await startRedis(dir, { persist: true });
    try {
      const w = worker(dist, redis, "redis-restart", "w1");
      await w.waitFor(/ready on/);
      const c = coordinator(dist, redis, "redis-restart");
      await w.waitFor(/w1: slow 1\.0-r0/);
      await redis.kill();
      await new Promise((r) => setTimeout(r, 2000));
      redis = await startRedis(dir, { persist: true, port: redis.port });
      const r = await c.done;
      expect(r.status, `${c.out()}\n--- worker:\n${w.out()}`).toBe(0);
      expect(await indexOf(dist)).toEqual([
        expect.stringMatching(/^after-1\.0-r0 C:/),
        expect.stringMatching(/^slow-1\.0-r0 C:/),
      ]);
    } finally {
      await redis.stop();
    }
  }, 600_000);

  it("refuses a job whose payload names no recipe of the checkout, or a path", async () => {
    const [, dist] = await twoCopies("hostile", [{ name: "solo" }]);
    const redis = await startRedis(join(work, "redis-hostile"));
    const q = new Queue("kiln-builds", { connection: { host: "127.0.0.1", port: redis.port } });
    try {
      const w = worker(dist, redis, "hostile", "w1");
      await w.waitFor(/ready on/);
      const base = {
        v: 1,
        arch: "x86_64",
        fullVersion: "1.0-r0",
        epoch: 0,
        own: "0".repeat(64),
        keyName: "synth.rsa.pub",
        sourceDateEpoch: 0,
        runTests: false,
      };
      await q.add("build", { ...base, recipe: "../../etc/passwd" }, { jobId: "evil-1", attempts: 3 });
      await q.add("build", { ...base, recipe: "nosuch" }, { jobId: "evil-2", attempts: 3 });
      await q.add("build", { ...base, recipe: "solo", extra: "x" }, { jobId: "evil-3", attempts: 3 });
      await q.add("build", { ...base, recipe: "solo" }, { jobId: "evil-4", attempts: 3 });
      for (let i = 0; i < 240 && (await q.getFailedCount()) < 4; i++) await new Promise((r) => setTimeout(r, 250));
      const failed = await q.getFailed();
      const reason = Object.fromEntries(failed.map((j) => [j.id, `${j.failedReason} (${j.attemptsMade})`]));
      expect(reason["evil-1"]).toMatch(/recipe "\.\.\/\.\.\/etc\/passwd"|invalid package name|recipe/);
      expect(reason["evil-2"]).toMatch(/no recipe nosuch/);
      expect(reason["evil-3"]).toMatch(/Unrecognized key/);
      expect(reason["evil-4"]).toMatch(/compiles differently/);
      // Refused for good: one attempt each, no retries.
      for (const id of ["evil-1", "evil-2", "evil-3", "evil-4"]) expect(reason[id]).toMatch(/\(1\)$/);
      expect(awsKeys(s3.endpoint, BUCKET, "hostile/")).toEqual([]);
    } finally {
      await q.close();
      await redis.stop();
    }
  }, 300_000);

  it("rejects a malformed --queue URL with one clear error", async () => {
    const r = await kilnAsync(["worker", "--queue", "http://127.0.0.1:1", "--artifacts", `s3://${BUCKET}/x`], {
      cwd: join(work, "eq"),
      env: ENV,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--queue: unsupported scheme "http:"; expected redis:\/\//);
  });
});
