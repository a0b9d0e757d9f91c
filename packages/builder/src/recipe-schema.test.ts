import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, formatProblem } from "@kiln/core";
import { checkRecipe, compileRecipe, parseRecipe } from "./compile.js";
import { runAsIds } from "./compile/environment.js";
import { loadPipelines, parsePipelineFile } from "./pipelines.js";
import { recipeJsonSchema, recipeJsonSchemaText, recipeSchema } from "./recipe-schema.js";

describe("recipe schema", () => {
  it("recipe.schema.json is generated from the zod schema (npm run -w @kiln/builder schema)", () => {
    const committed = readFileSync(join(import.meta.dirname, "../recipe.schema.json"), "utf8");
    expect(committed, "recipe.schema.json is out of date: run `npm run -w @kiln/builder schema`").toBe(
      recipeJsonSchemaText(),
    );
  });

  it("describes the top-level keys and rejects others", () => {
    const s = recipeJsonSchema() as {
      definitions: Record<
        string,
        { properties: Record<string, unknown>; additionalProperties: boolean; required: string[] }
      >;
    };
    const root = s.definitions.Recipe!;
    expect(Object.keys(root.properties).sort()).toEqual([
      "capabilities",
      "data",
      "environment",
      "options",
      "package",
      "pipeline",
      "subpackages",
      "test",
      "update",
      "var-transforms",
      "vars",
    ]);
    expect(root.additionalProperties).toBe(false);
    expect(root.required).toEqual(["package"]);
    expect(s.definitions.PipelineStep!.additionalProperties).toBe(false);
  });

  it("checks update blocks as strictly as melange, with every monitor melange has", () => {
    const ok = recipeSchema.safeParse({
      package: { name: "a", version: "1" },
      update: {
        enabled: true,
        github: { identifier: "o/r", "tag-filter-prefix": "v", "tag-filter-contains": "x", "use-tag": true },
        oci: { identifier: "registry.example/o/r", "strip-prefix": "v" },
        "release-monitor": { identifier: 7, "version-filter-prefix": "2." },
        version_data: { version_format: "semver", sources: [{ name: "n", stream: "s", use_release: true }] },
        schedule: { period: "weekly", reason: "slow upstream" },
      },
    });
    expect(ok.success).toBe(true);
    const bad = recipeSchema.safeParse({ package: { name: "a", version: "1" }, update: { enabled: true, nope: 1 } });
    expect(bad.success).toBe(false);
    const inner = recipeSchema.safeParse({
      package: { name: "a", version: "1" },
      update: { github: { identifier: "o/r", someday: 1 } },
    });
    expect(inner.success).toBe(false);
  });
});

const problemsOf = (text: string, file = "r.yaml"): string[] => {
  try {
    parseRecipe(file, text);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map(formatProblem);
    throw e;
  }
  return [];
};

