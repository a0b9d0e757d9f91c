// Removing work directories without making builds wait for it.

import { readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";

/** Work directories renamed aside and still being removed (see removeAside). */
const removals = new Set<Promise<void>>();
const REMOVING = ".removing";

/**
 * Remove a work directory off the build's path: renamed aside at once (its
 * name is free, nothing reads it any more), then removed while the next
 * build runs. Removing a large build tree takes seconds (binutils: 4 s) the
 * build need not wait for; the process does not exit before it is done
 * (pending removals keep node's loop alive; settleRemovals awaits them).
 */
export async function removeAside(dir: string): Promise<void> {
  const aside = dir + REMOVING;
  try {
    await rename(dir, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    await rm(dir, { recursive: true, force: true });
    return;
  }
  background(aside);
}

function background(dir: string): void {
  const p: Promise<void> = rm(dir, { recursive: true, force: true })
    .catch(() => undefined)
    .finally(() => removals.delete(p));
  removals.add(p);
}

/** Wait for every background removal this process started. */
export async function settleRemovals(): Promise<void> {
  while (removals.size) await Promise.all([...removals]);
}

/** Remove, in the background too, what a killed kiln left renamed aside in `base` (another process removing the same is harmless). */
export async function sweepStaleRemovals(base: string): Promise<void> {
  const names = await readdir(base).catch(() => [] as string[]);
  for (const name of names) {
    if (name.startsWith("kiln-") && name.endsWith(REMOVING)) background(join(base, name));
  }
}
