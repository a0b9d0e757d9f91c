// publish() and withdraw(): the effects. The order of writes is what keeps a
// published repository valid at every instant, whatever fails or is killed:
//
//   1. checks that need no writes: the local repository (names, versions
//      and archs that are plain path segments), the published key and index
//      signature against the publishing key, conflicts, dependency
//      satisfiability of the index-to-be, and every new package read and
//      verified in full (C: against the local index, datahash, a record the
//      index can hold) and re-signed with the publishing key into a private
//      temporary directory when signed by another — any problem stops here
//      with nothing written to the target;
//   2. the public key (create-only);
//   3. each new package, written create-only (atomically; see the
//      ObjectStore);
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
// publish (the same command re-run completes the work).

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, readFile, stat } from "node:fs/promises";
import { assertPathComponent, joinUnder, UnsafePathError, sleep } from "@kiln/core";
import {
  ApkError,
  buildIndex,
  checkSignature,
  formatIndexText,
  Keyring,
  openPackage,
  parsePublicKey,
  resignPackage,
  sortIndexRecords,
  validateIndexRecord,
  type IndexFile,
  type IndexRecord,
  type SigningKey,
} from "@kiln/apk";
import { isStoreError, type ObjectStore } from "../store/types.js";
import { formatUnsatisfied, unsatisfiedDependencies, type Unsatisfied } from "./deps.js";
import { PublishError } from "./errors.js";
import { renderArchIndexHtml } from "./html.js";
import { readLocalRepository, type LocalArch } from "./local-repo.js";
import { cleanStaleTempDirs, makeTempDir, removeTempDir } from "./tempdir.js";
import { planPublish, targetRecords, type PlannedPackage, type PublishPlan, type RemoteArchState } from "./plan.js";
import {
  CACHE_IMMUTABLE,
  CACHE_NO_CACHE,
  discoverArchs,
  HTML_NAME,
  idOf,
  INDEX_NAME,
  listArch,
  packageKey,
  readPackageObject,
  readRemoteIndex,
  TYPE_APK,
  TYPE_HTML,
  TYPE_INDEX,
  TYPE_KEY,
  WITHDRAWN_DIR,
  type RemoteIndex,
} from "./remote.js";

export interface PublishEvent {
  kind: "package" | "index" | "html" | "key" | "retry" | "multipart" | "warning" | "withdrawn" | "deleted" | "plan";
  message: string;
  arch?: string;
  id?: string;
  action?: string;
}

export interface CommonOptions {
  signingKey: SigningKey;
  allowUnsatisfied?: boolean;
  /** Records of upstream repositories per arch, for dependency checks. */
  upstream?: (arch: string) => Promise<IndexRecord[]>;
  dryRun?: boolean;
  /** Index DESCRIPTION; the published one (or the local one) is kept when unset. */
  description?: string;
  sourceDateEpoch?: number;
  onEvent?: (e: PublishEvent) => void;
  /** Index convergence rounds before giving up. */
  maxRounds?: number;
}

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

function sha256Hex(b: Uint8Array | string): string {
  return createHash("sha256").update(b).digest("hex");
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest("hex");
}

function publicPem(key: SigningKey): string {
  return key.publicKey.export({ type: "spki", format: "pem" }).toString();
}

function keyring(key: SigningKey): Keyring {
  return new Keyring().add(key.name, key.publicKey);
}

/** Refuse a publishing key other than the one the repository is published with. */
async function checkPublishedKey(store: ObjectStore, key: SigningKey): Promise<"absent" | "present"> {
  const pem = publicPem(key);
  const head = await store.head(key.name);
  if (!head) return "absent";
  if (head.sha256 === sha256Hex(pem)) return "present";
  const got = await store.get(key.name);
  if (!got) return "absent";
  let same = false;
  try {
    const theirs = parsePublicKey(got.body, `${store.location}/${key.name}`);
    same = theirs.export({ type: "spki", format: "der" }).equals(key.publicKey.export({ type: "spki", format: "der" }));
  } catch {
    same = false;
  }
  if (!same) {
    throw new PublishError(
      `${store.location}/${key.name}: the published public key ${key.name} is not the public half of the signing key; wrong --signing-key?`,
      "WRONG_KEY",
    );
  }
  return "present";
}

