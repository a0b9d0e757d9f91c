// git-checkout from a seeded bundle (`kiln source add --git-repository`):
// when a checkout pinned by expected-commit is not in the cache, a seeded
// bundle of the repository (and of each submodule's) that holds the commit
// is unpacked into a private mirror, and the clone is made from that mirror
// over file:// (allowed for kiln's own mirrors only: the recipe's URLs
// stay under the transport policy) with every check of a network clone.
// The mirror's path is then replaced by the repository's URL in what the
// clone keeps (.git/config, FETCH_HEAD), so the checkout names the
// repository as a network clone would.

import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { bundleHasCommit, bundlesOf, type SeededBundle } from "../source/git-bundles.js";
import { gitEnv, runGit, type GitOptions } from "./git-run.js";
import { NativeStepError } from "./host.js";

export interface Seed {
  /** The file:// URL of the mirror of the repository's bundle. */
  url: string;
  bundle: SeededBundle;
  /** The options for git with file:// allowed (kiln's mirrors only). */
  o: GitOptions;
  /** mirror URL -> the repository it stands for. */
  names: Map<string, string>;
  /** A mirror of a seeded bundle of `repository` holding `commit`; throws naming the repository to seed. */
  mirrorFor(repository: string, commit: string, what: string): Promise<string>;
}

const seedHint = (repository: string) => `seed one with: kiln source add --git-repository ${repository} FILE.bundle`;

/** The seeded bundles of `repository` holding `commit`, those whose `ref` points at it first. */
async function candidates(cacheDir: string, repository: string, commit: string, ref = ""): Promise<SeededBundle[]> {
  const all = await bundlesOf(cacheDir, repository);
  const holding: SeededBundle[] = [];
  // expected-commit may be an annotated tag's object (melange accepts it): a ref's object then matches.
  for (const b of all)
    if (b.refs.some((r) => r.object === commit) || (await bundleHasCommit(cacheDir, b.sha256, commit))) holding.push(b);
  const at = (b: SeededBundle) =>
    b.refs.some(
      (r) =>
        (r.name === `refs/tags/${ref}` || r.name === `refs/heads/${ref}`) &&
        (r.commit === commit || r.object === commit),
    );
  return [...holding.filter(at), ...holding.filter((b) => !at(b))];
}

/** Why no seeded bundle serves `repository` at `commit`: for the error of a failed network clone. */
export async function noSeedNote(cacheDir: string, repository: string, commit: string): Promise<string> {
  const all = await bundlesOf(cacheDir, repository);
  if (all.length === 0) return `no git bundle of ${repository} is seeded (${seedHint(repository)})`;
  return `the seeded bundles of ${repository} (${all.map((b) => b.sha256.slice(0, 12)).join(", ")}) do not hold commit ${commit} (${seedHint(repository)})`;
}

async function makeMirror(bundle: SeededBundle, dir: string, o: GitOptions, what: string): Promise<string> {
  await runGit(["clone", "--quiet", "--mirror", "--", bundle.path, dir], { ...o, watch: dir }, what);
  const cfg = (k: string, v: string) => runGit(["config", k, v], { ...o, cwd: dir }, what);
  await cfg("uploadpack.allowFilter", "true");
  await cfg("uploadpack.allowReachableSHA1InWant", "true");
  return `file://${dir}`;
}

/**
 * The seed for a checkout of `repository` at `commit`, or undefined when
 * no seeded bundle holds the commit. Mirrors are made under `tmp`.
 */
