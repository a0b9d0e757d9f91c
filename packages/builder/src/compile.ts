// Recipes from YAML to a fully resolved plan: parse (strict schema) → check
// and compile (resolve `uses:`, apply input defaults, substitute `${{ }}`,
// evaluate `if:`, expand `range` subpackages, collect `needs.packages`) →
// a CompiledRecipe, plain JSON that the builder runs and that is hashed for
// change detection. Every problem is collected with file:line:col and the
// dotted path before anything is thrown.

import { createHash } from "node:crypto";
import { isInside } from "@kiln/core";
import { lstatSync, realpathSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, join, posix } from "node:path";
import { isMap, isScalar, type Document } from "yaml";
import { ApkError, isValidVersion, parseDependency, parseProvide } from "@kiln/apk";
import {
  ARCH_ALIASES,
  ConfigError,
  dotted,
  hostApkArch,
  loadYaml,
  parseImageConfig,
  type ImageConfig,
  type ImageConfigInput,
  type Problem,
} from "@kiln/image";
import { ConditionError, evaluateCondition } from "./conditions.js";
import {
  loadPipelines,
  stepScalarPaths,
  type NativeKind,
  type PipelineDefinition,
  type PipelineRegistry,
} from "./pipelines.js";
import {
  PACKAGE_NAME_RE,
  recipeSchema,
  type Copyright,
  type Recipe,
  type Step,
  type Subpackage,
} from "./recipe-schema.js";
import { normalizeScalars } from "./scalars.js";
import {
  archVariables,
  goRegexp,
  goReplaceAll,
  KNOWN_ARCHS,
  MAX_SUBSTITUTED_LENGTH,
  packageVariables,
  RegexpError,
  resolveWorkdir,
  scanReferences,
  substituteCollect,
  subpackageVariables,
  WORKSPACE_DIR,
  type Reference,
} from "./substitute.js";

type Path = ReadonlyArray<string | number>;

/** A recipe read from a file, with what is needed to point at its lines. */
export interface LoadedRecipe {
  file: string;
  recipe: Recipe;
  locate(path: Path): { line: number; col: number } | undefined;
  /** Raw source text of the scalar at `path`. */
  source(path: Path): string | undefined;
  /** Non-fatal findings of the last check (missing license, …). */
  warnings: Problem[];
}

export interface CompileOptions {
  /** apk architecture (aliases such as amd64 accepted); default: the host's. */
  arch?: string;
  /** User pipeline directories, overlaid on the built-ins (earlier wins). */
  pipelineDirs?: readonly string[];
  /** A registry to use instead of loading `pipelineDirs` (faster for many recipes). */
  pipelines?: PipelineRegistry;
  /** The directory copied into the workspace (patches…); used to check that files named by `patch` exist. */
  sourceDir?: string;
  /** melange build options (`options:` entries) to enable. */
  buildOptions?: readonly string[];
  /**
   * Extra `${{ name }}` variables. `${{mirror.NAME}}` defaults to `mirror://NAME`
   * (resolved when fetching); pass `mirror.NAME` here to resolve it now.
   */
  variables?: Readonly<Record<string, string>>;
}

/** One step as the builder runs it: a shell script, or a step kiln performs itself. */
export interface CompiledStep {
  /** The step's name, else the pipeline it came from, else its path. */
  name: string;
  /** Where it came from: the recipe path, then `› PIPELINE path` for steps expanded from named pipelines. */
  origin: string;
  /** The innermost named pipeline this step came from. */
  uses?: string;
  /** The script, run as `/bin/sh -c` with `set -e` ("" for native steps). */
  runs: string;
  /** Absolute guest path. */
  workingDirectory: string;
  /** The step's own variables (inherited from enclosing steps), on top of the environment's. */
  environment: Record<string, string>;
  /** Set for steps kiln performs on the host instead of in the guest. */
  native?: NativeKind;
  /** The inputs of a native step: every input, defaults applied, substituted. */
  with?: Record<string, string>;
  label?: string;
}

export interface CompiledDependencies {
  runtime: string[];
  provides: string[];
  replaces: string[];
  providerPriority?: number;
  replacesPriority?: number;
}

export interface CompiledPackageOptions {
  noProvides: boolean;
  noDepends: boolean;
  noCommands: boolean;
  noVersionedShlibDeps: boolean;
}

export interface CompiledScriptlets {
  trigger?: { script: string; paths: string[] };
  "pre-install"?: string;
  "post-install"?: string;
  "pre-deinstall"?: string;
  "post-deinstall"?: string;
  "pre-upgrade"?: string;
  "post-upgrade"?: string;
}

export interface CompiledTest {
  /** The test guest: the test's environment plus the package under test and what the test steps need. */
  environment: ImageConfigInput;
  pipeline: CompiledStep[];
}