function checkIndexKey(store: ObjectStore, arch: string, idx: IndexFile | undefined, key: SigningKey): void {
  if (!idx) return;
  const c = checkSignature(idx.signatures, idx.body, keyring(key));
  if (c.verdict !== "OK") {
    const names = idx.signatures.map((s) => s.keyName).join(", ") || "nobody (unsigned)";
    throw new PublishError(
      `${store.location}/${arch}/${INDEX_NAME}: signed by ${names}, which the signing key ${key.name} does not match (${c.reason}); wrong --signing-key?`,
      "WRONG_KEY",
    );
  }
}

/** The published state of one architecture, reading the objects the index does not cover. */
export async function readRemoteArch(
  store: ObjectStore,
  arch: string,
): Promise<{ state: RemoteArchState; index?: RemoteIndex }> {
  const index = await readRemoteIndex(store, arch);
  const listing = await listArch(store, arch);
  const indexed = index?.file.records ?? [];
  const byId = new Map(indexed.map((r) => [idOf(r), r] as const));
  const unindexed = new Map<string, IndexRecord>();
  const unreadable = new Map<string, string>();
  for (const [id, obj] of listing.objects) {
    const r = byId.get(id);
    if (r && (r.fileSize === undefined || r.fileSize === obj.size)) continue;
    const got = await readPackageObject(store, arch, id);
    if (!got) continue;
    if ("record" in got) unindexed.set(id, got.record);
    else unreadable.set(id, got.error);
  }
  const state: RemoteArchState = {
    arch,
    indexed,
    objects: listing.objects,
    unindexed,
    unreadable,
    withdrawn: listing.withdrawn,
  };
  return index ? { state, index } : { state };
}

export interface Prepared {
  path: string;
  size: number;
  sha256: string;
  record: IndexRecord;
  resigned: boolean;
}

/** Where the re-signed copy of a package is staged: `TMP/ARCH-NAME-VERSION.apk`, refused unless arch and id are plain path segments. */
export function stagingPath(tmp: string, arch: string, id: string): string {
  try {
    assertPathComponent(arch, "architecture");
    return joinUnder(tmp, { value: `${arch}-${id}.apk`, what: "staged package file name" });
  } catch (e) {
    if (e instanceof UnsafePathError)
      throw new PublishError(`refusing to stage ${JSON.stringify(`${arch}/${id}`)}: ${e.message}`, "LOCAL_REPO", [], {
        cause: e,
      });
    throw e;
  }
}

/**
 * Read a local package in full (C: against the local index, datahash, the
 * record it gives), re-signing a copy in `tmp` when it is not signed by `key`
 * alone. Writes nothing but that copy.
 */
