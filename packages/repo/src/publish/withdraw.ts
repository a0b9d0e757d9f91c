// withdraw(): packages taken out of the index by a marker under
// ARCH/.kiln/withdrawn/ (written before the index is converged, so a kill leaves
// the index old or new), and their objects deleted only once the index no
// longer lists them.

import { assertPathComponent } from "@kiln/core";
import { isStoreError, type ObjectStore } from "../store/types.js";
import { convergeIndex, convergeOptions, syncHtml } from "./converge.js";
import { unsatisfiedDependencies, type Unsatisfied } from "./deps.js";
import { PublishError } from "./errors.js";
import type { CommonOptions, PublishEvent } from "./events.js";
import { checkIndexKey, checkPublishedKey, sha256Hex } from "./keys.js";
import { targetRecords } from "./plan.js";
import { provenanceKey } from "./provenance.js";
import { readRemoteArch, refuse } from "./preflight.js";
import { CACHE_NO_CACHE, discoverArchs, idOf, packageKey, WITHDRAWN_DIR } from "./remote.js";

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

/** Refuse an empty list, or an id that is not a plain path segment. */
function checkIds(ids: string[]): void {
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
}

/**
 * Where each id is published (arch → ids), checking each index's key, and
 * the dependencies the withdrawal would leave unsatisfied.
 */
async function locate(
  store: ObjectStore,
  ids: string[],
  archs: string[],
  opts: WithdrawOptions,
): Promise<{ found: Map<string, string[]>; unsatisfied: Unsatisfied[] }> {
  const found = new Map<string, string[]>(); // arch → ids
  const unsatisfied: Unsatisfied[] = [];
  for (const arch of archs) {
    const { state, index } = await readRemoteArch(store, arch);
    checkIndexKey(store, arch, index?.file, opts.signingKey);
    const here = ids.filter((id) => state.objects.has(id) || state.indexed.some((r) => idOf(r) === id));
    if (!here.length) continue;
    found.set(arch, here);
    const remaining = targetRecords(state).filter((r) => !here.includes(idOf(r)));
    unsatisfied.push(...unsatisfiedDependencies(remaining, opts.upstream ? await opts.upstream(arch) : [], arch));
  }
  return { found, unsatisfied };
}

/** The ARCH/.kiln/withdrawn/ID markers, create-only (one already there is fine). */
async function writeMarkers(store: ObjectStore, arch: string, here: string[]): Promise<void> {
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
}

/** Withdraw HERE from ARCH: markers, the index, index.html, then (with --delete) the objects. */
async function withdrawArch(
  store: ObjectStore,
  arch: string,
  here: string[],
  opts: WithdrawOptions,
  emit: (e: PublishEvent) => void,
): Promise<WithdrawResult["archs"][number]> {
  await writeMarkers(store, arch, here);
  const c = await convergeIndex(store, arch, new Map(), convergeOptions(opts, emit));
  for (const id of here) emit({ kind: "withdrawn", arch, id, message: `${arch}/${id}: withdrawn from the index` });
  await syncHtml(store, arch, opts.signingKey.name, emit);
  if (opts.delete) {
    for (const id of here) {
      await store.delete(packageKey(arch, id));
      await store.delete(provenanceKey(arch, id)); // its provenance follows it
      emit({ kind: "deleted", arch, id, message: `${packageKey(arch, id)}: deleted` });
    }
  }
  return { arch, indexPackages: c.records.length, indexWrites: c.writes };
}

export async function withdraw(store: ObjectStore, ids: string[], opts: WithdrawOptions): Promise<WithdrawResult> {
  const emit = opts.onEvent ?? (() => undefined);
  checkIds(ids);
  await checkPublishedKey(store, opts.signingKey);
  const archs = opts.archs ?? (await discoverArchs(store));
  const { found, unsatisfied } = await locate(store, ids, archs, opts);
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
    result.archs.push(await withdrawArch(store, arch, here, opts, emit));
  }
  await store.flush();
  return result;
}
