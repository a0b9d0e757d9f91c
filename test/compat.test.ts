// `kiln lint --summary`: the compatibility report over a small tree written
// here: two good recipes (one using a pipeline from the --pipeline-dir) and
// one recipe per problem class, a directory scanned non-recursively. Checks
// the acceptance rate, the classes with their recipe and problem counts and
// examples, the top missing pipelines, the JSON shape and the exit statuses.

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { realApk } from "./helpers/apk-tools.js";
import { kiln } from "./helpers/cli.js";

let tree: string;

const recipe = (name: string, extra = "", pipeline = "  - runs: echo hello") => `package:
  name: ${name}
  version: 1.0.0
  epoch: 0
  description: ${name}, a test recipe
  copyright:
    - license: MIT
${extra}
pipeline:
${pipeline}
`;

const RECIPES: Record<string, string> = {
  "good-a.yaml": recipe("good-a", "", "  - uses: site/hello\n    with:\n      who: world"),
  "good-b.yaml": recipe("good-b"),
  // Two uses of nope/one and one of nope/two.
  "missing-1.yaml": recipe("missing-1", "", "  - uses: nope/one\n  - uses: nope/two\n  - uses: nope/one"),
  "missing-2.yaml": recipe("missing-2", "", "  - uses: nope/one"),
  // An unknown key in two recipes; the second also has a wrong type.
  "unknown-key.yaml": recipe("unknown-key").replace("  epoch: 0\n", "  epoch: 0\n  frobnicate: yes\n"),
  "wrong-type.yaml": recipe("wrong-type")
    .replace("  version: 1.0.0\n", "  version: [1, 0]\n")
    .replace("  epoch: 0\n", "  epoch: 0\n  frobnicate: no\n"),
  "bad-dep.yaml": recipe("bad-dep").replace(
    "  epoch: 0\n",
    "  epoch: 0\n  dependencies:\n    runtime:\n      - glibc<>2\n",
  ),
  "invalid-pipe.yaml": recipe("invalid-pipe", "", "  - uses: site/broken"),
  "syntax.yaml": "package:\n  name: [syntax\n  version: 1\n",
  "undefined-var.yaml": recipe("undefined-var", "", "  - runs: echo ${{vars.nope}}"),
};

beforeAll(() => {
  tree = mkdtempSync(join(tmpdir(), "kiln-compat-"));
  const recipes = join(tree, "recipes");
  mkdirSync(join(recipes, "sub"), { recursive: true });
  for (const [f, text] of Object.entries(RECIPES)) writeFileSync(join(recipes, f), text);
  // Neither a subdirectory's recipes, a dot file nor a non-YAML file is read.
  writeFileSync(join(recipes, "sub/deeper.yaml"), "package: [\n");
  writeFileSync(join(recipes, ".hidden.yaml"), "package: [\n");
  writeFileSync(join(recipes, "README.md"), "not a recipe\n");
  const pipes = join(tree, "pipelines/site");
  mkdirSync(pipes, { recursive: true });
  writeFileSync(
    join(pipes, "hello.yaml"),
    "name: greet\ninputs:\n  who:\n    required: true\npipeline:\n  - runs: echo hello ${{inputs.who}}\n",
  );
  // melange ignores unknown keys in pipeline files, but not a list where a string is read.
  writeFileSync(
    join(pipes, "broken.yaml"),
    "name: broken\ninputs:\n  who:\n    default: [a, b]\npipeline:\n  - runs: true\n",
  );
});

afterAll(() => {
  if (tree) rmSync(tree, { recursive: true, force: true });
});

interface Summary {
  recipes: number;
  passed: number;
  failed: number;
  percent: number;
  problems: number;
  kinds: Array<{
    kind: string;
    title: string;
    recipes: number;
    problems: number;
    classes: Array<{ label: string; recipes: number; problems: number; example: string; reasons?: string[] }>;
  }>;
  missingPipelines: Array<{ name: string; recipes: number; uses: number; example: string }>;
}

function summary(): Summary {
  const r = kiln(["lint", "--summary", "--json", "--pipeline-dir", "pipelines", "recipes"], { cwd: tree });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Summary;
}

const kindOf = (s: Summary, kind: string) => s.kinds.find((k) => k.kind === kind);

