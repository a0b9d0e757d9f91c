// The distribution's security advisories: advisories/NAME.yaml, one file per
// origin package (NAME is the recipe's package name). Each advisory is one
// vulnerability id (CVE-… or GHSA-…) with a dated history of events; the last
// event is the current state:
//
//   affected      the package is vulnerable, no fixed version yet
//   fixed         fixed in `version` (apk version syntax; older versions are affected)
//   not-affected  the package never was (a VEX justification says why)
//
// Files are hostile input like any config: loaded with @kiln/core's loadYaml
// (size, depth and alias budgets; every problem at file:line:col), the
// package name checked against the file name, ids and versions validated.

import { readdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { z } from "zod";
import { ConfigError, dotted, loadYaml, readConfigText, type Problem } from "@kiln/core";
import { isValidVersion } from "@kiln/apk";

/** CVE-YYYY-NNNN… or GHSA-xxxx-xxxx-xxxx (GitHub's advisory ids). */
export const ADVISORY_ID = /^(CVE-\d{4}-\d{4,19}|GHSA(-[23456789cfghjmpqrvwx]{4}){3})$/;

/** The justifications of OpenVEX / CISA's VEX for a not_affected status. */
export const NOT_AFFECTED_JUSTIFICATIONS = [
  "component_not_present",
  "vulnerable_code_not_present",
  "vulnerable_code_not_in_execute_path",
  "vulnerable_code_cannot_be_controlled_by_adversary",
  "inline_mitigations_already_exist",
] as const;

/** Most advisories in one file, and most events in one advisory. */
export const MAX_ADVISORIES = 10_000;
export const MAX_EVENTS = 100;

const PACKAGE_NAME = /^[A-Za-z0-9+_][A-Za-z0-9+_.-]*$/;

const date = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?$/, "expected a date YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")
  .refine((s) => !Number.isNaN(Date.parse(s)), "not a real date");

const note = z.string().max(4096).optional();

const event = z.discriminatedUnion("state", [
  z.object({ date, state: z.literal("affected"), note }).strict(),
  z
    .object({
      date,
      state: z.literal("fixed"),
      version: z.string().refine(isValidVersion, "expected an apk version such as 1.2.3-r1"),
      note,
    })
    .strict(),
  z
    .object({
      date,
      state: z.literal("not-affected"),
      justification: z.enum(NOT_AFFECTED_JUSTIFICATIONS),
      note,
    })
    .strict(),
]);

const advisoryId = z
  .string()
  .regex(ADVISORY_ID, "expected a CVE id (CVE-2024-12345) or a GHSA id (GHSA-xxxx-xxxx-xxxx)");

export const advisoryFileSchema = z
  .object({
    package: z.string().regex(PACKAGE_NAME, "expected a package name"),
    advisories: z
      .array(
        z
          .object({
            id: advisoryId,
            aliases: z.array(advisoryId).max(32).optional(),
            summary: z.string().max(1024).optional(),
            events: z.array(event).min(1).max(MAX_EVENTS),
          })
          .strict(),
      )
      .max(MAX_ADVISORIES),
  })
  .strict();

export type AdvisoryFileInput = z.infer<typeof advisoryFileSchema>;
export type AdvisoryEvent = z.infer<typeof event>;

/** One advisory of one package, its state being its last event's. */
export interface Advisory {
  /** The origin package. */
  package: string;
  id: string;
  aliases: string[];
  summary?: string;
  events: AdvisoryEvent[];
  /** The last event. */
  current: AdvisoryEvent;
  /** Where it was read: `advisories/NAME.yaml:LINE`. */
  source: string;
}

/** A date as RFC 3339 UTC (a bare date is midnight). */
export function rfc3339(d: string): string {
  return d.length === 10 ? `${d}T00:00:00Z` : d;
}

/** Parse one advisories file: throws ConfigError listing every problem. */
export function parseAdvisoryFile(file: string, text: string): Advisory[] {
  const loaded = loadYaml<AdvisoryFileInput>(file, text, advisoryFileSchema);
  const v = loaded.value;
  const problems: Problem[] = [];
  const at = (path: Array<string | number>, message: string) =>
    problems.push({ file, ...loaded.locate(path), path: dotted(path), message });
  const stem = basename(file).replace(/\.ya?ml$/, "");
  if (v.package !== stem)
    at(["package"], `expected ${JSON.stringify(stem)}: an advisories file is named after its package (NAME.yaml)`);
  const seen = new Map<string, number>();
  const out: Advisory[] = [];
  v.advisories.forEach((a, i) => {
    for (const id of [a.id, ...(a.aliases ?? [])]) {
      const first = seen.get(id);
      if (first !== undefined && first !== i)
        at(
          ["advisories", i, "id"],
          `${id} is already recorded by advisories[${first}] (one advisory per vulnerability)`,
        );
      else seen.set(id, i);
    }
    if (a.aliases?.includes(a.id)) at(["advisories", i, "aliases"], `${a.id} is the advisory's own id`);
    a.events.forEach((e, j) => {
      const prev = a.events[j - 1];
      if (prev && Date.parse(rfc3339(e.date)) < Date.parse(rfc3339(prev.date)))
        at(["advisories", i, "events", j, "date"], `events must be in date order: ${e.date} is before ${prev.date}`);
    });
    const where = loaded.locate(["advisories", i]);
    out.push({
      package: v.package,
      id: a.id,
      aliases: [...(a.aliases ?? [])],
      ...(a.summary !== undefined ? { summary: a.summary } : {}),
      events: a.events,
      current: a.events[a.events.length - 1]!,
      source: `${file}${where ? `:${where.line}` : ""}`,
    });
  });
  if (problems.length) throw new ConfigError(problems);
  return out;
}

/**
 * Every advisory under DIR (DIR/NAME.yaml), files in name order. A missing
 * directory is no advisories; any other entry than NAME.yaml files (and
 * README files) is refused, so a misplaced file is not silently ignored.
 */
export async function loadAdvisories(dir: string): Promise<Advisory[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new ConfigError([{ file: dir, path: "", message: `cannot read: ${(e as Error).message}` }]);
  }
  const out: Advisory[] = [];
  const problems: Problem[] = [];
  for (const n of names.sort()) {
    if (/^README(\.md)?$/i.test(n) || n.startsWith(".")) continue;
    if (!/\.ya?ml$/.test(n) || !PACKAGE_NAME.test(n.replace(/\.ya?ml$/, ""))) {
      problems.push({ file: join(dir, n), path: "", message: "expected NAME.yaml (NAME a package name)" });
      continue;
    }
    const file = join(dir, n);
    try {
      out.push(...parseAdvisoryFile(file, await readConfigText(file)));
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(...e.problems);
    }
  }
  const byPackage = new Map<string, string>();
  for (const a of out) {
    const other = byPackage.get(a.package);
    const file = a.source.replace(/:\d+$/, "");
    if (other !== undefined && other !== file)
      problems.push({ file, path: "package", message: `${a.package} is also recorded in ${other}` });
    byPackage.set(a.package, file);
  }
  if (problems.length) throw new ConfigError(problems);
  return out;
}
