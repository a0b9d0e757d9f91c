// The checks git-checkout shares between `kiln lint` and the step: the
// transport policy, cherry-pick lines, input values, and what lint says
// about a recipe (file:line:col, the field). The steps themselves run
// against real git servers in test/git-checkout.test.ts.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { formatProblem } from "@kiln/core";
import { checkRecipe, compileRecipe, parseRecipe } from "../compile.js";
import { gitCheckoutProblems, parseCherryPicks } from "./git-native.js";
import { allowedProtocols, gitConfigArgs, gitEnv, urlRefusal } from "./git-run.js";

const STRICT = ["https", "http", "git"];

describe("the transport policy", () => {
  it("allows https, http and git; file only with KILN_GIT_ALLOW_FILE=1", () => {
    expect(allowedProtocols({})).toEqual(STRICT);
    expect(allowedProtocols({ KILN_GIT_ALLOW_FILE: "1" })).toEqual([...STRICT, "file"]);
    for (const ok of [
      "https://example.invalid/a.git",
      "http://127.0.0.1:9/x",
      "git://example.invalid/x",
      "HTTPS://x/y",
    ])
      expect(urlRefusal(ok, STRICT), ok).toBeUndefined();
  });

  it("refuses every other way git has to reach a repository, saying why", () => {
    expect(urlRefusal("ext::sh -c touch% /tmp/x", STRICT)).toMatch(/transport helpers \(ext::\) are refused/);
    expect(urlRefusal("fd::3", STRICT)).toMatch(/transport helpers/);
    expect(urlRefusal("ssh://git@example.invalid/x", STRICT)).toMatch(/the ssh:\/\/ transport is refused/);
    expect(urlRefusal("git@example.invalid:x.git", STRICT)).toMatch(/scp-style ssh/);
    expect(urlRefusal("file:///srv/x.git", STRICT)).toMatch(/KILN_GIT_ALLOW_FILE=1/);
    expect(urlRefusal("/srv/x.git", STRICT)).toMatch(/local paths are refused/);
    expect(urlRefusal("--upload-pack=touch /tmp/x", STRICT)).toMatch(/starts with '-'/);
    expect(urlRefusal("https://x/\ny", STRICT)).toMatch(/control character/);
    expect(urlRefusal("", STRICT)).toMatch(/empty/);
    expect(urlRefusal("file:///srv/x.git", [...STRICT, "file"])).toBeUndefined();
  });

  it("relative submodule URLs are allowed (they resolve against an allowed parent), only for submodules", () => {
    expect(urlRefusal("../sub.git", STRICT, true)).toBeUndefined();
    expect(urlRefusal("./sub", STRICT, true)).toBeUndefined();
    expect(urlRefusal("../sub.git", STRICT)).toMatch(/local paths/);
  });

  it("git runs without hooks, user or system configuration, credential helpers or prompts", () => {
    const args = gitConfigArgs(STRICT).filter((a) => a !== "-c");
    expect(args).toEqual(
      expect.arrayContaining([
        "core.hooksPath=/dev/null",
        "credential.helper=",
        "protocol.allow=never",
        "protocol.file.allow=never",
        "protocol.ext.allow=never",
        "protocol.ssh.allow=never",
        "protocol.https.allow=always",
      ]),
    );
    expect(gitConfigArgs([...STRICT, "file"])).toContain("protocol.file.allow=always");
    const env = gitEnv("/tmp/h", STRICT);
    expect(env).toMatchObject({
      HOME: "/tmp/h",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_TERMINAL_PROMPT: "0",
      GIT_ALLOW_PROTOCOL: "https:http:git",
    });
    expect(Object.keys(env).filter((k) => /ASKPASS|GIT_DIR|GIT_SSH/.test(k))).toEqual([]);
  });
});

describe("cherry-picks", () => {
  it("reads [branch/]commit: comment lines; comments and empty lines are ignored", () => {
    const picks = parseCherryPicks(
      "\n# a comment\n3.10/62705d869aca4055e8a96e2ed4f9013e9917c661: fix the build  # why\nABCDEF1: no branch\n",
    );
    expect(picks).toEqual([
      { branch: "3.10", commit: "62705d869aca4055e8a96e2ed4f9013e9917c661", comment: "fix the build", line: 3 },
      { branch: "", commit: "abcdef1", comment: "no branch", line: 4 },
    ]);
    expect(parseCherryPicks("release/v2/0123456: nested branch")[0]!.branch).toBe("release/v2");
  });

  it("a line without a colon, without a comment, with a bad commit or branch names the line", () => {
    expect(() => parseCherryPicks("62705d869aca")).toThrow(/line 1: expected "\[branch\/\]commit: comment"/);
    expect(() => parseCherryPicks("\nmain/62705d869aca:   ")).toThrow(/line 2: "main\/62705d869aca" has no comment/);
    expect(() => parseCherryPicks("main/HEAD~1: x")).toThrow(/"HEAD~1" is not a commit id/);
    expect(() => parseCherryPicks("-x/62705d869aca: x")).toThrow(/"-x" is not a branch name/);
    expect(() => parseCherryPicks("a..b/62705d869aca: x")).toThrow(/not a branch name/);
  });
});

