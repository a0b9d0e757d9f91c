// A worker: takes build jobs from the queue and builds each in its own
// sandbox (@kiln/builder, bubblewrap) against the artifact repository (a
// local mirror of it) and the distribution's upstream repositories, then
// uploads the packages as one committed attempt. It needs the distribution's
// checkout (recipes, pipelines, distro.yaml), a Redis URL and S3 credentials:
// no signing key (packages are signed with a throwaway key; the coordinator
// re-signs them).

import { mkdtemp, readFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey, parseSigningKey, type SigningKey } from "@kiln/apk";
import { buildRecipe, type BuildEvent, type BuildResult } from "@kiln/builder";
import { loadRecipes, readKeys, type Distro, type RecipeNode } from "@kiln/distro";
import type { S3Options } from "@kiln/repo";
import { UnrecoverableError, Worker, type Job } from "bullmq";
import {
  commitAttempt,
  newAttemptToken,
  openArtifacts,
  removeQuietly,
  syncMirror,
  type Artifacts,
} from "./artifacts.js";
import {
  checkPayloadNames,
  jobPayloadSchema,
  MAX_LOG_TAIL,
  parseMessage,
  parseRedisUrl,
  QUEUE_NAME,
  redisOptions,
  QueueError,
  type AttemptResult,
  type JobPayload,
  type JobReturn,
} from "./messages.js";

export type WorkerEvent =
  | { kind: "ready"; worker: string; queue: string; recipes: number }
  | { kind: "job-start"; worker: string; jobId: string; recipe: string; fullVersion: string; attempt: number }
  | { kind: "build"; worker: string; jobId: string; event: BuildEvent }
  | { kind: "job-done"; worker: string; jobId: string; recipe: string; ms: number; attemptToken: string }
  | { kind: "job-failed"; worker: string; jobId: string; recipe: string; error: string; final: boolean }
  | { kind: "error"; worker: string; message: string };

export interface WorkerOptions {
  distro: Distro;
  queueUrl: string;
  artifactsUrl: string;
  s3: S3Options;
  cacheDir: string;
  concurrency?: number;
  /** This worker's name in reports (default HOST:PID). */
  name?: string;
  /** Lock duration of a job, ms: a worker silent this long is taken as dead and its job retried. */
  lockMs?: number;
  /** Where mirrors and build outputs go (default: a new temporary directory). */
  workDir?: string;
  onEvent?: (e: WorkerEvent) => void;
}

export interface RunningWorker {
  name: string;
  /** Resolves when the worker has stopped. */
  closed: Promise<void>;
  close(): Promise<void>;
}

function tail(s: string, n: number): string {
  return s.length > n ? s.slice(s.length - n) : s;
}

/** The record of a finished build, as result.json holds it. */
async function attemptResult(
  worker: string,
  jobId: string,
  p: JobPayload,
  start: number,
  result: BuildResult,
): Promise<AttemptResult> {
  const logText = await readFile(result.log, "utf8").catch(() => "");
  return {
    v: 1,
    jobId,
    recipe: p.recipe,
    arch: p.arch,
    fullVersion: p.fullVersion,
    worker,
    start,
    end: Date.now(),
    packages: result.packages.map((x) => ({ name: x.name, version: p.fullVersion, checksum: x.checksum })),
    guest: result.guest,
    logTail: tail(logText, MAX_LOG_TAIL),
  };
}

/** One process's state: the recipe set per architecture, the throwaway key, one mirror sync at a time. */
class BuildWorker {
  private readonly recipes = new Map<string, Map<string, RecipeNode>>();
  private key?: { key: SigningKey; publicPem: Buffer };
  private syncing: Promise<unknown> = Promise.resolve();
  private upstreamKeys?: Array<{ name: string; pem: Buffer }>;

  constructor(
    private readonly o: WorkerOptions,
    readonly name: string,
    private readonly art: Artifacts,
    private readonly workDir: string,
  ) {}