export async function findSeed(
  cacheDir: string,
  tmp: string,
  repository: string,
  commit: string,
  ref: string,
  o: GitOptions,
  where: string,
): Promise<Seed | undefined> {
  const [bundle] = await candidates(cacheDir, repository, commit, ref);
  if (!bundle) return undefined;
  const protocols = [...new Set([...o.protocols, "file"])];
  const so: GitOptions = { ...o, protocols, env: gitEnv(o.env.HOME ?? tmp, protocols) };
  const names = new Map<string, string>();
  const made = new Map<string, string>();
  const mirror = async (b: SeededBundle, repo: string) => {
    let url = made.get(b.sha256);
    if (!url) {
      const dir = join(tmp, `seed-${made.size}`);
      url = await makeMirror(b, dir, so, `${where}: the seeded bundle ${b.sha256} of ${repo}`);
      made.set(b.sha256, url);
    }
    names.set(url, repo);
    return url;
  };
  const url = await mirror(bundle, repository);
  return {
    url,
    bundle,
    o: so,
    names,
    async mirrorFor(repo, c, what) {
      const [b] = await candidates(cacheDir, repo, c);
      if (!b)
        throw new NativeStepError(`${what}: submodule repository ${repo}: ${await noSeedNote(cacheDir, repo, c)}`);
      return mirror(b, repo);
    },
  };
}

/** A submodule's URL as git resolves it: `./x` and `../x` against the parent's repository URL. */
export function resolveSubmoduleUrl(base: string, url: string, what: string): string {
  if (!url.startsWith("./") && !url.startsWith("../")) return url;
  let b = base.replace(/\/+$/, "");
  let rest = url;
  for (;;) {
    if (rest.startsWith("./")) rest = rest.slice(2);
    else if (rest.startsWith("../")) {
      const i = b.lastIndexOf("/");
      if (i < 0 || b.slice(0, i).endsWith("/") || b.slice(0, i).endsWith(":"))
        throw new NativeStepError(`${what}: the submodule url ${JSON.stringify(url)} climbs above ${base}`);
      b = b.slice(0, i);
      rest = rest.slice(3);
    } else break;
  }
  return `${b}/${rest}`;
}

/**
 * `git submodule update` from seeded bundles: each submodule of `dir`
 * (names and urls from .gitmodules, `base` the repository `dir` stands for)
 * is pointed at a mirror of a seeded bundle holding its commit, updated,
 * then given its repository's URL back. Returns path -> repository URL.
 */
export async function updateSeededSubmodules(
  seed: Seed,
  dir: string,
  base: string,
  urls: Array<[string, string]>,
  args: string[],
  where: string,
): Promise<Map<string, string>> {
  const o = { ...seed.o, cwd: dir };
  await runGit(["submodule", "init"], o, where);
  const set: Array<[string, string, string]> = [];
  for (const [key, url] of urls) {
    const name = key.slice(10, -4);
    const pathOf = await runGit(
      ["config", "--blob", "HEAD:.gitmodules", `submodule.${name}.path`],
      { ...o, allowFail: true },
      where,
    );
    const path = pathOf.stdout.trim();
    const entry = path ? (await runGit(["ls-tree", "-z", "HEAD", "--", path], o, where)).stdout : "";
    const commit = /^160000 commit ([0-9a-f]{40})\t/.exec(entry)?.[1];
    if (!commit) continue;
    const real = resolveSubmoduleUrl(base, url, where);
    await runGit(["config", `submodule.${name}.url`, await seed.mirrorFor(real, commit, where)], o, where);
    set.push([name, path, real]);
  }
  await runGit(["submodule", "update", ...args], { ...o, watch: join(dir, "..") }, `${where}: submodules of ${base}`);
  const out = new Map<string, string>();
  for (const [name, path, real] of set) {
    await runGit(["config", `submodule.${name}.url`, real], o, where);
    const sub = join(dir, path);
    if (await fsp.lstat(join(sub, ".git")).catch(() => undefined))
      await runGit(["remote", "set-url", "origin", real], { ...o, cwd: sub }, where);
    out.set(path, real);
  }
  return out;
}

/** Replace each mirror URL by its repository's in every FETCH_HEAD under `gitDir`. */
export async function scrubMirrorUrls(seed: Seed, gitDir: string): Promise<void> {
  const walk = async (d: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && e.name === "FETCH_HEAD") {
        let text = await fsp.readFile(p, "utf8");
        // FETCH_HEAD names a repository without its trailing ".git", as git writes it.
        for (const [url, repo] of seed.names)
          text = text.split(url).join(repo.replace(/\/+$/, "").replace(/\.git$/, ""));
        await fsp.writeFile(p, text);
      }
    }
  };
  await walk(gitDir);
}
