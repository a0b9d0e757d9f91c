// The `git-checkout` step, performed by kiln with host git (the build guest
// has no network): clone into a private directory outside the workspace,
// resolve the tag or branch and verify expected-commit, check the tree's
// size, check out (submodules too, every URL under the transport policy),
// apply the cherry-picks with a fixed identity and SOURCE_DATE_EPOCH, then
// copy the result (with its .git, as melange leaves it) into the
// destination. With expected-commit the clone is cached by what was asked
// for, so the same recipe checks out again without the server; on a cache
// miss a seeded bundle holding expected-commit (`kiln source add
// --git-repository`, git-seed.ts) is preferred to the network.

import { createHash } from "node:crypto";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { isInside } from "@kiln/core";
import { ensureDirUnder } from "../host-files.js";
import { gitCheckoutProblems, parseCherryPicks } from "./git-native.js";
import { allowedProtocols, gitBudget, gitEnv, runGit, urlRefusal, type GitOptions } from "./git-run.js";
import { findSeed, noSeedNote, scrubMirrorUrls, updateSeededSubmodules, type Seed } from "./git-seed.js";
import { exportTree, gitWorkDir, restoreClone, storeClone, type CachedClone } from "./git-tree.js";
import { hostStep, NativeStepError, workspaceRelative, type NativeContext } from "./host.js";

interface Checkout {
  repository: string;
  ref: string;
  isTag: boolean;
  expected: string;
  branchTip: boolean;
  /** -1: whole history. */
  depth: number;
  recurse: boolean;
  shallowSubmodules: boolean;
  jobs: number;
  sparse: string[];
  cherryPicks: string;
  retries: number;
  backoff: number;
  maxBackoff: number;
}

function parseInputs(w: Record<string, string>, where: string): Checkout {
  const problems = gitCheckoutProblems(w);
  if (problems.length) throw new NativeStepError(`${where}: ${problems.map(([, m]) => m).join("; ")}`);
  const expected = (w["expected-commit"] ?? "").toLowerCase();
  if (expected !== "" && !/^[0-9a-f]{40}$/.test(expected))
    throw new NativeStepError(
      `${where}: expected-commit must be 40 hexadecimal digits, got ${JSON.stringify(expected)}`,
    );
  const branch = w.branch ?? "";
  const branchTip = w["expected-commit-is-branch-tip"] === "true";
  const rawDepth = w.depth || "unset";
  const depth = rawDepth === "unset" ? (branch !== "" && expected !== "" && !branchTip ? -1 : 1) : Number(rawDepth);
  return {
    repository: w.repository ?? "",
    ref: w.tag || branch,
    isTag: (w.tag ?? "") !== "",
    expected,
    branchTip,
    depth,
    recurse: w["recurse-submodules"] === "true",
    shallowSubmodules: w["shallow-submodules"] === "true",
    jobs: Number(w["submodule-jobs"] || 1),
    sparse: (w["sparse-paths"] ?? "").split(/[\s,]+/).filter((p) => p !== "" && p !== "-"),
    cherryPicks: w["cherry-picks"] ?? "",
    retries: Number(w["max-retries"] || 3),
    backoff: Number(w["initial-backoff"] || 2),
    maxBackoff: Number(w["max-backoff"] || 60),
  };
}

/** Everything that decides the clone's content: the cache key. */
function cacheKey(c: Checkout): string {
  const { repository, ref, isTag, expected, branchTip, depth, recurse, shallowSubmodules, sparse } = c;
  const picks = parseCherryPicks(c.cherryPicks).map((p) => `${p.branch}/${p.commit}`);
  const what = { v: 1, repository, ref, isTag, expected, branchTip, depth, recurse, shallowSubmodules, sparse, picks };
  return createHash("sha256").update(JSON.stringify(what)).digest("hex");
}

