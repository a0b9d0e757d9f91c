// `kiln cache du | prune`: what the cache holds (hard links counted once) and
// evicting guests and fetched packages least recently used first.

import {
  CacheError,
  cacheUsage,
  dedupGuests,
  parseDuration,
  parseSize,
  pruneCache,
  verifyStore,
  type PruneEvent,
} from "@kiln/builder";
import { defaultCacheDir } from "@kiln/repo";
import { opt } from "../options.js";
import { defineCommand, defineGroup, flag, parsed } from "../program.js";
import { UserError, type Io } from "../util.js";

const COMMON = {
  cacheDir: opt.cacheDir.describe("the cache (default $KILN_CACHE_DIR or ~/.cache/kiln)"),
  json: opt.json,
} as const;

/** A usage error naming the option, from the parser's message. */
function asUsage<T>(parse: (raw: string, what: string) => T, option: string): (raw: string) => T {
  return (raw) => {
    try {
      return parse(raw, option);
    } catch (e) {
      if (e instanceof CacheError) throw new UserError(e.message, 2);
      throw e;
    }
  };
}

export function mib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

const du = defineCommand({
  name: "cache du",
  summary: "show what the cache holds, per kind, hard links counted once",
  details: `Walks the cache and prints the bytes on disk of each kind: store (the file contents guests
share), guests (what each guest holds beyond the store: directories, links, empty files), packages
(fetched .apk files), sources, indexes, compiled, other; then the total and how many guests there
are, with what they would take as independent copies. A file with several hard links is counted
once. With --json: {"kinds": {...}, "total": N, "guests": N, "guestsApparent": N} in bytes.`,
  options: COMMON,
  async run(values, _args, io) {
    const u = await cacheUsage(values.cacheDir ?? defaultCacheDir(io.env));
    if (values.json) {
      io.out(JSON.stringify(u, null, 2));
      return 0;
    }
    for (const [k, v] of Object.entries(u.kinds)) io.out(`${k.padEnd(9)} ${mib(v).padStart(12)}`);
    io.out(`${"total".padEnd(9)} ${mib(u.total).padStart(12)}`);
    io.out(`${u.guests} guests, ${mib(u.guestsApparent)} as independent copies`);
    return 0;
  },
});

function printer(io: Io, json: boolean): (e: PruneEvent) => void {
  if (json) return () => undefined;
  return (e) => {
    if (e.kind === "usage") io.err(`cache: ${mib(e.total)}`);
    else if (e.kind === "in-use") io.err(`  kept ${e.item.kind} ${e.item.name}: in use by a running build`);
    else
      io.err(
        `  ${e.dryRun ? "would evict" : "evicted"} ${e.item.kind} ${e.item.name} (last used ${new Date(e.item.lastUse).toISOString()}): ${mib(e.bytes)}`,
      );
  };
}

