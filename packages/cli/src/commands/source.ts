// `kiln source add | list | verify`: the content-addressed source cache, for
// builds without the upstream host. A file added here is found by a fetch
// step pinned by its sha256 or sha512, whatever URI the recipe names.

import {
  addGitBundle,
  addSource,
  listGitBundles,
  listSources,
  MAX_SEED_BYTES,
  SourceError,
  sourceCache,
  verifySources,
} from "@kiln/builder";
import { defaultCacheDir } from "@kiln/repo";
import { opt } from "../options.js";
import { defineCommand, defineGroup, parsed, string } from "../program.js";
import { byteSize } from "./build.js";

const COMMON = {
  cacheDir: opt.cacheDir.describe("the cache builds read sources from (default $KILN_CACHE_DIR or ~/.cache/kiln)"),
  json: opt.json,
} as const;

const add = defineCommand({
  name: "source add",
  summary: "put local files into the source cache, found by their checksum",
  args: ["FILE..."],
  details: `Copies each FILE into CACHE/sources/SHA256 (and records its sha512), where a build's fetch step
looks before it downloads: a recipe whose fetch names expected-sha256 or expected-sha512 of the file
then builds without reaching its URI. Prints each file's sha256, sha512 and where it went. Only
regular files are taken (not symbolic links, directories or devices), each at most --max-size;
each is copied under a temporary name and renamed into place once hashed. Exit 1 if any file
was refused (the others are still added).

With --git-repository URL each FILE is a git bundle of that repository (git bundle create FILE
--all, made where the repository is reachable): host git verifies it and reads every object
(no hooks, no configuration), its refs and commits are recorded under the repository's URL,
and a git-checkout of that repository pinned by expected-commit is then cloned from the seeded
bundle that holds the commit, without the network. Only a complete, unfiltered bundle is taken.`,
  options: {
    ...COMMON,
    maxSize: parsed("--max-size <N>", "refuse files larger than N bytes (default 8G; suffixes K, M, G)", (raw) =>
      byteSize(raw, "--max-size"),
    ),
    gitRepository: string("--git-repository <URL>", "the FILEs are git bundles of the repository at URL"),
  },
  async run(values, files, io) {
    const cacheDir = values.cacheDir ?? defaultCacheDir(io.env);
    const cache = sourceCache(cacheDir);
    const added: object[] = [];
    let refused = 0;
    for (const f of files) {
      try {
        if (values.gitRepository !== undefined) {
          const b = await addGitBundle(cacheDir, f, values.gitRepository, values.maxSize ?? MAX_SEED_BYTES);
          added.push(b);
          if (!values.json)
            io.out(
              `${f}: git bundle of ${b.repository}, sha256 ${b.sha256}\n  ${b.refs.length} refs, ${b.commits} commits -> ${b.path} (${b.bytes} bytes${b.existed ? ", was cached" : ""})`,
            );
          continue;
        }
        const a = await addSource(cache, f, values.maxSize ?? MAX_SEED_BYTES);
        added.push(a);
        if (!values.json)
          io.out(
            `${f}: sha256 ${a.sha256}\n  sha512 ${a.sha512}\n  -> ${a.path} (${a.bytes} bytes${a.existed ? ", was cached" : ""})`,
          );
      } catch (e) {
        if (!(e instanceof SourceError)) throw e;
        io.err(`kiln source add: ${e.message}`);
        refused++;
      }
    }
    if (values.json) io.out(JSON.stringify(added, null, 2));
    return refused ? 1 : 0;
  },
});

const list = defineCommand({
  name: "source list",
  summary: "list the sources in the cache",
  details: `One line per cached source: its sha256, size in bytes and the sha512 names recorded for it;
then one line per seeded git bundle: "git REPOSITORY SHA256 BYTES", each of its refs below it
(REF COMMIT). With --json: {"sources": [...], "gitBundles": [...]}.`,
  options: COMMON,
  async run(values, _args, io) {
    const cacheDir = values.cacheDir ?? defaultCacheDir(io.env);
    const all = await listSources(sourceCache(cacheDir));
    const bundles = await listGitBundles(cacheDir);
    if (values.json) io.out(JSON.stringify({ sources: all, gitBundles: bundles }, null, 2));
    else {
      for (const s of all) io.out(`${s.sha256} ${s.bytes}${s.sha512.map((h) => ` sha512:${h}`).join("")}`);
      for (const b of bundles) {
        io.out(`git ${b.repository} ${b.sha256} ${b.bytes} (${b.commits} commits)`);
        for (const r of b.refs) io.out(`  ${r.name} ${r.commit || r.object}`);
      }
    }
    return 0;
  },
});

const verify = defineCommand({
  name: "source verify",
  summary: "re-hash the cached sources; exit 1 if any content does not match its name",
  details: `Reads every cached source and checks its sha256 (its name) and the sha512 names recorded
for it. A damaged entry is named with what its content hashes to; remove it, or add the right file
again with kiln source add.`,
  options: COMMON,
  async run(values, _args, io) {
    const all = await verifySources(sourceCache(values.cacheDir ?? defaultCacheDir(io.env)));
    const bad = all.filter((s) => s.problems.length);
    if (values.json) io.out(JSON.stringify(all, null, 2));
    else {
      for (const s of bad) for (const p of s.problems) io.out(`${s.path}: ${p}`);
      io.out(`${all.length - bad.length} of ${all.length} cached sources verified`);
    }
    return bad.length ? 1 : 0;
  },
});

export const source = defineGroup("source", "the content-addressed source cache: add local files, list, verify", [
  add,
  list,
  verify,
]);
