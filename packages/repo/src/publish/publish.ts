// publish() and withdraw(): the effects. The order of writes is what keeps a
// published repository valid at every instant, whatever fails or is killed:
//
//   1. checks that need no writes: the local repository (names, versions
//      and archs that are plain path segments), the published key and index
//      signature against the publishing key, conflicts, dependency
//      satisfiability of the index-to-be, and every new package read once and
//      verified in full (C: against the local index, datahash, a record the
//      index can hold), then re-signed with the publishing key into a private
//      temporary directory when signed by another (its verified control
//      member, its data checked again against the verified datahash as it is
//      copied) — any problem stops here with nothing written to the target;
//   2. the public key (create-only);
//   3. each new package, written create-only (atomically; see the
//      ObjectStore), several at once. Whether a name appeared meanwhile (the
//      same package, or a conflicting one) is asked of one fresh listing when
//      many packages are uploaded, of a HEAD each when few join many;
//   4. the index, converged: read it, list the package objects, and when the
//      two disagree write the index of what is listed (less the withdrawn),
//      then read and list again, until they agree. The index therefore only
//      ever names objects that are fully present, and a publisher finishes
//      only after seeing an index that covers every package object — its own
//      and those of concurrent publishers — so the last one to finish leaves
//      an index covering everyone's packages, even on servers without
//      conditional writes (where they exist, If-Match/If-None-Match are sent
//      too and a lost race just costs another round);
//   5. the browsable index.html, re-rendered until it matches the index.
//
// Killed anywhere, the index is either the old one or a new one covering
// complete objects; package objects left unindexed are picked up by the next
//
// The steps live in modules of their own: preflight.ts and keys.ts (1, 2),
// prepare.ts (verifying and re-signing), converge.ts (4, 5), withdraw.ts.

import type { IndexRecord, SigningKey } from "@kiln/apk";
import { isStoreError, type ObjectStore } from "../store/types.js";
import { convergeIndex, convergeOptions, syncBuildKeys, syncHtml } from "./converge.js";
import { formatUnsatisfied } from "./deps.js";
import { PublishError } from "./errors.js";
import type { CommonOptions, PublishEvent } from "./events.js";
import { checkIndexKey, checkPublishedKey, ensureKey } from "./keys.js";
import { readLocalRepository, type LocalArch } from "./local-repo.js";
import { uploadProvenance } from "./provenance.js";
import { planPublish, type ArchPlan, type PlannedPackage, type PublishPlan, type RemoteArchState } from "./plan.js";
import { readRemoteArch, refuse } from "./preflight.js";
import { pool, stagePackage, stagingPath, verifyPackage, type Prepared, type Verified } from "./prepare.js";
import { cleanStaleTempDirs, makeTempDir, removeTempDir } from "./tempdir.js";
import {
  CACHE_IMMUTABLE,
  INDEX_NAME,
  listArch,
  packageKey,
  readPackageObject,
  TYPE_APK,
  WITHDRAWN_DIR,
} from "./remote.js";

export type { CommonOptions, PublishEvent } from "./events.js";
export { BUILD_KEYS_NAME, convergeIndex, syncBuildKeys, syncHtml } from "./converge.js";
export { readRemoteArch } from "./preflight.js";
export { preparePackage, stagingPath, verifyPackage, stagePackage, type Prepared } from "./prepare.js";
export { withdraw, type WithdrawOptions, type WithdrawResult } from "./withdraw.js";

export interface PublishOptions extends CommonOptions {
  /** Only these architectures of the local repository. */
  archs?: string[];
  /** Packages verified, re-signed and uploaded at once. */
  concurrency?: number;
}

export interface ArchResult {
  arch: string;
  uploaded: string[];
  indexedExisting: string[];
  skipped: string[];
  resigned: string[];
  /** Packages in the index at the end (predicted, in a dry run). */
  indexPackages: number;
  indexWrites: number;
}

export interface PublishResult {
  target: string;
  keyName: string;
  dryRun: boolean;
  archs: ArchResult[];
  uploadedBytes: number;
  plan: PublishPlan;
}

/** Remove staging objects of uploads killed long ago. */
async function cleanStaging(store: ObjectStore): Promise<void> {
  const cutoff = Date.now() - 24 * 3600 * 1000;
  for await (const o of store.list(".kiln/staging/")) {
    if (o.key.endsWith("/README")) continue;
    if (o.lastModified && o.lastModified.getTime() < cutoff) await store.delete(o.key).catch(() => undefined);
  }
}

/** Prefix of publish's temporary directories in the system temporary directory (see tempdir.ts). */
export const TEMP_PREFIX = "kiln-publish-";

