// Reading advisory feeds (secdb security.json, OSV records or an OSV list) and
// matching installed packages against them: by ORIGIN package name (the `o:`
// field; a package without one is its own origin) and apk version order.
// Feeds are hostile: bounded in size and time when fetched, every name,
// version and id checked, one error naming the feed and the field.

import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { KilnError, httpGetWithRetries, readBody } from "@kiln/core";
import { compareVersions, isValidVersion } from "@kiln/apk";
import { ADVISORY_ID } from "./schema.js";
import { OSV_DIR, OSV_INDEX, SECDB_NAME } from "./feeds.js";

export class FeedError extends KilnError {
  readonly code = "BAD_FEED";
  constructor(message: string, kind: "input" | "environment" = "input") {
    super(message, { kind });
    this.name = "FeedError";
  }
}

/** Largest feed document read (bytes), and how long a fetch may take. */
export const MAX_FEED_BYTES = 64 << 20;
export const FEED_TIMEOUT_MS = 60_000;
const MAX_RULES = 1_000_000;

/** One statement of a feed about one origin package and one vulnerability. */
export interface FeedRule {
  package: string;
  id: string;
  aliases: string[];
  /** not-affected: the package never was (secdb "0"). Else vulnerable inside one of the intervals. */
  notAffected?: boolean;
  /** [introduced, fixed) or [introduced, lastAffected]; introduced "0" is the beginning. */
  intervals: Array<{ introduced: string; fixed?: string; lastAffected?: string }>;
  /** Versions listed as affected one by one (OSV `versions`). */
  versions: string[];
  /** The feed it came from. */
  feed: string;
}

const NAME = /^[A-Za-z0-9+_][A-Za-z0-9+_.-]*$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

function checkName(v: unknown, where: string): string {
  if (typeof v !== "string" || !NAME.test(v)) throw new FeedError(`${where}: expected a package name, got ${show(v)}`);
  return v;
}
function checkVer(v: unknown, where: string): string {
  if (typeof v !== "string" || !isValidVersion(v))
    throw new FeedError(`${where}: expected an apk version, got ${show(v)}`);
  return v;
}
function checkId(v: unknown, where: string): string {
  if (typeof v !== "string" || !ID.test(v))
    throw new FeedError(`${where}: expected a vulnerability id, got ${show(v)}`);
  return v;
}
function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? s.slice(0, 80) + "…" : s;
}
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

/** secdb: every package's secfixes, "0" as not affected. */
export function secdbRules(doc: Record<string, unknown>, feed: string): FeedRule[] {
  if (!Array.isArray(doc.packages)) throw new FeedError(`${feed}: packages: expected an array`);
  const out: FeedRule[] = [];
  doc.packages.forEach((p: unknown, i) => {
    const where = `${feed}: packages[${i}]`;
    const pkg = isObject(p) ? p.pkg : undefined;
    if (!isObject(pkg)) throw new FeedError(`${where}.pkg: expected an object`);
    const name = checkName(pkg.name, `${where}.pkg.name`);
    const fixes = pkg.secfixes ?? {};
    if (!isObject(fixes)) throw new FeedError(`${where}.pkg.secfixes: expected an object`);
    for (const [ver, ids] of Object.entries(fixes)) {
      const w = `${where}.pkg.secfixes[${JSON.stringify(ver)}]`;
      if (ver !== "0") checkVer(ver, `${w} (key)`);
      if (!Array.isArray(ids)) throw new FeedError(`${w}: expected an array of ids`);
      // Alpine writes "CVE-1 CVE-2" or "CVE-1 (note)" in one string now and then: the first word is the id.
      for (const raw of ids) {
        const id = checkId(typeof raw === "string" ? raw.trim().split(/\s+/)[0] : raw, w);
        out.push({
          package: name,
          id,
          aliases: [],
          ...(ver === "0" ? { notAffected: true } : {}),
          intervals: ver === "0" ? [] : [{ introduced: "0", fixed: ver }],
          versions: [],
          feed,
        });
      }
    }
  });
  return out;
}

function osvIntervals(events: unknown, where: string): FeedRule["intervals"] {
  if (!Array.isArray(events)) throw new FeedError(`${where}.events: expected an array`);
  const out: FeedRule["intervals"] = [];
  events.forEach((e: unknown, k) => {
    const w = `${where}.events[${k}]`;
    if (!isObject(e)) throw new FeedError(`${w}: expected an object`);
    if (typeof e.introduced === "string") {
      out.push({ introduced: e.introduced === "0" ? "0" : checkVer(e.introduced, `${w}.introduced`) });
      return;
    }
    const last = out[out.length - 1];
    if (!last || last.fixed !== undefined || last.lastAffected !== undefined)
      throw new FeedError(`${w}: a fixed or last_affected event needs an introduced event before it`);
    if (e.fixed !== undefined) last.fixed = checkVer(e.fixed, `${w}.fixed`);
    else if (e.last_affected !== undefined) last.lastAffected = checkVer(e.last_affected, `${w}.last_affected`);
    else if (e.limit === undefined) throw new FeedError(`${w}: expected introduced, fixed, last_affected or limit`);
  });
  return out;
}

