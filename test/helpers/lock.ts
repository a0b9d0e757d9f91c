// A lock between vitest workers (separate processes) for work done once per
// machine: building the stage-0 toolchain, building the real apk client.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/**
 * A lock between test workers: a directory made atomically, holding its
 * owner's pid. Returns a release function, or null after waiting a while
 * (the caller checks again whether the work is done). A lock whose owner
 * has died is broken.
 */
export async function takeLock(lock: string): Promise<(() => void) | null> {
  mkdirSync(dirname(lock), { recursive: true });
  try {
    mkdirSync(lock);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    let owner = NaN;
    try {
      owner = Number(readFileSync(join(lock, "pid"), "utf8"));
    } catch {
      // the owner has not written its pid yet
    }
    if (Number.isInteger(owner) && owner > 0 && !alive(owner)) rmSync(lock, { recursive: true, force: true });
    else await new Promise((r) => setTimeout(r, 2000));
    return null;
  }
  writeFileSync(join(lock, "pid"), String(process.pid));
  return () => rmSync(lock, { recursive: true, force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
