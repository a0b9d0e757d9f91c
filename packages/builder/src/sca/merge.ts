// Merging detected dependencies with the recipe's declared ones and its
// options (no-provides, no-depends, no-commands), as melange does.

import { type Dependency, isValidVersion, packageSatisfies, parseDependency, parseProvide } from "@kiln/apk";
import { validToken } from "./types.js";

export interface MergeInput {
  declared: { runtime?: readonly string[]; provides?: readonly string[] };
  detected: { depends: readonly string[]; provides: readonly string[]; details?: { selfProvides?: readonly string[] } };
  options?: { noProvides?: boolean; noDepends?: boolean; noCommands?: boolean };
  /** Names/provides the package satisfies by itself (default: detected.details.selfProvides). */
  selfProvides?: readonly string[];
  /** The package's own name and version: a dependency on itself is dropped. */
  packageName?: string;
  packageVersion?: string;
}

/**
 * Merge declared and detected dependencies as melange does: detected depends
 * unless noDepends, detected provides unless noProvides (and no `cmd:` ones
 * with noCommands); declared ones always. The result is sorted and
 * de-duplicated; a provide declared by the recipe wins over a detected one of
 * the same name; a bare dependency is dropped when the same name also has a
 * constrained one; and dependencies the package satisfies itself (its own
 * provides, its SONAMEs and `.so` files, commands, pc files) are removed.
 * Conflicts (`!name`) are kept as declared.
 */
export function mergeDependencies(input: MergeInput): { depends: string[]; provides: string[] } {
  const opts = input.options ?? {};
  const declaredProvides = [...(input.declared.provides ?? [])];
  const declaredNames = new Set(declaredProvides.map((p) => parseProvide(p).name));
  let detProvides = opts.noProvides ? [] : [...input.detected.provides];
  if (opts.noCommands) detProvides = detProvides.filter((p) => !p.startsWith("cmd:"));
  detProvides = detProvides.filter((p) => !declaredNames.has(parseProvide(p).name));
  const provides = [...new Set([...declaredProvides, ...detProvides])].sort();

  const self = [
    ...new Set([
      ...(input.selfProvides ?? input.detected.details?.selfProvides ?? []),
      ...input.detected.provides,
      ...provides,
    ]),
  ].filter((t) => validToken("provide", t));
  const version =
    input.packageVersion !== undefined && isValidVersion(input.packageVersion) ? input.packageVersion : "0";
  const me = { name: input.packageName ?? "", version, provides: self };

  const all = [...(input.declared.runtime ?? []), ...(opts.noDepends ? [] : input.detected.depends)];
  const parsed = new Map<string, Dependency>();
  for (const t of all) parsed.set(t, parseDependency(t));
  const constrained = new Set([...parsed.values()].filter((d) => !d.conflict && d.op !== undefined).map((d) => d.name));
  const depends = [...parsed.entries()]
    .filter(([, d]) => {
      if (d.conflict) return true;
      if (d.op === undefined && constrained.has(d.name)) return false;
      return !selfSatisfies(me, d);
    })
    .map(([t]) => t)
    .sort();
  return { depends: [...new Set(depends)], provides };
}

function selfSatisfies(me: { name: string; version: string; provides: readonly string[] }, d: Dependency): boolean {
  return packageSatisfies(me, d);
}
