// Compiling pipelines: each recipe step (and the steps of the named
// pipelines it `uses:`) becomes CompiledSteps — inputs checked and
// defaulted, `${{ }}` substituted, `if:` evaluated, working directories and
// environments inherited, `needs.packages` collected, and the inputs of the
// steps kiln performs on the host checked to stay inside the workspace.

import { ConfigError, dotted, isInside } from "@kiln/core";
import { lstatSync, realpathSync } from "node:fs";
import { basename, dirname, join, posix } from "node:path";
import type { NativeKind, PipelineDefinition, PipelineRegistry } from "../pipelines.js";
import type { Recipe, Step } from "../recipe-schema.js";
import { resolveWorkdir, WORKSPACE_DIR, type Reference } from "../substitute.js";
import { gitCheckoutProblems } from "../steps/git-native.js";
import { compileEnvironment, sortedUnique } from "./environment.js";
import { closest, Reporter, type Site } from "./report.js";
import type { CompiledStep, CompiledTest, Path } from "./types.js";

interface Inherited {
  workdir?: string;
  env: Record<string, string>;
  name?: string;
  uses?: string;
}

const SHA_LENGTH: Record<string, number> = { "expected-sha256": 64, "expected-sha512": 128, "expected-commit": 40 };

export class PipelineCompiler extends Reporter {
  protected registry!: PipelineRegistry;

  /** A `test:` block: its pipeline, and its environment holding the package under test and what the steps need. */
  test(t: NonNullable<Recipe["test"]>, path: Path, vars: ReadonlyMap<string, string>, pkgName: string): CompiledTest {
    const needs: string[] = [];
    const pipeline = this.compileSteps(t.pipeline, [...path, "pipeline"], vars, needs);
    const environment = compileEnvironment(this, t.environment, [...path, "environment"], vars);
    const contents = (environment.contents ??= {});
    contents.packages = sortedUnique([...(contents.packages ?? []), pkgName, ...needs]);
    return { environment, pipeline };
  }

  compileSteps(steps: readonly Step[], path: Path, vars: ReadonlyMap<string, string>, needs: string[]): CompiledStep[] {
    const out: CompiledStep[] = [];
    steps.forEach((s, i) =>
      this.step(
        s,
        vars,
        { recipePath: [...path, i], trail: dotted([...path, i]), stack: [] },
        { env: {} },
        out,
        needs,
        true,
      ),
    );
    return out;
  }

  /** Compile one step (and its children) into `out`; returns whether it is active (its `if:` holds). */
  private step(
    s: Step,
    outer: ReadonlyMap<string, string>,
    site: Site,
    inh: Inherited,
    out: CompiledStep[],
    needs: string[],
    parentActive: boolean,
  ): boolean {
    const report = (rel: Path, value?: string) => (m: string, ref?: Reference) =>
      this.stepProblem(site, rel, m, ref, value);
    const vars = s.inputs && !s.uses ? this.ownInputs(s.inputs, outer, site) : outer;
    const subRel = (rel: Path, text: string, v: ReadonlyMap<string, string> = vars) =>
      this.sub(text, v, report(rel, text));

    this.checkShape(s, site);

    let active = parentActive;
    if (s.if !== undefined) {
      const ok = this.condition(
        site.def ? site.recipePath : [...site.recipePath, "if"],
        s.if,
        vars,
        site.def ? site : undefined,
        ["if"],
      );
      active &&= ok;
    }
    // A step name is a label: melange does not substitute it, so an unresolved reference stays as written.
    const ownName = s.name !== undefined ? this.sub(s.name, vars, () => undefined) : undefined;
    const name = ownName ?? inh.name ?? s.uses ?? site.trail;
    const workdir =
      s["working-directory"] !== undefined ? subRel(["working-directory"], s["working-directory"]) : inh.workdir;
    const env = { ...inh.env };
    for (const [k, v] of Object.entries(s.environment ?? {})) env[k] = subRel(["environment", k], String(v));
    const ownNeeds = (s.needs?.packages ?? []).map((p, i) => subRel(["needs", "packages", i], p));
    if (active) needs.push(...ownNeeds);

    const base = (): CompiledStep => {
      const st: CompiledStep = {
        name,
        origin: site.trail,
        runs: "",
        workingDirectory: resolveWorkdir(workdir),
        environment: env,
      };
      if (inh.uses) st.uses = inh.uses;
      if (s.label !== undefined) st.label = s.label;
      return st;
    };

    if (s.uses && !s.pipeline?.length) {
      this.uses(s, s.uses, vars, site, { workdir, env, name, uses: s.uses }, out, needs, active, base);
      return active;
    }
    if (s.uses)
      this.warnAtStep(
        site,
        ["uses"],
        `uses ${JSON.stringify(s.uses)} is ignored: the step spells out its own pipeline`,
      );

    if (s.runs !== undefined) {
      const runs = subRel(["runs"], String(s.runs));
      if (active) out.push({ ...base(), runs });
    }
    const childInh: Inherited = { workdir, env };
    const childName = ownName ?? inh.name;
    if (childName !== undefined) childInh.name = childName;
    if (inh.uses) childInh.uses = inh.uses;
    const ran = this.children(s.pipeline ?? [], vars, site, childInh, out, needs, active);
    const required = s.assertions?.["required-steps"];
    if (required !== undefined && active && required !== ran)
      this.stepProblem(
        site,
        ["assertions", "required-steps"],
        `assertion fails: ${required} steps required, ${ran} of ${s.pipeline?.length ?? 0} have a true if:`,
      );
    return active;
  }