describe("kiln lint --summary", () => {
  it("counts the recipes of the directory only (not recursive, no dot files) and the acceptance rate", () => {
    const s = summary();
    expect(s.recipes).toBe(10);
    expect(s.passed).toBe(2);
    expect(s.failed).toBe(8);
    expect(s.percent).toBe(20);
  });

  it("classes problems by message shape, with recipe and problem counts and a file:line example", () => {
    const s = summary();
    const unknownKey = kindOf(s, "unknown-key")!;
    expect(unknownKey.recipes).toBe(2);
    expect(unknownKey.classes).toEqual([
      {
        label: 'unknown key "frobnicate" at package.frobnicate',
        recipes: 2,
        problems: 2,
        example: expect.stringMatching(/^recipes\/(unknown-key|wrong-type)\.yaml:\d+:\d+: package\.frobnicate: /),
      },
    ]);
    const wrong = kindOf(s, "wrong-type")!;
    expect(wrong.recipes).toBe(1);
    expect(wrong.classes[0]!.label).toBe("package.version: expected string, got array");
    expect(wrong.classes[0]!.example).toMatch(/^recipes\/wrong-type\.yaml:3:\d+: package\.version: /);
    const dep = kindOf(s, "invalid-dependency")!;
    expect(dep.classes[0]!.label).toBe('unknown operator "<>"');
    expect(dep.classes[0]!.example).toMatch(/^recipes\/bad-dep\.yaml:\d+:\d+: package\.dependencies\.runtime\[0\]: /);
    expect(kindOf(s, "yaml-syntax")!.classes[0]!.example).toMatch(/^recipes\/syntax\.yaml:\d+:\d+: YAML syntax/);
    expect(kindOf(s, "undefined-variable")!.classes[0]!.label).toBe("undefined ${{vars.nope}}");
  });

  it("names an invalid pipeline file with its own problem as the reason, counted once per recipe", () => {
    const s = summary();
    const inv = kindOf(s, "invalid-pipeline")!;
    expect(inv.recipes).toBe(1);
    expect(inv.classes[0]!.label).toBe('pipeline "site/broken" is invalid');
    expect(inv.classes[0]!.reasons).toEqual([
      expect.stringMatching(/site\/broken\.yaml:4:\d+: inputs\.who\.default: /),
    ]);
    // The pipeline file's problem is a reason, not a problem of the recipe.
    expect(s.problems).toBe(s.kinds.reduce((n, k) => n + k.problems, 0));
    expect(s.kinds.some((k) => k.classes.some((c) => c.example.startsWith("pipelines/")))).toBe(false);
  });

  it("ranks the missing pipelines by the recipes using them", () => {
    const s = summary();
    expect(s.missingPipelines.map((p) => [p.name, p.recipes, p.uses])).toEqual([
      ["nope/one", 2, 3],
      ["nope/two", 1, 1],
    ]);
    expect(kindOf(s, "unknown-pipeline")).toMatchObject({ recipes: 2, problems: 4 });
    // Kinds are ordered by recipes: the two-recipe kinds come first.
    expect(s.kinds.slice(0, 2).map((k) => k.recipes)).toEqual([2, 2]);
  });

  it("prints the same as text, with progress and the rate on stderr, exit 0", () => {
    const r = kiln(["lint", "--summary", "--pipeline-dir", "pipelines", "recipes"], { cwd: tree });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^2 of 10 recipes pass \(20\.0%\)/);
    expect(r.stdout).toContain("Failure taxonomy");
    expect(r.stdout).toMatch(/ {4}2 \/ 2 {2}unknown key "frobnicate" at package\.frobnicate\n {8}e\.g\. recipes\//);
    expect(r.stdout).toMatch(/Top missing pipelines \(recipes, uses\):\n +2 +3 {2}nope\/one\n +1 +1 {2}nope\/two/);
    expect(r.stderr).toMatch(/kiln lint: 2 of 10 recipes pass \(20\.0%\) in [\d.]+ s/);
  });

  it("takes files and directories together, and --fail-under turns a low rate into exit 1", () => {
    const both = kiln(
      ["lint", "--summary", "--json", "--pipeline-dir", "pipelines", "recipes", "recipes/sub/deeper.yaml"],
      {
        cwd: tree,
      },
    );
    expect(both.status).toBe(0);
    expect(JSON.parse(both.stdout).recipes).toBe(11);
    const low = kiln(["lint", "--summary", "--fail-under", "50", "--pipeline-dir", "pipelines", "recipes"], {
      cwd: tree,
    });
    expect(low.status).toBe(1);
    const met = kiln(["lint", "--summary", "--fail-under", "20", "--pipeline-dir", "pipelines", "recipes"], {
      cwd: tree,
    });
    expect(met.status).toBe(0);
    // 2 of 10 is 20%: just above it is not met.
    const above = kiln(["lint", "--summary", "--fail-under", "20.01", "--pipeline-dir", "pipelines", "recipes"], {
      cwd: tree,
    });
    expect(above.status).toBe(1);
  });

  it("keeps plain lint as it was (exit 1, every problem) and refuses --json without --summary", () => {
    const plain = kiln(["lint", "--pipeline-dir", "pipelines", "recipes/good-a.yaml", "recipes/missing-2.yaml"], {
      cwd: tree,
    });
    expect(plain.status).toBe(1);
    expect(plain.stdout).toMatch(
      /^recipes\/missing-2\.yaml:\d+:\d+: pipeline\[0\]\.uses: unknown pipeline "nope\/one"/m,
    );
    expect(plain.stderr).toContain("kiln lint: 1 of 2 recipes with problems");
    const good = kiln(["lint", "--pipeline-dir", "pipelines", "recipes/good-a.yaml"], { cwd: tree });
    expect(good.status, good.stdout + good.stderr).toBe(0);
    const usage = kiln(["lint", "--json", "recipes/good-a.yaml"], { cwd: tree });
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain("--summary");
    const missing = kiln(["lint", "--summary", "no-such-dir"], { cwd: tree });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain("no-such-dir: no such file or directory");
  });
});

