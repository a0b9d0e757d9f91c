// The index converged with the package objects present, and what follows it: index.html and the build keys.

import { readFile } from "node:fs/promises";
import { joinUnder, sleep } from "@kiln/core";
import {
  buildIndex,
  checkSignature,
  formatIndexText,
  sortIndexRecords,
  type IndexRecord,
  type SigningKey,
} from "@kiln/apk";
import { isStoreError, type ObjectStore } from "../store/types.js";
import { PublishError } from "./errors.js";
import type { CommonOptions, PublishEvent } from "./events.js";
import { renderArchIndexHtml } from "./html.js";
import { keyring, sha256Hex } from "./keys.js";
import {
  CACHE_NO_CACHE,
  HTML_NAME,
  idOf,
  INDEX_NAME,
  listArch,
  readPackageObject,
  readRemoteIndex,
  TYPE_HTML,
  TYPE_INDEX,
} from "./remote.js";

export interface ConvergeOptions {
  key: SigningKey;
  description?: string;
  sourceDateEpoch?: number;
  maxRounds?: number;
  emit: (e: PublishEvent) => void;
}

/** convergeIndex's options from publish's or withdraw's. */
export function convergeOptions(opts: CommonOptions, emit: (e: PublishEvent) => void): ConvergeOptions {
  return {
    key: opts.signingKey,
    ...(opts.description !== undefined ? { description: opts.description } : {}),
    sourceDateEpoch: opts.sourceDateEpoch ?? 0,
    ...(opts.maxRounds ? { maxRounds: opts.maxRounds } : {}),
    emit,
  };
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
