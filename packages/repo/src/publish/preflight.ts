// Checks before any write: the published state of an architecture, and refusing conflicts and unsatisfiable dependencies.

import type { IndexRecord } from "@kiln/apk";
import type { ObjectStore } from "../store/types.js";
import { formatUnsatisfied, type Unsatisfied } from "./deps.js";
import { PublishError } from "./errors.js";
import type { RemoteArchState } from "./plan.js";
import { idOf, listArch, readPackageObject, readRemoteIndex, type RemoteIndex } from "./remote.js";

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

export function refuse(
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
