// The `if:` expression language of melange recipes: string literals ('…' or
// "…"), `${{ name }}` variables, `==`, `!=`, `&&`, `||` and parentheses.
//
// melange substitutes variables as quoted strings before evaluating
// (`${{build.arch}} == 'x86_64'` becomes `"x86_64" == 'x86_64'`), and its
// parser chains `&&` and `||` left to right with equal precedence:
// `a || b && c` is `(a || b) && c`. Both are kept here so a recipe means the
// same thing under kiln as under melange.

import { KilnError } from "@kiln/core";
export class ConditionError extends KilnError {
  readonly code = "INVALID_CONDITION";
  constructor(
    readonly expression: string,
    /** Offset in the expression where the problem was found. */
    readonly position: number,
    readonly reason: string,
  ) {
    super(`bad if expression ${JSON.stringify(expression)}: ${reason} at position ${position}`);
    this.name = "ConditionError";
  }
}

export type Operand = { kind: "literal"; value: string; pos: number } | { kind: "variable"; name: string; pos: number };

export type Condition =
  | { kind: "compare"; op: "==" | "!="; left: Operand; right: Operand }
  | { kind: "and" | "or"; left: Condition; right: Condition };

export type Lookup = (name: string) => string | undefined;

const isSpace = (c: string | undefined) => c === " " || c === "\t" || c === "\n" || c === "\r";
const VAR_CHAR = /[a-zA-Z0-9._-]/;

class Parser {
  pos = 0;
  constructor(readonly input: string) {}

  fail(reason: string, at = this.pos): never {
    throw new ConditionError(this.input, at, reason);
  }

  skip(): void {
    while (isSpace(this.input[this.pos])) this.pos++;
  }

  describeHere(): string {
    return this.pos >= this.input.length ? "end of input" : JSON.stringify(this.input.slice(this.pos, this.pos + 2));
  }

  operand(): Operand {
    this.skip();
    const start = this.pos;
    const c = this.input[this.pos];
    if (c === undefined) this.fail("expected a string or ${{variable}}, got end of input");
    if (c === "'" || c === '"') {
      this.pos++;
      let value = "";
      for (;;) {
        const d = this.input[this.pos];
        if (d === undefined) this.fail(`unterminated string literal starting`, start);
        if (d === c) break;
        if (d === "\\" && this.pos + 1 < this.input.length) {
          const e = this.input[++this.pos]!;
          value += e === "n" ? "\n" : e === "t" ? "\t" : e === "\\" || e === "'" || e === '"' ? e : `\\${e}`;
        } else value += d;
        this.pos++;
      }
      this.pos++;
      return { kind: "literal", value, pos: start };
    }
    if (this.input.startsWith("${{", this.pos)) {
      this.pos += 3;
      this.skip();
      const nameStart = this.pos;
      while (this.pos < this.input.length && VAR_CHAR.test(this.input[this.pos]!)) this.pos++;
      if (this.pos === nameStart) this.fail("expected a variable name after ${{");
      const name = this.input.slice(nameStart, this.pos);
      this.skip();
      if (!this.input.startsWith("}}", this.pos)) this.fail(`expected "}}" to close \${{${name}`);
      this.pos += 2;
      return { kind: "variable", name, pos: start };
    }
    return this.fail(
      `expected a string or \${{variable}}, got ${JSON.stringify(this.input.slice(this.pos, this.pos + 10))}`,
    );
  }

  comparison(): Condition {
    const left = this.operand();
    this.skip();
    const op = this.input.slice(this.pos, this.pos + 2);
    if (op !== "==" && op !== "!=") this.fail(`expected "==" or "!=", got ${this.describeHere()}`);
    this.pos += 2;
    const right = this.operand();
    return { kind: "compare", op, left, right };
  }

  atom(): Condition {
    this.skip();
    if (this.input[this.pos] === "(") {
      const open = this.pos;
      this.pos++;
      const inner = this.expr();
      this.skip();
      if (this.input[this.pos] !== ")")
        this.fail(`expected ")" to close the "(" at position ${open}, got ${this.describeHere()}`);
      this.pos++;
      return inner;
    }
    return this.comparison();
  }

  expr(): Condition {
    let result = this.atom();
    for (;;) {
      this.skip();
      const op = this.input.slice(this.pos, this.pos + 2);
      if (op !== "&&" && op !== "||") return result;
      this.pos += 2;
      const right = this.atom();
      result = { kind: op === "&&" ? "and" : "or", left: result, right };
    }
  }
}

/** Parse an `if:` expression; throws ConditionError naming the expression and the position. */
export function parseCondition(expression: string): Condition {
  const p = new Parser(expression);
  const c = p.expr();
  p.skip();
  if (p.pos !== expression.length) p.fail(`unexpected ${JSON.stringify(expression.slice(p.pos))}`);
  return c;
}

/** Names of the `${{ }}` variables an expression reads. */
export function conditionVariables(c: Condition): string[] {
  if (c.kind === "compare") return [c.left, c.right].flatMap((o) => (o.kind === "variable" ? [o.name] : []));
  return [...conditionVariables(c.left), ...conditionVariables(c.right)];
}

function value(o: Operand, lookup: Lookup, expression: string): string {
  if (o.kind === "literal") return o.value;
  const v = lookup(o.name);
  if (v === undefined) throw new ConditionError(expression, o.pos, `undefined variable \${{${o.name}}}`);
  return v;
}

/** Evaluate a parsed condition; variables are read through `lookup` (undefined → ConditionError). */
export function evaluateParsed(c: Condition, lookup: Lookup = () => undefined, expression = ""): boolean {
  switch (c.kind) {
    case "compare": {
      const eq = value(c.left, lookup, expression) === value(c.right, lookup, expression);
      return c.op === "==" ? eq : !eq;
    }
    case "and":
      // Both sides are evaluated, as in melange, so an undefined variable on
      // the right is reported even when the left is false.
      return [evaluateParsed(c.left, lookup, expression), evaluateParsed(c.right, lookup, expression)].every(Boolean);
    case "or":
      return [evaluateParsed(c.left, lookup, expression), evaluateParsed(c.right, lookup, expression)].some(Boolean);
  }
}

/** Parse and evaluate an `if:` expression. */
export function evaluateCondition(
  expression: string,
  lookup: Lookup | ReadonlyMap<string, string> = () => undefined,
): boolean {
  const fn: Lookup = typeof lookup === "function" ? lookup : (n) => lookup.get(n);
  return evaluateParsed(parseCondition(expression), fn, expression);
}