/** One OSV record: a rule per affected package (ECOSYSTEM ranges only; others cannot be ordered as apk versions). */
export function osvRules(rec: unknown, feed: string, at = feed): FeedRule[] {
  if (!isObject(rec)) throw new FeedError(`${at}: expected an OSV record (an object)`);
  const id = checkId(rec.id, `${at}: id`);
  const where = `${at}: ${id}`;
  const aliases = rec.aliases === undefined ? [] : rec.aliases;
  if (!Array.isArray(aliases)) throw new FeedError(`${where}: aliases: expected an array`);
  const al = aliases.map((a: unknown, i) => checkId(a, `${where}: aliases[${i}]`));
  if (rec.withdrawn !== undefined) return [];
  if (!Array.isArray(rec.affected)) throw new FeedError(`${where}: affected: expected an array`);
  return rec.affected.map((a: unknown, i) => {
    const w = `${where}: affected[${i}]`;
    if (!isObject(a) || !isObject(a.package)) throw new FeedError(`${w}.package: expected an object`);
    const name = checkName(a.package.name, `${w}.package.name`);
    const ranges = a.ranges === undefined ? [] : a.ranges;
    if (!Array.isArray(ranges)) throw new FeedError(`${w}.ranges: expected an array`);
    const intervals = ranges.flatMap((r: unknown, j) => {
      if (!isObject(r)) throw new FeedError(`${w}.ranges[${j}]: expected an object`);
      return r.type === "ECOSYSTEM" ? osvIntervals(r.events, `${w}.ranges[${j}]`) : [];
    });
    const vs = a.versions === undefined ? [] : a.versions;
    if (!Array.isArray(vs)) throw new FeedError(`${w}.versions: expected an array`);
    const versions = vs.map((v: unknown, j) => checkVer(v, `${w}.versions[${j}]`));
    return { package: name, id, aliases: al, intervals, versions, feed };
  });
}

/** The rules of a feed document, whichever kind it is. */
export function feedRules(doc: unknown, feed: string): FeedRule[] {
  if (Array.isArray(doc)) return doc.flatMap((r: unknown, i) => osvRules(r, feed, `${feed}[${i}]`));
  if (isObject(doc) && Array.isArray(doc.packages)) return secdbRules(doc, feed);
  if (isObject(doc) && typeof doc.id === "string") return osvRules(doc, feed);
  throw new FeedError(
    `${feed}: not an advisory feed (expected a secdb security.json, an OSV record or a JSON array of OSV records)`,
  );
}

function parseFeedJson(bytes: Buffer, feed: string): FeedRule[] {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString("utf8"));
  } catch (e) {
    throw new FeedError(`${feed}: not JSON: ${(e as Error).message}`);
  }
  const rules = feedRules(doc, feed);
  if (rules.length > MAX_RULES) throw new FeedError(`${feed}: more than ${MAX_RULES} advisory statements`);
  return rules;
}

async function readLocal(path: string, feed: string, maxBytes: number): Promise<Buffer> {
  const st = await stat(path);
  if (!st.isFile()) throw new FeedError(`${feed}: not a regular file`);
  if (st.size > maxBytes) throw new FeedError(`${feed}: ${st.size} bytes, more than the ${maxBytes} accepted`);
  return readFile(path);
}

export interface LoadFeedOptions {
  maxBytes?: number;
  timeoutMs?: number;
}

/** GET one feed document; undefined on 404 when `optional`. */
async function httpDocument(url: string, maxBytes: number, timeoutMs: number, optional: boolean) {
  try {
    const res = await httpGetWithRetries(url, { timeoutMs, retries: 2 });
    if (res.status === 404 && optional) {
      await res.body?.cancel();
      return undefined;
    }
    if (res.status !== 200) throw new FeedError(`${url}: HTTP ${res.status}`, "environment");
    return await readBody(res, maxBytes, url);
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new FeedError(`${url}: ${(e as Error).message}`, "environment");
  }
}

/** URL.json, or a published repository's URL/security.json and URL/osv/all.json (either may be missing, not both). */
async function loadHttpFeed(ref: string, maxBytes: number, timeoutMs: number): Promise<FeedRule[]> {
  if (/\.json(\?.*)?$/i.test(ref)) return parseFeedJson((await httpDocument(ref, maxBytes, timeoutMs, false))!, ref);
  const base = ref.replace(/\/+$/, "");
  const out: FeedRule[] = [];
  let documents = 0;
  for (const rel of [SECDB_NAME, `${OSV_DIR}/${OSV_INDEX}`]) {
    const url = `${base}/${rel}`;
    const body = await httpDocument(url, maxBytes, timeoutMs, true);
    if (!body) continue;
    documents++;
    out.push(...parseFeedJson(body, url));
  }
  if (!documents) throw new FeedError(`${ref}: neither ${SECDB_NAME} nor ${OSV_DIR}/${OSV_INDEX} is there`);
  return out;
}