// melange's examples/replacement-provides.yaml provides `NAME=${{vars.foo}}`
// with foo: FOO. kiln refuses a provides whose version apk cannot parse; the
// reason, shown with the real client: apk-tools 2.14 drops such a provides
// (and every one after it on the line), so nothing can depend on it.
describe("provides with a version apk cannot parse", () => {
  it("is refused by kiln lint at the field, and lost by the real apk client", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-provides-"));
    try {
      writeFileSync(
        join(dir, "rp.yaml"),
        recipe("rp", "vars:\n  foo: FOO\n").replace(
          "  epoch: 0\n",
          "  epoch: 0\n  dependencies:\n    provides:\n      - rp-version=${{package.version}}\n      - rp-foo=${{vars.foo}}\n",
        ),
      );
      const lint = kiln(["lint", "rp.yaml"], { cwd: dir });
      expect(lint.status).toBe(1);
      expect(lint.stdout).toMatch(
        /^rp\.yaml:\d+:\d+: package\.dependencies\.provides\[1\]: .*"FOO" is not a valid apk version/m,
      );

      // The same provides in an index, as melange would write it: apk cannot select rp-foo.
      mkdirSync(join(dir, "root/usr/share/rp"), { recursive: true });
      writeFileSync(join(dir, "root/usr/share/rp/f"), "x\n");
      const repo = join(dir, "repo/x86_64");
      mkdirSync(repo, { recursive: true });
      const pkg = join(repo, "rp-1.0.0-r0.apk");
      const mk = kiln(["mkpkg", "--name", "rp", "--version", "1.0.0-r0", "--arch", "x86_64", "-o", pkg, "root"], {
        cwd: dir,
      });
      expect(mk.status, mk.stderr).toBe(0);
      const idx = kiln(["index", "-o", join(repo, "APKINDEX.tar.gz"), pkg], { cwd: dir });
      expect(idx.status, idx.stderr).toBe(0);
      const text = join(dir, "ix");
      mkdirSync(text);
      expect(spawnSync("tar", ["xzf", join(repo, "APKINDEX.tar.gz"), "-C", text]).status).toBe(0);
      const records = readFileSync(join(text, "APKINDEX"), "utf8");
      expect(records).toContain("P:rp\n");
      const apk = await realApk();
      const add = (name: string, provides: string) => {
        writeFileSync(join(text, "APKINDEX"), records.replace("\nt:", `\np:${provides}\nt:`));
        expect(
          spawnSync("tar", ["czf", join(repo, "APKINDEX.tar.gz"), "-C", text, "APKINDEX", "DESCRIPTION"]).status,
        ).toBe(0);
        const root = mkdtempSync(join(dir, "r-"));
        return spawnSync(
          apk,
          ["add", "--root", root, "--initdb", "--allow-untrusted", "--no-cache", "-X", join(dir, "repo"), name],
          { encoding: "utf8" },
        );
      };
      // A valid version: rp-foo is found through rp.
      const valid = add("rp-foo", "rp-version=1.0.0 rp-foo=1.0.0");
      expect(valid.status, valid.stdout + valid.stderr).toBe(0);
      expect(valid.stdout).toContain("Installing rp (1.0.0-r0)");
      // FOO: apk 2.14 loses the provides; rp-foo is "no such package".
      const lost = add("rp-foo", "rp-version=1.0.0 rp-foo=FOO");
      expect(lost.status).not.toBe(0);
      expect(lost.stdout + lost.stderr).toContain("rp-foo (no such package)");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
