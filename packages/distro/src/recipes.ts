// The distribution's recipes as graph nodes: each recipe compiled for one
// architecture in a mirror-independent form, what its build (and test)
// environment asks for, what it declares it produces, and the hashes that
// make its own part of the build key — the compiled recipe (which has every
// named pipeline it uses expanded into it), the default environment when it
// applies, and its patches and local source files.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { readdir, readFile, readlink, lstat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import {
  BUILTIN_PIPELINE_DIR,
  CompileCache,
  canonicalJson,
  compileRecipe,
  loadPipelines,
  PACKAGE_NAME_RE,
  parseRecipe,
  recipeHash,
  recipeSchema,
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

/** `//`, `/./`, `/../` or a trailing `/.` or `/..`: a path path.relative would normalise. */
const UNNORMAL = /\/\.{0,2}\/|\/\.{1,2}$/;

const displayPaths = new Map<string, string>();

/** A file's display path: distribution-relative, `kiln:pipelines/…` for a built-in pipeline, else absolute. */
export function displayPath(distro: Pick<Distro, "root">, abs: string): string {
  const key = `${distro.root}\0${abs}`;
  let d = displayPaths.get(key);
  if (d === undefined) {
    d = displayPathOf(distro.root, abs);
    // Bounded: a long-lived process planning many distributions does not keep every path.
    if (displayPaths.size >= 100_000) displayPaths.clear();
    displayPaths.set(key, d);
  }
  return d;
}

function displayPathOf(root: string, abs: string): string {
  // The common case without path.relative: a normalised path under the root, outside the built-ins.
  if (
    sep === "/" &&
    abs.startsWith(root + "/") &&
    !abs.startsWith(BUILTIN_PIPELINE_DIR + "/") &&
    !UNNORMAL.test(abs) &&
    !root.endsWith("/")
  )
    return abs.slice(root.length + 1);
  const builtin = relative(BUILTIN_PIPELINE_DIR, abs);
  if (!builtin.startsWith("..") && !builtin.startsWith(sep)) return `kiln:pipelines/${builtin.split(sep).join("/")}`;
  const rel = relative(root, abs);
  return rel.startsWith("..") ? abs : rel.split(sep).join("/");
}