const prune = defineCommand({
  name: "cache prune",
  summary: "evict guests and fetched packages, least recently used first",
  details: `Evicts guests (and the store files only they used) and fetched packages, least recently used
first: with --all-guests every guest, with --older-than those unused for longer than DURATION, and
with --max-size as many more as it takes for the cache to fit SIZE (default $KILN_CACHE_MAX_SIZE).
A guest a running build holds is never evicted. Store files no guest links any more are removed too.
Sources, indexes and compiled recipes are kept. Each eviction is shown as it happens, then a summary;
with --dry-run nothing is removed and the summary says what would be freed.`,
  options: {
    ...COMMON,
    maxSize: parsed(
      "--max-size <SIZE>",
      "evict until the cache takes at most SIZE (512M, 4G, 1T)",
      asUsage(parseSize, "--max-size"),
    ),
    olderThan: parsed(
      "--older-than <DURATION>",
      "evict what has not been used for DURATION (30m, 12h, 7d, 2w)",
      asUsage(parseDuration, "--older-than"),
    ),
    allGuests: flag("--all-guests", "evict every guest not in use"),
    dryRun: flag("--dry-run", "remove nothing; show what would be evicted and freed"),
  },
  async run(values, _args, io) {
    let maxSize = values.maxSize;
    if (maxSize === undefined && io.env.KILN_CACHE_MAX_SIZE)
      maxSize = asUsage(parseSize, "KILN_CACHE_MAX_SIZE")(io.env.KILN_CACHE_MAX_SIZE);
    if (maxSize === undefined && values.olderThan === undefined && !values.allGuests)
      throw new UserError("kiln cache prune: give --max-size, --older-than or --all-guests", 2);
    const r = await pruneCache(values.cacheDir ?? defaultCacheDir(io.env), {
      ...(maxSize !== undefined ? { maxSize } : {}),
      ...(values.olderThan !== undefined ? { olderThanMs: values.olderThan } : {}),
      allGuests: !!values.allGuests,
      dryRun: !!values.dryRun,
      onProgress: printer(io, !!values.json),
    });
    if (values.json) {
      io.out(JSON.stringify({ ...r, before: r.before.total }, null, 2));
      return 0;
    }
    const guests = r.evicted.filter((e) => e.kind === "guest").length;
    const verb = r.dryRun ? "would free" : "freed";
    io.out(
      `${verb} ${mib(r.freed)}: ${guests} guests, ${r.evicted.length - guests} packages` +
        `${r.orphans.files ? `, ${r.orphans.files} unlinked store files` : ""}; cache ${mib(r.before.total)} -> ${mib(r.after)}` +
        `${r.inUse.length ? `; ${r.inUse.length} guests in use kept` : ""}`,
    );
    return 0;
  },
});

const dedup = defineCommand({
  name: "cache dedup",
  summary: "move the files of guests assembled before the store into it (hard links)",
  details: `Guests assembled by an older kiln hold a copy of every file. This hashes each regular file of
every guest and replaces it with a hard link to its store entry (the first copy of a content becomes
the entry), so identical files across guests take the space of one. A guest in use stays usable: each
file is replaced by a rename, with the same content. Shows each guest as it is done, then a summary.`,
  options: COMMON,
  async run(values, _args, io) {
    const cacheDir = values.cacheDir ?? defaultCacheDir(io.env);
    const before = (await cacheUsage(cacheDir)).total;
    const r = await dedupGuests(cacheDir, (key, done, of, acc) => {
      if (!values.json) io.err(`  [${done}/${of}] ${key}: ${mib(acc.saved)} saved so far`);
    });
    const after = (await cacheUsage(cacheDir)).total;
    if (values.json) io.out(JSON.stringify({ ...r, before, after }, null, 2));
    else
      io.out(
        `${r.guests} guests: ${r.linked} files linked to the store, ${r.adopted} added to it; cache ${mib(before)} -> ${mib(after)}`,
      );
    return 0;
  },
});

const verify = defineCommand({
  name: "cache verify",
  summary: "re-hash the store; exit 1 if an entry's content does not match its name",
  details: `Reads every store entry (CACHE/store/AA/SHA256-MODE) and checks its content against its name. A
damaged entry is named; the guests linking it hold the damage too: remove them (kiln cache prune
--all-guests) and the next builds assemble them again. Guests about to link a damaged entry find it
themselves and write a good copy.`,
  options: COMMON,
  async run(values, _args, io) {
    const bad = await verifyStore(values.cacheDir ?? defaultCacheDir(io.env));
    if (values.json) io.out(JSON.stringify({ damaged: bad }, null, 2));
    else {
      for (const p of bad) io.out(`${p}: content does not match its name`);
      io.out(bad.length ? `${bad.length} damaged store entries` : "store verified");
    }
    return bad.length ? 1 : 0;
  },
});

export const cache = defineGroup(
  "cache",
  "the build cache: sizes (du), LRU eviction (prune), dedup of old guests, verify",
  [du, prune, dedup, verify],
);
