// Reporting while compiling: every problem and warning collected with
// file:line:col and the dotted path (pointing into pipeline files where a
// step came from one), and strict, bounded `${{ }}` substitution whose
// problems are reported where the text was written.

import { dotted, type Problem } from "@kiln/core";
import { ConditionError, evaluateCondition } from "../conditions.js";
import type { PipelineDefinition } from "../pipelines.js";
import { MAX_SUBSTITUTED_LENGTH, substituteCollect, type Reference } from "../substitute.js";
import type { CompileOptions, LoadedRecipe, Path } from "./types.js";

/** Where problems found while compiling a step are reported. */
export interface Site {
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

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

export function closest(name: string, candidates: Iterable<string>): string | undefined {
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

/** What all of a recipe's substitutions together may produce. */
const MAX_SUBSTITUTED_TOTAL = 64 << 20;

/** The references melange replaces as written when it reads a recipe (its "config map"), exactly spelled. */
const RAW_REF =
  /\$\{\{(package\.(?:name|version|description|epoch|full-version)|vars\.[^{}\s]+|range\.(?:key|value))\}\}/y;

/**
 * An if: with the config-map references inside its string literals replaced
 * as written (melange: `'${{range.key}}' == ''`). Outside literals they are
 * left to the quoted substitution: melange would see a bare word there and
 * refuse it, but its own examples write `${{package.name}} == 'hello'`, which
 * kiln takes as they mean.
 */
function rawInLiterals(expr: string, vars: ReadonlyMap<string, string>): string {
  let out = "";
  let quote: string | undefined;
  for (let i = 0; i < expr.length;) {
    const c = expr[i]!;
    if (quote && c === "\\" && i + 1 < expr.length) {
      out += expr.slice(i, i + 2);
      i += 2;
      continue;
    }
    if (quote && c === "$") {
      RAW_REF.lastIndex = i;
      const m = RAW_REF.exec(expr);
      const v = m ? vars.get(m[1]!) : undefined;
      if (m && v !== undefined) {
        out += v;
        i += m[0].length;
        continue;
      }
    }
    if (quote && c === quote) quote = undefined;
    else if (!quote && (c === "'" || c === '"')) quote = c;
    out += c;
    i++;
  }
  return out;
}

/** In file order (stable for problems at the same place); problems without a position first. */
export function sortProblems(ps: Problem[]): Problem[] {
  return ps.sort((a, b) =>
    a.file < b.file ? -1 : a.file > b.file ? 1 : (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0),
  );
}

/** Where a recipe's problems and warnings are collected, and how its text is substituted. */
export class Reporter {
  readonly problems: Problem[] = [];
  readonly warnings: Problem[] = [];
  private substituted = 0;
  private overBudget = false;
  private readonly seen = new Set<string>();

  constructor(
    readonly src: LoadedRecipe,
    readonly opts: CompileOptions,
  ) {}

  // -- reporting --

  push(list: Problem[], p: Problem): void {
    const key = `${p.file}:${p.line}:${p.col}:${p.path}:${p.message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    list.push(p);
  }

  /** Position of `ref` inside the scalar at `path`, else of the node. */
  protected position(path: Path, ref?: Reference, value?: string): { line?: number; col?: number } {
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
  protected offsetPosition(path: Path, offset: number): { line?: number; col?: number } {
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
  stepProblem(site: Site, rel: Path, message: string, ref?: Reference, value?: string): void {
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

  protected suggestVariable(name: string, vars: ReadonlyMap<string, string>): string {
    if (name.startsWith("inputs.") && ![...vars.keys()].some((k) => k.startsWith("inputs.")))
      return " (inputs are only defined inside named pipelines)";
    if (name === "targets.subpkgdir" || name === "subpkg.name") return " (only defined in subpackages)";
    if (name === "range.key" || name === "range.value") return " (only defined in subpackages with range)";
    const c = closest(name, vars.keys());
    return c ? ` (did you mean \${{${c}}}?)` : "";
  }

  /**
   * Substitute free text (a description) at `path`: melange leaves a reference
   * it cannot resolve as written there, so kiln does too, with a warning.
   */
  subText(path: Path, text: string, vars: ReadonlyMap<string, string>): string {
    return this.sub(text, vars, (m) => this.warn(path, `${m}: left as written, as melange does`));
  }

  /** Substitute a recipe scalar at `path`. */
  subAt(path: Path, text: string, vars: ReadonlyMap<string, string>, quote = false): string {
    return this.sub(text, vars, (m, ref) => this.problem(path, m, ref, text), quote);
  }

  /** Evaluate an `if:`; a malformed one is reported (and counts as true). */
  condition(path: Path, expr: string, vars: ReadonlyMap<string, string>, site?: Site, rel?: Path): boolean {
    let bad = false;
    const report = (m: string, ref?: Reference) => {
      bad = true;
      if (site) this.stepProblem(site, rel ?? [], m, ref, expr);
      else this.problem(path, m, ref, expr);
    };
    // melange replaces these exact references in the recipe's text as written
    // (unquoted) when it reads the recipe, before any if: is evaluated; the
    // rest are substituted quoted. Pipeline files are not read that way.
    const raw = site ? expr : rawInLiterals(expr, vars);
    const text = this.sub(raw, vars, report, true);
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
}