/** The pipelines a recipe uses, following `uses:` into pipeline files: name → where it comes from (a file, `<kiln>`, or null when unknown). */
function pipelineUses(recipe: Recipe, registry: PipelineRegistry): Array<[string, string | null]> {
  const uses = new Map<string, string | null>();
  const walk = (steps: readonly Step[] | undefined) => {
    for (const s of steps ?? []) {
      if (s.uses && !uses.has(s.uses)) {
        uses.set(s.uses, registry.source(s.uses) ?? null);
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
  return [...uses].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The pipeline files among `uses`, sorted. */
function usedFiles(uses: ReadonlyArray<[string, string | null]>): string[] {
  return [...new Set(uses.flatMap(([, src]) => (src && src !== "<kiln>" ? [src] : [])))].sort();
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
  /** Keep compiled recipes in CACHE/compiled (keyed by content), so unchanged recipes are not parsed again. */
  cacheDir?: string;
}

/** What compiling a recipe yields that a graph node needs: the compiled-recipe cache's entry. */
interface CompiledSummary {
  excluded: boolean;
  /** The pipelines used (name → file, `<kiln>` or null) and the sha256 of each file as compiled. */
  uses: Array<[string, string | null]>;
  pipelineHashes: Record<string, string>;
  name: string;
  version: string;
  epoch: number;
  fullVersion: string;
  outputs: RecipeOutput[];
  guest: boolean;
  packages: string[];
  repositories: string[];
  keyring: string[];
  testRequests: string[];
  compiledHash: string;
  /** The recipe's own environment as parsed; checked against the recipe schema again when it is used. */
  environment?: unknown;
}

const HEX64 = /^[0-9a-f]{64}$/;
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === "string");

function validOutput(o: unknown): o is RecipeOutput {
  if (!o || typeof o !== "object") return false;
  const x = o as Record<string, unknown>;
  const keys = Object.keys(x);
  return (
    keys.every((k) => ["name", "provides", "depends", "replaces", "providerPriority"].includes(k)) &&
    typeof x.name === "string" &&
    PACKAGE_NAME_RE.test(x.name) &&
    isStrings(x.provides) &&
    isStrings(x.depends) &&
    isStrings(x.replaces) &&
    (x.providerPriority === undefined || Number.isSafeInteger(x.providerPriority))
  );
}

/** A cache entry as read from disk, checked field by field (it is untrusted): the summary, or undefined. */
function validSummary(v: unknown): CompiledSummary | undefined {
  if (!v || typeof v !== "object" || Array.isArray(v)) return undefined;
  const s = v as Record<string, unknown>;
  const uses = s.uses;
  const hashes = s.pipelineHashes;
  const ok =
    typeof s.excluded === "boolean" &&
    Array.isArray(uses) &&
    uses.every(
      (u) =>
        Array.isArray(u) && u.length === 2 && typeof u[0] === "string" && (u[1] === null || typeof u[1] === "string"),
    ) &&
    !!hashes &&
    typeof hashes === "object" &&
    !Array.isArray(hashes) &&
    Object.values(hashes).every((h) => typeof h === "string" && (HEX64.test(h) || h === "missing")) &&
    typeof s.name === "string" &&
    PACKAGE_NAME_RE.test(s.name) &&
    typeof s.version === "string" &&
    Number.isSafeInteger(s.epoch) &&
    (s.epoch as number) >= 0 &&
    typeof s.fullVersion === "string" &&
    Array.isArray(s.outputs) &&
    s.outputs.length > 0 &&
    s.outputs.every(validOutput) &&
    typeof s.guest === "boolean" &&
    isStrings(s.packages) &&
    isStrings(s.repositories) &&
    isStrings(s.keyring) &&
    isStrings(s.testRequests) &&
    typeof s.compiledHash === "string" &&
    HEX64.test(s.compiledHash) &&
    (s.environment === undefined || (typeof s.environment === "object" && s.environment !== null));
  return ok ? (v as CompiledSummary) : undefined;
}

/** The compiled-recipe cache for `arch` under CACHE/compiled (keys include kiln's code: see @kiln/builder). */
function openCompileCache(cacheDir: string, arch: string): Promise<CompileCache<CompiledSummary>> {
  return CompileCache.open(
    join(cacheDir, "compiled"),
    `recipes-${arch.toLowerCase().replace(/[^a-z0-9_-]/g, "_")}`,
    validSummary,
    {
      extraCode: [fileURLToPath(import.meta.url)],
    },
  );
}

interface LoadContext {
  distro: Distro;
  arch: string;
  registry: PipelineRegistry;
  hashes: FileHashes;
  problems: Problem[];
  sourceDirs: Set<string>;
  cache: CompileCache<CompiledSummary> | undefined;
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
  const ctx: LoadContext = {
    distro,
    arch,
    registry,
    hashes: opts.hashes ?? new FileHashes(),
    problems,
    sourceDirs: dirs,
    cache: opts.cacheDir ? await openCompileCache(opts.cacheDir, arch) : undefined,
  };
  const results: Array<RecipeNode | "excluded" | undefined> = new Array(files.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= files.length) return;
      results[i] = await loadOne(ctx, files[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 16, files.length) }, worker));
  // The cache is only an accelerator: failing to write it is not a planning failure.
  await ctx.cache?.save().catch(() => undefined);
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

async function loadOne(ctx: LoadContext, file: string): Promise<RecipeNode | "excluded" | undefined> {
  const { distro } = ctx;
  let text: string;
  try {
    // One synchronous read: for thousands of small files much cheaper than fs/promises' open, stat, read, close.
    text = readFileSync(file, "utf8");
  } catch (e) {
    ctx.problems.push({ file, path: "", message: `cannot read: ${(e as Error).message}` });
    return undefined;
  }
  const textHash = sha256(text);
  const s = await compiledSummary(ctx, file, text, textHash);
  if (!s) return undefined;
  if (s.excluded) return "excluded";
  const useDefault = s.guest && distro.environment !== undefined;
  const own = s.environment as ImageConfigInput | undefined;
  const environment = useDefault ? mergeEnvironment(distro.environment!, own) : undefined;
  const defaultPackages = useDefault ? (distro.environment!.contents?.packages ?? []) : [];
  // A recipe of kiln-native steps only gets no guest: its environment is not used.
  const buildRequests = s.guest ? [...new Set([...defaultPackages, ...s.packages])] : [];
  const { files, absFiles, sources } = await hashRecipeFiles(ctx, file, textHash, s);
  const ownHash = sha256(
    canonicalJson({
      v: BUILD_KEY_VERSION,
      compiled: s.compiledHash,
      defaultEnvironment: useDefault ? distro.environment : null,
      sources,
    }),
  );
  const node: RecipeNode = {
    name: s.name,
    file,
    path: displayPath(distro, file),
    version: s.version,
    epoch: s.epoch,
    fullVersion: s.fullVersion,
    outputs: s.outputs,
    buildRequests,
    testRequests: s.testRequests,
    repositories: s.repositories,
    keyring: s.keyring,
    needsGuest: s.guest,
    own: ownHash,
    files,
    absFiles,
  };
  if (environment) node.environment = environment;
  return node;
}

/**
 * The compiled recipe's summary: from the cache when an entry for these
 * bytes exists and the pipelines it used still resolve to the same files with
 * the same content, else compiled now (and cached). A problem is recorded
 * (and undefined returned) when the recipe does not compile.
 */
async function compiledSummary(
  ctx: LoadContext,
  file: string,
  text: string,
  textHash: string,
): Promise<CompiledSummary | undefined> {
  const key = ctx.cache?.key("recipe-node", ctx.arch, textHash);
  const hit = key ? ctx.cache!.get(key) : undefined;
  if (hit && (await stillValid(ctx, hit))) return hit;
  const loaded = compileOne(file, text, ctx.arch, ctx.registry, ctx.problems);
  if (!loaded) return undefined;
  const s = await summarize(ctx, loaded.recipe, loaded.compiled);
  if (key) ctx.cache!.set(key, s);
  return s;
}

/**
 * A cached summary applies while every pipeline it used comes from the same
 * file with the same content; an environment it carries is checked against the
 * recipe schema again before it is merged into the default one.
 */
async function stillValid(ctx: LoadContext, s: CompiledSummary): Promise<boolean> {
  if (s.environment !== undefined && s.guest && ctx.distro.environment !== undefined) {
    const env = recipeSchema.shape.environment.safeParse(s.environment);
    if (!env.success) return false;
    s.environment = env.data;
  }
  for (const [name, src] of s.uses) {
    if ((ctx.registry.source(name) ?? null) !== src) return false;
    if (src && src !== "<kiln>" && s.pipelineHashes[src] !== (await ctx.hashes.get(src))) return false;
  }
  return true;
}

async function summarize(ctx: LoadContext, recipe: Recipe, compiled: Compiled): Promise<CompiledSummary> {
  const uses = pipelineUses(recipe, ctx.registry);
  const pipelineHashes: Record<string, string> = {};
  for (const f of usedFiles(uses)) pipelineHashes[f] = await ctx.hashes.get(f);
  const pkg = compiled.package;
  const s: CompiledSummary = {
    excluded: !compiled.supportsArch,
    uses,
    pipelineHashes,
    name: pkg.name,
    version: pkg.version,
    epoch: pkg.epoch,
    fullVersion: pkg.fullVersion,
    outputs: recipeOutputs(compiled),
    guest: needsGuest([...compiled.pipeline, ...compiled.subpackages.flatMap((x) => x.pipeline)]),
    packages: [...(compiled.environment.contents?.packages ?? [])],
    repositories: [...(compiled.environment.contents?.repositories ?? [])],
    keyring: [...(compiled.environment.contents?.keyring ?? [])],
    testRequests: testRequestsOf(compiled),
    compiledHash: recipeHash(compiled),
  };
  if (recipe.environment !== undefined) s.environment = structuredClone(recipe.environment);
  return s;
}

/** Parse and compile one recipe's text for `arch`; a problem is recorded (and undefined returned) when that fails. */
function compileOne(
  file: string,
  text: string,
  arch: string,
  registry: PipelineRegistry,
  problems: Problem[],
): { recipe: Recipe; compiled: Compiled } | undefined {
  try {
    const loaded = parseRecipe(file, text);
    const compiled = compileRecipe(loaded, { arch, pipelines: registry, variables: mirrorPlaceholders(text) });
    return { recipe: loaded.recipe, compiled };
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

/** Hash the recipe's files: the recipe, the pipeline files it uses, its source directory. */
async function hashRecipeFiles(
  ctx: LoadContext,
  file: string,
  textHash: string,
  s: CompiledSummary,
): Promise<{ files: Record<string, string>; absFiles: string[]; sources: Record<string, string> }> {
  const { distro } = ctx;
  const pipelines = usedFiles(s.uses);
  const absFiles = [file, ...pipelines];
  const files: Record<string, string> = { [displayPath(distro, file)]: textHash };
  for (const f of pipelines) files[displayPath(distro, f)] = await ctx.hashes.get(f);
  if (!ctx.sourceDirs.has(s.name)) return { files, absFiles, sources: {} };
  const sourceDir = joinUnder(distro.recipesDir, { value: s.name, what: "package name" });
  const sources = await hashTree(sourceDir);
  for (const [rel, h] of Object.entries(sources)) {
    files[displayPath(distro, join(sourceDir, rel))] = h;
    absFiles.push(join(sourceDir, rel));
  }
  return { files, absFiles, sources };
}