  async recipesFor(arch: string): Promise<Map<string, RecipeNode>> {
    let m = this.recipes.get(arch);
    if (!m) {
      const loaded = await loadRecipes(this.o.distro, arch);
      m = new Map(loaded.recipes.map((r) => [r.name, r]));
      this.recipes.set(arch, m);
    }
    return m;
  }

  private async signingKey(): Promise<{ key: SigningKey; publicPem: Buffer }> {
    if (!this.key) {
      const k = await generateKey(2048);
      this.key = { key: parseSigningKey(k.privatePem, "kiln-worker.rsa.pub"), publicPem: Buffer.from(k.publicPem) };
    }
    return this.key;
  }

  /** The payload checked against this checkout: a known recipe of a known architecture, compiled the same. */
  async validate(job: Job): Promise<{ p: JobPayload; recipe: RecipeNode }> {
    const what = `job ${job.id ?? "?"}`;
    const p = parseMessage(jobPayloadSchema, job.data as unknown, what);
    checkPayloadNames(p, what);
    if (!this.o.distro.architectures.includes(p.arch))
      throw new QueueError(`${what}: architecture ${p.arch} is not one of ${this.o.distro.name}'s`);
    const recipe = (await this.recipesFor(p.arch)).get(p.recipe);
    if (!recipe) throw new QueueError(`${what}: no recipe ${p.recipe} in ${this.o.distro.recipesDir}`);
    if (recipe.own !== p.own)
      throw new QueueError(
        `${what}: ${p.recipe} compiles differently in this worker's checkout (hash ${recipe.own.slice(0, 12)}, the coordinator's ${p.own.slice(0, 12)}); check out the coordinator's revision`,
      );
    return { p, recipe };
  }

  /**
   * Report a phase on the job (what the coordinator shows). Best effort: a
   * Redis restart between two phases must not fail a build that is otherwise
   * fine (the job's lock and result go through BullMQ, which retries them).
   */
  private async progress(job: Job, data: { worker: string; phase: string; at: number }): Promise<void> {
    try {
      await job.updateProgress(data);
    } catch (e) {
      this.o.onEvent?.({
        kind: "error",
        worker: this.name,
        message: `progress ${data.phase}: ${(e as Error).message}`,
      });
    }
  }

  /** Bring the artifact store's repository and bootstrap repository into local mirrors (one sync at a time): the repositories a build resolves from, and the distribution's key. */
  private async sync(p: JobPayload): Promise<{ key: Buffer | undefined; repositories: string[] }> {
    const mirror = join(this.workDir, "mirror");
    const bootstrapMirror = join(this.workDir, "mirror-bootstrap");
    const sync = this.syncing.then(async () => {
      const key = await syncMirror(this.art, p.arch, p.keyName, mirror);
      const boot = await syncMirror(this.art, p.arch, p.keyName, bootstrapMirror, "bootstrap");
      return { key: key ?? boot, repositories: [...(key ? [mirror] : []), ...(boot ? [bootstrapMirror] : [])] };
    });
    this.syncing = sync.catch(() => undefined);
    return sync;
  }

