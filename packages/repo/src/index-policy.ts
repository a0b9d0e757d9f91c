// What a repository's index lists, and what it must not. The index lists
// only the newest build of each package: a build's packages replace every
// record with the same name, and every record of the same origin (the
// recipe) that the build no longer produces (a subpackage dropped or
// renamed). Two indexed packages that provide the same so: or cmd: name
// need a provider_priority (k:) each, or apk cannot choose between them and
// an `apk add` of both conflicts.

import { compareVersions, sortIndexRecords, type IndexRecord } from "@kiln/apk";

export interface Superseding {
  /** The index after the merge, sorted as mergeIndexRecords sorts. */
  records: IndexRecord[];
  /** The records the incoming ones replaced (other versions of their names, other packages of their origins). */
  superseded: IndexRecord[];
}

const id = (r: Pick<IndexRecord, "name" | "version">) => `${r.name}\u0000${r.version}`;

/** The origin of a record (its o:, else its own name). */
export function originOf(r: Pick<IndexRecord, "name" | "origin">): string {
  return r.origin || r.name;
}

/** Merge `incoming` (one build's packages) into `existing`, dropping what it supersedes. */
export function supersedeRecords(existing: readonly IndexRecord[], incoming: readonly IndexRecord[]): Superseding {
  const names = new Set(incoming.map((r) => r.name));
  const origins = new Set(incoming.map(originOf));
  const fresh = new Set(incoming.map(id));
  const kept: IndexRecord[] = [];
  const superseded: IndexRecord[] = [];
  for (const r of existing) {
    if (fresh.has(id(r))) continue;
    if (names.has(r.name) || origins.has(originOf(r))) superseded.push(r);
    else kept.push(r);
  }
  return { records: sortIndexRecords([...kept, ...incoming]), superseded };
}

/**
 * The policy applied to a whole index (one written before it, or merged by
 * hand): of each origin only the packages at its newest version, and of each
 * name only its newest version.
 */
export function newestBuilds(records: readonly IndexRecord[]): Superseding {
  const newest = (m: Map<string, string>, k: string, v: string) => {
    const cur = m.get(k);
    if (cur === undefined || compareVersions(v, cur) > 0) m.set(k, v);
  };
  const byOrigin = new Map<string, string>();
  const byName = new Map<string, string>();
  for (const r of records) {
    newest(byOrigin, originOf(r), r.version);
    newest(byName, r.name, r.version);
  }
  const kept: IndexRecord[] = [];
  const superseded: IndexRecord[] = [];
  for (const r of records)
    (byOrigin.get(originOf(r)) === r.version && byName.get(r.name) === r.version ? kept : superseded).push(r);
  return { records: sortIndexRecords(kept), superseded };
}

export interface DuplicateProvider {
  /** The so:/cmd: name provided twice. */
  name: string;
  /** NAME-VERSION of each package providing it. */
  packages: string[];
}

/** Names under which two indexed packages must not both appear without a provider priority. */
const CHECKED = /^(so|cmd):/;

function providedName(token: string): string {
  const m = /^([^<>=~]+)/.exec(token);
  return m ? m[1]! : token;
}

/**
 * so:/cmd: names that two (or more) differently named packages provide while not
 * every one of them has a provider_priority. Sorted by name.
 */
export function duplicateProviders(records: readonly IndexRecord[]): DuplicateProvider[] {
  const by = new Map<string, IndexRecord[]>();
  for (const r of records)
    for (const p of r.provides) {
      const name = providedName(p);
      if (!CHECKED.test(name)) continue;
      const l = by.get(name) ?? by.set(name, []).get(name)!;
      if (!l.some((x) => x.name === r.name && x.version === r.version)) l.push(r);
    }
  const out: DuplicateProvider[] = [];
  for (const [name, rs] of by) {
    if (new Set(rs.map((r) => r.name)).size < 2) continue;
    if (rs.every((r) => r.providerPriority !== undefined)) continue;
    out.push({ name, packages: rs.map((r) => `${r.name}-${r.version}`).sort() });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** "so:libz.so.1 is provided by zlib-1.2.13-r1 and zlib-bootstrap-1.2.13-r0, not all with a provider_priority". */
export function formatDuplicateProvider(d: DuplicateProvider): string {
  const list =
    d.packages.length === 2
      ? d.packages.join(" and ")
      : `${d.packages.slice(0, -1).join(", ")} and ${d.packages.at(-1)}`;
  return `${d.name} is provided by ${list}, not all with a provider_priority (apk cannot choose; installing both conflicts)`;
}
