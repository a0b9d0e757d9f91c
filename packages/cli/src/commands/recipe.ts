// `kiln compile`, `kiln lint`, `kiln package-version`: recipes checked and
// resolved without building anything.

import { checkRecipe, compileRecipe, readRecipe, recipePackageVersion } from "@kiln/builder";
import { isValidVersion } from "@kiln/apk";
import { ConfigError, formatProblem, type Problem } from "@kiln/core";
import { opt } from "../options.js";
import { defineCommand, type Values } from "../program.js";

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

export const lint = defineCommand({
  name: "lint",
  summary: "check recipes and report every problem",
  args: ["RECIPE..."],
  details: `Reports every problem, one per line as FILE:LINE:COL: PATH: MESSAGE — YAML syntax, unknown
keys, bad names and versions, unknown pipelines, unknown or missing inputs, undefined
\${{ }} variables, bad if: expressions, duplicate subpackages, ranges over missing data —
then warnings (missing license or description). Exit status 1 if any recipe has a problem.`,
  options: {
    ...RESOLVE,
    sourceDir: opt.sourceDir.describe("the recipes' source directory (checks that patches exist)"),
  },
  async run(values, positionals, io) {
    let failed = 0;
    for (const file of positionals) {
      let problems: Problem[];
      let warnings: Problem[] = [];
      try {
        const loaded = await readRecipe(file);
        ({ problems, warnings } = checkRecipe(loaded, compileOptions(values)));
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        problems = e.problems;
      }
      for (const p of problems) io.out(formatProblem(p));
      for (const w of warnings) io.out(formatProblem({ ...w, message: `warning: ${w.message}` }));
      if (problems.length) failed++;
    }
    if (failed)
      io.err(`kiln lint: ${failed} of ${positionals.length} recipe${positionals.length > 1 ? "s" : ""} with problems`);
    return failed ? 1 : 0;
  },
});

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