/** Step 1: everything that can refuse, before any write. */
async function preflight(
  store: ObjectStore,
  from: string,
  opts: PublishOptions,
  emit: (e: PublishEvent) => void,
): Promise<{ keyState: "absent" | "present"; remote: Map<string, RemoteArchState>; plan: PublishPlan }> {
  const key = opts.signingKey;
  const local: LocalArch[] = await readLocalRepository(from, opts.archs);
  for (const la of local)
    for (const u of la.unlisted)
      emit({
        kind: "warning",
        arch: la.arch,
        message: `${la.arch}/${u}: not in ${from}/${la.arch}/${INDEX_NAME}; not published`,
      });
  const keyState = await checkPublishedKey(store, key);
  const remote = new Map<string, RemoteArchState>();
  for (const la of local) {
    const { state, index } = await readRemoteArch(store, la.arch);
    checkIndexKey(store, la.arch, index?.file, key);
    remote.set(la.arch, state);
  }
  const upstream = new Map<string, IndexRecord[]>();
  if (opts.upstream) for (const la of local) upstream.set(la.arch, await opts.upstream(la.arch));
  const plan = planPublish(local, remote, upstream);
  refuse(plan, opts.allowUnsatisfied, `publish to ${store.location}`, !!opts.upstream);
  for (const u of plan.unsatisfied)
    emit({ kind: "warning", message: `unsatisfied (allowed): ${formatUnsatisfied(u)}` });
  return { keyState, remote, plan };
}

/** A dry run: what would be done, as plan events and predicted results. */
function dryRun(result: PublishResult, emit: (e: PublishEvent) => void): PublishResult {
  for (const ap of result.plan.archs) {
    const by = (a: string) => ap.packages.filter((p) => p.action === a).map((p) => p.id);
    for (const p of ap.packages)
      if (p.action !== "skip")
        emit({
          kind: "plan",
          arch: ap.arch,
          id: p.id,
          action: p.action,
          message: `${ap.arch}/${p.id}.apk: would ${p.action === "upload" ? "upload" : "index the object already present"}`,
        });
    result.archs.push({
      arch: ap.arch,
      uploaded: by("upload"),
      indexedExisting: by("index"),
      skipped: by("skip"),
      resigned: [],
      indexPackages: ap.after,
      indexWrites: 0,
    });
  }
  return result;
}

/** What publishing one architecture needs from publish(). */
interface ArchContext {
  store: ObjectStore;
  from: string;
  opts: PublishOptions;
  emit: (e: PublishEvent) => void;
  remote: Map<string, RemoteArchState>;
  prepared: Map<string, Prepared>;
  /** Package ids of the architecture being published present in a listing taken just before its uploads (undefined: ask the store for each). */
  present: Set<string> | undefined;
  result: PublishResult;
}

function conflictAppeared(store: ObjectStore, k: string): PublishError {
  return new PublishError(
    `refusing to publish ${store.location}/${k}: a different package appeared under this name while publishing; bump the release (-rN) instead`,
    "CONFLICT",
  );
}

/**
 * Step 3 for one prepared package: written create-only unless the same
 * package is already there. When a listing was taken before the uploads, only
 * the names it shows are read (the write is then the one request for a new object).
 */
async function uploadPackage(ctx: ArchContext, p: PlannedPackage, prep: Prepared): Promise<void> {
  const { store } = ctx;
  const k = packageKey(p.arch, p.id);
  const same =
    !ctx.present || ctx.present.has(p.id) ? await sameObject(store, p.arch, p.id, prep.record.checksum!) : "absent";
  if (same === "different") throw conflictAppeared(store, k);
  if (same === "absent") {
    try {
      await store.write(
        k,
        { path: prep.path, size: prep.size },
        {
          contentType: TYPE_APK,
          cacheControl: CACHE_IMMUTABLE,
          sha256: prep.sha256,
          condition: { ifAbsent: true },
        },
      );
    } catch (e) {
      if (!isStoreError(e, "PRECONDITION_FAILED")) throw e;
      if ((await sameObject(store, p.arch, p.id, prep.record.checksum!)) !== "same") {
        throw conflictAppeared(store, k);
      }
    }
    ctx.result.uploadedBytes += prep.size;
  }
}

/** Step 3 for one planned package: skipped, indexed as already present, or uploaded; MINE gets the records to index. */
async function placePackage(
  ctx: ArchContext,
  p: PlannedPackage,
  ar: ArchResult,
  mine: Map<string, IndexRecord>,
): Promise<void> {
  const { emit } = ctx;
  if (p.action === "skip") {
    ar.skipped.push(p.id);
    emit({
      kind: "package",
      arch: p.arch,
      id: p.id,
      action: "skipped",
      message: `${p.arch}/${p.id}.apk: already published`,
    });
    return;
  }
  if (p.action === "index") {
    ar.indexedExisting.push(p.id);
    const rec = ctx.remote.get(p.arch)?.unindexed.get(p.id);
    if (rec) mine.set(p.id, rec);
    emit({
      kind: "package",
      arch: p.arch,
      id: p.id,
      action: "indexed",
      message: `${p.arch}/${p.id}.apk: already uploaded, indexing it`,
    });
    return;
  }
  const k = packageKey(p.arch, p.id);
  const prep = ctx.prepared.get(k)!;
  await uploadPackage(ctx, p, prep);
  await uploadProvenance(ctx.store, p, prep, emit); // beside the package, before the index names it
  mine.set(p.id, prep.record);
  ar.uploaded.push(p.id);
  if (prep.resigned) ar.resigned.push(p.id);
  emit({
    kind: "package",
    arch: p.arch,
    id: p.id,
    action: "uploaded",
    message: `${k}: uploaded, ${prep.size} bytes${prep.resigned ? `, re-signed by ${ctx.opts.signingKey.name}` : ""}`,
  });
}