  async process(job: Job): Promise<JobReturn> {
    let checked: { p: JobPayload; recipe: RecipeNode };
    try {
      checked = await this.validate(job);
    } catch (e) {
      // A payload this checkout cannot build never will: no retries.
      throw new UnrecoverableError((e as Error).message);
    }
    const { p, recipe } = checked;
    const emit = this.o.onEvent ?? (() => undefined);
    const jobId = job.id!;
    const start = Date.now();
    emit({
      kind: "job-start",
      worker: this.name,
      jobId,
      recipe: p.recipe,
      fullVersion: p.fullVersion,
      attempt: job.attemptsMade + 1,
    });
    await this.progress(job, { worker: this.name, phase: "sync", at: start });
    const synced = await this.sync(p);
    const distroKey = synced.key;
    const out = await mkdtemp(join(this.workDir, "out-"));
    try {
      const key = await this.signingKey();
      this.upstreamKeys ??= await readKeys(this.o.distro.upstream.keyring);
      const keyring = [...this.upstreamKeys, ...(distroKey ? [{ name: p.keyName, pem: distroKey }] : [])];
      await this.progress(job, { worker: this.name, phase: "build", at: Date.now() });
      const result = await buildRecipe(recipe.file, {
        arch: p.arch,
        outDir: out,
        signingKey: key.key,
        publicKeyPem: key.publicPem,
        repositoryAppend: [...synced.repositories, ...this.o.distro.upstream.repositories],
        keyringAppend: keyring,
        pipelineDirs: this.o.distro.pipelineDirs,
        cacheDir: this.o.cacheDir,
        sourceDateEpoch: p.sourceDateEpoch,
        mirrors: { mirrors: this.o.distro.mirrors },
        distroId: this.o.distro.id,
        runTests: p.runTests,
        epochOverride: p.epoch,
        onEvent: (event) => emit({ kind: "build", worker: this.name, jobId, event }),
        ...(recipe.environment ? { environment: recipe.environment } : {}),
        ...(p.guestExclude?.length ? { guestExclude: p.guestExclude } : {}),
      });
      const token = newAttemptToken();
      const res = await attemptResult(this.name, jobId, p, start, result);
      await this.progress(job, { worker: this.name, phase: "upload", at: Date.now() });
      await commitAttempt(
        this.art,
        jobId,
        token,
        result.packages.map((x) => ({ path: x.file, name: x.name, version: p.fullVersion })),
        res,
      );
      emit({
        kind: "job-done",
        worker: this.name,
        jobId,
        recipe: p.recipe,
        ms: Date.now() - start,
        attemptToken: token,
      });
      return { attempt: token, worker: this.name };
    } finally {
      await removeQuietly(out);
    }
  }
}

/** Start a worker; it runs until close() (or the process ends). */
export async function startWorker(o: WorkerOptions): Promise<RunningWorker> {
  const target = parseRedisUrl(o.queueUrl);
  const name = o.name ?? `${hostname()}:${process.pid}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/.test(name))
    throw new QueueError(`--name: ${JSON.stringify(name)}: letters, digits and . _ : @ - only (at most 128)`);
  const art = openArtifacts(o.artifactsUrl, o.s3);
  const workDir = o.workDir ?? (await mkdtemp(join(tmpdir(), "kiln-worker-")));
  const bw = new BuildWorker(o, name, art, workDir);
  const emit = o.onEvent ?? (() => undefined);
  let recipes = 0;
  for (const arch of o.distro.architectures) recipes += (await bw.recipesFor(arch)).size;
  const lockMs = o.lockMs ?? 30_000;
  const worker = new Worker(QUEUE_NAME, (job) => bw.process(job), {
    connection: redisOptions(target),
    concurrency: Math.max(1, o.concurrency ?? 1),
    lockDuration: lockMs,
    stalledInterval: Math.max(1000, Math.floor(lockMs / 2)),
    maxStalledCount: 2,
    autorun: false,
  });
  worker.on("failed", (job, err) => {
    if (!job) return;
    const final = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    emit({
      kind: "job-failed",
      worker: name,
      jobId: job.id ?? "?",
      recipe: String((job.data as { recipe?: unknown }).recipe ?? "?").slice(0, 128),
      error: err.message,
      final,
    });
  });
  worker.on("error", (err) => emit({ kind: "error", worker: name, message: err.message }));
  await worker.waitUntilReady();
  emit({ kind: "ready", worker: name, queue: target.display, recipes });
  const closed = worker.run();
  return {
    name,
    closed,
    close: async () => {
      await worker.close();
      await art.close();
      if (!o.workDir) await removeQuietly(workDir);
    },
  };
}
