// Subpackages: `range` expanded over the recipe's data (one instance per
// item, with range.key and range.value), names substituted and checked
// (valid, unique, fit in a file name), targets.package.NAME defined for
// every package, then each instance compiled with its own variables.

import { PACKAGE_NAME_RE, type Recipe, type Subpackage } from "../recipe-schema.js";
import { subpackageVariables } from "../substitute.js";
import { compileDependencies, compileScriptlets, packageOptions } from "./package.js";
import type { PipelineCompiler } from "./pipelines.js";
import type { Reporter } from "./report.js";
import type { CompiledSubpackage, Path } from "./types.js";

/** One subpackage to compile: a recipe entry, or one item of its range. */
export interface Instance {
  index: number;
  sp: Subpackage;
  name: string;
  vars: Map<string, string>;
  range?: { key: string; value: string };
}

/**
 * The subpackage instances of a recipe, in recipe order; sets
 * targets.package.NAME for every package in `vars` and in each instance's.
 */
export function subpackageInstances(
  c: Reporter,
  r: Recipe,
  vars: Map<string, string>,
  fileNameFits: (name: string, path: Path) => boolean,
): Instance[] {
  const pkg = r.package;
  // subpackage instances (range expansion) and their names
  const data = new Map((r.data ?? []).map((d) => [d.name, d.items] as const));
  const instances: Instance[] = [];
  const names = new Map<string, string>([[pkg.name, "the main package"]]);
  (r.subpackages ?? []).forEach((sp, i) => {
    const base: Path = ["subpackages", i];
    let items: Array<{ key: string; value: string } | undefined> = [undefined];
    // An empty range is none, as in melange (a Go string is empty or set).
    if (sp.range !== undefined && sp.range !== "") {
      const d = data.get(sp.range);
      if (!d) {
        const defined = [...data.keys()];
        c.problem(
          [...base, "range"],
          `range names data ${JSON.stringify(sp.range)}, which is not defined ` +
            `(${defined.length ? `data: ${defined.join(", ")}` : "the recipe has no data entries"})`,
        );
        return;
      }
      items = Object.keys(d)
        .sort()
        .map((key) => ({ key, value: String(d[key]) }));
    }
    for (const item of items) {
      const iv = new Map(vars);
      if (item) {
        iv.set("range.key", item.key);
        iv.set("range.value", item.value);
      }
      const name = c.subAt([...base, "name"], sp.name, iv);
      if (!name) continue;
      if (!PACKAGE_NAME_RE.test(name) && !name.includes("${{")) {
        c.problem([...base, "name"], `subpackage name ${JSON.stringify(name)} must match ${PACKAGE_NAME_RE.source}`);
        continue;
      }
      if (!fileNameFits(name, [...base, "name"])) continue;
      const prior = names.get(name);
      if (prior) {
        c.problem([...base, "name"], `duplicate package name ${JSON.stringify(name)} (also ${prior})`);
        continue;
      }
      names.set(name, `subpackages[${i}]${item ? ` (range item ${JSON.stringify(item.key)})` : ""}`);
      const inst: Instance = { index: i, sp, name, vars: iv };
      if (item) inst.range = item;
      instances.push(inst);
    }
  });
  for (const n of names.keys()) vars.set(`targets.package.${n}`, `/home/build/melange-out/${n}`);
  for (const inst of instances)
    for (const n of names.keys()) inst.vars.set(`targets.package.${n}`, `/home/build/melange-out/${n}`);
  return instances;
}

/** Compile the instances whose `if:` holds; their steps' needs go to `needs` (the build guest's). */
export function compileSubpackages(
  c: PipelineCompiler,
  instances: readonly Instance[],
  pkg: Recipe["package"],
  needs: string[],
): CompiledSubpackage[] {
  const subpackages: CompiledSubpackage[] = [];
  for (const inst of instances) {
    const base: Path = ["subpackages", inst.index];
    const spVars = subpackageVariables(inst.vars, inst.name);
    let active = true;
    if (inst.sp.if !== undefined) active = c.condition([...base, "if"], inst.sp.if, spVars);
    const steps = c.compileSteps(inst.sp.pipeline ?? [], [...base, "pipeline"], spVars, needs);
    const sub: CompiledSubpackage = {
      name: inst.name,
      description:
        inst.sp.description !== undefined ? c.subText([...base, "description"], inst.sp.description, spVars) : "",
      dependencies: compileDependencies(c, inst.sp.dependencies, [...base, "dependencies"], spVars),
      options: packageOptions(inst.sp.options),
      scriptlets: compileScriptlets(c, inst.sp.scriptlets, [...base, "scriptlets"], spVars),
      pipeline: steps,
    };
    if (inst.sp.url !== undefined) sub.url = c.subAt([...base, "url"], inst.sp.url, spVars);
    const commit = inst.sp.commit ?? pkg.commit;
    if (commit !== undefined) sub.commit = commit;
    if (inst.sp.checks) sub.checks = inst.sp.checks;
    if (inst.sp.annotations) sub.annotations = inst.sp.annotations;
    if (inst.sp.setcap) sub.setcap = inst.sp.setcap;
    if (inst.sp.test) sub.test = c.test(inst.sp.test, [...base, "test"], spVars, inst.name);
    if (active) subpackages.push(sub);
  }
  return subpackages;
}
