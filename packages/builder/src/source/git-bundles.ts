// Seeded git bundles: `git bundle` files made on a connected machine, put
// into the source cache by `kiln source add --git-repository URL FILE` so
// that a git-checkout pinned by expected-commit builds without the server.
// The bundle is stored content-addressed like any seeded source
// (`<cache>/sources/<sha256>`), after host git (no hooks, no configuration,
// no prompts, objects checked with fsck) has verified it and read every
// object of it; beside it, `sources/git-bundles/<sha256>.json` records the
// repository, refs and commit count, `<sha256>.commits` every commit it
// holds, and `by-repository/<sha256 of the normalised URL>.json` lists the
// bundles of one repository.

import { createHash } from "node:crypto";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "@kiln/core";
import { allowedProtocols, gitBudget, gitEnv, runGit, urlRefusal, type GitOptions } from "../steps/git-run.js";
import { gitWorkDir } from "../steps/git-tree.js";
import { addSource, MAX_SEED_BYTES, sourceCache } from "./cache.js";
import { SourceError } from "./errors.js";

/**
 * The form a repository URL is indexed under: surrounding whitespace, a
 * trailing `/` and one trailing `.git` dropped, scheme and host in lower
 * case. `https://Example.org/a/b.git/` and `https://example.org/a/b` are one
 * repository; the path keeps its case.
 */
export function normalizeRepository(url: string): string {
  let u = url.trim().replace(/\/+$/, "");
  if (u.endsWith(".git")) u = u.slice(0, -4).replace(/\/+$/, "");
  return u.replace(
    /^([a-z][a-z0-9+.-]*:\/\/)([^/]*)/i,
    (_m, s: string, h: string) => s.toLowerCase() + h.toLowerCase(),
  );
}

export interface BundleRef {
  name: string;
  /** What the ref points at (a tag's object for an annotated tag). */
  object: string;
  /** The commit it resolves to ("" when it is not a commit). */
  commit: string;
}

export interface SeededBundle {
  repository: string;
  sha256: string;
  bytes: number;
  /** `<cache>/sources/<sha256>` */
  path: string;
  refs: BundleRef[];
  commits: number;
}

export interface AddedBundle extends SeededBundle {
  file: string;
  sha512: string;
  existed: boolean;
}

const bundleDir = (cacheDir: string) => join(sourceCache(cacheDir).dir, "git-bundles");
const repoIndex = (cacheDir: string, repository: string) =>
  join(
    bundleDir(cacheDir),
    "by-repository",
    createHash("sha256").update(normalizeRepository(repository)).digest("hex") + ".json",
  );

/** The header of a bundle: only a complete (no prerequisites), unfiltered v2 or v3 bundle is taken. */
async function checkHeader(path: string, file: string): Promise<void> {
  const fh = await fsp.open(path, "r");
  let head: string;
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    head = buf.subarray(0, bytesRead).toString("latin1");
  } finally {
    await fh.close();
  }
  const lines = head.split("\n");
  if (!/^# v[23] git bundle$/.test(lines[0] ?? ""))
    throw new SourceError("SEED", `${file}: not a git bundle (it does not start with "# v2 git bundle")`);
  for (const l of lines.slice(1)) {
    if (l === "") break;
    if (l.startsWith("-"))
      throw new SourceError(
        "SEED",
        `${file}: the bundle needs commits it does not hold (${l.slice(1, 41)}); make it with the whole history, e.g. git bundle create FILE --all`,
      );
    if (l.startsWith("@filter"))
      throw new SourceError("SEED", `${file}: a filtered (partial) bundle is refused: it does not hold every object`);
  }
}

