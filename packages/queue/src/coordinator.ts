// The coordinator: @kiln/distro's runPlan schedules the plan as for a local
// build (dependency order, failures skipping their dependents, release
// numbers, build keys), with a Builder that hands each build to the queue
// instead of running it here.
//
// Why the coordinator releases ready jobs rather than a BullMQ flow: a flow
// is a tree (a job has one parent), a distribution's graph is a DAG whose
// shared dependencies would have to be duplicated, and a dependent must be
// built against its dependencies' packages as merged into the signed index,
// which only the coordinator (holding the key) writes. So a job is added
// when its inputs are merged; its id is derived from what it builds, so a
// restarted coordinator finds the jobs of its previous run (running,
// completed not yet merged, failed) instead of adding new ones.
//
// A finished job's attempt is downloaded, checked (the recipe's outputs at
// the planned version, C: as the worker reported it), re-signed with the
// distribution's key, renamed into OUT/ARCH and merged into OUT's signed
// index, exactly as a local build publishes; then OUT is published to the
// artifact repository (publish(): create-only packages, converged index) for
// the next workers.

import { mkdir, mkdtemp, rename, readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  buildIndex,
  indexRecordForPackage,
  readIndex,
  resignPackage,
  type IndexRecord,
  type SigningKey,
} from "@kiln/apk";
import { joinUnder, writeFileAtomic } from "@kiln/core";
import {
  bootstrapRepoDir,
  buildKey,
  keyEnvironment,
  KeyStore,
  type Builder,
  type BuildJob,
  type EnvPackage,
  type KeyRecord,
  type LocalBuilderOptions,
} from "@kiln/distro";
import { publish, supersedeRecords, type S3Options } from "@kiln/repo";
import { Job, Queue } from "bullmq";
import { fetchAttemptPackage, openArtifacts, readAttempt, removeQuietly, type Artifacts } from "./artifacts.js";
import {
  jobIdFor,
  parseMessage,
  parseRedisUrl,
  QUEUE_NAME,
  QueueError,
  redisOptions,
  returnSchema,
  type AttemptResult,
  type JobPayload,
} from "./messages.js";

export interface LaneEntry {
  recipe: string;
  fullVersion: string;
  arch: string;
  jobId: string;
  worker?: string;
  status: "built" | "failed";
  /** ms since the epoch. */
  queued: number;
  start?: number;
  end: number;
  attempts: number;
  error?: string;
}

export type CoordinatorEvent =
  | { kind: "progress"; jobId: string; recipe: string; worker: string; phase: string }
  | { kind: "merged"; jobId: string; recipe: string; worker: string; packages: number }
  | { kind: "waiting"; message: string };

export interface CoordinatorOptions {
  queueUrl: string;
  artifactsUrl: string;
  s3: S3Options;
  /** Attempts per job (the retry budget), default 3. */
  attempts?: number;
  /** How often job states are read, ms. */
  pollMs?: number;
  onEvent?: (e: CoordinatorEvent) => void;
}

export interface Coordinator {
  makeBuilder(o: LocalBuilderOptions): Builder;
  /** One entry per finished job, for the lane timeline. */
  lanes: LaneEntry[];
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Serialises the coordinator's writes to OUT and to the artifact repository. */
class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn);
    this.tail = p.catch(() => undefined);
    return p;
  }
}

export async function openCoordinator(o: CoordinatorOptions): Promise<Coordinator> {
  const target = parseRedisUrl(o.queueUrl);
  const art = openArtifacts(o.artifactsUrl, o.s3);
  const queue = new Queue(QUEUE_NAME, { connection: redisOptions(target) });
  await queue.waitUntilReady();
  const lanes: LaneEntry[] = [];
  const serial = new Serial();
  const published = new Set<string>();
  const c: Coordinator = {
    lanes,
    makeBuilder: (lo) => queueBuilder({ o, lo, art, queue, lanes, serial, published }),
    close: async () => {
      await queue.close();
      await art.close();
    },
  };
  return c;
}

interface BuilderCtx {
  o: CoordinatorOptions;
  lo: LocalBuilderOptions;
  art: Artifacts;
  queue: Queue;
  lanes: LaneEntry[];
  serial: Serial;
  /** Architectures whose existing OUT was published before the first job. */
  published: Set<string>;
}

/** Publish OUT/ARCH and the bootstrap repository OUT/bootstrap/ARCH to the artifact store (what workers build against). */
async function publishOut(ctx: BuilderCtx, arch: string): Promise<void> {
  const out = ctx.lo.distro.outDir;
  for (const [store, dir] of [
    [ctx.art.repo, out],
    [ctx.art.bootstrap, bootstrapRepoDir(out)],
  ] as const) {
    const idx = await readFile(join(dir, arch, "APKINDEX.tar.gz")).catch(() => undefined);
    if (!idx) continue;
    await publish(store, dir, {
      signingKey: ctx.lo.signingKey,
      archs: [arch],
      allowUnsatisfied: true,
      sourceDateEpoch: ctx.lo.sourceDateEpoch,
    });
  }
}

