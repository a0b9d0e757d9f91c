// Files changed since a git revision (committed, staged, unstaged and
// untracked), for `kiln plan --since REV` and `kiln build --changed`.

import { KilnError } from "@kiln/core";
import { execFile } from "node:child_process";
import { relative, resolve, sep } from "node:path";
import { promisify } from "node:util";
import { canonicalJson } from "@kiln/builder";
import { parseDistro, type Distro } from "./config.js";
import type { SinceChanges } from "./plan.js";

const run = promisify(execFile);

export class GitError extends KilnError {
  readonly code = "GIT";
  constructor(message: string) {
    super(message);
    this.name = "GitError";
  }
}

async function git(cwd: string, args: string[]): Promise<string> {
  try {
    return (await run("git", args, { cwd, maxBuffer: 256 * 1024 * 1024, encoding: "utf8" })).stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === "ENOENT") throw new GitError("git is not installed");
    throw new GitError(`git ${args.join(" ")}: ${(err.stderr || err.message).trim().split("\n")[0]}`);
  }
}

export async function changedSince(distro: Distro, rev: string): Promise<SinceChanges> {
  const top = (await git(distro.root, ["rev-parse", "--show-toplevel"])).trim();
  await git(top, ["rev-parse", "--verify", "--quiet", `${rev}^{commit}`]).catch(() => {
    throw new GitError(`--since ${rev}: not a commit in ${top}`);
  });
  const split = (s: string) => s.split("\0").filter(Boolean);
  const diff = split(await git(top, ["diff", "--name-only", "--no-renames", "-z", rev, "--"]));
  const untracked = split(await git(top, ["ls-files", "--others", "--exclude-standard", "-z"]));
  const files = [...new Set([...diff, ...untracked])].sort().map((f) => resolve(top, f));
  let environmentChanged = false;
  const distroRel = relative(top, distro.file).split(sep).join("/");
  if (files.includes(distro.file)) {
    try {
      const old = parseDistro(distro.file, await git(top, ["show", `${rev}:${distroRel}`]));
      environmentChanged = canonicalJson(old.environment ?? null) !== canonicalJson(distro.environment ?? null);
    } catch {
      environmentChanged = true;
    }
  }
  return { rev, files, environmentChanged };
}
