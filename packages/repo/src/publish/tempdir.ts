// Temporary directories that do not outlive their process. Publishing stages
// re-signed packages (tens of megabytes) and image builds spool whole roots
// in the system temporary directory; a run stopped by SIGINT or SIGTERM
// removes its directories before it exits, and one killed outright (SIGKILL,
// a crash, a power cut) leaves a directory whose name records its pid, which
// the next run of the same kind removes once that pid is gone.
//
// Names: PREFIX<pid>-XXXXXX (mkdtemp's suffix). Stale, and removed by
// cleanStaleTempDirs, when owned by this user and either the pid is no longer
// alive or the directory has not changed for STALE_AFTER_MS (the pid may have
// been reused). Directories named PREFIX-XXXXXX by older kiln versions carry no
// pid and are removed on age alone.

import { lstatSync, rmSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { processAlive } from "@kiln/core";

/** A directory untouched this long is stale even when a process with its pid exists. */
export const STALE_AFTER_MS = 12 * 3600 * 1000;

const live = new Set<string>();
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
let handlersInstalled = false;

function onSignal(signal: NodeJS.Signals): void {
  for (const d of live) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      /* best effort: the next run cleans what is left */
    }
  }
  live.clear();
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  handlersInstalled = false;
  // Die of the same signal, as if kiln had never caught it (exit status 128+n),
  // unless someone else also listens and decides.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installHandlers(): void {
  if (handlersInstalled) return;
  for (const s of SIGNALS) process.on(s, onSignal);
  handlersInstalled = true;
}

function uninstallIfIdle(): void {
  if (live.size || !handlersInstalled) return;
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  handlersInstalled = false;
}

/** Create `TMPDIR/PREFIX<pid>-XXXXXX`, removed on SIGINT/SIGTERM/SIGHUP until `removeTempDir`. */
export async function makeTempDir(prefix: string, base = tmpdir()): Promise<string> {
  const dir = await mkdtemp(join(base, `${prefix}${process.pid}-`));
  live.add(dir);
  installHandlers();
  return dir;
}

export async function removeTempDir(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } finally {
    live.delete(dir);
    uninstallIfIdle();
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Whether a directory entry of `base` named `name` is a stale temporary directory of `prefix`. */
export function isStaleTempDir(base: string, name: string, prefix: string, now = Date.now()): boolean {
  const withPid = new RegExp(`^${escapeRe(prefix)}(\\d+)-[A-Za-z0-9]{6}$`).exec(name);
  const legacy = new RegExp(`^${escapeRe(prefix)}[A-Za-z0-9]{6}$`).test(name);
  if (!withPid && !legacy) return false;
  let st;
  try {
    st = lstatSync(join(base, name));
  } catch {
    return false;
  }
  if (!st.isDirectory()) return false;
  if (typeof process.getuid === "function" && st.uid !== process.getuid()) return false;
  const old = now - st.mtimeMs > STALE_AFTER_MS;
  if (withPid) {
    const pid = Number(withPid[1]);
    return old || !processAlive(pid);
  }
  return old;
}

/** Remove this user's temporary directories of `prefix` left by runs that were killed; returns what was removed. */
export async function cleanStaleTempDirs(prefix: string, base = tmpdir()): Promise<string[]> {
  const names = await readdir(base).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    if (!isStaleTempDir(base, name, prefix)) continue;
    const dir = join(base, name);
    if (live.has(dir)) continue;
    try {
      await rm(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      /* not ours to remove after all, or busy: leave it */
    }
  }
  return removed;
}
