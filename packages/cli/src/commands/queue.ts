// `kiln build --all --queue redis://… --artifacts s3://…` (the coordinator)
// and `kiln worker` (a builder on any machine): @kiln/queue.

import { defaultCacheDir, type S3Options } from "@kiln/repo";
import { findDistroFile, loadDistro } from "@kiln/distro";
import { opt } from "../options.js";
import { defineCommand, number, string } from "../program.js";
import { UserError, type Io } from "../util.js";
import { distroBuild, type DistroBuildValues } from "./distro.js";

export interface QueueValues {
  queue?: string | undefined;
  artifacts?: string | undefined;
  endpointUrl?: string | undefined;
  pathStyle?: boolean;
  attempts?: number | undefined;
}

function s3Of(v: { endpointUrl?: string | undefined; pathStyle?: boolean }): S3Options {
  const o: S3Options = {};
  if (v.endpointUrl) o.endpointUrl = v.endpointUrl;
  if (v.pathStyle) o.pathStyle = true;
  return o;
}

/** The coordinator: the plan's builds go to the queue; finished ones are merged into OUT and the artifact repository. */
export async function queueBuild(values: DistroBuildValues & QueueValues, io: Io): Promise<number> {
  if (!values.queue) throw new UserError("--queue redis://HOST:PORT is required", 2);
  if (!values.artifacts)
    throw new UserError("--queue needs --artifacts s3://BUCKET/PREFIX (where workers put packages)", 2);
  const { openCoordinator, writeLaneReport } = await import("@kiln/queue");
  const json = values.json;
  const coord = await openCoordinator({
    queueUrl: values.queue,
    artifactsUrl: values.artifacts,
    s3: s3Of(values),
    ...(values.attempts !== undefined ? { attempts: values.attempts } : {}),
    onEvent: (e) => {
      if (json) return;
      if (e.kind === "merged") io.err(`  merged ${e.recipe} from ${e.worker} (${e.packages} package(s))`);
      else if (e.kind === "waiting") io.err(`  ${e.message}`);
    },
  });
  let outDir: string | undefined;
  try {
    return await distroBuild(
      {
        ...values,
        // How many jobs are in the queue at once; the workers decide how many run.
        jobs: values.jobs ?? 256,
        makeBuilder: (lo) => {
          outDir = lo.distro.outDir;
          return coord.makeBuilder(lo);
        },
      },
      io,
    );
  } finally {
    if (outDir && coord.lanes.length) {
      const html = await writeLaneReport(outDir, coord.lanes);
      if (!json) io.err(`lanes: ${html}`);
    }
    await coord.close();
  }
}

export const workerCmd = defineCommand({
  name: "worker",
  summary: "build the distribution's queued jobs on this machine (see kiln build --all --queue)",
  usage:
    "kiln worker --queue redis://HOST:PORT --artifacts s3://BUCKET/PREFIX [--concurrency N] [--name W] [--distro FILE] [--cache-dir D] [--endpoint-url URL] [--path-style] [--lock-seconds N] [--json]",
  details: `Takes build jobs from the Redis queue a coordinator (kiln build --all --queue … --artifacts …) fills,
and builds each in its own bubblewrap sandbox from this checkout of the distribution (the job names a
recipe; it must compile here exactly as at the coordinator) against the artifact repository
(ARTIFACTS/repo, the coordinator's signed repository) and distro.yaml's upstream repositories. The
packages and the build's record go to ARTIFACTS/attempts/JOB/ATTEMPT/, result.json last. A worker
needs no signing key: the coordinator re-signs what it merges. S3 credentials come from the usual
AWS environment. A worker that dies mid-build (kill -9, a lost machine) stops renewing its job's lock;
after --lock-seconds another worker takes the job over. Runs until SIGINT/SIGTERM (finishing the
jobs it holds).`,
  options: {
    queue: string(
      "--queue <URL>",
      "the Redis of the coordinator: redis://[USER:PASSWORD@]HOST[:PORT][/DB] or rediss://",
    ),
    artifacts: string("--artifacts <S3URL>", "the artifact store, s3://BUCKET/PREFIX"),
    concurrency: number("--concurrency <N>", "builds at once on this machine (default 1)", { min: 1 }),
    name: string("--name <W>", "this worker's name in progress and reports (default HOST:PID)"),
    lockSeconds: number("--lock-seconds <N>", "a job's lock; a worker silent this long is taken as dead (default 30)", {
      min: 1,
    }),
    distro: opt.distro,
    cacheDir: opt.cacheDir,
    endpointUrl: opt.endpointUrl,
    pathStyle: opt.pathStyle,
    json: opt.json,
  },
  async run(v, _args, io) {
    if (!v.queue) throw new UserError("--queue redis://HOST:PORT is required", 2);
    if (!v.artifacts) throw new UserError("--artifacts s3://BUCKET/PREFIX is required", 2);
    const { startWorker, parseRedisUrl, openArtifacts } = await import("@kiln/queue");
    parseRedisUrl(v.queue);
    await openArtifacts(v.artifacts, {}).close();
    const f = v.distro ?? findDistroFile(process.cwd());
    if (!f) throw new UserError("no distro.yaml here or in any parent directory (give --distro FILE)");
    const distro = await loadDistro(f);
    const w = await startWorker({
      distro,
      queueUrl: v.queue,
      artifactsUrl: v.artifacts,
      s3: s3Of(v),
      cacheDir: v.cacheDir ?? defaultCacheDir(io.env),
      ...(v.concurrency !== undefined ? { concurrency: v.concurrency } : {}),
      ...(v.name !== undefined ? { name: v.name } : {}),
      ...(v.lockSeconds !== undefined ? { lockMs: v.lockSeconds * 1000 } : {}),
      onEvent: (e) => {
        if (v.json) {
          if (e.kind !== "build") io.out(JSON.stringify(e));
          return;
        }
        if (e.kind === "ready") io.err(`${e.worker}: ready on ${e.queue} (${e.recipes} recipes)`);
        else if (e.kind === "job-start") io.err(`${e.worker}: ${e.recipe} ${e.fullVersion} (attempt ${e.attempt})`);
        else if (e.kind === "build" && e.event.kind === "step")
          io.err(`${e.worker}:   [${e.event.index}/${e.event.total}] ${e.event.step}`);
        else if (e.kind === "job-done") io.err(`${e.worker}: ✓ ${e.recipe} in ${(e.ms / 1000).toFixed(1)} s`);
        else if (e.kind === "job-failed")
          io.err(`${e.worker}: ✗ ${e.recipe}${e.final ? "" : " (will be retried)"}: ${e.error.split("\n")[0]}`);
        else if (e.kind === "error") io.err(`${e.worker}: ${e.message}`);
      },
    });
    const stop = () => void w.close();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    await w.closed;
    await w.close().catch(() => undefined);
    return 0;
  },
});