describe("recipes read as melange's Go decoder reads them", () => {
  it("numbers and booleans where melange takes a string are their text", () => {
    const { recipe } = parseRecipe(
      "r.yaml",
      `package:
  name: demo
  version: 2.10
  epoch: 0
  annotations:
    toolchain-stream: true
  resources:
    cpu: 8
  dependencies:
    provider-priority: 10
environment:
  environment:
    SOURCE_DATE_EPOCH: 0
    CGO_ENABLED: 1
    RELEASE: false
    FLOAT: 1.10
vars:
  3.10: yes
update:
  enabled: true
  github:
    identifier: o/r
    tag-filter: 2
  git:
    tag-filter-prefix: 2024
pipeline:
  - uses: fetch
    with:
      strip-components: 0
      extract: false
test:
  environment:
    environment:
      PGPORT: 5432
  pipeline:
    - runs: 1
`,
    );
    expect(recipe.package.version).toBe("2.10");
    expect(recipe.package.annotations).toEqual({ "toolchain-stream": "true" });
    expect(recipe.package.resources).toEqual({ cpu: "8" });
    expect(recipe.package.dependencies?.["provider-priority"]).toBe("10");
    expect(recipe.environment?.environment).toEqual({
      SOURCE_DATE_EPOCH: "0",
      CGO_ENABLED: "1",
      RELEASE: "false",
      FLOAT: "1.10",
    });
    expect(recipe.vars).toEqual({ "3.10": "yes" });
    expect(recipe.update?.github?.["tag-filter"]).toBe("2");
    expect(recipe.update?.git?.["tag-filter-prefix"]).toBe("2024");
    expect(recipe.pipeline?.[0]?.with).toEqual({ "strip-components": "0", extract: "false" });
    expect(recipe.test?.environment?.environment).toEqual({ PGPORT: "5432" });
    expect(recipe.test?.pipeline[0]?.runs).toBe("1");
  });

  it("null is the zero value: an absent field, an empty map value, a dropped list element", () => {
    const { recipe } = parseRecipe(
      "r.yaml",
      `package:
  name: demo
  version: 1.0
  description: null
  copyright:
    - license: MIT
      attestation:
  dependencies:
    runtime:
    provider-priority:
environment:
  contents:
    repositories:
    packages:
      - busybox
      - ~
data:
  - name: scripts
    items:
      latin:
      greek: el
subpackages:
  - name: demo-doc
    dependencies:
    range: ""
test:
  pipeline:
    - uses: fetch
      with:
`,
    );
    expect(recipe.package.description).toBeUndefined();
    expect(recipe.package.copyright).toEqual([{ license: "MIT" }]);
    expect(recipe.package.dependencies).toEqual({});
    expect(recipe.environment?.contents).toEqual({ packages: ["busybox"] });
    expect(recipe.data).toEqual([{ name: "scripts", items: { latin: "", greek: "el" } }]);
    expect(recipe.subpackages?.[0]).toEqual({ name: "demo-doc", range: "" });
    expect(recipe.test?.pipeline[0]).toEqual({ uses: "fetch" });
  });

  it("yes/no/on/off are booleans where melange reads a boolean", () => {
    const { recipe } = parseRecipe(
      "r.yaml",
      "package:\n  name: a\n  version: 1\n  options:\n    no-provides: yes\n    no-depends: Off\n",
    );
    expect(recipe.package.options).toEqual({ "no-provides": true, "no-depends": false });
  });

  it("takes package.test-resources, subpackage annotations and a test without a pipeline", () => {
    const { recipe } = parseRecipe(
      "r.yaml",
      `package:
  name: demo
  version: 1
  resources:
    cpu: 16
    memory: 32Gi
  test-resources:
    cpu: 4
    memory: 8Gi
subpackages:
  - name: demo-dev
    annotations:
      cgr.dev/ecosystem: c
test:
  environment:
    contents:
      packages: [busybox]
`,
    );
    expect(recipe.package["test-resources"]).toEqual({ cpu: "4", memory: "8Gi" });
    expect(recipe.subpackages?.[0]?.annotations).toEqual({ "cgr.dev/ecosystem": "c" });
    expect(recipe.test?.pipeline).toEqual([]);
  });

  it("still rejects what melange's decoder rejects, at file:line:col", () => {
    expect(problemsOf("package:\n  name: a\n  version: 1\n  test-resource:\n    cpu: 1\n")).toEqual([
      'r.yaml:4:3: package.test-resource: unknown key "test-resource"',
    ]);
    expect(problemsOf("package:\n  name: a\n  version: 1\n  description:\n    - a list\n")).toEqual([
      "r.yaml:5:5: package.description: expected string, got array",
    ]);
    expect(problemsOf('package:\n  name: a\n  version: 1\n  epoch: "1"\n')).toEqual([
      "r.yaml:4:10: package.epoch: expected number, got string",
    ]);
    expect(
      problemsOf(
        "package:\n  name: a\n  version: 1\npipeline:\n  - runs: x\n    description: no such key in a recipe\n",
      ),
    ).toEqual(['r.yaml:6:5: pipeline[0].description: unknown key "description"']);
    expect(problemsOf("package:\n  name: a\n  version: 1\n  options:\n    no-provides: maybe\n")).toEqual([
      "r.yaml:5:18: package.options.no-provides: expected boolean, got string",
    ]);
    expect(
      problemsOf("package:\n  name: a\n  version: 1\npipeline:\n  - uses: fetch\n    with:\n      uri: { a: 1 }\n"),
    ).toEqual(["r.yaml:7:12: pipeline[0].with.uri: expected a string, number or boolean"]);
  });
});

describe("pipeline files read as melange reads them", () => {
  const parse = (text: string) => parsePipelineFile("test/demo", "demo.yaml", text);
  it("takes a description on the file and on its steps, and an empty default", () => {
    const d = parse(`name: demo check
description: |
  Checks the demo.
needs:
  packages:
    - busybox
inputs:
  args:
    description: extra arguments
    default:
  count:
    default: 3
pipeline:
  - name: check
    description: runs the check
    runs: demo \${{inputs.args}} \${{inputs.count}}
`);
    expect(d.inputs).toEqual({
      args: { description: "extra arguments", required: false },
      count: { default: "3", required: false },
    });
    expect(d.pipeline).toHaveLength(1);
  });

  it("still rejects a list as a default, and reports where", () => {
    let err: unknown;
    try {
      parse("inputs:\n  args:\n    default: [a, b]\npipeline:\n  - runs: x\n");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map(formatProblem)).toEqual([
      "demo.yaml:3:14: inputs.args.default: expected a string, number or boolean",
    ]);
  });
});

