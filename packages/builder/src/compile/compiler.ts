// The compiler: a loaded recipe and the options in, a CompiledRecipe (or
// every problem) out. The parts live beside it: variables.ts, package.ts,
// subpackages.ts, environment.ts, pipelines.ts (steps and named pipelines)
// and report.ts (positions, substitution).

import { ARCH_ALIASES, ConfigError, hostApkArch } from "@kiln/core";
import { loadPipelines } from "../pipelines.js";
import { KNOWN_ARCHS } from "../substitute.js";
import { compileEnvironment, sortedUnique } from "./environment.js";
import { checkPackage, compilePackage } from "./package.js";
import { PipelineCompiler } from "./pipelines.js";
import { sortProblems } from "./report.js";
import { compileSubpackages, subpackageInstances } from "./subpackages.js";
import type { CompiledRecipe } from "./types.js";
import { recipeVariables } from "./variables.js";

export class Compiler extends PipelineCompiler {
  compile(): CompiledRecipe | undefined {
    try {
      return this.compileInner();
    } finally {
      sortProblems(this.problems);
      sortProblems(this.warnings);
    }
  }

  private compileInner(): CompiledRecipe | undefined {
    const r = this.src.recipe;
    const arch = this.setUp();
    if (arch === undefined) return undefined;
    this.checkPatches();
    const fileNameFits = checkPackage(this, r.package);
    const enabled = this.buildOptions();
    const vars = recipeVariables(this, arch, enabled);
    const instances = subpackageInstances(this, r, vars, fileNameFits);

    const needs: string[] = [];
    const pipeline = this.compileSteps(r.pipeline ?? [], ["pipeline"], vars, needs);
    const subpackages = compileSubpackages(this, instances, r.package, needs);

    // environments
    const environment = compileEnvironment(this, r.environment, ["environment"], vars, enabled);
    const contents = (environment.contents ??= {});
    contents.packages = sortedUnique([...(contents.packages ?? []), ...needs]);
    const test = r.test ? this.test(r.test, ["test"], vars, r.package.name) : undefined;

    const compiledPkg = compilePackage(this, r.package, vars);
    const targets = compiledPkg.targetArchitecture;
    const out: CompiledRecipe = {
      arch,
      supportsArch: targets.includes("all") || targets.includes(arch),
      package: compiledPkg,
      environment,
      pipeline,
      subpackages,
      vars: Object.fromEntries(
        [...vars]
          .filter(([k]) => k.startsWith("vars."))
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([k, v]) => [k.slice(5), v]),
      ),
    };
    if (test) out.test = test;
    if (r.update) out.update = r.update;
    if (r.capabilities) out.capabilities = { add: r.capabilities.add ?? [], drop: r.capabilities.drop ?? [] };
    return out;
  }

  /** Load the pipeline registry and resolve the architecture; undefined (problems reported) if either fails. */
  private setUp(): string | undefined {
    const o = this.opts;
    try {
      this.registry = o.pipelines ?? loadPipelines(o.pipelineDirs ?? []);
    } catch (e) {
      if (e instanceof ConfigError) {
        for (const p of e.problems) this.push(this.problems, p);
        return undefined;
      }
      throw e;
    }
    const archIn = o.arch ?? hostApkArch();
    const arch = ARCH_ALIASES[archIn] ?? archIn;
    if (!KNOWN_ARCHS.includes(arch)) {
      this.push(this.problems, {
        file: this.src.file,
        path: "",
        message: `unknown architecture ${JSON.stringify(archIn)} (expected one of ${KNOWN_ARCHS.join(", ")})`,
      });
      return undefined;
    }
    return arch;
  }

  /** The build options asked for (`options:` entries); unknown ones are reported. */
  private buildOptions(): Set<string> {
    const r = this.src.recipe;
    const enabled = new Set<string>();
    for (const name of this.opts.buildOptions ?? []) {
      if (!r.options?.[name])
        this.push(this.problems, {
          file: this.src.file,
          path: "options",
          message: `unknown build option ${JSON.stringify(name)} (the recipe defines ${Object.keys(r.options ?? {}).join(", ") || "none"})`,
        });
      else enabled.add(name);
    }
    return enabled;
  }
}