function queueBuilder(ctx: BuilderCtx): Builder {
  return async (job, progress) => {
    const { lo } = ctx;
    if (!ctx.published.has(job.arch)) {
      ctx.published.add(job.arch);
      await ctx.serial.run(() => publishOut(ctx, job.arch));
    }
    const payload: JobPayload = {
      v: 1,
      recipe: job.recipe.name,
      arch: job.arch,
      fullVersion: job.fullVersion,
      epoch: job.epoch,
      own: job.recipe.own,
      keyName: lo.signingKey.name,
      sourceDateEpoch: lo.sourceDateEpoch,
      runTests: lo.runTests,
      ...(job.guestExclude.length ? { guestExclude: job.guestExclude } : {}),
    };
    const env = keyEnvironment(job.resolveEnvironment(), job.planned.standIns);
    const jobId = jobIdFor(payload, env);
    const queued = Date.now();
    const attempts = ctx.o.attempts ?? 3;
    // A step event opens runPlan's gate: the next ready build is queued at once, not after this one.
    let steps = 0;
    const step = (text: string) =>
      progress({ kind: "step", package: payload.recipe, step: text, index: ++steps, total: 0, native: true });
    const done = await runJob(ctx, jobId, payload, attempts, {
      queued: (how) => step(how ? `queued (${how})` : "queued"),
      phase: (worker, phase) => {
        step(`${worker}: ${phase}`);
        ctx.o.onEvent?.({ kind: "progress", jobId, recipe: payload.recipe, worker, phase });
      },
    });
    const lane: LaneEntry = {
      recipe: payload.recipe,
      fullVersion: payload.fullVersion,
      arch: payload.arch,
      jobId,
      status: done.ok ? "built" : "failed",
      queued,
      end: Date.now(),
      attempts: done.attempts,
    };
    if (done.worker) lane.worker = done.worker;
    if (!done.ok) {
      lane.error = done.error;
      ctx.lanes.push(lane);
      throw new QueueError(
        `${payload.recipe} ${payload.fullVersion}: failed after ${done.attempts} attempt(s) on the queue: ${done.error}`,
      );
    }
    const merged = await ctx.serial.run(() => mergeAttempt(ctx, job, jobId, done.ret!.attempt));
    lane.worker = merged.worker;
    lane.start = merged.start;
    ctx.lanes.push(lane);
    ctx.o.onEvent?.({
      kind: "merged",
      jobId,
      recipe: payload.recipe,
      worker: merged.worker,
      packages: merged.records.length,
    });
    return { records: merged.records, guest: merged.guest, log: merged.log };
  };
}

interface JobDone {
  ok: boolean;
  attempts: number;
  worker?: string;
  error?: string;
  ret?: { attempt: string; worker: string };
}

/** Add the job (or find the one a previous coordinator added) and wait until it completes or fails for good. */
async function runJob(
  ctx: BuilderCtx,
  jobId: string,
  payload: JobPayload,
  attempts: number,
  on: { queued: (how?: string) => void; phase: (worker: string, phase: string) => void },
): Promise<JobDone> {
  const { queue } = ctx;
  const pollMs = ctx.o.pollMs ?? 500;
  let added = false;
  let lastPhase = "";
  let rereads = 0;
  for (;;) {
    try {
      if (!added) {
        const existing = await Job.fromId(queue, jobId);
        if (existing && (await existing.getState()) === "failed") {
          // A re-run retries what failed before (the retry budget starts again).
          await existing.retry("failed", { resetAttemptsMade: true });
          on.queued("failed before; retrying");
        } else if (existing) {
          on.queued("found from a previous run");
        } else {
          await queue.add("build", payload, {
            jobId,
            attempts,
            backoff: { type: "fixed", delay: 1000 },
            removeOnComplete: false,
            removeOnFail: false,
          });
          on.queued();
        }
        added = true;
      }
      const j = await Job.fromId(queue, jobId);
      if (!j) {
        added = false;
        continue;
      }
      const state = await j.getState();
      const prog = j.progress as { worker?: unknown; phase?: unknown } | undefined;
      if (prog && typeof prog === "object" && typeof prog.worker === "string" && typeof prog.phase === "string") {
        const key = `${prog.worker}/${prog.phase}/${j.attemptsMade}`;
        if (key !== lastPhase) {
          lastPhase = key;
          on.phase(prog.worker.slice(0, 128), prog.phase.slice(0, 32));
        }
      }
      // The job was read before its state: one that completed in between was read without its
      // return value. Read it again (a few times: a worker that returned nothing is an error below).
      if (state === "completed" && j.returnvalue == null && rereads++ < 20) {
        await sleep(50);
        continue;
      }
      if (state === "completed") {
        const ret = parseMessage(returnSchema, j.returnvalue as unknown, `job ${jobId}: return value`);
        return { ok: true, attempts: j.attemptsMade, worker: ret.worker, ret };
      }
      if (state === "failed")
        return { ok: false, attempts: j.attemptsMade, error: (j.failedReason ?? "failed").slice(0, 4000) };
    } catch (e) {
      if (e instanceof QueueError) throw e;
      // Redis away (restarting): keep asking; ioredis reconnects.
      ctx.o.onEvent?.({ kind: "waiting", message: `queue unreachable (${(e as Error).message}); retrying` });
      await sleep(Math.min(2000, pollMs * 2));
    }
    await sleep(pollMs);
  }
}

