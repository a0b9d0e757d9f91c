// The advisory feeds scanners read, made from the distribution's advisories:
//
//   security.json   Alpine's secdb format: per origin package, `secfixes`
//                   maps the version that fixed them to vulnerability ids
//                   ("0": never affected). Open advisories cannot be said here.
//   osv/ID.json     one OSV 1.6 record per vulnerability (every package it
//                   affects), ranges in apk version order; open ones have no
//                   `fixed` event. osv/all.json: every record, in id order.
//
// Everything is derived from the advisories alone (dates from their events,
// keys and arrays sorted), so the same advisories give byte-identical feeds.
// Written through an ObjectStore (a directory or a bucket; each object atomic):
// the records first, then osv/all.json, then security.json, then stale records
// are removed, so a reader never sees an index naming a missing record.

import { createHash } from "node:crypto";
import { compareVersions } from "@kiln/apk";
import { rfc3339, type Advisory } from "./schema.js";
import type { ObjectStore } from "../store/types.js";

export const OSV_SCHEMA_VERSION = "1.6.0";
export const SECDB_NAME = "security.json";
export const OSV_DIR = "osv";
export const OSV_INDEX = "all.json";

export interface FeedOptions {
  /** The distribution's os-release ID: OSV ecosystem, purl namespace, OSV id prefix. */
  distroId: string;
  /** Architectures the repository has (secdb `archs`). */
  archs: string[];
  /** Where the repository is published (secdb `urlprefix`). */
  urlPrefix: string;
  /** secdb `reponame`. Default: the distribution id. */
  repoName?: string;
}

export interface SecdbDocument {
  apkurl: string;
  archs: string[];
  reponame: string;
  urlprefix: string;
  packages: Array<{ pkg: { name: string; secfixes: Record<string, string[]> } }>;
}

export type OsvEvent = { introduced: string } | { fixed: string } | { last_affected: string };

export interface OsvRecord {
  schema_version: string;
  id: string;
  modified: string;
  published: string;
  aliases: string[];
  summary?: string;
  affected: Array<{
    package: { ecosystem: string; name: string; purl: string };
    ranges: Array<{ type: "ECOSYSTEM"; events: OsvEvent[] }>;
  }>;
}

const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The secdb document: packages by name, versions in apk order ("0" first), ids sorted. */
export function secdbDocument(advisories: readonly Advisory[], opts: FeedOptions): SecdbDocument {
  const byPkg = new Map<string, Map<string, Set<string>>>();
  for (const a of advisories) {
    const c = a.current;
    if (c.state === "affected") continue;
    const ver = c.state === "fixed" ? c.version : "0";
    const fixes = byPkg.get(a.package) ?? new Map<string, Set<string>>();
    byPkg.set(a.package, fixes);
    const ids = fixes.get(ver) ?? new Set<string>();
    fixes.set(ver, ids);
    ids.add(a.id);
  }
  const packages = [...byPkg.keys()].sort(byString).map((name) => {
    const fixes = byPkg.get(name)!;
    const versions = [...fixes.keys()].sort((x, y) => (x === "0" ? -1 : y === "0" ? 1 : compareVersions(x, y)));
    const secfixes: Record<string, string[]> = {};
    for (const v of versions) secfixes[v] = [...fixes.get(v)!].sort(byString);
    return { pkg: { name, secfixes } };
  });
  return {
    apkurl: "{{urlprefix}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
    archs: [...opts.archs].sort(byString),
    reponame: opts.repoName ?? opts.distroId,
    urlprefix: opts.urlPrefix.replace(/\/+$/, ""),
    packages,
  };
}

/** The OSV id prefix for a distribution id: its letters and digits, upper case ("kiln" → "KILN"). */
export function osvPrefix(distroId: string): string {
  return distroId.toUpperCase().replace(/[^A-Z0-9]/g, "") || "KILN";
}

