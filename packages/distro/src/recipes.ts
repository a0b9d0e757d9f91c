// The distribution's recipes as graph nodes: each recipe compiled for one
// architecture in a mirror-independent form, what its build (and test)
// environment asks for, what it declares it produces, and the hashes that
// make its own part of the build key — the compiled recipe (which has every
// named pipeline it uses expanded into it), the default environment when it
// applies, and its patches and local source files.

import { createHash } from "node:crypto";
import { readdir, readFile, readlink, lstat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import {
  BUILTIN_PIPELINE_DIR,
  canonicalJson,
  compileRecipe,
  loadPipelines,
  parseRecipe,
  recipeHash,
  type CompiledStep,
  type PipelineRegistry,
  type Recipe,
  type Step,
} from "@kiln/builder";
import { joinUnder } from "@kiln/core";
import { ConfigError, type ImageConfigInput, type Problem } from "@kiln/image";
import { mergeEnvironment, type Distro } from "./config.js";

/** Bump to rebuild everything after a change in how kiln builds that the compiled recipe does not show. */
export const BUILD_KEY_VERSION = 1;

export interface RecipeOutput {
  name: string;
  /** Declared provides (automatic so:/cmd:/pc: ones are only known after a build). */
  provides: string[];
  /** Declared runtime dependencies. */
  depends: string[];
  replaces: string[];
  providerPriority?: number;
}

/** One recipe, compiled for one architecture: plain data. */
export interface RecipeNode {
  /** The main package's name: the recipe's identity in the graph. */
  name: string;
  file: string;
  /** `file` relative to the distribution root. */
  path: string;
  version: string;
  /** The recipe's own epoch (the build may go higher: see the plan). */
  epoch: number;
  fullVersion: string;
  outputs: RecipeOutput[];
  /** environment.contents.packages as the build will request them (default environment merged, pipeline needs added). */
  buildRequests: string[];
  /** Packages the recipe's tests request (the packages under test included). */
  testRequests: string[];
  /** Repositories the recipe's environment names itself. */
  repositories: string[];
  keyring: string[];
  needsGuest: boolean;
  /** The environment to build with when the default environment applies (else the recipe's own is used). */
  environment?: ImageConfigInput;
  /** Hash of everything the recipe itself contributes to its build key. */
  own: string;
  /** Files the recipe is made of, by display path (distribution-relative, or `kiln:` for built-in pipelines) → sha256. */
  files: Record<string, string>;
  /** The same files by absolute path (for mapping git changes). */
  absFiles: string[];
}

export interface LoadedRecipes {
  arch: string;
  recipes: RecipeNode[];
  /** Recipes whose target-architecture excludes this arch. */
  excluded: string[];
  problems: Problem[];
}

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** `${{mirror.NAME}}` bound to a fixed placeholder, so the key does not depend on the machine's mirror. */
function mirrorPlaceholders(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/\$\{\{\s*mirror\.([A-Za-z0-9_-]+)\s*\}\}/g))
    out[`mirror.${m[1]}`] = `https://${m[1]!.toLowerCase()}.mirror.invalid`;
  return out;
}

function needsGuest(steps: CompiledStep[]): boolean {
  return steps.some((s) => !s.native);
}

/** Every file under `dir` (sorted, relative) with a hash of its content, link target or kind. */
export async function hashTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(d)).sort();
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      const st = await lstat(p);
      const rel = relative(dir, p).split(sep).join("/");
      if (st.isDirectory()) await walk(p);
      else if (st.isSymbolicLink()) out[rel] = sha256(`link:${await readlink(p)}`);
      else if (st.isFile())
        out[rel] = sha256(Buffer.concat([Buffer.from(st.mode & 0o111 ? "x:" : "f:"), await readFile(p)]));
    }
  };
  await walk(dir);
  return out;
}

export class FileHashes {
  private readonly cache = new Map<string, Promise<string>>();
  get(path: string): Promise<string> {
    let h = this.cache.get(path);
    if (!h) {
      h = readFile(path).then(sha256, () => "missing");
      this.cache.set(path, h);
    }
    return h;
  }
}

export function displayPath(distro: Pick<Distro, "root">, abs: string): string {
  const builtin = relative(BUILTIN_PIPELINE_DIR, abs);
  if (!builtin.startsWith("..") && !builtin.startsWith(sep)) return `kiln:pipelines/${builtin.split(sep).join("/")}`;
  const rel = relative(distro.root, abs);
  return rel.startsWith("..") ? abs : rel.split(sep).join("/");
}

