// `kiln lint --summary`: the problems of many recipes folded into a
// compatibility report. Each problem is put in a class by the shape of its
// message (unknown pipeline, unknown key K at P, wrong type, …); classes are
// grouped in kinds, each counted in recipes and problems with one example.
// Problems located in another file (a pipeline file named by an "is invalid"
// problem) are the reasons of that invalid pipeline, not problems of their own.

import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { formatProblem, type Problem } from "@kiln/core";
import { UserError } from "./util.js";

/** One recipe as lint saw it. */
export interface RecipeOutcome {
  file: string;
  problems: Problem[];
}

export interface ClassSummary {
  /** The class as shown: `unknown key "test-resources" at package.test-resources`. */
  label: string;
  recipes: number;
  problems: number;
  /** One occurrence, `FILE:LINE:COL: PATH: MESSAGE`. */
  example: string;
  /** For an invalid pipeline file: its own problems (each once). */
  reasons?: string[];
}

export interface KindSummary {
  kind: string;
  title: string;
  recipes: number;
  problems: number;
  classes: ClassSummary[];
}

export interface MissingPipeline {
  name: string;
  recipes: number;
  uses: number;
  example: string;
}

export interface LintSummary {
  recipes: number;
  passed: number;
  failed: number;
  /** passed / recipes × 100, one decimal (100 for no recipes is not possible: at least one is required). */
  percent: number;
  problems: number;
  kinds: KindSummary[];
  missingPipelines: MissingPipeline[];
}

interface Classified {
  kind: string;
  label: string;
  /** The pipeline name of an unknown or invalid pipeline. */
  pipeline?: string;
}

const KIND_TITLES: Record<string, string> = {
  "yaml-syntax": "YAML syntax or unreadable file",
  "unknown-pipeline": "unknown pipeline",
  "invalid-pipeline": "invalid pipeline file",
  "unknown-key": "unknown key",
  "wrong-type": "wrong type or missing value",
  "invalid-dependency": "invalid dependency",
  "unknown-input": "unknown or missing pipeline input",
  "undefined-variable": "undefined variable",
  "bad-if": "bad if: expression",
  "invalid-value": "invalid value",
  "outside-workspace": "path outside the workspace",
  other: "other",
};

/** A dotted path with indices folded: `pipeline[3].with.x` → `pipeline[].with.x`. */
function foldPath(path: string): string {
  return path.replace(/\[\d+\]/g, "[]");
}

/** A message with its particulars folded: quoted text → "…", numbers → N. */
function foldMessage(message: string): string {
  return message
    .replace(/"(?:[^"\\]|\\.)*"/g, '"…"')
    .replace(/\$\{\{[^}]*\}\}/g, "${{…}}")
    .replace(/\b\d+\b/g, "N");
}

const RULES: Array<{ re: RegExp; kind: string; label: (m: RegExpExecArray, p: Problem) => string; pipe?: number }> = [
  { re: /^(YAML |the file is larger|cannot read)/, kind: "yaml-syntax", label: (_m, p) => foldMessage(p.message) },
  { re: /^unknown pipeline "([^"]+)"/, kind: "unknown-pipeline", label: (m) => `unknown pipeline "${m[1]}"`, pipe: 1 },
  {
    re: /^pipeline "([^"]+)" \(.*\) is invalid/,
    kind: "invalid-pipeline",
    label: (m) => `pipeline "${m[1]}" is invalid`,
    pipe: 1,
  },
  {
    re: /^unknown keys? "([^"]+)"/,
    kind: "unknown-key",
    label: (m, p) => `unknown key "${m[1]}" at ${foldPath(p.path)}`,
  },
  {
    re: /^invalid dependency "(?:[^"\\]|\\.)*": (.*)$/,
    kind: "invalid-dependency",
    label: (m) => m[1]!.replace(/; expected .*$/, "").replace(/ \([^)]*\)$/, ""),
  },
  {
    re: /^(unknown|missing required|missing) input "([^"]+)" for pipeline "([^"]+)"/,
    kind: "unknown-input",
    label: (m) => `${m[1]} input "${m[2]}" for pipeline "${m[3]}"`,
  },
  { re: /^undefined variable (\$\{\{[^}]*\}\})/, kind: "undefined-variable", label: (m) => `undefined ${m[1]}` },
  { re: /^(bad if expression|malformed variable reference)/, kind: "bad-if", label: (m) => m[1]! },
  {
    re: /is outside the workspace/,
    kind: "outside-workspace",
    label: (_m, p) => `${foldPath(p.path).split(".").pop()} outside the workspace`,
  },
  {
    re: /(is not a valid|must match|matching|is not one of|expected one of|unknown (architecture|build option))/,
    kind: "invalid-value",
    label: (_m, p) => `${foldPath(p.path)}: ${foldMessage(p.message)}`,
  },
  {
    re: /^(required: )?expected [^,]+(, got |$)|must be (true or false|a string|a number)/,
    kind: "wrong-type",
    label: (_m, p) => `${foldPath(p.path)}: ${foldMessage(p.message)}`,
  },
];

