// `kiln compile`, `kiln lint`, `kiln package-version`: recipes checked and
// resolved without building anything.

import { checkRecipe, compileRecipe, readRecipe, recipePackageVersion } from "@kiln/builder";
import { isValidVersion } from "@kiln/apk";
import { ConfigError, formatProblem, type Problem } from "@kiln/core";
import { asArray, help, parse, UserError, type Command } from "../util.js";

const PIPELINE_HELP = `--arch A            resolve for architecture A (default: the host's)
--pipeline-dir D    also look up named pipelines in D (repeatable; earlier wins, then the built-ins)
--build-option O    enable the recipe's build option O (repeatable)`;

const common = {
  arch: { type: "string" },
  "pipeline-dir": { type: "string", multiple: true },
  "build-option": { type: "string", multiple: true },
} as const;

function compileOptions(v: Record<string, unknown>) {
  return {
    ...(v.arch ? { arch: v.arch as string } : {}),
    pipelineDirs: asArray(v["pipeline-dir"]),
    buildOptions: asArray(v["build-option"]),
    ...(v["source-dir"] ? { sourceDir: v["source-dir"] as string } : {}),
  };
}

export const compile: Command = {
  name: "compile",
  summary: "print a recipe resolved for one architecture, as JSON",
  usage: "kiln compile RECIPE [--arch A] [--pipeline-dir D]... [--build-option O]... [--source-dir D]",
  async run(argv, io) {
    const { values, positionals } = parse(this, argv, { ...common, "source-dir": { type: "string" } });
    if (values.help)
      return help(
        this,
        io,
        `Parses and checks the recipe, expands every \`uses:\` into its steps with inputs and
defaults substituted, evaluates \`if:\`, expands \`range\` subpackages and collects the
packages the steps need into the build environment. Prints the result as JSON.
${PIPELINE_HELP}
--source-dir D      the recipe's source directory (checks that patches exist)`,
      );
    if (positionals.length !== 1) throw new UserError(`usage: ${this.usage}`, 2);
    const loaded = await readRecipe(positionals[0]!);
    io.out(JSON.stringify(compileRecipe(loaded, compileOptions(values)), null, 2));
    return 0;
  },
};

export const lint: Command = {
  name: "lint",
  summary: "check recipes and report every problem",
  usage: "kiln lint RECIPE... [--arch A] [--pipeline-dir D]... [--build-option O]... [--source-dir D]",
  async run(argv, io) {
    const { values, positionals } = parse(this, argv, { ...common, "source-dir": { type: "string" } });
    if (values.help)
      return help(
        this,
        io,
        `Reports every problem, one per line as FILE:LINE:COL: PATH: MESSAGE — YAML syntax, unknown
keys, bad names and versions, unknown pipelines, unknown or missing inputs, undefined
\${{ }} variables, bad if: expressions, duplicate subpackages, ranges over missing data —
then warnings (missing license or description). Exit status 1 if any recipe has a problem.
${PIPELINE_HELP}
--source-dir D      the recipes' source directory (checks that patches exist)`,
      );
    if (positionals.length === 0) throw new UserError(`usage: ${this.usage}`, 2);
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
};

export const packageVersion: Command = {
  name: "package-version",
  summary: "print NAME-VERSION-rEPOCH of a recipe's main package",
  usage: "kiln package-version RECIPE",
  async run(argv, io) {
    const { values, positionals } = parse(this, argv, {});
    if (values.help)
      return help(
        this,
        io,
        `Prints the main package's NAME-VERSION-rEPOCH, the name of the .apk the recipe builds\n(without .apk). Only the recipe's schema is checked.`,
      );
    if (positionals.length !== 1) throw new UserError(`usage: ${this.usage}`, 2);
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
};