describe("input values", () => {
  const problems = (w: Record<string, string>) => gitCheckoutProblems({ repository: "https://x/y", ...w });

  it("melange's defaults and Wolfi's usual values pass", () => {
    expect(
      problems({
        depth: "unset",
        "recurse-submodules": "false",
        "shallow-submodules": "false",
        "submodule-jobs": "1",
        "max-retries": "3",
        "expected-commit-is-branch-tip": "false",
        tag: "v1.2.3",
      }),
    ).toEqual([]);
    expect(problems({ depth: "-1", branch: "release/1.x", "recurse-submodules": "true" })).toEqual([]);
    expect(problems({ tag: "v${{package.version}}", repository: "${{vars.repo}}" })).toEqual([]);
  });

  it("bad values are reported against their input", () => {
    expect(problems({ depth: "0" })).toEqual([["depth", expect.stringMatching(/positive whole number or -1/)]]);
    expect(problems({ "recurse-submodules": "yes" })).toEqual([
      ["recurse-submodules", 'recurse-submodules must be true or false, got "yes"'],
    ]);
    expect(problems({ branch: "main", tag: "v1" })).toEqual([["tag", expect.stringMatching(/mutually exclusive/)]]);
    expect(problems({ tag: "v1:refs/heads/x" })).toEqual([["tag", expect.stringMatching(/not a valid git ref/)]]);
    expect(problems({ "expected-commit-is-branch-tip": "true", tag: "v1" })).toEqual([
      ["expected-commit-is-branch-tip", expect.stringMatching(/needs branch and expected-commit/)],
    ]);
    expect(problems({ repository: "ext::sh" })).toEqual([["repository", expect.stringMatching(/refused/)]]);
  });
});

describe("kiln lint of git-checkout and git-am steps", () => {
  const recipe = (steps: string) =>
    parseRecipe(
      "r.yaml",
      `package: {name: p, version: 1.0.0, epoch: 0, description: d, copyright: [{license: MIT}]}\npipeline:\n${steps}`,
    );
  const lint = (steps: string) => checkRecipe(recipe(steps), { arch: "x86_64" }).problems.map((p) => formatProblem(p));

  it("a Wolfi-shaped step compiles to the native step, with melange's defaults", () => {
    const c = compileRecipe(
      recipe(
        "  - uses: git-checkout\n    with:\n      repository: https://example.invalid/p\n      tag: v${{package.version}}\n      expected-commit: 62705d869aca4055e8a96e2ed4f9013e9917c661\n      recurse-submodules: true\n      depth: -1\n  - uses: git-am\n    with:\n      patches: a.patch b.patch\n",
      ),
      { arch: "x86_64" },
    );
    expect(c.pipeline.map((s) => s.native)).toEqual(["git-checkout", "git-am"]);
    expect(c.pipeline[0]!.with).toMatchObject({
      repository: "https://example.invalid/p",
      tag: "v1.0.0",
      destination: ".",
      depth: "-1",
      "recurse-submodules": "true",
      "shallow-submodules": "false",
      "max-retries": "3",
    });
    expect(c.pipeline[1]!.with).toEqual({ patches: "a.patch b.patch" });
    expect(c.environment.contents?.packages ?? []).not.toContain("git");
  });

  it("problems point at the recipe's field: destination outside, short expected-commit, branch with tag", () => {
    expect(
      lint(
        "  - uses: git-checkout\n    with:\n      repository: https://example.invalid/p\n      branch: main\n      tag: v1\n      expected-commit: 62705d\n      destination: ../x\n",
      ),
    ).toEqual([
      'r.yaml:7:12: pipeline[0].with.tag: branch and tag are mutually exclusive (branch "main", tag "v1")',
      'r.yaml:8:24: pipeline[0].with.expected-commit: expected-commit must be 40 hexadecimal digits, got "62705d"',
      expect.stringMatching(
        /^r\.yaml:9:20: pipeline\[0\]\.with\.destination: destination "\.\.\/x" is outside the workspace/,
      ),
    ]);
  });

  it("a git-am patch missing from the source directory is a warning naming it, as for patch", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-gitam-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, "here.patch"), "");
    const problems = checkRecipe(recipe("  - uses: git-am\n    with:\n      patches: here.patch gone.patch\n"), {
      arch: "x86_64",
      sourceDir: dir,
    });
    expect(problems.problems).toEqual([]);
    expect(problems.warnings.map((p) => formatProblem(p))).toEqual([
      `r.yaml:5:16: pipeline[0].with.patches: patch "gone.patch" is not in the source directory ${dir}`,
    ]);
  });
});