/** The kind and class of one problem, by the shape of its message. */
export function classifyProblem(p: Problem): Classified {
  for (const r of RULES) {
    const m = r.re.exec(p.message);
    if (m) return { kind: r.kind, label: r.label(m, p), ...(r.pipe ? { pipeline: m[r.pipe]! } : {}) };
  }
  return { kind: "other", label: `${foldPath(p.path)}${p.path ? ": " : ""}${foldMessage(p.message)}` };
}

interface ClassAcc {
  kind: string;
  label: string;
  recipes: Set<string>;
  problems: number;
  example: string;
  reasons?: Set<string>;
  pipeline?: string;
}

/** The pipeline file an "is invalid" problem names, for matching that file's own problems to it. */
function invalidPipelineFile(p: Problem): string | undefined {
  return /^pipeline "[^"]+" \((.*)\) is invalid/.exec(p.message)?.[1];
}

/** Fold every recipe's problems into the report. */
export function summarizeLint(outcomes: readonly RecipeOutcome[]): LintSummary {
  const classes = new Map<string, ClassAcc>();
  let problems = 0;
  const count = (file: string, p: Problem): ClassAcc => {
    problems++;
    const c = classifyProblem(p);
    const key = `${c.kind}\0${c.label}`;
    let acc = classes.get(key);
    if (!acc) {
      acc = { kind: c.kind, label: c.label, recipes: new Set(), problems: 0, example: formatProblem(p) };
      if (c.pipeline) acc.pipeline = c.pipeline;
      classes.set(key, acc);
    }
    acc.recipes.add(file);
    acc.problems++;
    return acc;
  };
  for (const o of outcomes) {
    // Problems inside a pipeline file are the reasons of the "is invalid" problem naming that file.
    const invalid = new Map<string, ClassAcc>();
    const foreign: Problem[] = [];
    for (const p of o.problems) {
      if (p.file !== o.file && !invalidPipelineFile(p)) {
        foreign.push(p);
        continue;
      }
      const acc = count(o.file, p);
      const named = invalidPipelineFile(p);
      if (named !== undefined) invalid.set(named, acc);
    }
    for (const p of foreign) {
      const owner = invalid.get(p.file);
      if (owner) (owner.reasons ??= new Set()).add(formatProblem(p));
      else count(o.file, p);
    }
  }
  const passed = outcomes.filter((o) => o.problems.length === 0).length;
  const all = [...classes.values()];
  return {
    recipes: outcomes.length,
    passed,
    failed: outcomes.length - passed,
    percent: outcomes.length ? Math.round((passed / outcomes.length) * 1000) / 10 : 0,
    problems,
    kinds: kindSummaries(all),
    missingPipelines: all
      .filter((c) => c.kind === "unknown-pipeline")
      .map((c) => ({ name: c.pipeline!, recipes: c.recipes.size, uses: c.problems, example: c.example }))
      .sort((a, b) => b.recipes - a.recipes || b.uses - a.uses || a.name.localeCompare(b.name)),
  };
}