  /** Combinations of keys a step cannot have. */
  private checkShape(s: Step, site: Site): void {
    if (s.with && !s.uses) this.stepProblem(site, ["with"], "with needs uses (inputs go to a named pipeline)");
    if (s.inputs && s.uses)
      this.warnAtStep(
        site,
        ["inputs"],
        `the step's own inputs are ignored: it uses ${JSON.stringify(s.uses)}, whose file declares the inputs`,
      );
    if (s.uses && s.runs !== undefined)
      this.stepProblem(site, ["runs"], `a step has uses or runs, not both (uses ${JSON.stringify(s.uses)})`);
  }

  /** A step without uses that declares inputs: their defaults are ${{inputs.*}} in it (melange's validateWith; with needs uses). */
  private ownInputs(
    declared: NonNullable<Step["inputs"]>,
    vars: ReadonlyMap<string, string>,
    site: Site,
  ): Map<string, string> {
    const scope = new Map(vars);
    for (const [k, input] of Object.entries(declared)) {
      const at: Path = ["inputs", k, "default"];
      const d = input.default;
      const v = d === undefined ? "" : this.sub(String(d), vars, (m, ref) => this.stepProblem(site, at, m, ref));
      if (input.required && v === "")
        this.stepProblem(site, ["inputs", k], `missing required input ${JSON.stringify(k)}`);
      scope.set(`inputs.${k}`, v);
    }
    return scope;
  }

  /** Compile a step's own `pipeline:` children; returns how many are active. */
  private children(
    steps: readonly Step[],
    vars: ReadonlyMap<string, string>,
    site: Site,
    inh: Inherited,
    out: CompiledStep[],
    needs: string[],
    active: boolean,
  ): number {
    let ran = 0;
    steps.forEach((child, i) => {
      const childSite: Site = site.def
        ? { ...site, defPath: [...(site.defPath ?? []), "pipeline", i], trail: `${site.trail}.pipeline[${i}]` }
        : { ...site, recipePath: [...site.recipePath, "pipeline", i], trail: `${site.trail}.pipeline[${i}]` };
      if (this.step(child, vars, childSite, { ...inh }, out, needs, active)) ran++;
    });
    return ran;
  }

  private warnAtStep(site: Site, rel: Path, message: string): void {
    if (!site.def) this.warn([...site.recipePath, ...rel], message);
  }

  /** Expand `uses: NAME` into `out`. */
  private uses(
    s: Step,
    usesName: string,
    vars: ReadonlyMap<string, string>,
    site: Site,
    inh: Inherited & { workdir: string | undefined },
    out: CompiledStep[],
    needs: string[],
    active: boolean,
    base: () => CompiledStep,
  ): void {
    const def = this.definition(usesName, site);
    if (!def) return;
    if (def.ignoredKeys?.length)
      this.warnAtStep(
        site,
        ["uses"],
        `pipeline ${JSON.stringify(def.name)} (${def.file}) has keys the pipeline format does not know, ignored as melange ignores them: ` +
          def.ignoredKeys.map((k) => `${JSON.stringify(k.key)} at ${k.line}:${k.col}`).join(", "),
      );
    const given = s.with ?? {};
    const { inputs, scope } = this.inputs(s, def, vars, site);
    const defNeeds = def.needs.map((p, i) =>
      this.sub(p, scope, (m) => this.stepProblem({ ...site, def, defPath: [] }, ["needs", "packages", i], m)),
    );
    if (active) needs.push(...defNeeds);

    if (def.native) {
      this.checkNative(def.native, inputs, site, resolveWorkdir(inh.workdir));
      if (active)
        out.push({
          ...base(),
          uses: def.name,
          native: def.native,
          with: Object.fromEntries(Object.entries(inputs).sort(([a], [b]) => (a < b ? -1 : 1))),
        });
      return;
    }
    const stack = [...site.stack, def.name];
    def.pipeline.forEach((child, i) => {
      const childSite: Site = {
        recipePath: site.recipePath,
        def,
        defPath: ["pipeline", i],
        trail: `${site.trail} › ${def.name} pipeline[${i}]`,
        stack,
        recipeWith: site.def ? site.recipeWith : given,
      };
      this.step(
        child,
        scope,
        childSite,
        { workdir: inh.workdir, env: inh.env, name: inh.name, uses: def.name },
        out,
        needs,
        active,
      );
    });
  }