/** Steps 3 to 5 for one architecture. */
async function publishArch(ctx: ArchContext, ap: ArchPlan): Promise<ArchResult> {
  const { store, opts, emit } = ctx;
  const ar: ArchResult = {
    arch: ap.arch,
    uploaded: [],
    indexedExisting: [],
    skipped: [],
    resigned: [],
    indexPackages: 0,
    indexWrites: 0,
  };
  const mine = new Map<string, IndexRecord>();
  // 3. Packages. A package that appeared since the preflight's listing is checked, not overwritten: one
  // fresh listing tells which when many are uploaded, a HEAD each when few join many published.
  const uploads = ap.packages.filter((p) => p.action === "upload").length;
  const published = ctx.remote.get(ap.arch)?.objects.size ?? 0;
  ctx.present =
    uploads && uploads * 4 >= published ? new Set((await listArch(store, ap.arch)).objects.keys()) : undefined;
  await pool(ap.packages, opts.concurrency ?? 4, (p) => placePackage(ctx, p, ar, mine));
  for (const p of ap.packages) if (p.restore) await store.delete(`${ap.arch}/${WITHDRAWN_DIR}${p.id}`);
  // 4. The index, last.
  const c = await convergeIndex(store, ap.arch, mine, convergeOptions(opts, emit));
  ar.indexPackages = c.records.length;
  ar.indexWrites = c.writes;
  // 5. The page people browse, and the build keys for fresh checkouts.
  await syncHtml(store, ap.arch, opts.signingKey.name, emit);
  await syncBuildKeys(store, ctx.from, ap.arch, emit);
  for (const l of [ar.uploaded, ar.indexedExisting, ar.skipped, ar.resigned]) l.sort();
  return ar;
}

/**
 * Still step 1: every new package read once and verified in full, then
 * re-signed into `tmp` when needed, before anything is written. (Verifying
 * every package first is what lets a bad one stop the publish with nothing
 * written; re-signing right behind it keeps the copy's data checked.)
 */
async function prepareUploads(plan: PublishPlan, opts: PublishOptions, tmp: string): Promise<Map<string, Prepared>> {
  const uploads = plan.archs.flatMap((ap) => ap.packages.filter((p) => p.action === "upload"));
  for (const p of uploads) stagingPath(tmp, p.arch, p.id); // refuses a name that would leave the directory
  const verified = new Map<string, Verified>();
  await pool(uploads, opts.concurrency ?? 4, async (p) => {
    verified.set(packageKey(p.arch, p.id), await verifyPackage(p, opts.signingKey));
  });
  const prepared = new Map<string, Prepared>();
  await pool([...verified], opts.concurrency ?? 4, async ([k, v]) => {
    prepared.set(k, await stagePackage(v, opts.signingKey, tmp));
  });
  return prepared;
}

export async function publish(store: ObjectStore, from: string, opts: PublishOptions): Promise<PublishResult> {
  const emit = opts.onEvent ?? (() => undefined);
  const key: SigningKey = opts.signingKey;
  const { keyState, remote, plan } = await preflight(store, from, opts, emit);
  const result: PublishResult = {
    target: store.location,
    keyName: key.name,
    dryRun: !!opts.dryRun,
    archs: [],
    uploadedBytes: 0,
    plan,
  };
  if (opts.dryRun) return dryRun(result, emit);

  await cleanStaleTempDirs(TEMP_PREFIX).catch(() => undefined);
  const tmp = await makeTempDir(TEMP_PREFIX);
  try {
    const prepared = await prepareUploads(plan, opts, tmp);
    // 2. The key consumers need to trust what follows.
    await ensureKey(store, key, keyState, emit);
    const ctx: ArchContext = { store, from, opts, emit, remote, prepared, present: undefined, result };
    for (const ap of plan.archs) result.archs.push(await publishArch(ctx, ap));
    await store.flush();
    await cleanStaging(store).catch(() => undefined);
  } finally {
    await removeTempDir(tmp);
  }
  return result;
}

async function sameObject(
  store: ObjectStore,
  arch: string,
  id: string,
  checksum: string,
): Promise<"absent" | "same" | "different"> {
  const head = await store.head(packageKey(arch, id));
  if (!head) return "absent";
  const got = await readPackageObject(store, arch, id);
  if (!got) return "absent";
  return "record" in got && got.record.checksum === checksum ? "same" : "different";
}