export const gitCheckoutStep = hostStep("git-checkout", async (w, wdRel, where, ctx) => {
  const c = parseInputs(w, where);
  const protocols = allowedProtocols();
  const destRel = workspaceRelative(wdRel, w.destination || ".", `${where}: destination`);
  if (!c.expected) ctx.log.write(`# git-checkout: no expected-commit: the checkout is not verified nor cached\n`);
  const tmp = await gitWorkDir(ctx.cacheDir);
  try {
    const clone = join(tmp, "clone");
    const home = join(tmp, "home");
    await fsp.mkdir(home);
    const budget = gitBudget();
    const o: GitOptions = {
      cwd: tmp,
      env: gitEnv(home, protocols),
      protocols,
      budget,
      log: (l) => ctx.log.write(l),
    };
    const key = c.expected ? cacheKey(c) : undefined;
    let meta = key ? await restoreCached(key, clone, o, ctx) : undefined;
    if (meta) {
      ctx.log.write(`# git-checkout: ${c.repository} ${meta.base} from the source cache\n`);
    } else {
      const base = await cloneFromSeedOrNetwork(c, clone, tmp, o, where, ctx);
      const head = (await runGit(["rev-parse", "HEAD"], { ...o, cwd: clone }, where)).stdout.trim();
      meta = { repository: c.repository, base, head };
      if (key) await storeClone(ctx.cacheDir, key, clone, meta);
    }
    const mtime = Number(
      (await runGit(["log", "-1", "--format=%ct", "HEAD"], { ...o, cwd: clone }, where)).stdout.trim(),
    );
    const dest = await ensureDirUnder(ctx.workspace, destRel, `${where}: destination`);
    await exportTree(clone, dest, mtime);
    ctx.log.write(`# git-checkout: ${c.repository} at ${meta.head} into ${destRel || "."}\n`);
    return { source: { uri: `git+${c.repository}@${meta.base}`, commit: meta.head } };
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
});

/**
 * A seeded bundle holding expected-commit is preferred to the network (the
 * checks are the same, and the commit pins the content); without one the
 * repository is cloned, and its failure says which bundle would serve.
 */
async function cloneFromSeedOrNetwork(
  c: Checkout,
  clone: string,
  tmp: string,
  o: GitOptions,
  where: string,
  ctx: NativeContext,
): Promise<string> {
  const seed = c.expected ? await findSeed(ctx.cacheDir, tmp, c.repository, c.expected, c.ref, o, where) : undefined;
  if (seed) {
    ctx.log.write(`# git-checkout: ${c.repository} from the seeded bundle ${seed.bundle.sha256}\n`);
    return cloneVerified(c, clone, seed.o, where, sourceDateEpoch(ctx), seed);
  }
  try {
    return await cloneVerified(c, clone, o, where, sourceDateEpoch(ctx));
  } catch (e) {
    if (!c.expected || !(e instanceof NativeStepError) || !e.message.includes(`cloning ${c.repository}:`)) throw e;
    throw new NativeStepError(`${e.message}; ${await noSeedNote(ctx.cacheDir, c.repository, c.expected)}`, {
      cause: e,
    });
  }
}

/** The cached clone, checked (HEAD as recorded); a damaged entry is set aside and the clone made again. */
async function restoreCached(
  key: string,
  clone: string,
  o: GitOptions,
  ctx: NativeContext,
): Promise<CachedClone | undefined> {
  try {
    const meta = await restoreClone(ctx.cacheDir, key, clone);
    if (!meta) return undefined;
    const head = await runGit(["rev-parse", "--verify", "HEAD"], { ...o, cwd: clone, allowFail: true }, "cached clone");
    if (head.stdout.trim() === meta.head) return meta;
  } catch (e) {
    ctx.log.write(`# git-checkout: ${(e as Error).message}\n`);
  }
  ctx.log.write(`# git-checkout: the cached clone ${key} is damaged: cloning again\n`);
  await fsp.rm(clone, { recursive: true, force: true });
  return undefined;
}

function sourceDateEpoch(ctx: NativeContext): number {
  const env = (ctx as NativeContext & { env?: Record<string, string> }).env;
  const n = Number(env?.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH ?? 0);
  // git refuses dates before 1980 in some places; melange clamps the same way.
  return Number.isFinite(n) && n >= 315532800 ? Math.floor(n) : 315532800;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `git clone` of `from` (the repository, or a seed's mirror), retried with backoff on failure. */
async function cloneWithRetries(c: Checkout, from: string, clone: string, o: GitOptions, where: string): Promise<void> {
  const args = [
    "clone",
    "--quiet",
    "--no-checkout",
    // A file:// repository (opted in) is read through upload-pack like a remote, never hard-linked.
    "--no-local",
    "--origin=origin",
    ...(c.ref ? [`--branch=${c.ref}`] : []),
    ...(c.depth === -1 ? [] : [`--depth=${c.depth}`]),
    ...(c.sparse.length ? ["--sparse", "--filter=blob:none"] : []),
    "--",
    from,
    clone,
  ];
  for (let attempt = 0, wait = c.backoff; ; attempt++, wait = Math.min(wait * 2, c.maxBackoff)) {
    try {
      await runGit(args, { ...o, watch: tmpOf(clone) }, `${where}: cloning ${c.repository}`);
      return;
    } catch (e) {
      const timedOut = /timed out|grew past|budget/.test((e as Error).message);
      if (timedOut || attempt >= c.retries || Date.now() + wait * 1000 >= o.budget.deadline) throw e;
      o.log?.(`# git-checkout: clone failed, retry ${attempt + 1}/${c.retries} in ${wait} s\n`);
      await fsp.rm(clone, { recursive: true, force: true });
      await sleep(wait * 1000);
    }
  }
}

/** Clone, resolve and verify, check out; returns the commit checked out (before cherry-picks). */
async function cloneVerified(
  c: Checkout,
  clone: string,
  o: GitOptions,
  where: string,
  sde: number,
  seed?: Seed,
): Promise<string> {
  const depthArgs = c.depth === -1 ? [] : [`--depth=${c.depth}`];
  await cloneWithRetries(c, seed?.url ?? c.repository, clone, o, where);
  const g = (a: string[], what = where) => runGit(a, { ...o, cwd: clone }, what).then((r) => r.stdout.trim());
  let target: string;
  if (c.isTag) {
    // A branch of the same name would win in clone --branch: fetch the tag itself.
    await runGit(
      ["fetch", "--quiet", "--no-tags", ...depthArgs, "origin", `+refs/tags/${c.ref}:refs/tags/${c.ref}`],
      { ...o, cwd: clone, watch: clone },
      `${where}: fetching tag ${c.ref}`,
    );
    target = await g(["rev-parse", "--verify", "--end-of-options", `refs/tags/${c.ref}^{commit}`]);
    if (c.expected && c.expected !== target) {
      const tagObject = await g(["rev-parse", "--verify", "--end-of-options", `refs/tags/${c.ref}`]);
      if (tagObject !== c.expected)
        throw new NativeStepError(
          `${where}: with.expected-commit ${c.expected} does not match tag ${c.ref} of ${c.repository}, which is commit ${target}`,
        );
      o.log?.(`# git-checkout: expected-commit is tag ${c.ref}'s object; its commit is ${target}: pin that instead\n`);
    }
  } else {
    const tip = await g(["rev-parse", "--verify", "HEAD^{commit}"]);
    target = c.expected || tip;
    const on = c.ref ? `branch ${c.ref}` : "HEAD";
    if (c.expected && c.expected !== tip) {
      if (c.branchTip)
        throw new NativeStepError(
          `${where}: with.expected-commit ${c.expected} is not the tip of ${on} of ${c.repository} (${tip})`,
        );
      if (c.depth !== -1)
        throw new NativeStepError(
          `${where}: with.expected-commit ${c.expected} is not ${on} of ${c.repository} (${tip}); set depth: -1 to check out an older commit of it`,
        );
      const anc = await runGit(
        ["merge-base", "--is-ancestor", c.expected, tip],
        { ...o, cwd: clone, allowFail: true },
        where,
      );
      if (anc.code !== 0)
        throw new NativeStepError(
          `${where}: with.expected-commit ${c.expected} is not on ${on} of ${c.repository} (tip ${tip}): update expected-commit`,
        );
    }
  }
  await checkTreeSize(c, clone, o, target, where);
  if (c.sparse.length) await g(["sparse-checkout", "set", "--cone", "--", ...c.sparse]);
  if (c.isTag) await g(["checkout", "--quiet", "--detach", target]);
  else await g(["reset", "--quiet", "--hard", target]);
  if (c.recurse) await submodules(c, clone, clone, o, where, 0, seed, c.repository);
  await cherryPick(c, clone, o, where, sde);
  if (seed) {
    await g(["remote", "set-url", "origin", c.repository]);
    await scrubMirrorUrls(seed, join(clone, ".git"));
  }
  // The index records each file's inode and times in this clone: read afresh from HEAD it holds none,
  // so two clones of the same commit leave the same .git/index (git refreshes it on first use).
  if (!c.sparse.length) await g(["read-tree", "HEAD"]);
  return target;
}

const tmpOf = (clone: string) => join(clone, "..");

/** The tree to be checked out must fit the size budget (a small pack can hold a huge tree). */
async function checkTreeSize(c: Checkout, clone: string, o: GitOptions, target: string, where: string): Promise<void> {
  if (c.sparse.length) return; // sizes would fetch every blob of a partial clone; the watch still applies
  const r = await runGit(["ls-tree", "-r", "-l", "-z", target], { ...o, cwd: clone }, where);
  let total = 0;
  for (const rec of r.stdout.split("\0")) {
    const size = Number(/^\S+ \S+ \S+ +(\d+)\t/.exec(rec)?.[1] ?? 0);
    total += size;
  }
  if (total > o.budget.maxBytes)
    throw new NativeStepError(
      `${where}: the tree of ${c.repository} at ${target} holds ${total} bytes, over the budget of ${o.budget.maxBytes} (KILN_GIT_MAX_BYTES)`,
    );
}

const MAX_SUBMODULE_DEPTH = 8;

/** Check out the submodules of the repository at `dir`, each URL checked first, then theirs. */
async function submodules(
  c: Checkout,
  root: string,
  dir: string,
  o: GitOptions,
  where: string,
  level: number,
  seed: Seed | undefined,
  base: string,
): Promise<void> {
  const read = async (re: string) => {
    const r = await runGit(
      ["config", "-z", "--blob", "HEAD:.gitmodules", "--get-regexp", re],
      { ...o, cwd: dir, allowFail: true },
      where,
    );
    return r.code === 0
      ? r.stdout
          .split("\0")
          .filter(Boolean)
          .map((e) => e.split("\n", 2) as [string, string])
      : [];
  };
  const urls = await read("^submodule\\..*\\.url$");
  if (urls.length === 0) return;
  if (level >= MAX_SUBMODULE_DEPTH)
    throw new NativeStepError(`${where}: submodules nested deeper than ${MAX_SUBMODULE_DEPTH} levels`);
  for (const [k, url] of urls) {
    // The recipe's policy, not the options' (which allow file:// for kiln's own mirrors).
    const refused = urlRefusal(url ?? "", allowedProtocols(), true);
    if (refused)
      throw new NativeStepError(
        `${where}: submodule ${k.slice(10, -4)}'s url ${JSON.stringify(url)} is refused: ${refused}`,
      );
  }
  const args = [...(c.shallowSubmodules ? ["--depth=1"] : []), `--jobs=${c.jobs}`];
  const bases = seed
    ? await updateSeededSubmodules(seed, dir, base, urls, args, where)
    : await runGit(
        ["submodule", "update", "--init", ...args],
        { ...o, cwd: dir, watch: tmpOf(root) },
        `${where}: submodules of ${c.repository}`,
      ).then(() => new Map<string, string>());
  for (const [, path] of await read("^submodule\\..*\\.path$")) {
    const sub = join(dir, path ?? "");
    if (!isInside(dir, sub) || sub === dir) continue;
    const st = await fsp.lstat(sub).catch(() => undefined);
    if (st?.isDirectory()) await submodules(c, root, sub, o, where, level + 1, seed, bases.get(path ?? "") ?? base);
  }
}

async function cherryPick(c: Checkout, clone: string, o: GitOptions, where: string, sde: number): Promise<void> {
  const picks = parseCherryPicks(c.cherryPicks);
  const fetched = new Set<string>();
  const env = { ...o.env, GIT_COMMITTER_DATE: `@${sde} +0000` };
  for (const p of picks) {
    const what = `${where}: cherry-picks line ${p.line} (${p.commit})`;
    if (p.branch && !fetched.has(p.branch)) {
      const shallow = (
        await runGit(["rev-parse", "--is-shallow-repository"], { ...o, cwd: clone }, what)
      ).stdout.trim();
      await runGit(
        [
          "fetch",
          "--quiet",
          ...(shallow === "true" ? ["--unshallow"] : []),
          "origin",
          `+refs/heads/${p.branch}:refs/remotes/origin/${p.branch}`,
        ],
        { ...o, cwd: clone, watch: tmpOf(clone) },
        `${what}: fetching branch ${p.branch}`,
      );
      fetched.add(p.branch);
    }
    await runGit(["cherry-pick", "-x", "--allow-empty", p.commit], { ...o, cwd: clone, env }, what);
    o.log?.(`# git-checkout: cherry-picked ${p.commit}${p.branch ? ` from ${p.branch}` : ""}: ${p.comment}\n`);
  }
}