/** The pipeline files a recipe uses, following `uses:` into pipeline files. */
function pipelineFiles(recipe: Recipe, registry: PipelineRegistry): string[] {
  const files = new Set<string>();
  const seen = new Set<string>();
  const walk = (steps: readonly Step[] | undefined) => {
    for (const s of steps ?? []) {
      if (s.uses && !seen.has(s.uses)) {
        seen.add(s.uses);
        const src = registry.source(s.uses);
        if (src && src !== "<kiln>") files.add(src);
        try {
          walk(registry.get(s.uses)?.pipeline);
        } catch {
          // An invalid pipeline file is reported by the compiler.
        }
      }
      walk(s.pipeline);
    }
  };
  walk(recipe.pipeline);
  for (const sp of recipe.subpackages ?? []) walk(sp.pipeline);
  walk(recipe.test?.pipeline);
  for (const sp of recipe.subpackages ?? []) walk(sp.test?.pipeline);
  return [...files].sort();
}

async function listRecipesDir(distro: Distro): Promise<{ files: string[]; dirs: Set<string> }> {
  const entries = await readdir(distro.recipesDir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return [];
    throw e;
  });
  const files = entries
    .filter((d) => !d.isDirectory() && (d.name.endsWith(".yaml") || d.name.endsWith(".yml")))
    .map((d) => d.name)
    .sort()
    .map((n) => join(distro.recipesDir, n));
  return { files, dirs: new Set(entries.filter((d) => d.isDirectory() || d.isSymbolicLink()).map((d) => d.name)) };
}

/** The recipe files of a distribution: `RECIPES/*.yaml`, sorted (subdirectories hold patches and sources). */
export async function listRecipeFiles(distro: Distro): Promise<string[]> {
  return (await listRecipesDir(distro)).files;
}

export interface LoadRecipesOptions {
  registry?: PipelineRegistry;
  hashes?: FileHashes;
  /** Read at most this many files at once. */
  concurrency?: number;
}

/** Load, compile and hash every recipe for `arch`. Problems are collected, not thrown. */
export async function loadRecipes(distro: Distro, arch: string, opts: LoadRecipesOptions = {}): Promise<LoadedRecipes> {
  const { files, dirs } = await listRecipesDir(distro);
  const problems: Problem[] = [];
  let registry: PipelineRegistry;
  try {
    registry = opts.registry ?? loadPipelines(distro.pipelineDirs);
  } catch (e) {
    if (e instanceof ConfigError) return { arch, recipes: [], excluded: [], problems: e.problems };
    throw e;
  }
  const hashes = opts.hashes ?? new FileHashes();
  const results: Array<RecipeNode | "excluded" | undefined> = new Array(files.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= files.length) return;
      results[i] = await loadOne(distro, files[i]!, arch, registry, hashes, problems, dirs);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 16, files.length) }, worker));
  const recipes: RecipeNode[] = [];
  const excluded: string[] = [];
  results.forEach((r, i) => {
    if (r === "excluded") excluded.push(displayPath(distro, files[i]!));
    else if (r) recipes.push(r);
  });
  // Two recipes may not produce the same package.
  const producer = new Map<string, RecipeNode>();
  for (const r of recipes) {
    for (const o of r.outputs) {
      const prior = producer.get(o.name);
      if (prior)
        problems.push({
          file: r.file,
          path: "",
          message: `package ${o.name} is also produced by ${prior.path}: a package comes from one recipe`,
        });
      else producer.set(o.name, r);
    }
  }
  problems.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : (a.line ?? 0) - (b.line ?? 0)));
  return { arch, recipes, excluded, problems };
}

type Compiled = ReturnType<typeof compileRecipe>;