interface Merged {
  records: IndexRecord[];
  guest: Array<{ name: string; version: string; checksum: string }>;
  worker: string;
  start: number;
  log?: string;
}

/** The build key record runPlan appends after the build (the same record), appended before the index names the packages. */
async function recordKey(job: BuildJob, res: AttemptResult, records: IndexRecord[], outDir: string): Promise<void> {
  const producer = new Map(job.resolveEnvironment().map((e) => [e.name, e.recipe]));
  const guest: EnvPackage[] = res.guest.map((g) => {
    const e: EnvPackage = { name: g.name, version: g.version, checksum: g.checksum, repository: "" };
    const r = producer.get(g.name);
    if (r) e.recipe = r;
    return e;
  });
  const r = job.recipe;
  const environment = keyEnvironment(guest, job.planned.standIns);
  const rec: KeyRecord = {
    recipe: r.name,
    path: r.path,
    arch: job.arch,
    version: r.version,
    epoch: r.epoch,
    fullVersion: job.fullVersion,
    key: buildKey(r.own, environment),
    own: r.own,
    files: r.files,
    environment,
    standIns: job.planned.standIns,
    packages: records.map((x) => ({ name: x.name, version: x.version, checksum: x.checksum ?? "" })),
  };
  await new KeyStore(joinUnder(outDir, { value: job.arch, what: "architecture" })).append(rec);
}

/** Bring a committed attempt into OUT/ARCH (checked, re-signed), merge the index, publish to the artifact repository. */
async function mergeAttempt(ctx: BuilderCtx, job: BuildJob, jobId: string, token: string): Promise<Merged> {
  const { lo, art } = ctx;
  const arch = job.arch;
  const outputs = job.recipe.outputs.map((x) => x.name);
  const res = await readAttempt(art, jobId, token, {
    recipe: job.recipe.name,
    arch,
    fullVersion: job.fullVersion,
    outputs,
  });
  // A stage-0 recipe's packages go to the bootstrap repository.
  const repoRoot = job.stage0Repository ? bootstrapRepoDir(lo.distro.outDir) : lo.distro.outDir;
  const dir = joinUnder(repoRoot, { value: arch, what: "architecture" });
  await mkdir(dir, { recursive: true });
  const tmp = await mkdtemp(join(dir, ".kiln-queue-"));
  const records: IndexRecord[] = [];
  try {
    const staged: Array<{ from: string; to: string }> = [];
    for (const p of res.packages) {
      const file = `${p.name}-${p.version}.apk`;
      const from = joinUnder(tmp, { value: file, what: "package file" });
      await fetchAttemptPackage(art, jobId, token, p, from);
      await resignPackage(from, [lo.signingKey as SigningKey], "RSA256", lo.sourceDateEpoch);
      const rec = await indexRecordForPackage(from);
      if (rec.name !== p.name || rec.version !== p.version || rec.checksum !== p.checksum)
        throw new QueueError(
          `${art.url}/attempts/${jobId}/${token}/${file}: is ${rec.name}-${rec.version} C:${rec.checksum ?? "?"}, the worker reported C:${p.checksum}`,
        );
      records.push(rec);
      staged.push({ from, to: joinUnder(dir, { value: file, what: "package file" }) });
    }
    // The build key first: a coordinator killed after the index write still finds the build as its own on restart.
    await recordKey(job, res, records, lo.distro.outDir);
    for (const s of staged) await rename(s.from, s.to);
    const indexFile = join(dir, "APKINDEX.tar.gz");
    const old = await readFile(indexFile).catch(() => undefined);
    const existing = old ? (await readIndex(old, { subject: indexFile })).records : [];
    await writeFileAtomic(
      indexFile,
      buildIndex(supersedeRecords(existing, records).records, {
        signingKeys: [lo.signingKey],
        sourceDateEpoch: lo.sourceDateEpoch,
      }),
    );
    await writeFileAtomic(join(repoRoot, lo.signingKey.name), lo.publicKeyPem);
  } finally {
    await removeQuietly(tmp);
  }
  let log: string | undefined;
  if (res.logTail !== undefined) {
    const logDir = joinUnder(lo.distro.outDir, "logs", { value: arch, what: "architecture" });
    await mkdir(logDir, { recursive: true });
    log = joinUnder(logDir, { value: `${job.recipe.name}.log`, what: "log file" });
    await writeFileAtomic(log, `# built by ${res.worker} (job ${jobId}, attempt ${token})\n${res.logTail}`);
  }
  await publishOut(ctx, arch);
  const m: Merged = { records, guest: res.guest, worker: res.worker, start: res.start };
  if (log) m.log = log;
  return m;
}
