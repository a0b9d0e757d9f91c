// `kiln compile`, `kiln lint`, `kiln package-version`: recipes checked and
// resolved without building anything.

import {
  checkRecipe,
  compileRecipe,
  loadPipelines,
  readRecipe,
  recipePackageVersion,
  type PipelineRegistry,
} from "@kiln/builder";
import { isValidVersion } from "@kiln/apk";
import { ConfigError, formatProblem, type Problem } from "@kiln/core";
import { expandRecipeArgs, renderLintSummary, summarizeLint, type RecipeOutcome } from "../lint-summary.js";
import { opt } from "../options.js";
import { defineCommand, flag, number, type Values } from "../program.js";
import { UserError, type Io } from "../util.js";

/** What compile and lint take: how the recipe is resolved. */
const RESOLVE = {
  arch: opt.arch.describe("resolve for architecture A (default: the host's)"),
  pipelineDir: opt.pipelineDir,
  buildOption: opt.buildOption,
  sourceDir: opt.sourceDir.describe("the recipe's source directory (checks that patches exist)"),
} as const;

function compileOptions(v: Values<typeof RESOLVE>) {
  return {
    ...(v.arch ? { arch: v.arch } : {}),
    pipelineDirs: v.pipelineDir,
    buildOptions: v.buildOption,
    ...(v.sourceDir ? { sourceDir: v.sourceDir } : {}),
  };
}

export const compile = defineCommand({
  name: "compile",
  summary: "print a recipe resolved for one architecture, as JSON",
  args: ["RECIPE"],
  details: `Parses and checks the recipe, expands every \`uses:\` into its steps with inputs and
defaults substituted, evaluates \`if:\`, expands \`range\` subpackages and collects the
packages the steps need into the build environment. Prints the result as JSON.`,
  options: RESOLVE,
  async run(values, positionals, io) {
    const loaded = await readRecipe(positionals[0]!);
    io.out(JSON.stringify(compileRecipe(loaded, compileOptions(values)), null, 2));
    return 0;
  },
});

/** One registry for every recipe of a lint run: the pipeline directories are listed and parsed once, not per recipe. */
function sharedRegistry(dirs: string[]): PipelineRegistry | undefined {
  try {
    return loadPipelines(dirs);
  } catch (e) {
    if (e instanceof ConfigError) return undefined; // reported per recipe, as before
    throw e;
  }
}

/** Lint one recipe: its problems (the schema's, or the checker's) and warnings. */
async function lintOne(
  file: string,
  opts: ReturnType<typeof compileOptions>,
): Promise<{ problems: Problem[]; warnings: Problem[] }> {
  try {
    return checkRecipe(await readRecipe(file), opts);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return { problems: e.problems, warnings: [] };
  }
}

/** Progress on stderr at most every 2 s, for long runs. */
function progress(io: Io, total: number): (done: number) => void {
  let last = Date.now();
  return (done) => {
    const now = Date.now();
    if (now - last < 2000 || done === total) return;
    last = now;
    io.err(`kiln lint: ${done} of ${total} recipes checked`);
  };
}

export const lint = defineCommand({
  name: "lint",
  summary: "check recipes and report every problem",
  args: ["RECIPE..."],
  details: `Reports every problem, one per line as FILE:LINE:COL: PATH: MESSAGE — YAML syntax, unknown
keys, bad names and versions, unknown pipelines, unknown or missing inputs, undefined
\${{ }} variables, bad if: expressions, duplicate subpackages, ranges over missing data —
then warnings (missing license or description). Exit status 1 if any recipe has a problem.

With --summary, a compatibility report instead: RECIPE may be a directory (its *.yaml, not
recursive); prints how many recipes pass, the problems grouped into classes by the shape of
their message (recipes and problems per class, one example each) and the missing pipelines
most used. Progress goes to stderr. The report is the result: exit status 0 even when recipes
fail, unless --fail-under P is given and fewer than P percent pass (then 1).`,
  options: {
    ...RESOLVE,
    sourceDir: opt.sourceDir.describe("the recipes' source directory (checks that patches exist)"),
    summary: flag("--summary", "print a compatibility report (acceptance rate, failure taxonomy, missing pipelines)"),
    json: opt.json.describe("with --summary: the report as JSON"),
    failUnder: number("--fail-under <P>", "with --summary: exit 1 if fewer than P percent of the recipes pass", {
      integer: false,
      min: 0,
      max: 100,
    }),
  },
  async run(values, positionals, io) {
    if (!values.summary && (values.json || values.failUnder !== undefined))
      throw new UserError("--json and --fail-under go with --summary", 2);
    const files = values.summary ? await expandRecipeArgs(positionals) : positionals;
    const registry = sharedRegistry(values.pipelineDir);
    const opts = { ...compileOptions(values), ...(registry ? { pipelines: registry } : {}) };
    if (values.summary) return lintSummary(files, opts, values, io);
    let failed = 0;
    for (const file of files) {
      const { problems, warnings } = await lintOne(file, opts);
      for (const p of problems) io.out(formatProblem(p));
      for (const w of warnings) io.out(formatProblem({ ...w, message: `warning: ${w.message}` }));
      if (problems.length) failed++;
    }
    if (failed) io.err(`kiln lint: ${failed} of ${files.length} recipe${files.length > 1 ? "s" : ""} with problems`);
    return failed ? 1 : 0;
  },
});

async function lintSummary(
  files: string[],
  opts: ReturnType<typeof compileOptions>,
  values: { json: boolean; failUnder: number | undefined },
  io: Io,
): Promise<number> {
  const t0 = Date.now();
  const tick = progress(io, files.length);
  const outcomes: RecipeOutcome[] = [];
  for (const [i, file] of files.entries()) {
    outcomes.push({ file, problems: (await lintOne(file, opts)).problems });
    tick(i + 1);
  }
  const s = summarizeLint(outcomes);
  if (values.json) io.out(JSON.stringify(s, null, 2));
  else for (const line of renderLintSummary(s)) io.out(line);
  io.err(
    `kiln lint: ${s.passed} of ${s.recipes} recipes pass (${s.percent.toFixed(1)}%) in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  // The exact ratio, not the rounded percent: 98.96% does not meet --fail-under 99.
  return values.failUnder !== undefined && s.passed * 100 < values.failUnder * s.recipes ? 1 : 0;
}

export const packageVersion = defineCommand({
  name: "package-version",
  summary: "print NAME-VERSION-rEPOCH of a recipe's main package",
  args: ["RECIPE"],
  details: `Prints the main package's NAME-VERSION-rEPOCH, the name of the .apk the recipe builds
(without .apk). Only the recipe's schema is checked.`,
  options: {},
  async run(_values, positionals, io) {
    const loaded = await readRecipe(positionals[0]!);
    const version = String(loaded.recipe.package.version);
    if (!isValidVersion(`${version}-r0`)) {
      throw new ConfigError([
        {
          file: loaded.file,
          ...loaded.locate(["package", "version"]),
          path: "package.version",
          message: `${JSON.stringify(version)} is not a valid apk version`,
        },
      ]);
    }
    io.out(recipePackageVersion(loaded.recipe));
    return 0;
  },
});
