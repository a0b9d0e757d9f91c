import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  ConfigError,
  dotted,
  excessiveNesting,
  expandsBeyond,
  formatProblem,
  loadYaml,
  YAML_LIMITS,
} from "./yaml-load.js";

const schema = z
  .object({
    name: z.string(),
    contents: z.object({ packages: z.array(z.string()) }).strict(),
    kind: z.enum(["a", "b"]).optional(),
  })
  .strict();

function problemsOf(text: string): string[] {
  try {
    loadYaml("c.yaml", text, schema);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).code).toBe("INVALID_CONFIG");
    return (e as ConfigError).problems.map(formatProblem);
  }
  throw new Error("expected a ConfigError");
}

describe("loading YAML against a schema", () => {
  it("returns the value with positions and raw sources", () => {
    const l = loadYaml("c.yaml", "name: x\ncontents:\n  packages:\n    - 'a>1'\n", schema);
    expect(l.value).toEqual({ name: "x", contents: { packages: ["a>1"] } });
    expect(l.locate(["contents", "packages", 0])).toEqual({ line: 4, col: 7 });
    expect(l.source(["contents", "packages", 0])).toBe("'a>1'");
    expect(l.locate(["contents", "missing"])).toEqual({ line: 3, col: 3 });
  });
  it("reports every problem at file:line:col with its dotted path", () => {
    expect(problemsOf("name: 3\ncontents:\n  packages: [a, 2]\n  extra: 1\nkind: c\n")).toEqual([
      "c.yaml:1:7: name: expected string, got number",
      "c.yaml:3:17: contents.packages[1]: expected string, got number",
      'c.yaml:4:3: contents.extra: unknown key "extra"',
      'c.yaml:5:7: kind: expected one of "a", "b", got "c"',
    ]);
    expect(problemsOf("contents: {packages: []}\n")).toEqual(["c.yaml:1:1: name: required: expected string"]);
  });
  it("reports syntax errors and duplicate keys", () => {
    const p = problemsOf("name: x\nname: y\ncontents: {packages: []}\n");
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^c\.yaml:2:1: YAML syntax: /);
  });
  it("refuses documents nested too deeply, before parsing them", () => {
    const deep = "[".repeat(YAML_LIMITS.maxDepth + 1) + "]".repeat(YAML_LIMITS.maxDepth + 1);
    expect(excessiveNesting(deep, YAML_LIMITS.maxDepth)).toBe(YAML_LIMITS.maxDepth);
    expect(problemsOf(deep)[0]).toMatch(/nested more than 64 levels deep/);
    let block = "";
    for (let i = 0; i < 70; i++) block += `${" ".repeat(i * 2)}k${i}:\n`;
    expect(problemsOf(block)[0]).toMatch(/^c\.yaml:\d+:\d+: YAML nested more than 64 levels deep/);
    expect(excessiveNesting("a:\n  b:\n    - c\n", 64)).toBeUndefined();
  });
  it("refuses alias expansion beyond the budget (billion laughs) and dangling aliases", () => {
    let text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (let i = 1; i < 10; i++)
      text += `a${i}: &a${i} [${Array(10)
        .fill(`*a${i - 1}`)
        .join(", ")}]\n`;
    expect(problemsOf(text)[0]).toMatch(/YAML aliases expand too much/);
    expect(problemsOf("name: *nope\n")[0]).toMatch(/YAML alias \*nope has no anchor/);
    expect(expandsBeyond({ a: ["xx", "yy"] }, 1000)).toBe(false);
    expect(expandsBeyond({ a: ["x".repeat(100)] }, 50)).toBe(true);
  });
  it("refuses oversized text", () => {
    expect(problemsOf("#".repeat(YAML_LIMITS.maxBytes + 1))).toEqual(["c.yaml: the file is larger than 8 MiB"]);
  });
  it("formats paths and problems", () => {
    expect(dotted(["contents", "packages", 2, "name"])).toBe("contents.packages[2].name");
    expect(dotted([0, "a"])).toBe("[0].a");
    expect(formatProblem({ file: "f", path: "", message: "m" })).toBe("f: m");
    expect(formatProblem({ file: "f", line: 2, path: "a", message: "m" })).toBe("f:2:1: a: m");
  });
});