export async function preparePackage(p: PlannedPackage, key: SigningKey, tmp: string): Promise<Prepared> {
  const staged = stagingPath(tmp, p.arch, p.id);
  let keep: boolean;
  let record: IndexRecord;
  const reader = await openPackage(createReadStream(p.file), { subject: p.file }).catch((e: unknown) => {
    if (e instanceof ApkError) throw new PublishError(e.message, "LOCAL_REPO", [], { cause: e });
    throw e;
  });
  try {
    if (reader.head.checksum !== p.checksum)
      throw new PublishError(
        `${p.file}: C:${reader.head.checksum} differs from its local index (C:${p.checksum}); re-run kiln index`,
        "LOCAL_REPO",
      );
    if (reader.head.info.dataHash === undefined)
      throw new PublishError(`${p.file}: no datahash in .PKGINFO`, "LOCAL_REPO");
    await reader.drain();
    keep =
      reader.head.signatures.length === 1 &&
      checkSignature(reader.head.signatures, reader.head.controlMember, keyring(key)).verdict === "OK";
    record = { ...reader.head.info, extra: [], checksum: reader.head.checksum, unknownFields: [] };
    delete record.dataHash;
  } catch (e) {
    if (e instanceof ApkError) throw new PublishError(e.message, "LOCAL_REPO", [], { cause: e });
    throw e;
  } finally {
    await reader.close();
  }
  if (idOf(record) !== p.id)
    throw new PublishError(
      `${p.file}: contains ${idOf(record)}, but its local index lists it as ${p.id}; re-run kiln index`,
      "LOCAL_REPO",
    );
  if (record.arch !== p.arch)
    throw new PublishError(`${p.file}: a package for arch ${record.arch}, listed under ${p.arch}/`, "LOCAL_REPO");
  let path = p.file;
  if (!keep) {
    path = staged;
    await copyFile(p.file, path);
    await resignPackage(path, [key], "RSA256");
  }
  const size = (await stat(path)).size;
  record.fileSize = size;
  try {
    validateIndexRecord(record, p.file);
  } catch (e) {
    if (e instanceof ApkError)
      throw new PublishError(`${e.message}: the published index could not hold it`, "LOCAL_REPO", [], { cause: e });
    throw e;
  }
  return { path, size, sha256: await sha256File(path), record, resigned: !keep };
}

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < items.length && failed === undefined) {
      const i = next++;
      try {
        await fn(items[i]!);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  if (failed !== undefined) throw failed;
}

function refuse(
  plan: { conflicts: string[]; unsatisfied: Unsatisfied[] },
  allowUnsatisfied: boolean | undefined,
  verb: string,
  upstream: boolean,
): void {
  if (plan.conflicts.length) {
    throw new PublishError(
      `refusing to ${verb}: ${plan.conflicts.length === 1 ? plan.conflicts[0] : `${plan.conflicts.length} packages conflict with what is published`}`,
      "CONFLICT",
      plan.conflicts.length === 1 ? [] : plan.conflicts,
    );
  }
  if (plan.unsatisfied.length && !allowUnsatisfied) {
    throw new PublishError(
      `refusing to ${verb}: ${plan.unsatisfied.length} dependenc${plan.unsatisfied.length === 1 ? "y" : "ies"} would not be satisfiable from the repository${upstream ? " or its upstreams" : ""} (--allow-unsatisfied to go ahead anyway)`,
      "UNSATISFIED",
      plan.unsatisfied.map(formatUnsatisfied),
    );
  }
}

async function ensureKey(
  store: ObjectStore,
  key: SigningKey,
  state: "absent" | "present",
  emit: (e: PublishEvent) => void,
): Promise<void> {
  if (state === "present") return;
  const pem = Buffer.from(publicPem(key));
  try {
    await store.write(key.name, pem, {
      contentType: TYPE_KEY,
      cacheControl: CACHE_NO_CACHE,
      sha256: sha256Hex(pem),
      condition: { ifAbsent: true },
    });
    emit({ kind: "key", message: `${key.name}: published` });
  } catch (e) {
    if (!isStoreError(e, "PRECONDITION_FAILED")) throw e;
    await checkPublishedKey(store, key); // someone published it meanwhile: the same key?
  }
}

interface ConvergeOptions {
  key: SigningKey;
  description?: string;
  sourceDateEpoch?: number;
  maxRounds?: number;
  emit: (e: PublishEvent) => void;
}

/**
 * Make ARCH/APKINDEX.tar.gz list exactly the package objects present (less
 * the withdrawn); `known` are records already verified (ours), by id.
 * Returns the final records and how many times the index was written.
 */
export async function convergeIndex(
  store: ObjectStore,
  arch: string,
  known: Map<string, IndexRecord>,
  opts: ConvergeOptions,
): Promise<{ records: IndexRecord[]; writes: number; rounds: number }> {
  const maxRounds = opts.maxRounds ?? 40;
  const cache = new Map(known);
  let writes = 0;
  for (let round = 1; round <= maxRounds; round++) {
    // Read the index first, then list: finishing requires a listing taken after the index read to agree with it.
    const cur = await readRemoteIndex(store, arch);
    const listing = await listArch(store, arch);
    const curById = new Map((cur?.file.records ?? []).map((r) => [idOf(r), r] as const));
    const records: IndexRecord[] = [];
    for (const [id, obj] of [...listing.objects].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (listing.withdrawn.has(id)) continue;
      const c = curById.get(id);
      if (c && c.fileSize === obj.size) {
        records.push(c);
        continue;
      }
      const k = cache.get(id);
      if (k && k.fileSize === obj.size) {
        records.push(k);
        continue;
      }
      const got = await readPackageObject(store, arch, id);
      if (!got) continue;
      if ("error" in got) {
        opts.emit({ kind: "warning", arch, id, message: `${arch}/${id}.apk: left out of the index: ${got.error}` });
        continue;
      }
      cache.set(id, got.record);
      records.push(got.record);
    }
    const sorted = sortIndexRecords(records);
    const description = opts.description ?? cur?.file.description ?? "";
    const signedByUs =
      cur !== undefined && checkSignature(cur.file.signatures, cur.file.body, keyring(opts.key)).verdict === "OK";
    if (cur && signedByUs && cur.file.text === formatIndexText(sorted) && cur.file.description === description) {
      opts.emit({
        kind: "index",
        arch,
        message: `${arch}/${INDEX_NAME}: ${sorted.length} packages${writes ? "" : " (up to date)"}`,
      });
      return { records: sorted, writes, rounds: round };
    }
    const bytes = buildIndex(sorted, {
      signingKeys: [opts.key],
      description,
      sourceDateEpoch: opts.sourceDateEpoch ?? 0,
    });
    try {
      await store.write(`${arch}/${INDEX_NAME}`, bytes, {
        contentType: TYPE_INDEX,
        cacheControl: CACHE_NO_CACHE,
        sha256: sha256Hex(bytes),
        condition: cur?.etag ? { ifMatch: cur.etag } : cur ? undefined : { ifAbsent: true },
      });
      writes++;
    } catch (e) {
      if (!isStoreError(e, "PRECONDITION_FAILED")) throw e;
      opts.emit({ kind: "retry", arch, message: `${arch}/${INDEX_NAME}: changed by another publisher; merging again` });
    }
    // Let concurrent writers land before checking again.
    await sleep(30 + Math.random() * 120 * Math.min(round, 5));
  }
  throw new PublishError(
    `${store.location}/${arch}/${INDEX_NAME}: did not settle after ${maxRounds} rounds of merging with concurrent publishers; run the command again`,
    "NOT_CONVERGED",
  );
}

/** Bring ARCH/index.html in line with the index, re-rendering if the index moves meanwhile. */
export async function syncHtml(
  store: ObjectStore,
  arch: string,
  keyName: string,
  emit: (e: PublishEvent) => void,
): Promise<void> {
  for (let round = 0; round < 10; round++) {
    const idx = await readRemoteIndex(store, arch);
    if (!idx) return;
    const html = Buffer.from(
      renderArchIndexHtml(arch, idx.file.records, { keyName, description: idx.file.description }),
    );
    const sha = sha256Hex(html);
    const key = `${arch}/${HTML_NAME}`;
    const head = await store.head(key);
    let same = head?.sha256 === sha;
    if (head && !head.sha256) {
      const got = await store.get(key);
      same = got !== undefined && sha256Hex(got.body) === sha;
    }
    if (!same) {
      await store.write(key, html, { contentType: TYPE_HTML, cacheControl: CACHE_NO_CACHE, sha256: sha });
      emit({ kind: "html", arch, message: `${key}: ${idx.file.records.length} packages` });
    }
    const again = await readRemoteIndex(store, arch);
    if (again && again.file.text === idx.file.text) return;
  }
}

export const BUILD_KEYS_NAME = ".kiln-build-keys.jsonl";

/**
 * Publish the distribution's build-key records beside the index (kiln's
 * ARCH/.kiln-build-keys.jsonl), so a fresh checkout building against the
 * published repository knows what is already built. Records are advisory — a
 * missing one only causes a rebuild — so the published file is the union of
 * the local and published lines, re-read and re-written until it covers ours.
 */
export async function syncBuildKeys(
  store: ObjectStore,
  from: string,
  arch: string,
  emit: (e: PublishEvent) => void,
): Promise<void> {
  const local = await readFile(joinUnder(from, { value: arch, what: "architecture" }, BUILD_KEYS_NAME), "utf8").catch(
    () => undefined,
  );
  if (local === undefined) return;
  const mine = local.split("\n").filter((l) => l.trim() !== "");
  const key = `${arch}/${BUILD_KEYS_NAME}`;
  for (let round = 0; round < 10; round++) {
    const remote = await store.get(key);
    const theirs = remote
      ? remote.body
          .toString("utf8")
          .split("\n")
          .filter((l) => l.trim() !== "")
      : [];
    const have = new Set(theirs);
    if (mine.every((l) => have.has(l))) return;
    const merged = [...new Set([...theirs, ...mine])].sort();
    const body = Buffer.from(merged.join("\n") + "\n");
    await store.write(key, body, {
      contentType: "application/x-ndjson",
      cacheControl: CACHE_NO_CACHE,
      sha256: sha256Hex(body),
    });
    emit({ kind: "html", arch, message: `${key}: ${merged.length} build-key records` });
  }
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

export async function publish(store: ObjectStore, from: string, opts: PublishOptions): Promise<PublishResult> {
  const emit = opts.onEvent ?? (() => undefined);
  const key = opts.signingKey;
  // 1. Everything that can refuse, before any write.
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

  const result: PublishResult = {
    target: store.location,
    keyName: key.name,
    dryRun: !!opts.dryRun,
    archs: [],
    uploadedBytes: 0,
    plan,
  };
  if (opts.dryRun) {
    for (const ap of plan.archs) {
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

  await cleanStaleTempDirs(TEMP_PREFIX).catch(() => undefined);
  const tmp = await makeTempDir(TEMP_PREFIX);
  try {
    // Still step 1: every new package verified (and re-signed) before anything is written.
    const prepared = new Map<string, Prepared>();
    const uploads = plan.archs.flatMap((ap) => ap.packages.filter((p) => p.action === "upload"));
    await pool(uploads, opts.concurrency ?? 4, async (p) => {
      prepared.set(packageKey(p.arch, p.id), await preparePackage(p, key, tmp));
    });

    // 2. The key consumers need to trust what follows.
    await ensureKey(store, key, keyState, emit);

    for (const ap of plan.archs) {
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
      // 3. Packages.
      await pool(ap.packages, opts.concurrency ?? 4, async (p) => {
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
          const rec = remote.get(p.arch)?.unindexed.get(p.id);
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
        const prep = prepared.get(k)!;
        const same = await sameObject(store, p.arch, p.id, prep.record.checksum!);
        if (same === "different")
          throw new PublishError(
            `refusing to publish ${store.location}/${k}: a different package appeared under this name while publishing; bump the release (-rN) instead`,
            "CONFLICT",
          );
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
              throw new PublishError(
                `refusing to publish ${store.location}/${k}: a different package appeared under this name while publishing; bump the release (-rN) instead`,
                "CONFLICT",
              );
            }
          }
          result.uploadedBytes += prep.size;
        }
        mine.set(p.id, prep.record);
        ar.uploaded.push(p.id);
        if (prep.resigned) ar.resigned.push(p.id);
        emit({
          kind: "package",
          arch: p.arch,
          id: p.id,
          action: "uploaded",
          message: `${k}: uploaded, ${prep.size} bytes${prep.resigned ? `, re-signed by ${key.name}` : ""}`,
        });
      });
      for (const p of ap.packages) if (p.restore) await store.delete(`${ap.arch}/${WITHDRAWN_DIR}${p.id}`);
      // 4. The index, last.
      const c = await convergeIndex(store, ap.arch, mine, {
        key,
        ...(opts.description !== undefined ? { description: opts.description } : {}),
        sourceDateEpoch: opts.sourceDateEpoch ?? 0,
        ...(opts.maxRounds ? { maxRounds: opts.maxRounds } : {}),
        emit,
      });
      ar.indexPackages = c.records.length;
      ar.indexWrites = c.writes;
      // 5. The page people browse, and the build keys for fresh checkouts.
      await syncHtml(store, ap.arch, key.name, emit);
      await syncBuildKeys(store, from, ap.arch, emit);
      for (const l of [ar.uploaded, ar.indexedExisting, ar.skipped, ar.resigned]) l.sort();
      result.archs.push(ar);
    }
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

export interface WithdrawOptions extends CommonOptions {
  archs?: string[];
  /** Also delete the package objects (after the index no longer lists them). */
  delete?: boolean;
}

export interface WithdrawResult {
  target: string;
  dryRun: boolean;
  withdrawn: Array<{ arch: string; id: string; deleted: boolean }>;
  archs: Array<{ arch: string; indexPackages: number; indexWrites: number }>;
}

export async function withdraw(store: ObjectStore, ids: string[], opts: WithdrawOptions): Promise<WithdrawResult> {
  const emit = opts.onEvent ?? (() => undefined);
  const key = opts.signingKey;
  if (ids.length === 0) throw new PublishError("nothing to withdraw: name packages as NAME-VERSION", "USAGE");
  for (const id of ids) {
    try {
      assertPathComponent(id, "package");
    } catch (e) {
      throw new PublishError(
        `cannot withdraw ${JSON.stringify(id)}: name packages as NAME-VERSION (${(e as Error).message})`,
        "USAGE",
        [],
        { cause: e },
      );
    }
  }
  await checkPublishedKey(store, key);
  const archs = opts.archs ?? (await discoverArchs(store));
  const found = new Map<string, string[]>(); // arch → ids
  const unsatisfied: Unsatisfied[] = [];
  const states = new Map<string, RemoteArchState>();
  for (const arch of archs) {
    const { state, index } = await readRemoteArch(store, arch);
    checkIndexKey(store, arch, index?.file, key);
    states.set(arch, state);
    const here = ids.filter((id) => state.objects.has(id) || state.indexed.some((r) => idOf(r) === id));
    if (!here.length) continue;
    found.set(arch, here);
    const remaining = targetRecords(state).filter((r) => !here.includes(idOf(r)));
    unsatisfied.push(...unsatisfiedDependencies(remaining, opts.upstream ? await opts.upstream(arch) : [], arch));
  }
  const missing = ids.filter((id) => ![...found.values()].some((l) => l.includes(id)));
  if (missing.length)
    throw new PublishError(
      `not published in ${store.location}${archs.length ? ` (${archs.join(", ")})` : ""}: ${missing.join(", ")}`,
      "NOT_PUBLISHED",
    );
  refuse({ conflicts: [], unsatisfied }, opts.allowUnsatisfied, `withdraw from ${store.location}`, !!opts.upstream);
  const result: WithdrawResult = { target: store.location, dryRun: !!opts.dryRun, withdrawn: [], archs: [] };
  for (const [arch, here] of found) {
    for (const id of here) result.withdrawn.push({ arch, id, deleted: !opts.dryRun && !!opts.delete });
    if (opts.dryRun) {
      for (const id of here)
        emit({
          kind: "plan",
          arch,
          id,
          message: `${arch}/${id}: would be withdrawn${opts.delete ? " and deleted" : ""}`,
        });
      continue;
    }
    for (const id of here) {
      const marker = Buffer.from(`withdrawn\n`);
      try {
        await store.write(`${arch}/${WITHDRAWN_DIR}${id}`, marker, {
          contentType: "text/plain",
          cacheControl: CACHE_NO_CACHE,
          sha256: sha256Hex(marker),
          condition: { ifAbsent: true },
        });
      } catch (e) {
        if (!isStoreError(e, "PRECONDITION_FAILED")) throw e;
      }
    }
    const c = await convergeIndex(store, arch, new Map(), {
      key,
      ...(opts.description !== undefined ? { description: opts.description } : {}),
      sourceDateEpoch: opts.sourceDateEpoch ?? 0,
      ...(opts.maxRounds ? { maxRounds: opts.maxRounds } : {}),
      emit,
    });
    for (const id of here) emit({ kind: "withdrawn", arch, id, message: `${arch}/${id}: withdrawn from the index` });
    await syncHtml(store, arch, key.name, emit);
    if (opts.delete) {
      for (const id of here) {
        await store.delete(packageKey(arch, id));
        emit({ kind: "deleted", arch, id, message: `${packageKey(arch, id)}: deleted` });
      }
    }
    result.archs.push({ arch, indexPackages: c.records.length, indexWrites: c.writes });
  }
  await store.flush();
  return result;
}