function byCount<T extends { recipes: number; problems: number; label?: string; kind?: string }>(a: T, b: T): number {
  return (
    b.recipes - a.recipes || b.problems - a.problems || (a.label ?? a.kind ?? "").localeCompare(b.label ?? b.kind ?? "")
  );
}

function kindSummaries(all: ClassAcc[]): KindSummary[] {
  const kinds = new Map<string, { recipes: Set<string>; problems: number; classes: ClassSummary[] }>();
  for (const c of all) {
    let k = kinds.get(c.kind);
    if (!k) kinds.set(c.kind, (k = { recipes: new Set(), problems: 0, classes: [] }));
    for (const r of c.recipes) k.recipes.add(r);
    k.problems += c.problems;
    k.classes.push({
      label: c.label,
      recipes: c.recipes.size,
      problems: c.problems,
      example: c.example,
      ...(c.reasons ? { reasons: [...c.reasons].sort() } : {}),
    });
  }
  return [...kinds.entries()]
    .map(([kind, k]) => ({
      kind,
      title: KIND_TITLES[kind] ?? kind,
      recipes: k.recipes.size,
      problems: k.problems,
      classes: k.classes.sort(byCount),
    }))
    .sort(byCount);
}

/** The report as text: rate, taxonomy (at most `perKind` classes a kind), top missing pipelines. */
export function renderLintSummary(s: LintSummary, perKind = 8, topPipelines = 20): string[] {
  const out = [`${s.passed} of ${s.recipes} recipes pass (${s.percent.toFixed(1)}%); ${s.problems} problems`];
  if (s.kinds.length) out.push("", "Failure taxonomy (recipes, problems):");
  for (const k of s.kinds) {
    out.push(`  ${k.title}: ${k.recipes} recipes, ${k.problems} problems`);
    if (k.kind === "unknown-pipeline") {
      out.push(`    (${k.classes.length} pipelines: see top missing pipelines)`);
      continue;
    }
    for (const c of k.classes.slice(0, perKind)) {
      out.push(`    ${c.recipes} / ${c.problems}  ${c.label}`, `        e.g. ${c.example}`);
      if (c.reasons?.length)
        out.push(`        because ${c.reasons[0]}${c.reasons.length > 1 ? ` (+${c.reasons.length - 1})` : ""}`);
    }
    if (k.classes.length > perKind) out.push(`    … ${k.classes.length - perKind} more classes (--json lists all)`);
  }
  if (s.missingPipelines.length) {
    out.push("", "Top missing pipelines (recipes, uses):");
    for (const p of s.missingPipelines.slice(0, topPipelines))
      out.push(`  ${String(p.recipes).padStart(5)} ${String(p.uses).padStart(5)}  ${p.name}`);
    if (s.missingPipelines.length > topPipelines)
      out.push(`  … ${s.missingPipelines.length - topPipelines} more (--json lists all)`);
  }
  return out;
}

/** The recipes named: files as given, directories' *.yaml (not recursive, no dot files), sorted. */
export async function expandRecipeArgs(args: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const a of args) {
    const st = await stat(a).catch((e: NodeJS.ErrnoException) => {
      throw new UserError(`${a}: ${e.code === "ENOENT" ? "no such file or directory" : e.message}`);
    });
    if (!st.isDirectory()) {
      files.push(a);
      continue;
    }
    const names = (await readdir(a, { withFileTypes: true }))
      .filter((d) => !d.name.startsWith(".") && d.name.endsWith(".yaml") && (d.isFile() || d.isSymbolicLink()))
      .map((d) => d.name)
      .sort();
    files.push(...names.map((n) => join(a, n)));
  }
  if (!files.length) throw new UserError(`no recipes (*.yaml) in ${args.join(", ")}`);
  return files;
}