describe("accepted shapes keep their meaning in the compiled recipe", () => {
  it("test-resources recorded, an empty range is none, apk's == and a !provide pass", () => {
    const loaded = parseRecipe(
      "r.yaml",
      `package:
  name: demo
  version: 1.0
  description: demo
  copyright:
    - license: MIT
  test-resources:
    cpu: 2
subpackages:
  - range: ""
    name: demo-libs
    description: libraries
    annotations:
      note: 1
    dependencies:
      runtime:
        - demo==1.0-r0
        - demo-data~=1.0
      provides:
        - "!demo-libs-legacy"
      provider-priority:
`,
    );
    const c = compileRecipe(loaded, { arch: "x86_64" });
    expect(c.package.testResources).toEqual({ cpu: "2" });
    expect(c.subpackages.map((s) => s.name)).toEqual(["demo-libs"]);
    expect(c.subpackages[0]!.annotations).toEqual({ note: "1" });
    expect(c.subpackages[0]!.dependencies.runtime).toEqual(["demo==1.0-r0", "demo-data~=1.0"]);
    expect(c.subpackages[0]!.dependencies.provides).toEqual(["!demo-libs-legacy"]);
    expect(c.subpackages[0]!.dependencies.providerPriority).toBeUndefined();
  });

  it("accounts.run-as picks the uid and gid steps run as, as melange does", () => {
    expect(runAsIds(undefined)).toBeUndefined();
    expect(runAsIds({ "run-as": "root" })).toEqual({ uid: 0, gid: 0 });
    expect(runAsIds({ "run-as": "0" })).toEqual({ uid: 0, gid: 0 });
    expect(runAsIds({ "run-as": "build", users: [{ username: "build", uid: 1000, gid: 1000 }] })).toEqual({
      uid: 1000,
      gid: 1000,
    });
    expect(runAsIds({ "run-as": "65532", users: [{ username: "nonroot", uid: 65532, gid: 65533 }] })).toEqual({
      uid: 65532,
      gid: 65533,
    });
    expect(runAsIds({ "run-as": "4242" })).toEqual({ uid: 4242, gid: 4242 });
    expect(runAsIds({ "run-as": "nobody-here" })).toBeUndefined();
  });
});

describe("if: as melange reads it", () => {
  it("range, vars and package references in a recipe's if: are replaced as written, before evaluation", () => {
    const loaded = parseRecipe(
      "r.yaml",
      `package:
  name: blas
  version: 1.0
  description: blas
  copyright:
    - license: MIT
vars:
  flavour: full
data:
  - name: variants
    items:
      "": plain
      "64": ilp64
subpackages:
  - range: variants
    name: libblas\${{range.key}}
    description: library
    pipeline:
      - if: '"\${{range.key}}" == ""'
        runs: echo standard
      - if: '"\${{vars.flavour}}" == "full" && \${{build.arch}} == "x86_64"'
        runs: echo full
`,
    );
    const c = compileRecipe(loaded, { arch: "x86_64" });
    const runs = Object.fromEntries(c.subpackages.map((s) => [s.name, s.pipeline.map((p) => p.runs.trim())]));
    expect(runs).toEqual({ libblas: ["echo standard", "echo full"], libblas64: ["echo full"] });
  });
});

