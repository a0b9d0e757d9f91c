// The artifact store: one S3 prefix shared by the coordinator and the
// workers (s3://BUCKET/PREFIX). Layout:
//
//   PREFIX/repo/…                      the distribution's repository as the coordinator
//                                      published it (signed index, packages, key, build keys):
//                                      what workers build against
//   PREFIX/bootstrap/…                 its bootstrap repository (OUT/bootstrap: the stage-0
//                                      packages), which workers build against too
//   PREFIX/attempts/JOB/ATTEMPT/NAME-VERSION.apk
//   PREFIX/attempts/JOB/ATTEMPT/result.json
//                                      one worker's try at one job. result.json is written
//                                      last: an attempt without it (a worker killed mid-upload)
//                                      is never read, and only the attempt a completed job
//                                      names is merged, so a retried job never doubles.
//
// Workers hold no signing key: their packages are signed with a throwaway
// key and the coordinator re-signs them with the distribution's (the control
// member, and so C:, does not change).

import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { readIndex, type IndexRecord } from "@kiln/apk";
import { joinUnder } from "@kiln/core";
import { parseS3Url, S3Store, type ObjectStore, type S3Options } from "@kiln/repo";
import { attemptResultSchema, MAX_RESULT_BYTES, parseMessage, QueueError, type AttemptResult } from "./messages.js";

const TYPE_APK = "application/vnd.apk";
const TYPE_JSON = "application/json";
const NO_CACHE = "no-cache";
/** A package larger than this in the artifact store is refused. */
export const MAX_PACKAGE_BYTES = 4 * 1024 ** 3;

export interface Artifacts {
  url: string;
  /** PREFIX/repo as a store (for publish()). */
  repo: ObjectStore;
  /** PREFIX/bootstrap: the bootstrap repository. */
  bootstrap: ObjectStore;
  /** PREFIX/attempts. */
  attempts: ObjectStore;
  close(): Promise<void>;
}

/** Open s3://BUCKET/PREFIX; anything but an s3:// URL is refused. */
export function openArtifacts(url: string, s3: S3Options): Artifacts {
  if (!url.startsWith("s3://"))
    throw new QueueError(`--artifacts: expected s3://BUCKET/PREFIX, got ${JSON.stringify(url)}`);
  const loc = parseS3Url(url);
  const repo = new S3Store({ bucket: loc.bucket, prefix: `${loc.prefix}repo/` }, s3);
  const bootstrap = new S3Store({ bucket: loc.bucket, prefix: `${loc.prefix}bootstrap/` }, s3);
  const attempts = new S3Store({ bucket: loc.bucket, prefix: `${loc.prefix}attempts/` }, s3);
  return {
    url,
    repo,
    bootstrap,
    attempts,
    close: async () => {
      await repo.close();
      await bootstrap.close();
      await attempts.close();
    },
  };
}

/** A fresh attempt token: time-ordered, unique across machines. */
export function newAttemptToken(): string {
  return `${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Upload one attempt's packages, then its result.json (the commit). */
export async function commitAttempt(
  a: Artifacts,
  jobId: string,
  token: string,
  files: Array<{ path: string; name: string; version: string }>,
  result: AttemptResult,
): Promise<void> {
  for (const f of files) {
    const body = await readFile(f.path);
    await a.attempts.write(`${jobId}/${token}/${f.name}-${f.version}.apk`, body, {
      contentType: TYPE_APK,
      cacheControl: NO_CACHE,
      sha256: sha256(body),
    });
  }
  const json = Buffer.from(JSON.stringify(result));
  if (json.length > MAX_RESULT_BYTES) throw new QueueError(`${jobId}: result larger than ${MAX_RESULT_BYTES} bytes`);
  await a.attempts.write(`${jobId}/${token}/result.json`, json, {
    contentType: TYPE_JSON,
    cacheControl: NO_CACHE,
    sha256: sha256(json),
  });
}

/** Read a committed attempt's result, checked against the job it must belong to. */
export async function readAttempt(
  a: Artifacts,
  jobId: string,
  token: string,
  expect: { recipe: string; arch: string; fullVersion: string; outputs: string[] },
): Promise<AttemptResult> {
  const where = `${a.url}/attempts/${jobId}/${token}/result.json`;
  const got = await a.attempts.get(`${jobId}/${token}/result.json`);
  if (!got) throw new QueueError(`${where}: missing (the attempt was never committed)`);
  const r = parseMessage(attemptResultSchema, got.body, where);
  if (r.jobId !== jobId || r.recipe !== expect.recipe || r.arch !== expect.arch || r.fullVersion !== expect.fullVersion)
    throw new QueueError(`${where}: belongs to ${r.jobId} (${r.recipe} ${r.fullVersion} ${r.arch}), not to ${jobId}`);
  for (const p of r.packages) {
    if (!expect.outputs.includes(p.name))
      throw new QueueError(`${where}: package ${p.name} is not an output of ${expect.recipe}`);
    if (p.version !== expect.fullVersion)
      throw new QueueError(`${where}: package ${p.name} has version ${p.version}, expected ${expect.fullVersion}`);
  }
  return r;
}

/** Download one package of an attempt to `dest` (bounded). */
export async function fetchAttemptPackage(
  a: Artifacts,
  jobId: string,
  token: string,
  pkg: { name: string; version: string },
  dest: string,
): Promise<void> {
  const key = `${jobId}/${token}/${pkg.name}-${pkg.version}.apk`;
  const head = await a.attempts.head(key);
  if (!head) throw new QueueError(`${a.url}/attempts/${key}: missing from a committed attempt`);
  if (head.size > MAX_PACKAGE_BYTES) throw new QueueError(`${a.url}/attempts/${key}: larger than the package budget`);
  const got = await a.attempts.get(key);
  if (!got) throw new QueueError(`${a.url}/attempts/${key}: missing from a committed attempt`);
  await writeFile(dest, got.body);
}

/**
 * Mirror the artifact repository's ARCH into `dir` (the index, the key and
 * every package the index lists that is not there yet) for a build to use
 * as a local repository. The index is verified by the build when it loads
 * the repository (with the distribution's key); packages are checked
 * against it there too.
 */
export async function syncMirror(
  a: Artifacts,
  arch: string,
  keyName: string,
  dir: string,
  which: "repo" | "bootstrap" = "repo",
): Promise<Buffer | undefined> {
  const archDir = joinUnder(dir, { value: arch, what: "architecture" });
  await mkdir(archDir, { recursive: true });
  const store = a[which];
  const key = await store.get(keyName);
  const idx = await store.get(`${arch}/APKINDEX.tar.gz`);
  if (!key || !idx) return undefined;
  const records: IndexRecord[] = (await readIndex(idx.body, { subject: `${a.url}/${which}/${arch}/APKINDEX.tar.gz` }))
    .records;
  for (const r of records) {
    const file = joinUnder(archDir, { value: `${r.name}-${r.version}.apk`, what: "package file" });
    if (await stat(file).catch(() => undefined)) continue;
    const got = await store.get(`${arch}/${r.name}-${r.version}.apk`);
    if (!got) continue;
    await writeFile(`${file}.part`, got.body);
    await rename(`${file}.part`, file);
  }
  await writeFile(join(archDir, "APKINDEX.tar.gz.part"), idx.body);
  await rename(join(archDir, "APKINDEX.tar.gz.part"), join(archDir, "APKINDEX.tar.gz"));
  return key.body;
}

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
}