/** One OSV record per vulnerability id affecting at least one package, in id order. */
export function osvRecords(advisories: readonly Advisory[], opts: FeedOptions): OsvRecord[] {
  const byId = new Map<string, Advisory[]>();
  for (const a of advisories) {
    if (a.current.state === "not-affected") continue;
    byId.set(a.id, [...(byId.get(a.id) ?? []), a]);
  }
  const prefix = osvPrefix(opts.distroId);
  return [...byId.keys()].sort(byString).map((id) => {
    const list = [...byId.get(id)!].sort((x, y) => byString(x.package, y.package));
    const dates = list.flatMap((a) => a.events.map((e) => rfc3339(e.date))).sort(byString);
    const aliases = new Set<string>([id, ...list.flatMap((a) => a.aliases)]);
    const summary = list.find((a) => a.summary !== undefined)?.summary;
    return {
      schema_version: OSV_SCHEMA_VERSION,
      id: `${prefix}-${id}`,
      modified: dates[dates.length - 1]!,
      published: dates[0]!,
      aliases: [...aliases].sort(byString),
      ...(summary !== undefined ? { summary } : {}),
      affected: list.map((a) => ({
        package: {
          ecosystem: opts.distroId,
          name: a.package,
          purl: `pkg:apk/${encodeURIComponent(opts.distroId)}/${encodeURIComponent(a.package)}`,
        },
        ranges: [
          {
            type: "ECOSYSTEM" as const,
            events: [{ introduced: "0" }, ...(a.current.state === "fixed" ? [{ fixed: a.current.version }] : [])],
          },
        ],
      })),
    };
  });
}

export interface FeedFiles {
  /** Key (relative path) → bytes, in write order: records, osv/all.json, security.json last. */
  files: Array<{ key: string; body: Buffer }>;
  secdb: SecdbDocument;
  osv: OsvRecord[];
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v, null, 2) + "\n");

/** The feed as files, in the order they must be written. */
export function feedFiles(advisories: readonly Advisory[], opts: FeedOptions): FeedFiles {
  const secdb = secdbDocument(advisories, opts);
  const osv = osvRecords(advisories, opts);
  const files = osv.map((r) => ({ key: `${OSV_DIR}/${r.id}.json`, body: json(r) }));
  files.push({ key: `${OSV_DIR}/${OSV_INDEX}`, body: json(osv) });
  files.push({ key: SECDB_NAME, body: json(secdb) });
  return { files, secdb, osv };
}

export interface WrittenFeed {
  secdbPackages: number;
  osvRecords: number;
  /** Keys written (unchanged objects are not rewritten). */
  written: string[];
  /** Stale osv/ records removed. */
  removed: string[];
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/**
 * Write the feed into STORE (beside the repository's ARCH directories):
 * records, index, security.json, then remove osv/ records no longer in it.
 * An object whose bytes are already there is not rewritten.
 */
export async function writeFeed(
  store: ObjectStore,
  advisories: readonly Advisory[],
  opts: FeedOptions,
): Promise<WrittenFeed> {
  const { files, secdb, osv } = feedFiles(advisories, opts);
  const written: string[] = [];
  for (const f of files) {
    const have = await store.get(f.key);
    if (have && have.body.equals(f.body)) continue;
    await store.write(f.key, f.body, {
      contentType: "application/json",
      cacheControl: "no-cache",
      sha256: sha256(f.body),
    });
    written.push(f.key);
  }
  const keep = new Set(files.map((f) => f.key));
  const removed: string[] = [];
  for await (const o of store.list(`${OSV_DIR}/`)) {
    if (!keep.has(o.key) && /^osv\/[A-Z0-9]+-[A-Za-z0-9-]+\.json$/.test(o.key)) removed.push(o.key);
  }
  removed.sort(byString);
  for (const k of removed) await store.delete(k);
  return { secdbPackages: secdb.packages.length, osvRecords: osv.length, written, removed };
}