describe("free text keeps what melange keeps", () => {
  it("an unresolvable reference in a description or a step name stays as written (a warning for descriptions)", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-schema-"));
    try {
      mkdirSync(join(dir, "py"));
      writeFileSync(
        join(dir, "py", "collect.yaml"),
        'name: collect\ninputs:\n  dest:\n    default: out\npipeline:\n  - name: "collect ${{inputs.python}}"\n    runs: cp -r wheels ${{inputs.dest}}\n',
      );
      const loaded = parseRecipe(
        "r.yaml",
        `package:
  name: blas
  version: 1.0
  description: BLAS\${{range.key == "64" && " (ILP64)" || ""}}
  copyright:
    - license: MIT
subpackages:
  - name: blas-wheels
    description: \${{package.name} wheels
    dependencies:
      provider-priority: ""
    pipeline:
      - uses: py/collect
`,
      );
      const { problems, warnings } = checkRecipe(loaded, { arch: "x86_64", pipelineDirs: [dir] });
      expect(problems.map(formatProblem)).toEqual([]);
      expect(warnings.map(formatProblem)).toEqual([
        'r.yaml:4:16: package.description: malformed variable reference "${{range.key == \\"64\\"" (expected ${{ name }}): left as written, as melange does',
        'r.yaml:9:18: subpackages[0].description: malformed variable reference "${{package.name} whe" (expected ${{ name }}): left as written, as melange does',
      ]);
      const c = compileRecipe(loaded, { arch: "x86_64", pipelineDirs: [dir] });
      expect(c.package.description).toBe('BLAS${{range.key == "64" && " (ILP64)" || ""}}');
      expect(c.subpackages[0]!.pipeline[0]!.name).toBe("collect ${{inputs.python}}");
      expect(c.subpackages[0]!.dependencies.providerPriority).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a recipe step's own inputs", () => {
  it("their defaults are ${{inputs.*}} in the step and its children; with still needs uses, as melange checks", () => {
    const loaded = parseRecipe(
      "r.yaml",
      `package:
  name: demo
  version: 1.0
  description: demo
  copyright:
    - license: MIT
pipeline:
  - inputs:
      jobs:
        default: 4
      target:
        default: all
    pipeline:
      - runs: make -j\${{inputs.jobs}} \${{inputs.target}}
`,
    );
    const c = compileRecipe(loaded, { arch: "x86_64" });
    expect(c.pipeline.map((p) => p.runs.trim())).toEqual(["make -j4 all"]);
    const { problems } = checkRecipe(
      parseRecipe(
        "r.yaml",
        "package:\n  name: a\n  version: 1\npipeline:\n  - inputs:\n      jobs:\n        required: yes\n    with:\n      jobs: 2\n    runs: x\n",
      ),
      { arch: "x86_64" },
    );
    expect(problems.map(formatProblem)).toEqual([
      'r.yaml:7:9: pipeline[0].inputs.jobs: missing required input "jobs"',
      "r.yaml:9:7: pipeline[0].with: with needs uses (inputs go to a named pipeline)",
    ]);
  });
});

describe("if: outside string literals", () => {
  it("a bare ${{package.name}} compares as its value (melange's own example writes it so)", () => {
    const loaded = parseRecipe(
      "r.yaml",
      `package:
  name: hello
  version: 1.0
  description: hello
  copyright:
    - license: MIT
pipeline:
  - if: \${{package.name}} == 'hello'
    runs: echo match
  - if: \${{package.name}} != 'hello'
    runs: echo no match
  - if: "'pkg-\${{package.name}}' == 'pkg-hello'"
    runs: echo literal
`,
    );
    const c = compileRecipe(loaded, { arch: "x86_64" });
    expect(c.pipeline.map((p) => p.runs.trim())).toEqual(["echo match", "echo literal"]);
  });
});

describe("unknown keys in pipeline files", () => {
  it("are ignored as melange ignores them, with a warning at the step that uses the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-schema-"));
    try {
      writeFileSync(
        join(dir, "greet.yaml"),
        "name: greet\ninputs:\n  who:\n    defualt: world\npipeline:\n  - runs: echo hello ${{inputs.who}}\n    timeout: 5\n",
      );
      const loaded = parseRecipe(
        "r.yaml",
        "package:\n  name: a\n  version: 1\n  description: a\n  copyright:\n    - license: MIT\npipeline:\n  - uses: greet\n",
      );
      const { problems, warnings } = checkRecipe(loaded, { arch: "x86_64", pipelineDirs: [dir] });
      expect(problems).toEqual([]);
      expect(warnings.map(formatProblem)).toEqual([
        `r.yaml:8:11: pipeline[0].uses: pipeline "greet" (${join(dir, "greet.yaml")}) has keys the pipeline format does not know, ignored as melange ignores them: "defualt" at 4:5, "timeout" at 7:5`,
      ]);
      const c = compileRecipe(loaded, { arch: "x86_64", pipelineDirs: [dir] });
      expect(c.pipeline[0]!.runs.trim()).toBe("echo hello");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("are none in kiln's own pipelines", () => {
    const reg = loadPipelines();
    const withIgnored = reg.names().filter((n) => reg.get(n)?.ignoredKeys?.length);
    expect(withIgnored).toEqual([]);
  });
});

describe("numbers in the build environment", () => {
  it("a number written where the image config takes a number or a string stays a number", () => {
    const { recipe } = parseRecipe(
      "r.yaml",
      "package:\n  name: a\n  version: 1\nenvironment:\n  accounts:\n    run-as: 0\n  paths:\n    - path: /var/lib/a\n      type: directory\n      permissions: 0o750\n",
    );
    expect(recipe.environment?.accounts?.["run-as"]).toBe(0);
    expect(recipe.environment?.paths?.[0]?.permissions).toBe(0o750);
  });
});