  /** The named pipeline a step uses; an invalid, unknown or recursive one is reported (undefined). */
  private definition(usesName: string, site: Site): PipelineDefinition | undefined {
    let def: PipelineDefinition | undefined;
    try {
      def = this.registry.get(usesName);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      this.stepProblem(
        site,
        ["uses"],
        `pipeline ${JSON.stringify(usesName)} (${this.registry.source(usesName)}) is invalid`,
      );
      for (const p of e.problems) this.push(this.problems, p);
      return undefined;
    }
    if (!def) {
      const hint = closest(usesName, this.registry.names());
      this.stepProblem(
        site,
        ["uses"],
        `unknown pipeline ${JSON.stringify(usesName)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ""}: not built in nor in a --pipeline-dir`,
      );
      return undefined;
    }
    if (site.stack.includes(def.name)) {
      this.stepProblem(
        site,
        ["uses"],
        `pipeline ${JSON.stringify(def.name)} uses itself (${[...site.stack, def.name].join(" → ")})`,
      );
      return undefined;
    }
    return def;
  }

  /** A used pipeline's inputs: known keys only; empty or missing → default; required must end up non-empty. */
  private inputs(
    s: Step,
    def: PipelineDefinition,
    vars: ReadonlyMap<string, string>,
    site: Site,
  ): { inputs: Record<string, string>; scope: Map<string, string> } {
    const given = s.with ?? {};
    const known = Object.keys(def.inputs);
    for (const k of Object.keys(given)) {
      if (!(k in def.inputs)) {
        const hint = closest(k, known);
        this.stepProblem(
          site,
          ["with", k],
          `unknown input ${JSON.stringify(k)} for pipeline ${JSON.stringify(def.name)} ` +
            `(${hint ? `did you mean ${JSON.stringify(hint)}? ` : ""}inputs: ${known.join(", ") || "none"})`,
        );
      }
    }
    const scope = new Map([...vars].filter(([k]) => !k.startsWith("inputs.")));
    const inputs: Record<string, string> = {};
    for (const [k, input] of Object.entries(def.inputs)) {
      const raw = given[k] !== undefined ? String(given[k]) : "";
      let v = raw === "" ? "" : this.sub(raw, vars, (m, ref) => this.stepProblem(site, ["with", k], m, ref, raw));
      if (v === "" && input.default !== undefined) {
        v = this.sub(input.default, vars, (m) =>
          this.stepProblem(
            site,
            given[k] !== undefined ? ["with", k] : [],
            `default of input ${JSON.stringify(k)} of pipeline ${JSON.stringify(def.name)}: ${m}`,
          ),
        );
      }
      // Inside built-in pipelines a missing input is the recipe step's, already reported.
      if (input.required && v === "" && !site.def?.builtin)
        this.stepProblem(
          site,
          s.with ? ["with"] : ["uses"],
          `missing required input ${JSON.stringify(k)} for pipeline ${JSON.stringify(def.name)}`,
        );
      // Checked where the value is written; steps inside pipeline files pass it on.
      const len = SHA_LENGTH[k];
      if (len && !site.def && v !== "" && !v.includes("${{") && !(v.length === len && /^[0-9a-fA-F]+$/.test(v)))
        this.problem(
          [...site.recipePath, "with", k],
          `${k} must be ${len} hexadecimal digits, got ${JSON.stringify(v)}`,
        );
      inputs[k] = v;
      scope.set(`inputs.${k}`, v);
    }
    return { inputs, scope };
  }

