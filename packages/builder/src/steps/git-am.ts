// The `git-am` step, performed by kiln with host git: the patches (named
// relative to the workspace root, where the recipe's source directory is
// copied) are applied to the working directory with `git am`, committed by
// a fixed identity at SOURCE_DATE_EPOCH. The workspace is hostile (a guest
// step may have written a .git/config that runs commands), so git never
// reads a repository there: a private repository outside it records the
// working directory as it is, then applies the patches to it. git apply
// itself refuses to write through a symlink.

import * as fsp from "node:fs/promises";
import { join, posix } from "node:path";
import { ensureDirUnder, fileUnder } from "../host-files.js";
import { allowedProtocols, gitBudget, gitEnv, runGit, type GitOptions } from "./git-run.js";
import { gitWorkDir } from "./git-tree.js";
import { hostStep, NativeStepError, type NativeContext } from "./host.js";

function epoch(ctx: NativeContext): number {
  const env = (ctx as NativeContext & { env?: Record<string, string> }).env;
  const n = Number(env?.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH ?? 0);
  return Number.isFinite(n) && n >= 315532800 ? Math.floor(n) : 315532800;
}

export const gitAmStep = hostStep("git-am", async (w, wdRel, where, ctx) => {
  const names = (w.patches ?? "").split(/\s+/).filter(Boolean);
  if (names.length === 0) throw new NativeStepError(`${where}: with.patches names no patch`);
  const files: string[] = [];
  for (const name of names) {
    const rel = posix.normalize(name);
    if (posix.isAbsolute(name) || rel === ".." || rel.startsWith("../"))
      throw new NativeStepError(
        `${where}: with.patches: ${JSON.stringify(name)} is outside the recipe's source directory (patches are named relative to it; it is copied to the workspace root)`,
      );
    files.push(await fileUnder(ctx.workspace, rel, `${where}: with.patches`));
  }
  const wd = await ensureDirUnder(ctx.workspace, wdRel, `${where}: working-directory`);
  const tmp = await gitWorkDir(ctx.cacheDir);
  try {
    const home = join(tmp, "home");
    const repo = join(tmp, "repo");
    await fsp.mkdir(home);
    // Copies: a patch cannot change between the check above and git reading it.
    const copies: string[] = [];
    for (const [i, f] of files.entries()) {
      const c = join(tmp, `${i}.patch`);
      await fsp.copyFile(f, c);
      copies.push(c);
    }
    const sde = epoch(ctx);
    const protocols = allowedProtocols();
    const o: GitOptions = {
      cwd: tmp,
      env: gitEnv(home, protocols, {
        GIT_COMMITTER_DATE: `@${sde} +0000`,
        GIT_AUTHOR_DATE: `@${sde} +0000`,
      }),
      protocols,
      budget: gitBudget(),
      log: (l) => ctx.log.write(l),
    };
    await runGit(["init", "--quiet", repo], o, `${where}: git init`);
    const at = ["--git-dir", join(repo, ".git"), "--work-tree", wd];
    const inWd = { ...o, cwd: wd };
    await runGit([...at, "add", "--all", "--force", "."], inWd, `${where}: recording ${wdRel || "."}`);
    await runGit(
      [...at, "commit", "--quiet", "--allow-empty", "--no-verify", "-m", "the working directory before git-am"],
      inWd,
      `${where}: recording ${wdRel || "."}`,
    );
    // The author of each patch is its own; only the committer is kiln's.
    const amEnv = { ...o.env };
    delete amEnv.GIT_AUTHOR_DATE;
    await runGit(
      [...at, "am", "--quiet", "--", ...copies],
      { ...inWd, env: amEnv },
      `${where}: git am ${names.join(" ")}`,
    );
    ctx.log.write(`# git-am: applied ${names.join(" ")} in ${wdRel || "."}\n`);
    return {};
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
});