export interface CompiledPackage {
  name: string;
  version: string;
  epoch: number;
  /** `VERSION-rEPOCH`. */
  fullVersion: string;
  description: string;
  url?: string;
  commit?: string;
  /** SPDX expression built from `copyright` ("" if none). */
  license: string;
  copyright: Copyright[];
  dependencies: CompiledDependencies;
  options: CompiledPackageOptions;
  scriptlets: CompiledScriptlets;
  /** apk architectures, or ["all"]. */
  targetArchitecture: string[];
  timeoutSeconds?: number;
  resources?: Record<string, string>;
  checks?: { enabled?: string[]; disabled?: string[] };
  annotations?: Record<string, string>;
  setcap?: Array<{ path: string; add: Record<string, string>; reason: string }>;
}

export interface CompiledSubpackage {
  name: string;
  description: string;
  url?: string;
  commit?: string;
  dependencies: CompiledDependencies;
  options: CompiledPackageOptions;
  scriptlets: CompiledScriptlets;
  checks?: { enabled?: string[]; disabled?: string[] };
  setcap?: Array<{ path: string; add: Record<string, string>; reason: string }>;
  pipeline: CompiledStep[];
  test?: CompiledTest;
}

/** A recipe resolved for one architecture: plain JSON. */
export interface CompiledRecipe {
  arch: string;
  /** False when `package.target-architecture` excludes `arch` (the build is skipped). */
  supportsArch: boolean;
  package: CompiledPackage;
  /** The build guest, in image-config (apko) form: the recipe's environment, the build user, and every step's needs. */
  environment: ImageConfigInput;
  pipeline: CompiledStep[];
  /** Subpackages after `range` expansion, minus those whose `if:` is false, in recipe order. */
  subpackages: CompiledSubpackage[];
  test?: CompiledTest;
  /** `vars.*` after var-transforms. */
  vars: Record<string, string>;
  update?: NonNullable<Recipe["update"]>;
  capabilities?: { add: string[]; drop: string[] };
}

// --- loading ---------------------------------------------------------------

const RECIPE_SCALARS: Path[] = [
  ["package", "version"],
  ["vars", "*"],
  ["data", "*", "items", "*"],
  ["options", "*", "vars", "*"],
  ...stepScalarPaths([]),
];

/** YAML + schema only (no semantic checks); throws ConfigError with every problem. */
export function parseRecipe(file: string, text: string): LoadedRecipe {
  let loaded;
  try {
    loaded = loadYaml<Recipe>(file, text, recipeSchema);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(sortProblems([...e.problems]));
    throw e;
  }
  normalizeScalars(loaded.value, loaded, RECIPE_SCALARS);
  // Keys too: `3.10:` under data items is "3.10" to melange, not 3.1.
  const v = loaded.value;
  v.data?.forEach((d, i) => (d.items = rekey(loaded.doc, text, ["data", i, "items"], d.items)));
  if (v.vars) v.vars = rekey(loaded.doc, text, ["vars"], v.vars);
  return { file, recipe: loaded.value, locate: loaded.locate, source: loaded.source, warnings: [] };
}

function rekey<T>(doc: Document, text: string, path: Path, obj: Record<string, T>): Record<string, T> {
  const node = doc.getIn(path, true);
  if (!isMap(node)) return obj;
  const out: Record<string, T> = {};
  for (const pair of node.items) {
    const k = pair.key;
    const js = String(isScalar(k) ? k.value : k);
    if (!(js in obj)) continue;
    const name = isScalar(k) && typeof k.value !== "string" && k.range ? text.slice(k.range[0], k.range[1]) : js;
    out[name] = obj[js]!;
  }
  return out;
}

/** Read a recipe file: YAML + schema only. */
export async function readRecipe(file: string): Promise<LoadedRecipe> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new ConfigError([
      {
        file,
        path: "",
        message: `cannot read: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`,
      },
    ]);
  }
  return parseRecipe(file, text);
}

/** Every problem and warning of a parsed recipe (compiling it for `opts.arch`). */
export function checkRecipe(
  loaded: LoadedRecipe,
  opts: CompileOptions = {},
): { problems: Problem[]; warnings: Problem[] } {
  const c = new Compiler(loaded, opts);
  c.compile();
  return { problems: c.problems, warnings: c.warnings };
}

/** Read, validate and check a recipe; throws ConfigError listing every problem. */
export async function loadRecipe(file: string, opts: CompileOptions = {}): Promise<LoadedRecipe> {
  const loaded = await readRecipe(file);
  const { problems, warnings } = checkRecipe(loaded, opts);
  if (problems.length) throw new ConfigError(problems);
  loaded.warnings = warnings;
  return loaded;
}

/** Resolve a recipe for one architecture; throws ConfigError listing every problem. */
export function compileRecipe(input: LoadedRecipe | Recipe, opts: CompileOptions = {}): CompiledRecipe {
  const loaded: LoadedRecipe =
    "recipe" in input && "file" in input
      ? input
      : { file: "<recipe>", recipe: input as Recipe, locate: () => undefined, source: () => undefined, warnings: [] };
  const c = new Compiler(loaded, opts);
  const out = c.compile();
  if (c.problems.length || !out) throw new ConfigError(c.problems);
  return out;
}