  private checkNative(kind: NativeKind, inputs: Record<string, string>, site: Site, workdir: string): void {
    // Inside a built-in pipeline (fetch → kiln:fetch) the inputs are the
    // recipe step's, under the same names: point there.
    const at = (rel: Path, message: string) => {
      if (site.def?.builtin && site.recipeWith) this.problem([...site.recipePath, ...rel], message);
      else this.stepProblem(site, rel, message);
    };
    const report = (key: string | undefined, message: string) => {
      // A value still holding ${{ }} has an undefined variable, reported already.
      if (key && inputs[key]?.includes("${{")) return;
      if (site.def?.builtin && site.recipeWith)
        this.problem([...site.recipePath, ...(key && key in site.recipeWith ? ["with", key] : [])], message);
      else this.stepProblem(site, key ? ["with", key] : [], message);
    };
    // kiln performs these steps on the host, in the workspace: every path they use must stay inside it.
    const inWorkspace = (p: string) => p === WORKSPACE_DIR || p.startsWith(`${WORKSPACE_DIR}/`);
    const workdirOk = workdir.includes("${{") || inWorkspace(workdir);
    if (!workdirOk)
      at(
        ["working-directory"],
        `working-directory ${workdir} is outside the workspace ${WORKSPACE_DIR}: ${kind} runs on the host, ` +
          `inside the workspace only (give a relative path or one under ${WORKSPACE_DIR})`,
      );
    const checkPath = (key: string, p: string | undefined) => {
      if (!p || !workdirOk) return;
      const abs = p.startsWith("/") ? posix.normalize(p) : posix.join(workdir, p);
      if (!inWorkspace(abs))
        report(
          key,
          `${key} ${JSON.stringify(p)} is outside the workspace ${WORKSPACE_DIR} (it resolves to ${abs}): ${kind} runs on the host, inside the workspace only`,
        );
    };
    if (kind === "fetch") {
      if (!inputs["expected-sha256"] && !inputs["expected-sha512"] && !inputs["expected-none"])
        report(undefined, "fetch needs expected-sha256 or expected-sha512");
      for (const k of ["extract", "delete"])
        if (!["true", "false"].includes(inputs[k] ?? ""))
          report(k, `${k} must be true or false, got ${JSON.stringify(inputs[k])}`);
      if (!/^\d+$/.test(inputs["strip-components"] ?? ""))
        report(
          "strip-components",
          `strip-components must be a whole number, got ${JSON.stringify(inputs["strip-components"])}`,
        );
      const uri = inputs.uri ?? "";
      if (uri && !/^(https?|ftp|file|mirror):\/\//.test(uri))
        report("uri", `uri must be an http://, https://, ftp://, file:// or mirror:// URL, got ${JSON.stringify(uri)}`);
      checkPath("directory", inputs.directory);
    }
    if (kind === "git-checkout") {
      for (const [k, m] of gitCheckoutProblems(inputs)) report(k, m);
      checkPath("destination", inputs.destination);
    }
    if (kind === "deb-unpack") {
      checkPath("deb", inputs.deb);
      checkPath("directory", inputs.directory);
    }
  }

  /** Warnings for `patch` steps naming files missing from the source directory. */
  checkPatches(): void {
    const dir = this.opts.sourceDir;
    if (!dir) return;
    const walk = (steps: readonly Step[] | undefined, path: Path) =>
      (steps ?? []).forEach((s, i) => {
        if (s.uses === "patch" || s.uses === "git-am") {
          for (const p of String(s.with?.patches ?? "")
            .split(/\s+/)
            .filter(Boolean)) {
            if (!p.includes("${{") && patchMissing(dir, p))
              this.warn(
                [...path, i, "with", "patches"],
                `patch ${JSON.stringify(p)} is not in the source directory ${dir}`,
              );
          }
        }
        walk(s.pipeline, [...path, i, "pipeline"]);
      });
    walk(this.src.recipe.pipeline, ["pipeline"]);
    this.src.recipe.subpackages?.forEach((sp, i) => walk(sp.pipeline, ["subpackages", i, "pipeline"]));
  }
}

/**
 * Whether a patch named by the recipe is missing from the source directory.
 * Only names inside it are looked at (the patch is applied in the guest; a
 * name leading elsewhere is the guest's business): the check never tells
 * whether some host file outside it exists.
 */
function patchMissing(dir: string, name: string): boolean {
  const full = join(dir, name);
  if (!isInside(dir, full)) return false;
  let realDir: string;
  let parent: string;
  try {
    realDir = realpathSync(dir);
    parent = realpathSync(dirname(full));
  } catch {
    return isInside(dir, dirname(full)); // a missing directory inside: the patch is missing
  }
  if (!isInside(realDir, parent)) return false; // through a symlink out of the source directory: not looked at
  return !lstatExists(join(parent, basename(full)));
}

function lstatExists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
