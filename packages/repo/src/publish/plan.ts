// planPublish: pure. From what is local and what is published, decide per
// package: upload it, index an object already present, or nothing (already
// indexed); and refuse conflicts (a different package under a published
// name) and an index whose dependencies would not be satisfiable.

import type { IndexRecord } from "@kiln/apk";
import type { StoredObject } from "../store/types.js";
import { formatUnsatisfied, unsatisfiedDependencies, type Unsatisfied } from "./deps.js";
import type { LocalArch } from "./local-repo.js";
import { idOf } from "./remote.js";

/** What is published for one architecture, with the records of objects not (yet) in the index. */
export interface RemoteArchState {
  arch: string;
  /** Records of the published index (empty when there is none). */
  indexed: IndexRecord[];
  /** Package objects present, by NAME-VERSION. */
  objects: Map<string, StoredObject>;
  /** Records read from package objects that the index does not list. */
  unindexed: Map<string, IndexRecord>;
  /** Objects that could not be read as packages, with why. */
  unreadable: Map<string, string>;
  withdrawn: Set<string>;
}

export type PackageAction =
  /** New: upload, then index. */
  | "upload"
  /** The same package is already in the bucket but not in the index (an interrupted or withdrawn publish): index it. */
  | "index"
  /** Already published and indexed: nothing to do. */
  | "skip";

export interface PlannedPackage {
  arch: string;
  id: string;
  file: string;
  action: PackageAction;
  checksum: string;
  /** Local file size (the published size differs when the package is re-signed). */
  size: number;
  /** Withdrawn earlier: publishing it again lifts the withdrawal. */
  restore?: boolean;
}

export interface ArchPlan {
  arch: string;
  packages: PlannedPackage[];
  /** Packages in the index before and (predicted) after. */
  before: number;
  after: number;
  unlisted: string[];
}

export interface PublishPlan {
  archs: ArchPlan[];
  conflicts: string[];
  unsatisfied: Unsatisfied[];
}

/** The records the index should hold: every readable package object that is not withdrawn. */
export function targetRecords(state: RemoteArchState): IndexRecord[] {
  const byId = new Map(state.indexed.map((r) => [idOf(r), r] as const));
  const out: IndexRecord[] = [];
  for (const [id, obj] of state.objects) {
    if (state.withdrawn.has(id)) continue;
    const r = byId.get(id);
    if (r && (r.fileSize === undefined || r.fileSize === obj.size)) out.push(r);
    else {
      const u = state.unindexed.get(id);
      if (u) out.push(u);
    }
  }
  return out;
}

export function planPublish(
  local: LocalArch[],
  remote: Map<string, RemoteArchState>,
  upstream: Map<string, IndexRecord[]> = new Map(),
): PublishPlan {
  const conflicts: string[] = [];
  const unsatisfied: Unsatisfied[] = [];
  const archs: ArchPlan[] = [];
  for (const la of local) {
    const rs = remote.get(la.arch) ?? {
      arch: la.arch,
      indexed: [],
      objects: new Map(),
      unindexed: new Map(),
      unreadable: new Map(),
      withdrawn: new Set<string>(),
    };
    const indexedById = new Map(rs.indexed.map((r) => [idOf(r), r] as const));
    const packages: PlannedPackage[] = [];
    const finalRecords = new Map(targetRecords(rs).map((r) => [idOf(r), r] as const));
    for (const p of la.packages) {
      const checksum = p.record.checksum!;
      const base = { arch: la.arch, id: p.id, file: p.file, checksum, size: p.record.fileSize ?? 0 };
      const obj = rs.objects.get(p.id);
      const published = obj
        ? indexedById.get(p.id) &&
          (indexedById.get(p.id)!.fileSize === undefined || indexedById.get(p.id)!.fileSize === obj.size)
          ? indexedById.get(p.id)
          : rs.unindexed.get(p.id)
        : undefined;
      const withdrawn = rs.withdrawn.has(p.id);
      if (obj && !published) {
        conflicts.push(
          `${la.arch}/${p.id}.apk: already published but unreadable (${rs.unreadable.get(p.id) ?? "unknown"}); refusing to overwrite it`,
        );
        continue;
      }
      if (published) {
        if (published.checksum !== checksum) {
          conflicts.push(
            `${la.arch}/${p.id}.apk: a different package is already published under this name (published C:${published.checksum}, local C:${checksum}); bump the release (-rN) instead`,
          );
          continue;
        }
        const inIndex = indexedById.get(p.id)?.checksum === checksum && !withdrawn;
        packages.push({ ...base, action: inIndex ? "skip" : "index", ...(withdrawn ? { restore: true } : {}) });
        finalRecords.set(p.id, published);
      } else {
        packages.push({ ...base, action: "upload", ...(withdrawn ? { restore: true } : {}) });
        finalRecords.set(p.id, p.record);
      }
    }
    const finals = [...finalRecords.values()];
    unsatisfied.push(...unsatisfiedDependencies(finals, upstream.get(la.arch) ?? [], la.arch));
    archs.push({ arch: la.arch, packages, before: rs.indexed.length, after: finals.length, unlisted: la.unlisted });
  }
  return { archs, conflicts, unsatisfied };
}

export { formatUnsatisfied };