/** `NAME-VERSION-rEPOCH`, as melange package-version prints it. */
export function recipePackageVersion(recipe: Recipe): string {
  return `${recipe.package.name}-${String(recipe.package.version)}-r${recipe.package.epoch ?? 0}`;
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = canonical(x);
    }
    return out;
  }
  return v;
}

/** Canonical JSON (sorted keys, no whitespace) of any plain value. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(canonical(v));
}

/** sha256 (hex) of the compiled recipe's canonical JSON: changes exactly when the resolved recipe does. */
export function recipeHash(compiled: CompiledRecipe): string {
  return createHash("sha256").update(canonicalJson(compiled)).digest("hex");
}

/** The compiled build (or test) environment as a validated image config, ready for @kiln/image. */
export function environmentImageConfig(env: ImageConfigInput, label = "<compiled recipe>"): ImageConfig {
  return parseImageConfig(label, JSON.stringify(env));
}

// --- the compiler ----------------------------------------------------------

/** Where problems found while compiling a step are reported. */
interface Site {
  /** The step in the recipe (for steps from pipeline files: the recipe step that uses them). */
  recipePath: Path;
  /** The pipeline file being expanded, if any, and the current step's path in it. */
  def?: PipelineDefinition;
  defPath?: Path;
  /** Human trail of expansions for CompiledStep.origin. */
  trail: string;
  /** Named pipelines being expanded (cycle detection). */
  stack: string[];
  /** The `with` of the recipe step whose expansion this is. */
  recipeWith?: Readonly<Record<string, unknown>>;
}

interface Inherited {
  workdir?: string;
  env: Record<string, string>;
  name?: string;
  uses?: string;
}

interface Instance {
  index: number;
  sp: Subpackage;
  name: string;
  vars: Map<string, string>;
  range?: { key: string; value: string };
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(2, Math.floor(name.length / 4)) + 1;
  for (const c of candidates) {
    const dist = editDistance(name, c);
    if (dist < bestD) {
      best = c;
      bestD = dist;
    }
  }
  return best;
}

const SHA_LENGTH: Record<string, number> = { "expected-sha256": 64, "expected-sha512": 128, "expected-commit": 40 };

function licenseExpression(cps: Copyright[] | undefined): string {
  const single = (cp: Copyright, nested: boolean): string => {
    if (cp.operator && cp.licenses?.length) {
      const subs = [...new Set(cp.licenses.map((l) => single(l, true)).filter(Boolean))];
      if (subs.length <= 1) return subs[0] ?? "";
      const joined = subs.join(` ${cp.operator} `);
      return nested ? `(${joined})` : joined;
    }
    return cp.license ?? "";
  };
  if (!cps?.length) return "";
  const exprs = [...new Set(cps.map((cp) => single(cp, cps.length > 1)).filter(Boolean))];
  if (exprs.length <= 1) return exprs[0] ?? "";
  const ops = cps.map((cp) => (cp.operator && cp.licenses?.length ? cp.operator : undefined));
  const op = ops.every((o) => o && o === ops[0]) ? ops[0]! : "AND";
  return exprs.join(` ${op} `);
}

