// Build logs kept per build: OUT/logs/ARCH/NAME-VERSION-rN.log, one per
// version and release, with NAME.log a symlink to the newest one started. A
// distribution's first run builds some recipes twice (the bootstrap round and
// the rebuild against stage-1 libraries); both logs stay. Only the newest
// KEEP_LOGS builds of a package are kept.

import { lstat, readdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { compareVersions, isValidVersion } from "@kiln/apk";
import { joinUnder } from "@kiln/core";

/** Build logs kept per package (the newest by version). */
export const KEEP_LOGS = 5;

/** The log file of one build: NAME-VERSION-rN.log. */
export function buildLogName(name: string, fullVersion: string): string {
  return `${name}-${fullVersion}.log`;
}

/** The version in a build log's file name when it is one of `name`'s (NAME-VERSION.log with a valid VERSION), else undefined. */
export function buildLogVersion(name: string, file: string): string | undefined {
  const prefix = `${name}-`;
  if (!file.startsWith(prefix) || !file.endsWith(".log") || file.endsWith(".test.log")) return undefined;
  const v = file.slice(prefix.length, -".log".length);
  return /-r\d+$/.test(v) && isValidVersion(v) ? v : undefined;
}

/**
 * Start the log of a build at `fullVersion` (replacing one of the same build, never
 * writing through a link), point NAME.log at it, and drop the package's logs beyond
 * the newest `keep`. Returns the log's path.
 */
export async function startBuildLog(
  logDir: string,
  name: string,
  fullVersion: string,
  header: string,
  keep = KEEP_LOGS,
): Promise<string> {
  const file = buildLogName(name, fullVersion);
  const path = joinUnder(logDir, { value: file, what: "log file" });
  await rm(path, { force: true });
  await writeFile(path, header, { flag: "wx" });
  const link = joinUnder(logDir, { value: `${name}.log`, what: "log file" });
  const tmp = join(logDir, `.${name}.log.${process.pid}.${Date.now()}`);
  await symlink(file, tmp);
  // rename replaces an older NAME.log (a file from an older kiln, or the previous link) in one step.
  const old = await lstat(link).catch(() => undefined);
  if (old?.isDirectory()) await rm(tmp, { force: true });
  else await rename(tmp, link);
  await pruneBuildLogs(logDir, name, keep, file);
  return path;
}

/** Remove `name`'s build logs beyond the newest `keep` (by version); `current` is always kept. */
export async function pruneBuildLogs(logDir: string, name: string, keep: number, current?: string): Promise<string[]> {
  const logs: Array<{ file: string; version: string }> = [];
  for (const f of await readdir(logDir).catch(() => [] as string[])) {
    const v = buildLogVersion(name, f);
    if (v !== undefined) logs.push({ file: f, version: v });
  }
  logs.sort((a, b) => compareVersions(b.version, a.version));
  const removed: string[] = [];
  for (const l of logs.slice(Math.max(1, keep))) {
    if (l.file === current) continue;
    await rm(join(logDir, l.file), { force: true });
    removed.push(l.file);
  }
  return removed;
}
