// Whether an index's dependencies can be satisfied: every non-conflict
// dependency of every package must be met by some package of the same
// repository (or of the upstream repositories), by name or by provides,
// with apk's version rules.

import { packageSatisfies, parseDependency, parseProvide, type Dependency, type IndexRecord } from "@kiln/apk";

export interface Unsatisfied {
  /** NAME-VERSION of the package with the dependency. */
  package: string;
  arch: string;
  dependency: string;
  /** Why: what exists under that name, if anything. */
  reason: string;
}

function usableProvides(r: IndexRecord): string[] {
  return r.provides.filter((p) => {
    try {
      parseProvide(p);
      return true;
    } catch {
      return false;
    }
  });
}

/** Every dependency of `records` that neither `records` nor `upstream` satisfies. */
export function unsatisfiedDependencies(
  records: readonly IndexRecord[],
  upstream: readonly IndexRecord[] = [],
  arch = "",
): Unsatisfied[] {
  const all = [...records, ...upstream].map((r) => ({ name: r.name, version: r.version, provides: usableProvides(r) }));
  // Index candidates by every name they answer to.
  const byName = new Map<string, typeof all>();
  for (const c of all) {
    const names = new Set([c.name, ...c.provides.map((p) => parseProvide(p).name)]);
    for (const n of names) (byName.get(n) ?? byName.set(n, []).get(n)!).push(c);
  }
  const out: Unsatisfied[] = [];
  for (const r of records) {
    for (const tok of r.depends) {
      let dep: Dependency;
      try {
        dep = parseDependency(tok);
      } catch (e) {
        out.push({
          package: `${r.name}-${r.version}`,
          arch: r.arch || arch,
          dependency: tok,
          reason: (e as Error).message,
        });
        continue;
      }
      if (dep.conflict) continue;
      const cands = byName.get(dep.name) ?? [];
      if (cands.some((c) => packageSatisfies(c, dep))) continue;
      const reason = cands.length
        ? `only ${cands
            .slice(0, 5)
            .map((c) =>
              c.name === dep.name
                ? `${c.name}-${c.version}`
                : `${c.name}-${c.version} (provides ${c.provides.filter((p) => parseProvide(p).name === dep.name).join(" ")})`,
            )
            .join(", ")}${cands.length > 5 ? ", …" : ""}`
        : `nothing provides ${JSON.stringify(dep.name)}`;
      out.push({ package: `${r.name}-${r.version}`, arch: r.arch || arch, dependency: tok, reason });
    }
  }
  return out;
}

export function formatUnsatisfied(u: Unsatisfied): string {
  return `${u.arch}/${u.package} depends on ${u.dependency}: ${u.reason}`;
}