function undot(s: string): Array<string | number> {
  const out: Array<string | number> = [];
  for (const m of s.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

function sortedUnique(xs: Iterable<string>): string[] {
  return [...new Set(xs)].sort();
}

function durationSeconds(d: string | number): number {
  if (typeof d === "number") return d;
  const unit: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
  let total = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(m[1]) * unit[m[2]!]!;
  return Math.round(total);
}

/** What all of a recipe's substitutions together may produce. */
const MAX_SUBSTITUTED_TOTAL = 64 << 20;

class Compiler {
  readonly problems: Problem[] = [];
  readonly warnings: Problem[] = [];
  private substituted = 0;
  private overBudget = false;
  private readonly seen = new Set<string>();
  private registry!: PipelineRegistry;

  constructor(
    readonly src: LoadedRecipe,
    readonly opts: CompileOptions,
  ) {}

  // -- reporting --

  private push(list: Problem[], p: Problem): void {
    const key = `${p.file}:${p.line}:${p.col}:${p.path}:${p.message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    list.push(p);
  }

  /** Position of `ref` inside the scalar at `path`, else of the node. */
  private position(path: Path, ref?: Reference, value?: string): { line?: number; col?: number } {
    const at = this.src.locate(path);
    if (!at) return {};
    if (ref && value !== undefined) {
      const raw = this.src.source(path);
      if (raw) {
        // The n-th occurrence of the same reference text in the value is the n-th in the source.
        let n = 0;
        for (let k = value.indexOf(ref.text); k !== -1 && k < ref.index; k = value.indexOf(ref.text, k + 1)) n++;
        let idx = raw.indexOf(ref.text);
        while (idx !== -1 && n-- > 0) idx = raw.indexOf(ref.text, idx + 1);
        if (idx !== -1) {
          const before = raw.slice(0, idx);
          const nl = before.lastIndexOf("\n");
          return nl === -1
            ? { line: at.line, col: at.col + idx }
            : { line: at.line + before.split("\n").length - 1, col: idx - nl };
        }
      }
    }
    return at;
  }

  /** Position of character `offset` of a one-line scalar at `path` (plain or quoted), else of the node. */
  private offsetPosition(path: Path, offset: number): { line?: number; col?: number } {
    const at = this.src.locate(path);
    if (!at) return {};
    const raw = this.src.source(path) ?? "";
    if (raw.includes("\n")) return at;
    return { line: at.line, col: at.col + offset + (/^["']/.test(raw) ? 1 : 0) };
  }

  problem(path: Path, message: string, ref?: Reference, value?: string): void {
    this.push(this.problems, { file: this.src.file, ...this.position(path, ref, value), path: dotted(path), message });
  }

  warn(path: Path, message: string): void {
    this.push(this.warnings, { file: this.src.file, ...this.position(path), path: dotted(path), message });
  }

  /** Report at a step: in the recipe directly, or at the recipe step that uses the pipeline file. */
  private stepProblem(site: Site, rel: Path, message: string, ref?: Reference, value?: string): void {
    if (!site.def) return this.problem([...site.recipePath, ...rel], message, ref, value);
    const inner = [...(site.defPath ?? []), ...rel];
    const at = site.def.locate(inner);
    const file = site.def.file === "<kiln>" ? "" : site.def.builtin ? `built-in ${site.def.name}.yaml` : site.def.file;
    const where = file ? `, ${file}${at ? `:${at.line}:${at.col}` : ""}` : "";
    this.problem(
      site.recipePath,
      `${message} (in pipeline "${site.def.name}" at ${dotted(inner) || "top level"}${where})`,
    );
  }

  /**
   * Strict substitution: undefined and malformed references are reported (and
   * left in the text). Results are bounded, one by one and in total: variables
   * referring to each other can grow exponentially; an oversized result is
   * reported and replaced by "" so nothing downstream grows it further.
   */
  sub(
    text: string,
    vars: ReadonlyMap<string, string>,
    report: (message: string, ref?: Reference) => void,
    quote = false,
  ): string {
    const r = substituteCollect(text, vars, quote);
    if (r.overflow) {
      report(
        `longer than ${MAX_SUBSTITUTED_LENGTH} characters once its \${{ }} variables are substituted (variables that refer to each other multiply in size)`,
      );
      return "";
    }
    if (r.value !== text) {
      this.substituted += r.value.length;
      if (this.substituted > MAX_SUBSTITUTED_TOTAL) {
        if (!this.overBudget)
          report(
            `substituted values exceed ${MAX_SUBSTITUTED_TOTAL >> 20} MiB in total (variables that refer to each other multiply in size)`,
          );
        this.overBudget = true;
        return "";
      }
    }
    for (const u of r.undefined) report(`undefined variable ${u.text}${this.suggestVariable(u.name, vars)}`, u);
    for (const m of r.malformed)
      report(`malformed variable reference ${JSON.stringify(text.slice(m, m + 20))} (expected \${{ name }})`);
    return r.value;
  }

  private suggestVariable(name: string, vars: ReadonlyMap<string, string>): string {
    if (name.startsWith("inputs.") && ![...vars.keys()].some((k) => k.startsWith("inputs.")))
      return " (inputs are only defined inside named pipelines)";
    if (name === "targets.subpkgdir" || name === "subpkg.name") return " (only defined in subpackages)";
    if (name === "range.key" || name === "range.value") return " (only defined in subpackages with range)";
    const c = closest(name, vars.keys());
    return c ? ` (did you mean \${{${c}}}?)` : "";
  }

  /** Substitute a recipe scalar at `path`. */
  subAt(path: Path, text: string, vars: ReadonlyMap<string, string>, quote = false): string {
    return this.sub(text, vars, (m, ref) => this.problem(path, m, ref, text), quote);
  }

  // -- compile --

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

    this.checkPatches();

    // package
    const pkg = r.package;
    const version = String(pkg.version);
    if (version === "") this.problem(["package", "version"], "version must not be empty");
    else if (!isValidVersion(`${version}-r0`))
      this.problem(
        ["package", "version"],
        `${JSON.stringify(version)} is not a valid apk version (expected e.g. 1.2.3, 1.2.3_rc1, 2024.01.05)`,
      );
    if (/-r\d+$/.test(version))
      this.problem(
        ["package", "version"],
        `the version must not carry a release suffix (${JSON.stringify(version)}): set package.epoch instead`,
      );
    const epoch = pkg.epoch ?? 0;
    // Names and versions become file names (NAME-VER-rN.apk, NAME.test.log): one path segment each.
    const fileNameFits = (name: string, path: Path) => {
      if (Buffer.byteLength(`${name}-${version}-r${epoch}.apk`) > 255 || Buffer.byteLength(`${name}.test.log`) > 255) {
        this.problem(
          path,
          `${JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name)} with its version is too long for a file name (NAME-VERSION-rEPOCH.apk must fit in 255 bytes, this is ${Buffer.byteLength(`${name}-${version}-r${epoch}.apk`)})`,
        );
        return false;
      }
      return true;
    };
    fileNameFits(pkg.name, ["package", "name"]);
    pkg.copyright?.forEach((cp, i) => this.checkCopyright(cp, ["package", "copyright", i]));
    if (!licenseExpression(pkg.copyright)) this.warn(["package"], "no license: set package.copyright[].license");
    if (!pkg.description) this.warn(["package"], "no description: set package.description");

    // build options
    const enabled = new Set<string>();
    for (const name of o.buildOptions ?? []) {
      if (!r.options?.[name])
        this.push(this.problems, {
          file: this.src.file,
          path: "options",
          message: `unknown build option ${JSON.stringify(name)} (the recipe defines ${Object.keys(r.options ?? {}).join(", ") || "none"})`,
        });
      else enabled.add(name);
    }

    // variables
    const vars = new Map<string, string>([
      ...packageVariables({ name: pkg.name, version, epoch, description: pkg.description ?? "" }),
      ...archVariables(arch),
    ]);
    for (const k of Object.keys(r.options ?? {})) vars.set(`options.${k}.enabled`, String(enabled.has(k)));
    // `${{mirror.NAME}}` stays symbolic (mirror://NAME, resolved by the fetcher on
    // the host) unless the caller resolved it: compiled recipes and their hashes
    // must not depend on the machine's mirror.
    for (const m of JSON.stringify(r).matchAll(/\$\{\{ *mirror\.([a-zA-Z0-9_-]+) *\}\}/g))
      vars.set(`mirror.${m[1]}`, `mirror://${m[1]}`);
    for (const [k, v] of Object.entries(o.variables ?? {})) vars.set(k, v);
    const rawVars: Record<string, { value: string; path: Path }> = {};
    for (const [k, v] of Object.entries(r.vars ?? {})) rawVars[k] = { value: String(v), path: ["vars", k] };
    for (const name of enabled)
      for (const [k, v] of Object.entries(r.options?.[name]?.vars ?? {}))
        rawVars[k] = { value: String(v), path: ["options", name, "vars", k] };
    this.resolveVars(rawVars, vars);
    (r["var-transforms"] ?? []).forEach((t, i) => {
      const from = this.subAt(["var-transforms", i, "from"], t.from, vars);
      let re: RegExp;
      try {
        re = goRegexp(t.match);
      } catch (e) {
        this.problem(["var-transforms", i, "match"], (e as Error).message);
        return;
      }
      try {
        vars.set(`vars.${t.to}`, goReplaceAll(re, from, t.replace));
      } catch (e) {
        if (!(e instanceof RegexpError)) throw e;
        this.problem(["var-transforms", i, "replace"], e.message);
        vars.set(`vars.${t.to}`, "");
      }
    });

    // subpackage instances (range expansion) and their names
    const data = new Map((r.data ?? []).map((d) => [d.name, d.items] as const));
    const instances: Instance[] = [];
    const names = new Map<string, string>([[pkg.name, "the main package"]]);
    (r.subpackages ?? []).forEach((sp, i) => {
      const base: Path = ["subpackages", i];
      let items: Array<{ key: string; value: string } | undefined> = [undefined];
      if (sp.range !== undefined) {
        const d = data.get(sp.range);
        if (!d) {
          const defined = [...data.keys()];
          this.problem(
            [...base, "range"],
            `range names data ${JSON.stringify(sp.range)}, which is not defined (${defined.length ? `data: ${defined.join(", ")}` : "the recipe has no data entries"})`,
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
        const name = this.subAt([...base, "name"], sp.name, iv);
        if (!name) continue;
        if (!PACKAGE_NAME_RE.test(name) && !name.includes("${{")) {
          this.problem(
            [...base, "name"],
            `subpackage name ${JSON.stringify(name)} must match ${PACKAGE_NAME_RE.source}`,
          );
          continue;
        }
        if (!fileNameFits(name, [...base, "name"])) continue;
        const prior = names.get(name);
        if (prior) {
          this.problem([...base, "name"], `duplicate package name ${JSON.stringify(name)} (also ${prior})`);
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

    // main pipeline
    const needs: string[] = [];
    const pipeline = this.compileSteps(r.pipeline ?? [], ["pipeline"], vars, needs);

    // subpackages
    const subpackages: CompiledSubpackage[] = [];
    for (const inst of instances) {
      const base: Path = ["subpackages", inst.index];
      const spVars = subpackageVariables(inst.vars, inst.name);
      let active = true;
      if (inst.sp.if !== undefined) active = this.condition([...base, "if"], inst.sp.if, spVars);
      const steps = this.compileSteps(inst.sp.pipeline ?? [], [...base, "pipeline"], spVars, needs);
      const sub: CompiledSubpackage = {
        name: inst.name,
        description:
          inst.sp.description !== undefined ? this.subAt([...base, "description"], inst.sp.description, spVars) : "",
        dependencies: this.dependencies(inst.sp.dependencies, [...base, "dependencies"], spVars),
        options: packageOptions(inst.sp.options),
        scriptlets: this.scriptlets(inst.sp.scriptlets, [...base, "scriptlets"], spVars),
        pipeline: steps,
      };
      if (inst.sp.url !== undefined) sub.url = this.subAt([...base, "url"], inst.sp.url, spVars);
      const commit = inst.sp.commit ?? pkg.commit;
      if (commit !== undefined) sub.commit = commit;
      if (inst.sp.checks) sub.checks = inst.sp.checks;
      if (inst.sp.setcap) sub.setcap = inst.sp.setcap;
      if (inst.sp.test) sub.test = this.test(inst.sp.test, [...base, "test"], spVars, inst.name);
      if (active) subpackages.push(sub);
    }

    // environments
    const environment = this.environment(r.environment, ["environment"], vars, enabled);
    const contents = (environment.contents ??= {});
    contents.packages = sortedUnique([...(contents.packages ?? []), ...needs]);
    const test = r.test ? this.test(r.test, ["test"], vars, pkg.name) : undefined;

    // package metadata
    const targetArchitecture = (pkg["target-architecture"] ?? ["all"]).map((a) =>
      a === "all" ? a : (ARCH_ALIASES[a] ?? a),
    );
    (pkg["target-architecture"] ?? []).forEach((a, i) => {
      if (a !== "all" && !ARCH_ALIASES[a])
        this.problem(["package", "target-architecture", i], `unknown architecture ${JSON.stringify(a)}`);
    });
    const compiledPkg: CompiledPackage = {
      name: pkg.name,
      version,
      epoch,
      fullVersion: `${version}-r${epoch}`,
      description: pkg.description !== undefined ? this.subAt(["package", "description"], pkg.description, vars) : "",
      license: licenseExpression(pkg.copyright),
      copyright: pkg.copyright ?? [],
      dependencies: this.dependencies(pkg.dependencies, ["package", "dependencies"], vars),
      options: packageOptions(pkg.options),
      scriptlets: this.scriptlets(pkg.scriptlets, ["package", "scriptlets"], vars),
      targetArchitecture,
    };
    if (pkg.url !== undefined) compiledPkg.url = this.subAt(["package", "url"], pkg.url, vars);
    if (pkg.commit !== undefined) compiledPkg.commit = pkg.commit;
    if (pkg.timeout !== undefined) compiledPkg.timeoutSeconds = durationSeconds(pkg.timeout);
    if (pkg.resources)
      compiledPkg.resources = Object.fromEntries(Object.entries(pkg.resources).map(([k, v]) => [k, String(v)]));
    if (pkg.checks) compiledPkg.checks = pkg.checks;
    if (pkg.annotations) compiledPkg.annotations = pkg.annotations;
    if (pkg.setcap) compiledPkg.setcap = pkg.setcap;

    const out: CompiledRecipe = {
      arch,
      supportsArch: targetArchitecture.includes("all") || targetArchitecture.includes(arch),
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

  /** vars may refer to package.* and to each other (melange allows only earlier ones, in map order). */
  private resolveVars(raw: Record<string, { value: string; path: Path }>, vars: Map<string, string>): void {
    const state = new Map<string, "busy" | "done">();
    const resolve = (k: string, chain: string[]): void => {
      const st = state.get(k);
      if (st === "done") return;
      const entry = raw[k]!;
      if (st === "busy") {
        this.problem(
          entry.path,
          `variable vars.${k} refers to itself (${[...chain, k].map((c) => `vars.${c}`).join(" → ")})`,
        );
        vars.set(`vars.${k}`, "");
        return;
      }
      state.set(k, "busy");
      for (const ref of scanReferences(entry.value).refs) {
        if (ref.name.startsWith("vars.") && raw[ref.name.slice(5)] !== undefined)
          resolve(ref.name.slice(5), [...chain, k]);
      }
      if (state.get(k) === "busy") vars.set(`vars.${k}`, this.subAt(entry.path, entry.value, vars));
      state.set(k, "done");
    };
    for (const k of Object.keys(raw)) resolve(k, []);
  }

  private condition(path: Path, expr: string, vars: ReadonlyMap<string, string>, site?: Site, rel?: Path): boolean {
    let bad = false;
    const report = (m: string, ref?: Reference) => {
      bad = true;
      if (site) this.stepProblem(site, rel ?? [], m, ref, expr);
      else this.problem(path, m, ref, expr);
    };
    const text = this.sub(expr, vars, report, true);
    if (bad) return true;
    try {
      return evaluateCondition(text);
    } catch (e) {
      if (!(e instanceof ConditionError)) throw e;
      const msg =
        text === expr
          ? e.message
          : `bad if expression ${JSON.stringify(expr)}: ${e.reason} at position ${e.position} of ${JSON.stringify(text)}`;
      if (site) this.stepProblem(site, rel ?? [], msg);
      else
        this.push(this.problems, {
          file: this.src.file,
          ...this.offsetPosition(path, text === expr ? e.position : 0),
          path: dotted(path),
          message: msg,
        });
      return true;
    }
  }

  private checkCopyright(cp: Copyright, path: Path): void {
    const grouping = cp.operator !== undefined || (cp.licenses?.length ?? 0) > 0;
    if (grouping && cp.license) this.problem(path, "either license or operator/licenses, not both");
    if (!grouping && !cp.license) this.problem(path, "expected license (or operator with licenses)");
    if (grouping && !cp.licenses?.length) this.problem(path, "a grouping entry needs at least one entry in licenses");
    cp.licenses?.forEach((l, i) => this.checkCopyright(l, [...path, "licenses", i]));
  }

  private dependencies(
    d: Recipe["package"]["dependencies"],
    path: Path,
    vars: ReadonlyMap<string, string>,
  ): CompiledDependencies {
    const list = (key: "runtime" | "provides" | "replaces", check: (s: string) => void) =>
      (d?.[key] ?? []).map((s, i) => {
        const v = this.subAt([...path, key, i], s, vars);
        try {
          if (v && !v.includes("${{")) check(v);
        } catch (e) {
          if (e instanceof ApkError) this.problem([...path, key, i], e.message);
          else throw e;
        }
        return v;
      });
    const out: CompiledDependencies = {
      runtime: list("runtime", (s) => parseDependency(s)),
      provides: list("provides", (s) => parseProvide(s)),
      replaces: list("replaces", (s) => parseDependency(s)),
    };
    const prio = (key: "provider-priority" | "replaces-priority") => {
      const raw = d?.[key];
      if (raw === undefined) return undefined;
      const s = this.subAt([...path, key], String(raw), vars);
      if (!/^-?\d+$/.test(s) && !s.includes("${{")) {
        this.problem([...path, key], `expected an integer, got ${JSON.stringify(s)}`);
        return undefined;
      }
      return Number(s);
    };
    const pp = prio("provider-priority");
    const rp = prio("replaces-priority");
    if (pp !== undefined) out.providerPriority = pp;
    if (rp !== undefined) out.replacesPriority = rp;
    return out;
  }

  private scriptlets(
    s: Recipe["package"]["scriptlets"],
    path: Path,
    vars: ReadonlyMap<string, string>,
  ): CompiledScriptlets {
    const out: CompiledScriptlets = {};
    if (!s) return out;
    if (s.trigger && (s.trigger.script || s.trigger.paths?.length)) {
      out.trigger = {
        script: this.subAt([...path, "trigger", "script"], s.trigger.script ?? "", vars),
        paths: (s.trigger.paths ?? []).map((p, i) => this.subAt([...path, "trigger", "paths", i], p, vars)),
      };
    }
    for (const k of [
      "pre-install",
      "post-install",
      "pre-deinstall",
      "post-deinstall",
      "pre-upgrade",
      "post-upgrade",
    ] as const) {
      const v = s[k];
      if (v !== undefined) out[k] = this.subAt([...path, k], v, vars);
    }
    return out;
  }

  private environment(
    env: ImageConfigInput | undefined,
    path: Path,
    vars: ReadonlyMap<string, string>,
    enabled?: ReadonlySet<string>,
  ): ImageConfigInput {
    const out: ImageConfigInput = structuredClone(env ?? {});
    const c = out.contents;
    if (c) {
      for (const key of [
        "repositories",
        "build_repositories",
        "runtime_repositories",
        "keyring",
        "packages",
      ] as const) {
        if (c[key]) c[key] = c[key]!.map((s, i) => this.subAt([...path, "contents", key, i], s, vars));
      }
    }
    if (out.environment)
      out.environment = Object.fromEntries(
        Object.entries(out.environment).map(([k, v]) => [k, this.subAt([...path, "environment", k], String(v), vars)]),
      );
    // The environment is an image config: check it as one, pointing into the recipe.
    if (env) {
      try {
        parseImageConfig(this.src.file, JSON.stringify(out));
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        for (const p of e.problems) this.problem([...path, ...undot(p.path)], p.message);
      }
    }
    for (const name of enabled ?? []) {
      const opt = this.src.recipe.options?.[name]?.environment?.contents?.packages;
      if (!opt) continue;
      const cc = (out.contents ??= {});
      cc.packages = [...(cc.packages ?? []).filter((p) => !(opt.remove ?? []).includes(p)), ...(opt.add ?? [])];
    }
    // melange's build user and defaults.
    const accounts = (out.accounts ??= {});
    if (!(accounts.groups ?? []).some((g) => g.groupname === "build"))
      accounts.groups = [...(accounts.groups ?? []), { groupname: "build", gid: 1000, members: ["build"] }];
    if (!(accounts.users ?? []).some((u) => u.username === "build"))
      accounts.users = [...(accounts.users ?? []), { username: "build", uid: 1000, gid: 1000 }];
    const e = (out.environment ??= {});
    e.HOME ||= WORKSPACE_DIR;
    e.GOPATH ||= `${WORKSPACE_DIR}/.cache/go`;
    return out;
  }

  private test(
    t: NonNullable<Recipe["test"]>,
    path: Path,
    vars: ReadonlyMap<string, string>,
    pkgName: string,
  ): CompiledTest {
    const needs: string[] = [];
    const pipeline = this.compileSteps(t.pipeline, [...path, "pipeline"], vars, needs);
    const environment = this.environment(t.environment, [...path, "environment"], vars);
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
    vars: ReadonlyMap<string, string>,
    site: Site,
    inh: Inherited,
    out: CompiledStep[],
    needs: string[],
    parentActive: boolean,
  ): boolean {
    const report = (rel: Path, value?: string) => (m: string, ref?: Reference) =>
      this.stepProblem(site, rel, m, ref, value);
    const subRel = (rel: Path, text: string, v: ReadonlyMap<string, string> = vars) =>
      this.sub(text, v, report(rel, text));

    if (s.with && !s.uses) this.stepProblem(site, ["with"], "with needs uses (inputs go to a named pipeline)");
    if (s.uses && s.runs !== undefined)
      this.stepProblem(site, ["runs"], `a step has uses or runs, not both (uses ${JSON.stringify(s.uses)})`);

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
    const ownName = s.name !== undefined ? subRel(["name"], s.name) : undefined;
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
    let ran = 0;
    (s.pipeline ?? []).forEach((child, i) => {
      const childSite: Site = site.def
        ? { ...site, defPath: [...(site.defPath ?? []), "pipeline", i], trail: `${site.trail}.pipeline[${i}]` }
        : { ...site, recipePath: [...site.recipePath, "pipeline", i], trail: `${site.trail}.pipeline[${i}]` };
      const childInh: Inherited = { workdir, env };
      const childName = ownName ?? inh.name;
      if (childName !== undefined) childInh.name = childName;
      if (inh.uses) childInh.uses = inh.uses;
      if (this.step(child, vars, childSite, childInh, out, needs, active)) ran++;
    });
    const required = s.assertions?.["required-steps"];
    if (required !== undefined && active && required !== ran)
      this.stepProblem(
        site,
        ["assertions", "required-steps"],
        `assertion fails: ${required} steps required, ${ran} of ${s.pipeline?.length ?? 0} have a true if:`,
      );
    return active;
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
      return;
    }
    if (!def) {
      const hint = closest(usesName, this.registry.names());
      this.stepProblem(
        site,
        ["uses"],
        `unknown pipeline ${JSON.stringify(usesName)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ""}: not built in nor in a --pipeline-dir`,
      );
      return;
    }
    if (site.stack.includes(def.name)) {
      this.stepProblem(
        site,
        ["uses"],
        `pipeline ${JSON.stringify(def.name)} uses itself (${[...site.stack, def.name].join(" → ")})`,
      );
      return;
    }

    // Inputs: known keys only; empty or missing → default; required must end up non-empty.
    const given = s.with ?? {};
    const known = Object.keys(def.inputs);
    for (const k of Object.keys(given)) {
      if (!(k in def.inputs)) {
        const hint = closest(k, known);
        this.stepProblem(
          site,
          ["with", k],
          `unknown input ${JSON.stringify(k)} for pipeline ${JSON.stringify(def.name)} (${hint ? `did you mean ${JSON.stringify(hint)}? ` : ""}inputs: ${known.join(", ") || "none"})`,
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
            `default of input ${JSON.stringify(k)} of pipeline ${JSON.stringify(def!.name)}: ${m}`,
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
        trail: `${site.trail} › ${def!.name} pipeline[${i}]`,
        stack,
        recipeWith: site.def ? site.recipeWith : given,
      };
      this.step(
        child,
        scope,
        childSite,
        { workdir: inh.workdir, env: inh.env, name: inh.name, uses: def!.name },
        out,
        needs,
        active,
      );
    });
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
        `working-directory ${workdir} is outside the workspace ${WORKSPACE_DIR}: ${kind} runs on the host, inside the workspace only (give a relative path or one under ${WORKSPACE_DIR})`,
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
      if (uri && !/^(https?|file|mirror):\/\//.test(uri))
        report("uri", `uri must be an http://, https://, file:// or mirror:// URL, got ${JSON.stringify(uri)}`);
      checkPath("directory", inputs.directory);
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
        if (s.uses === "patch") {
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

/** In file order (stable for problems at the same place); problems without a position first. */
export function sortProblems(ps: Problem[]): Problem[] {
  return ps.sort((a, b) =>
    a.file < b.file ? -1 : a.file > b.file ? 1 : (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0),
  );
}

function packageOptions(o: Recipe["package"]["options"]): CompiledPackageOptions {
  return {
    noProvides: o?.["no-provides"] ?? false,
    noDepends: o?.["no-depends"] ?? false,
    noCommands: o?.["no-commands"] ?? false,
    noVersionedShlibDeps: o?.["no-versioned-shlib-deps"] ?? false,
  };
}