async function loadOne(
  distro: Distro,
  file: string,
  arch: string,
  registry: PipelineRegistry,
  hashes: FileHashes,
  problems: Problem[],
  sourceDirs: Set<string>,
): Promise<RecipeNode | "excluded" | undefined> {
  const loaded = await readAndCompile(file, arch, registry, problems);
  if (!loaded) return undefined;
  const { text, recipe, compiled } = loaded;
  if (!compiled.supportsArch) return "excluded";
  const pkg = compiled.package;
  const guest = needsGuest([...compiled.pipeline, ...compiled.subpackages.flatMap((s) => s.pipeline)]);
  const useDefault = guest && distro.environment !== undefined;
  const environment = useDefault ? mergeEnvironment(distro.environment!, recipe.environment) : undefined;
  const defaultPackages = useDefault ? (distro.environment!.contents?.packages ?? []) : [];
  // A recipe of kiln-native steps only gets no guest: its environment is not used.
  const buildRequests = guest
    ? [...new Set([...defaultPackages, ...(compiled.environment.contents?.packages ?? [])])]
    : [];
  const outputs = recipeOutputs(compiled);
  const testRequests = testRequestsOf(compiled);
  const { files, absFiles, sources } = await hashRecipeFiles(
    distro,
    file,
    text,
    pkg.name,
    pipelineFiles(recipe, registry),
    hashes,
    sourceDirs,
  );
  const ownHash = sha256(
    canonicalJson({
      v: BUILD_KEY_VERSION,
      compiled: recipeHash(compiled),
      defaultEnvironment: useDefault ? distro.environment : null,
      sources,
    }),
  );
  const node: RecipeNode = {
    name: pkg.name,
    file,
    path: displayPath(distro, file),
    version: pkg.version,
    epoch: pkg.epoch,
    fullVersion: pkg.fullVersion,
    outputs,
    buildRequests,
    testRequests,
    repositories: [...(compiled.environment.contents?.repositories ?? [])],
    keyring: [...(compiled.environment.contents?.keyring ?? [])],
    needsGuest: guest,
    own: ownHash,
    files,
    absFiles,
  };
  if (environment) node.environment = environment;
  return node;
}

/** Read, parse and compile one recipe file for `arch`; a problem is recorded (and undefined returned) when that fails. */
async function readAndCompile(
  file: string,
  arch: string,
  registry: PipelineRegistry,
  problems: Problem[],
): Promise<{ text: string; recipe: Recipe; compiled: Compiled } | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    problems.push({ file, path: "", message: `cannot read: ${(e as Error).message}` });
    return undefined;
  }
  try {
    const loaded = parseRecipe(file, text);
    const compiled = compileRecipe(loaded, { arch, pipelines: registry, variables: mirrorPlaceholders(text) });
    return { text, recipe: loaded.recipe, compiled };
  } catch (e) {
    if (e instanceof ConfigError) {
      problems.push(...e.problems);
      return undefined;
    }
    throw e;
  }
}

/** The packages a compiled recipe declares: the main package, then its subpackages. */
function recipeOutputs(compiled: Compiled): RecipeOutput[] {
  const pkg = compiled.package;
  return [
    {
      name: pkg.name,
      provides: pkg.dependencies.provides,
      depends: pkg.dependencies.runtime,
      replaces: pkg.dependencies.replaces,
      ...(pkg.dependencies.providerPriority !== undefined
        ? { providerPriority: pkg.dependencies.providerPriority }
        : {}),
    },
    ...compiled.subpackages.map((s) => ({
      name: s.name,
      provides: s.dependencies.provides,
      depends: s.dependencies.runtime,
      replaces: s.dependencies.replaces,
      ...(s.dependencies.providerPriority !== undefined ? { providerPriority: s.dependencies.providerPriority } : {}),
    })),
  ];
}

/** What the test environments ask for, sorted and without repeats. */
function testRequestsOf(compiled: Compiled): string[] {
  // The packages under test are requested too: their runtime dependencies must exist before the tests run.
  return [
    ...new Set([
      ...(compiled.test?.environment.contents?.packages ?? []),
      ...compiled.subpackages.flatMap((s) => s.test?.environment.contents?.packages ?? []),
    ]),
  ].sort();
}

/** Hash the recipe's files: the recipe, the pipeline files it uses (`pipelines`), its source directory. */
async function hashRecipeFiles(
  distro: Distro,
  file: string,
  text: string,
  name: string,
  pipelines: string[],
  hashes: FileHashes,
  sourceDirs: Set<string>,
): Promise<{ files: Record<string, string>; absFiles: string[]; sources: Record<string, string> }> {
  const absFiles = [file, ...pipelines];
  const files: Record<string, string> = { [displayPath(distro, file)]: sha256(text) };
  for (const f of pipelines) files[displayPath(distro, f)] = await hashes.get(f);
  const sourceDir = joinUnder(distro.recipesDir, { value: name, what: "package name" });
  const sources = sourceDirs.has(name) ? await hashTree(sourceDir) : {};
  for (const [rel, h] of Object.entries(sources)) {
    files[displayPath(distro, join(sourceDir, rel))] = h;
    absFiles.push(join(sourceDir, rel));
  }
  return { files, absFiles, sources };
}
