// Recipes from YAML to a fully resolved plan: parse (strict schema) → check
// and compile (resolve `uses:`, apply input defaults, substitute `${{ }}`,
// evaluate `if:`, expand `range` subpackages, collect `needs.packages`) →
// a CompiledRecipe, plain JSON that the builder runs and that is hashed for
// change detection. Every problem is collected with file:line:col and the
// dotted path before anything is thrown.

// The compiler itself is in compile/: compiler.ts drives it; variables,
// package metadata, subpackages, environments and pipelines have a module
// each.

import { createHash } from "node:crypto";
import { ConfigError, loadYaml, readConfigText, type Problem } from "@kiln/core";
import { parseImageConfig, type ImageConfig, type ImageConfigInput } from "@kiln/image";
import { recipeSchema, type Recipe } from "./recipe-schema.js";
import { goDecode } from "./scalars.js";
import { Compiler } from "./compile/compiler.js";
import { sortProblems } from "./compile/report.js";
import type { CompileOptions, CompiledRecipe, LoadedRecipe } from "./compile/types.js";

export { sortProblems };
export type {
  LoadedRecipe,
  CompileOptions,
  CompiledStep,
  CompiledDependencies,
  CompiledPackageOptions,
  CompiledScriptlets,
  CompiledTest,
  CompiledPackage,
  CompiledSubpackage,
  CompiledRecipe,
} from "./compile/types.js";

// --- loading ---------------------------------------------------------------

/** YAML + schema only (no semantic checks); throws ConfigError with every problem. */
export function parseRecipe(file: string, text: string): LoadedRecipe {
  let loaded;
  try {
    loaded = loadYaml<Recipe>(file, text, recipeSchema, (doc, t) => goDecode(doc, t, recipeSchema));
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(sortProblems([...e.problems]));
    throw e;
  }
  return { file, recipe: loaded.value, locate: loaded.locate, source: loaded.source, warnings: [] };
}

/** Read a recipe file: YAML + schema only. */
export async function readRecipe(file: string): Promise<LoadedRecipe> {
  return parseRecipe(file, await readConfigText(file));
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