/** Read every object of the bundle at `path` into a fresh bare repository; returns its refs and commits. */
async function readBundle(
  cacheDir: string,
  path: string,
  file: string,
): Promise<{ refs: BundleRef[]; commits: string[] }> {
  const tmp = await gitWorkDir(cacheDir);
  try {
    const home = join(tmp, "home");
    const repo = join(tmp, "repo.git");
    await fsp.mkdir(home);
    const o: GitOptions = { cwd: tmp, env: gitEnv(home, ["file"]), protocols: ["file"], budget: gitBudget() };
    const what = `${file}: git bundle`;
    try {
      await runGit(["init", "--quiet", "--bare", repo], o, what);
      const r = { ...o, cwd: repo };
      await runGit(["bundle", "verify", "--quiet", path], r, what);
      await runGit(
        ["-c", "transfer.fsckObjects=true", "fetch", "--quiet", "--no-tags", path, "+refs/*:refs/*"],
        { ...r, watch: tmp },
        what,
      );
    } catch (e) {
      throw new SourceError("SEED", `${(e as Error).message} (the bundle is refused)`, { cause: e });
    }
    const r = { ...o, cwd: repo };
    const listed = (await runGit(["for-each-ref", "--format=%(objectname) %(refname)"], r, what)).stdout;
    const refs: BundleRef[] = [];
    for (const line of listed.split("\n").filter(Boolean)) {
      const [object = "", name = ""] = line.split(" ");
      const c = await runGit(
        ["rev-parse", "--verify", "--quiet", `${object}^{commit}`],
        { ...r, allowFail: true },
        what,
      );
      refs.push({ name, object, commit: c.code === 0 ? c.stdout.trim() : "" });
    }
    if (refs.length === 0) throw new SourceError("SEED", `${file}: the bundle holds no refs`);
    const commits = (await runGit(["rev-list", "--all"], r, what)).stdout.split("\n").filter(Boolean).sort();
    return { refs, commits };
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Seed the cache with the git bundle `file` of `repository`: stored as a
 * source by its sha256 (addSource's rules: a regular file, at most
 * `maxBytes`), verified and read whole by host git, recorded under the
 * repository. A bundle that fails is not left in the cache (unless it was
 * there before). With `keepExisting` (seeding before every build round) a
 * bundle recorded under this repository already is only hashed.
 */
export async function addGitBundle(
  cacheDir: string,
  file: string,
  repository: string,
  maxBytes = MAX_SEED_BYTES,
  keepExisting = false,
): Promise<AddedBundle> {
  const refused = urlRefusal(repository, allowedProtocols());
  if (refused) throw new SourceError("SEED", `--git-repository ${JSON.stringify(repository)} is refused: ${refused}`);
  const cache = sourceCache(cacheDir);
  const added = await addSource(cache, file, maxBytes, keepExisting);
  const dir = bundleDir(cacheDir);
  const idx = repoIndex(cacheDir, repository);
  if (keepExisting && added.existed && (await readIndex(idx)).includes(added.sha256)) {
    const known = await readBundleMeta(cacheDir, added.sha256);
    if (known) return { ...known, file, sha512: added.sha512, existed: true };
  }
  let info: { refs: BundleRef[]; commits: string[] };
  try {
    await checkHeader(added.path, file);
    info = await readBundle(cacheDir, added.path, file);
  } catch (e) {
    if (!added.existed) {
      await fsp.rm(added.path, { force: true });
      await fsp.rm(join(cache.by512, added.sha512), { force: true });
    }
    throw e;
  }
  const bundle: SeededBundle = {
    repository: repository.trim(),
    sha256: added.sha256,
    bytes: added.bytes,
    path: added.path,
    refs: info.refs,
    commits: info.commits.length,
  };
  await fsp.mkdir(join(dir, "by-repository"), { recursive: true });
  await writeFileAtomic(join(dir, `${added.sha256}.commits`), info.commits.join("\n") + "\n");
  await writeFileAtomic(join(dir, `${added.sha256}.json`), JSON.stringify(bundle, null, 2) + "\n");
  const known = await readIndex(idx);
  if (!known.includes(added.sha256))
    await writeFileAtomic(
      idx,
      JSON.stringify({ repository: normalizeRepository(repository), bundles: [...known, added.sha256] }) + "\n",
    );
  return { ...bundle, file, sha512: added.sha512, existed: added.existed };
}

async function readIndex(idx: string): Promise<string[]> {
  try {
    const j = JSON.parse(await fsp.readFile(idx, "utf8")) as { bundles?: unknown };
    return Array.isArray(j.bundles) ? j.bundles.filter((s): s is string => /^[0-9a-f]{64}$/.test(String(s))) : [];
  } catch {
    return [];
  }
}

async function readBundleMeta(cacheDir: string, sha256: string): Promise<SeededBundle | undefined> {
  try {
    const m = JSON.parse(await fsp.readFile(join(bundleDir(cacheDir), `${sha256}.json`), "utf8")) as SeededBundle;
    if (m.sha256 !== sha256 || !Array.isArray(m.refs)) return undefined;
    const st = await fsp.lstat(join(sourceCache(cacheDir).dir, sha256));
    return st.isFile() ? { ...m, path: join(sourceCache(cacheDir).dir, sha256) } : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the seeded bundle `sha256` holds `commit` (as recorded when it was added). */
export async function bundleHasCommit(cacheDir: string, sha256: string, commit: string): Promise<boolean> {
  const list = await fsp.readFile(join(bundleDir(cacheDir), `${sha256}.commits`), "utf8").catch(() => "");
  return list.split("\n").includes(commit);
}

/** The seeded bundles of `repository` (by its normalised URL), in the order they were added. */
export async function bundlesOf(cacheDir: string, repository: string): Promise<SeededBundle[]> {
  const out: SeededBundle[] = [];
  for (const sha of await readIndex(repoIndex(cacheDir, repository))) {
    const m = await readBundleMeta(cacheDir, sha);
    if (m) out.push(m);
  }
  return out;
}

/** Every seeded bundle, by repository then sha256. */
export async function listGitBundles(cacheDir: string): Promise<SeededBundle[]> {
  const names = await fsp.readdir(bundleDir(cacheDir)).catch(() => [] as string[]);
  const out: SeededBundle[] = [];
  for (const n of names.sort()) {
    const sha = /^([0-9a-f]{64})\.json$/.exec(n)?.[1];
    const m = sha ? await readBundleMeta(cacheDir, sha) : undefined;
    if (m) out.push(m);
  }
  return out.sort((a, b) => (a.repository < b.repository ? -1 : a.repository > b.repository ? 1 : 0));
}
