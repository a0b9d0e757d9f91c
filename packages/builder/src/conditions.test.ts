import { describe, expect, it } from "vitest";
import { ConditionError, conditionVariables, evaluateCondition, parseCondition } from "./conditions.js";

const vars = new Map([
  ["build.arch", "x86_64"],
  ["vars.flavour", "full"],
]);

describe("if: conditions", () => {
  it.each([
    ["'a' == 'a'", true],
    ["'a' == 'b'", false],
    ["'a' != 'b'", true],
    [`"x86_64" == 'x86_64'`, true],
    ["${{build.arch}} == 'x86_64'", true],
    ["${{ build.arch }} != 'aarch64'", true],
    ["${{build.arch}} == 'aarch64' || ${{vars.flavour}} == 'full'", true],
    ["${{build.arch}} == 'x86_64' && ${{vars.flavour}} == 'lite'", false],
    ["('a' == 'b' || 'c' == 'c') && 'd' == 'd'", true],
    ["  'a'=='a'  ", true],
    ["'it\\'s' == \"it's\"", true],
    ["'' == ''", true],
  ])("%s → %s", (expr, want) => {
    expect(evaluateCondition(expr, vars)).toBe(want);
  });

  it("chains && and || left to right with equal precedence, as melange does", () => {
    // (true || true) && false → false; C precedence would give true.
    expect(evaluateCondition("'a' == 'a' || 'b' == 'b' && 'c' == 'd'")).toBe(false);
    expect(evaluateCondition("'a' == 'a' || ('b' == 'b' && 'c' == 'd')")).toBe(true);
  });

  it.each([
    ["", "expected a string or ${{variable}}, got end of input at position 0"],
    ["'a' = 'a'", `expected "==" or "!=", got "= " at position 4`],
    ["'a' == 'b", "unterminated string literal starting at position 7"],
    ["('a' == 'a'", `expected ")" to close the "(" at position 0, got end of input at position 11`],
    ["'a' == 'a')", `unexpected ")" at position 10`],
    ["x86_64 == 'x86_64'", `expected a string or \${{variable}}, got "x86_64 == " at position 0`],
    ["'a' == 'a' &&", "expected a string or ${{variable}}, got end of input at position 13"],
    ["${{ }} == 'a'", "expected a variable name after ${{ at position 4"],
    ["${{build.arch == 'a'", `expected "}}" to close \${{build.arch at position 14`],
    ["'a' == 'a' and 'b' == 'b'", `unexpected "and 'b' == 'b'" at position 11`],
  ])("rejects %j with a position", (expr, reason) => {
    let err: unknown;
    try {
      evaluateCondition(expr, vars);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConditionError);
    expect((err as ConditionError).message).toBe(`bad if expression ${JSON.stringify(expr)}: ${reason}`);
    expect((err as ConditionError).expression).toBe(expr);
  });

  it("reports an undefined variable with its position", () => {
    expect(() => evaluateCondition("'a' == ${{vars.nope}}", vars)).toThrow(
      "bad if expression \"'a' == ${{vars.nope}}\": undefined variable ${{vars.nope}} at position 7",
    );
  });

  it("parses to a tree and lists the variables read", () => {
    const c = parseCondition("${{build.arch}} == 'x86_64' || (${{vars.a}} != \"b\")");
    expect(c.kind).toBe("or");
    expect(conditionVariables(c)).toEqual(["build.arch", "vars.a"]);
  });
});