/**
 * A feed: an http(s) URL of a JSON document or of a published repository
 * (its security.json and osv/all.json), a JSON file, or a directory
 * holding security.json and/or osv/all.json (a published repository), or
 * all.json, or OSV records (*.json).
 */
export async function loadFeed(ref: string, opts: LoadFeedOptions = {}): Promise<FeedRule[]> {
  const maxBytes = opts.maxBytes ?? MAX_FEED_BYTES;
  if (/^https?:\/\//i.test(ref)) return loadHttpFeed(ref, maxBytes, opts.timeoutMs ?? FEED_TIMEOUT_MS);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(ref))
    throw new FeedError(`${ref}: a feed is an http(s) URL, a file or a directory`);
  const st = await stat(ref).catch(() => undefined);
  if (!st) throw new FeedError(`${ref}: no such file or directory`);
  if (!st.isDirectory()) return parseFeedJson(await readLocal(ref, ref, maxBytes), ref);
  const candidates = [SECDB_NAME, `${OSV_DIR}/${OSV_INDEX}`, OSV_INDEX];
  const found: string[] = [];
  for (const c of candidates) if ((await stat(join(ref, c)).catch(() => undefined))?.isFile()) found.push(c);
  if (!found.length) {
    const records = (await readdir(ref)).filter((n) => n.endsWith(".json")).sort();
    if (!records.length)
      throw new FeedError(`${ref}: no ${SECDB_NAME}, ${OSV_DIR}/${OSV_INDEX}, ${OSV_INDEX} or OSV *.json here`);
    found.push(...records);
  }
  const out: FeedRule[] = [];
  for (const f of found)
    out.push(...parseFeedJson(await readLocal(join(ref, f), join(ref, f), maxBytes), join(ref, f)));
  return out;
}

/** An installed package as the scanner sees it. */
export interface ScannedPackage {
  name: string;
  version: string;
  /** The origin package (`o:`); the name when absent. */
  origin?: string;
}

export interface Finding {
  package: string;
  version: string;
  origin: string;
  /** The vulnerability: its CVE (or GHSA) id when the feed gives one. */
  id: string;
  /** Every other id the feeds gave it. */
  aliases: string[];
  /** The lowest version that fixes it above the installed one, or undefined: no fix yet. */
  fixed?: string;
  feeds: string[];
}

/** The id a vulnerability is reported under: its CVE, else its GHSA, else the feed's own id. */
function canonicalId(r: FeedRule): string {
  const ids = [r.id, ...r.aliases].filter((x) => ADVISORY_ID.test(x)).sort();
  return ids[0] ?? r.id;
}

function affects(r: FeedRule, version: string): { hit: boolean; fixed?: string } {
  if (r.notAffected) return { hit: false };
  if (r.versions.some((v) => compareVersions(v, version) === 0)) return { hit: true };
  for (const iv of r.intervals) {
    if (iv.introduced !== "0" && compareVersions(version, iv.introduced) < 0) continue;
    if (iv.fixed !== undefined && compareVersions(version, iv.fixed) >= 0) continue;
    if (iv.lastAffected !== undefined && compareVersions(version, iv.lastAffected) > 0) continue;
    return { hit: true, ...(iv.fixed !== undefined ? { fixed: iv.fixed } : {}) };
  }
  return { hit: false };
}

/**
 * The open advisories of `installed`: a vulnerability is reported for a
 * package when a feed says its origin at that version is affected and no feed
 * says the origin is not affected by it. Sorted by package, then id.
 */
export function matchAdvisories(installed: readonly ScannedPackage[], rules: readonly FeedRule[]): Finding[] {
  const byPkg = new Map<string, FeedRule[]>();
  for (const r of rules) byPkg.set(r.package, [...(byPkg.get(r.package) ?? []), r]);
  const out: Finding[] = [];
  for (const p of installed) {
    const origin = p.origin ?? p.name;
    const groups = new Map<string, FeedRule[]>();
    for (const r of byPkg.get(origin) ?? []) {
      const k = canonicalId(r);
      groups.set(k, [...(groups.get(k) ?? []), r]);
    }
    for (const [id, rs] of groups) {
      if (rs.some((r) => r.notAffected)) continue;
      const hits = rs.map((r) => ({ r, m: affects(r, p.version) })).filter((x) => x.m.hit);
      if (!hits.length) continue;
      const fixes = hits.map((h) => h.m.fixed).filter((f): f is string => f !== undefined);
      const fixed = fixes.sort(compareVersions)[0];
      const aliases = new Set(hits.flatMap((h) => [h.r.id, ...h.r.aliases]));
      aliases.delete(id);
      out.push({
        package: p.name,
        version: p.version,
        origin,
        id,
        aliases: [...aliases].sort(),
        ...(fixed !== undefined ? { fixed } : {}),
        feeds: [...new Set(hits.map((h) => h.r.feed))].sort(),
      });
    }
  }
  return out.sort((a, b) =>
    a.package !== b.package ? (a.package < b.package ? -1 : 1) : a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
  );
}
