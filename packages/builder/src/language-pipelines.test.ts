// melange's built-in language pipelines (go/*, cargo/*, python/*, ruby/*,
// perl/*, R/*, pecl/*, npm/*, maven/*, xcover/*, llvm/*) as kiln ships
// them: the same names, inputs, defaults and needs as melange's, each
// expanded from a Wolfi-shaped recipe with typical inputs, every expanded
// script checked by the shell's parser, and a few run on the host against
// stub tools that record how they were called.

import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { formatProblem } from "@kiln/core";
import { checkRecipe, compileRecipe, parseRecipe, type CompiledRecipe, type CompileOptions } from "./compile.js";
import { BUILTIN_PIPELINE_DIR, loadPipelines } from "./pipelines.js";

const tmp = mkdtempSync(join(tmpdir(), "kiln-lang-pipelines-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const R = "REQUIRED";
type Facts = { needs: string[]; inputs: Record<string, string | null> };

/** melange's pipelines: needs.packages in order, and each input's default (null: none; REQUIRED). */
const MELANGE: Record<string, Facts> = {
  "go/build": {
    needs: ["${{inputs.go-package}}", "build-base", "busybox", "ca-certificates-bundle"],
    inputs: {
      "go-package": "go",
      packages: R,
      tags: null,
      toolchaintags: "netgo,osusergo",
      output: R,
      vendor: "false",
      modroot: ".",
      prefix: "usr",
      ldflags: null,
      strip: "-w",
      "install-dir": "bin",
      deps: null,
      experiments: "",
      "extra-args": "",
      amd64: "v2",
      arm64: "v8.0",
      buildmode: "default",
      tidy: "false",
      "ignore-untracked-files": "true",
    },
  },
  "go/build/v2": {
    needs: ["busybox", "ca-certificates-bundle"],
    inputs: {
      packages: ".",
      tags: null,
      toolchaintags: "netgo,osusergo",
      output: "",
      vendor: "false",
      modroot: ".",
      prefix: "usr",
      ldflags: null,
      strip: "-w",
      "install-dir": "bin",
      experiments: "",
      "extra-args": "",
      amd64: "v2",
      arm64: "v8.0",
      buildmode: "default",
      "ignore-untracked-files": "true",
    },
  },
  "go/install": {
    needs: ["${{inputs.go-package}}", "busybox", "build-base", "ca-certificates-bundle", "git"],
    inputs: {
      "go-package": "go",
      package: R,
      version: null,
      prefix: "usr",
      "install-dir": "bin",
      ldflags: null,
      strip: "-w",
      tags: null,
      toolchaintags: "netgo,osusergo",
      experiments: "",
      amd64: "v2",
      arm64: "v8.0",
    },
  },
  "go/covdata": {
    needs: ["${{inputs.package}}", "busybox", "jq"],
    inputs: { package: "go", "cover-dir": "/home/build" },
  },
  "go/bump": {
    needs: ["git", "gobump"],
    inputs: {
      deps: R,
      modroot: ".",
      "go-version": "",
      replaces: null,
      tidy: "true",
      "show-diff": "false",
      "tidy-compat": "",
      work: "false",
    },
  },
  "cargo/build": {
    needs: ["build-base", "busybox", "cargo-auditable", "rust"],
    inputs: {
      output: null,
      opts: "--release",
      modroot: ".",
      rustflags: "",
      prefix: "usr",
      "install-dir": "bin",
      "output-dir": "target/release",
      jobs: null,
    },
  },
  "python/build": { needs: ["busybox", "python3"], inputs: {} },
  "python/install": { needs: ["busybox", "python3"], inputs: {} },
  "python/build-wheel": { needs: ["busybox", "py3-build", "py3-installer", "python3"], inputs: {} },
  "python/test": { needs: ["wolfi-base"], inputs: { command: R } },
  "python/import": {
    needs: ["wolfi-base"],
    inputs: { python: "DEFAULT", import: null, from: null, imports: null, venv: null },
  },
  "ruby/build": {
    needs: ["busybox", "ca-certificates-bundle"],
    inputs: { dir: ".", gem: R, output: null, opts: null },
  },
  "ruby/install": {
    needs: ["busybox", "ca-certificates-bundle"],
    inputs: { dir: ".", gem: null, "gem-file": null, version: R, opts: "" },
  },
  "ruby/clean": { needs: ["busybox", "ca-certificates-bundle"], inputs: {} },
  "perl/make": { needs: ["busybox", "perl"], inputs: {} },
  "perl/cleanup": { needs: ["busybox"], inputs: {} },
  "R/build": { needs: ["R", "R-dev", "R-doc", "busybox"], inputs: { package: R, path: ".", version: R } },
  "pecl/phpize": { needs: ["autoconf", "busybox"], inputs: { "php-config": "php-config", prefix: "/usr" } },
  "pecl/install": { needs: ["automake", "busybox"], inputs: { extension: R } },
  "npm/install": {
    needs: ["busybox", "nodejs", "${{inputs.npm-package}}", "npm"],
    inputs: {
      package: R,
      version: R,
      prefix: "${{targets.contextdir}}/usr/",
      overrides: null,
      "npm-package": "npm",
    },
  },
  "maven/configure-mirror": { needs: ["busybox"], inputs: {} },
  "maven/pombump": {
    needs: ["busybox", "pombump"],
    inputs: {
      "patch-file": "./pombump-deps.yaml",
      "properties-file": "./pombump-properties.yaml",
      dependencies: null,
      properties: null,
      pom: "pom.xml",
      debug: "false",
      "show-dependency-tree": "false",
    },
  },
  "xcover/ensure": {
    needs: ["busybox", "jq", "${{inputs.package}}"],
    inputs: { package: "xcover", "min-coverage": "" },
  },
  "xcover/profile": {
    needs: ["busybox", "${{inputs.package}}"],
    inputs: {
      package: "xcover",
      "executable-path": R,
      "exclude-functions": null,
      "include-functions": null,
      scope: "project",
      "log-level": "info",
      verbose: "false",
      "wait-timeout": "60",
    },
  },
  "xcover/status": { needs: ["busybox", "${{inputs.package}}"], inputs: { package: "xcover" } },
  "xcover/stop": { needs: ["busybox"], inputs: { package: "xcover" } },
  "xcover/wait": { needs: ["busybox", "${{inputs.package}}"], inputs: { package: "xcover", "wait-timeout": "60" } },
  "llvm/covreport": {
    needs: ["${{inputs.package}}"],
    inputs: { package: "llvm-19", object: "", "ignore-filename-regex": "" },
  },
};

const registry = loadPipelines();
const OUT = "/home/build/melange-out/hello";

/** A Wolfi-shaped recipe around `steps` (YAML, indented as pipeline entries) and an optional test block. */
function recipeText(steps: string, test?: string): string {
  return [
    "package:",
    "  name: hello",
    "  version: 1.2.3",
    "  epoch: 2",
    "  description: a package built by a language pipeline",
    "  copyright:",
    "    - license: Apache-2.0",
    "environment:",
    "  contents:",
    "    packages:",
    "      - build-base",
    "pipeline:",
    steps.replace(/^/gm, "  "),
    ...(test ? ["test:", "  pipeline:", test.replace(/^/gm, "    ")] : []),
    "",
  ].join("\n");
}

function compile(steps: string, test?: string, opts: CompileOptions = {}): CompiledRecipe {
  return compileRecipe(parseRecipe("recipe.yaml", recipeText(steps, test)), {
    arch: "x86_64",
    pipelines: registry,
    ...opts,
  });
}

/** The problems lint would print for the recipe. */
function problems(steps: string): string[] {
  const l = parseRecipe("recipe.yaml", recipeText(steps));
  return checkRecipe(l, { arch: "x86_64", pipelines: registry }).problems.map((p) => formatProblem(p));
}

const scripts = (c: CompiledRecipe) => c.pipeline.map((s) => s.runs);
const script = (c: CompiledRecipe) => scripts(c).join("\n");

/** Both dash-like sh and bash parse `text` (run as the guest runs it: sh -c with set -e). */
function expectParses(text: string, label: string): void {
  for (const shell of ["sh", "bash"]) {
    const r = spawnSync(shell, ["-n", "-c", `set -e\n${text}`], { encoding: "utf8" });
    expect(r.status, `${shell} -n ${label}: ${r.stderr}`).toBe(0);
  }
}

/** A directory of stub commands that append "NAME ARG…" (one arg per line) to LOG. */
function stubs(names: string[], extra: Record<string, string> = {}): { bin: string; log: string } {
  const dir = mkdtempSync(join(tmp, "stubs-"));
  const bin = join(dir, "bin");
  mkdirSync(bin);
  const log = join(dir, "calls.log");
  for (const n of names) {
    const body = extra[n] ?? "";
    writeFileSync(
      join(bin, n),
      `#!/bin/sh\n{ echo "== ${n}"; for a in "$@"; do printf '%s\\n' "$a"; done; } >> "${log}"\n${body}\n`,
    );
    chmodSync(join(bin, n), 0o755);
  }
  return { bin, log };
}

/** Run the compiled steps on the host, in `cwd`, with `bin` first on PATH. */
function runSteps(c: CompiledRecipe, cwd: string, bin: string, env: Record<string, string> = {}) {
  const home = mkdtempSync(join(tmp, "home-"));
  return spawnSync("sh", ["-c", `set -e\n${script(c)}`], {
    cwd,
    encoding: "utf8",
    env: { PATH: `${bin}:/usr/bin:/bin`, HOME: home, ...env },
  });
}

/** Calls logged by the stubs: each is [command, ...args]. */
function calls(log: string): string[][] {
  return readFileSync(log, "utf8")
    .split("== ")
    .filter(Boolean)
    .map((c) => c.replace(/\n$/, "").split("\n"));
}

describe("melange's language pipelines in kiln", () => {
  it("ships each of them, with melange's inputs, defaults and needs", () => {
    for (const [name, facts] of Object.entries(MELANGE)) {
      const def = registry.get(name);
      expect(def, name).toBeDefined();
      expect(def!.builtin, name).toBe(true);
      expect(def!.file, name).toBe(join(BUILTIN_PIPELINE_DIR, `${name}.yaml`));
      expect(def!.needs, name).toEqual(facts.needs);
      expect(Object.keys(def!.inputs).sort(), name).toEqual(Object.keys(facts.inputs).sort());
      for (const [k, want] of Object.entries(facts.inputs)) {
        const got = def!.inputs[k]!;
        if (want === R) expect([name, k, got.required], `${name} ${k}`).toEqual([name, k, true]);
        else expect([name, k, got.required, got.default ?? null]).toEqual([name, k, false, want]);
      }
      expect(def!.pipeline.length, name).toBeGreaterThan(0);
    }
  });

  it("every one expands with typical inputs, and each script parses as sh and bash", () => {
    const typical: Record<string, Record<string, string>> = {
      "go/build": { packages: "./cmd/hello", output: "hello" },
      "go/install": { package: "example.com/hello/cmd/hello", version: "v1.2.3" },
      "go/bump": { deps: "golang.org/x/net@v0.38.0" },
      "python/test": { command: "python3 -m pytest -q tests/" },
      "python/import": { import: "hello" },
      "ruby/build": { gem: "hello" },
      "ruby/install": { gem: "hello", version: "1.2.3" },
      "R/build": { package: "hello", version: "1.2.3" },
      "pecl/install": { extension: "hello" },
      "npm/install": { package: "hello", version: "1.2.3" },
      "xcover/profile": { "executable-path": "/usr/bin/hello" },
    };
    for (const name of Object.keys(MELANGE)) {
      const w = typical[name] ?? {};
      const withBlock = Object.keys(w).length
        ? `\n  with:\n${Object.entries(w)
            .map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`)
            .join("\n")}`
        : "";
      const c = compile(`- uses: ${name}${withBlock}`);
      expect(c.pipeline.length, name).toBeGreaterThan(0);
      for (const [i, s] of c.pipeline.entries()) {
        expect(s.runs, `${name} step ${i} has no unsubstituted reference`).not.toContain("${{");
        expectParses(s.runs, `${name} step ${i}`);
      }
    }
  });

  it("a required input left out is one clear problem naming the step and the input", () => {
    expect(problems("- uses: go/build\n  with:\n    packages: ./cmd/hello\n")).toEqual([
      'recipe.yaml:15:7: pipeline[0].with: missing required input "output" for pipeline "go/build"',
    ]);
    expect(problems("- uses: ruby/build\n")).toEqual([
      'recipe.yaml:13:11: pipeline[0].uses: missing required input "gem" for pipeline "ruby/build"',
    ]);
    const r = problems("- uses: R/build\n  with:\n    path: hello.tar.gz\n");
    expect(r).toEqual([
      'recipe.yaml:15:7: pipeline[0].with: missing required input "package" for pipeline "R/build"',
      'recipe.yaml:15:7: pipeline[0].with: missing required input "version" for pipeline "R/build"',
    ]);
    expect(problems("- uses: cargo/build\n  with:\n    output-directory: x\n")).toEqual([
      'recipe.yaml:15:25: pipeline[0].with.output-directory: unknown input "output-directory" for pipeline "cargo/build" ' +
        "(inputs: output, opts, modroot, rustflags, prefix, install-dir, output-dir, jobs)",
    ]);
  });
});

describe("go", () => {
  const GO_BUILD = [
    "- uses: go/build",
    "  with:",
    "    packages: ./cmd/hello",
    "    modroot: src",
    "    output: hello",
    "    tags: sqlite,json1",
    "    go-package: go-1.24",
    '    ldflags: -s -X main.version=${{package.version}} -X main.date=$(date -u -d@${SOURCE_DATE_EPOCH} "+%Y-%m-%d")',
  ].join("\n");

  it("go/build: the go build line with inputs substituted and defaults applied; go-package in the environment", () => {
    const c = compile(GO_BUILD);
    const s = script(c);
    expect(s).toContain('cd "src"');
    expect(s).toContain(
      'go_ldflags="-w -s -X main.version=1.2.3 -X main.date=$(date -u -d@${SOURCE_DATE_EPOCH} "+%Y-%m-%d")"',
    );
    expect(s).toContain(`binary="${OUT}/usr/bin/hello"`);
    expect(s).toContain('GOAMD64="v2" GOARM64="v8.0" GOEXPERIMENT=""');
    expect(s).toContain('-tags "netgo,osusergo,sqlite,json1"');
    expect(s).toContain("-buildmode default");
    expect(s).toMatch(/-trimpath \\\n\s+-buildmode default \\\n\s+ \.\/cmd\/hello\n/);
    expect(s).toContain('export GOPROXY="${GOPROXY:-off}"');
    expect(c.environment.contents!.packages).toEqual(["build-base", "busybox", "ca-certificates-bundle", "go-1.24"]);
  });

  it("go/build runs go with the arguments melange passes, offline, vendor/ used", () => {
    const c = compile(GO_BUILD);
    const work = mkdtempSync(join(tmp, "go-"));
    mkdirSync(join(work, "src/vendor"), { recursive: true });
    writeFileSync(join(work, "src/go.mod"), "module example.com/hello\n");
    writeFileSync(join(work, "src/vendor/modules.txt"), "");
    const { bin, log } = stubs(["go"], { go: 'echo "GOPROXY=$GOPROXY GOTOOLCHAIN=$GOTOOLCHAIN" >> "$0.env"' });
    const r = runSteps(c, work, bin, { SOURCE_DATE_EPOCH: "0" });
    expect(r.status, r.stderr).toBe(0);
    expect(calls(log)).toEqual([
      [
        "go",
        "build",
        "-mod=vendor",
        "-o",
        `${OUT}/usr/bin/hello`,
        "-tags",
        "netgo,osusergo,sqlite,json1",
        "-ldflags",
        "-w -s -X main.version=1.2.3 -X main.date=1970-01-01",
        "-trimpath",
        "-buildmode",
        "default",
        "./cmd/hello",
      ],
    ]);
    expect(readFileSync(join(bin, "go.env"), "utf8")).toBe("GOPROXY=off GOTOOLCHAIN=local\n");
  });

  it("go/build: no go.mod in modroot fails with a message naming it; tidy and deps run go mod", () => {
    const work = mkdtempSync(join(tmp, "go-"));
    mkdirSync(join(work, "src"));
    const { bin, log } = stubs(["go"]);
    const r = runSteps(compile(GO_BUILD), work, bin);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("go/build: no go.mod in modroot src");
    writeFileSync(join(work, "src/go.mod"), "module example.com/hello\n");
    const c = compile(
      "- uses: go/build\n  with:\n    packages: .\n    output: hello\n    tidy: true\n    deps: a.example/x@v1.0.0 b.example/y@v2.0.0\n    vendor: true\n    modroot: src\n",
    );
    expect(runSteps(c, work, bin).status).toBe(0);
    expect(calls(log).map((a) => a.slice(0, 3).join(" "))).toEqual([
      "go mod tidy",
      "go get a.example/x@v1.0.0",
      "go get b.example/y@v2.0.0",
      "go mod tidy",
      "go mod vendor",
      "go build -o",
    ]);
  });

  it("go/build/v2: packages default to the module, output empty (a directory), then strip", () => {
    const c = compile("- uses: go/build/v2\n  with:\n    ldflags: -X main.v=${{package.version}}\n");
    expect(c.pipeline.map((s) => s.uses)).toEqual(["go/build/v2", "strip"]);
    const s = scripts(c)[0]!;
    expect(s).toContain(`binary="${OUT}/usr/bin/"`);
    expect(s).toContain('go_ldflags="-w -X main.v=1.2.3"');
    expect(s).toMatch(/ \.\n/);
    // strip brings binutils; Go itself comes from the recipe's environment.
    expect(c.environment.contents!.packages).toEqual(["binutils", "build-base", "busybox", "ca-certificates-bundle"]);
  });

  it("go/install: PACKAGE@VERSION, binaries moved into prefix/install-dir", () => {
    const c = compile(
      "- uses: go/install\n  with:\n    package: example.com/tool/cmd/tool\n    version: v0.4.0\n    install-dir: sbin\n",
    );
    expect(script(c)).toContain('target="$target@v0.4.0"');
    expect(script(c)).toContain(`bindir="${OUT}/usr/sbin"`);
    expect(c.environment.contents!.packages).toEqual(["build-base", "busybox", "ca-certificates-bundle", "git", "go"]);
    // Run with a go that "builds" a binary into GOBIN, and a contextdir on the host.
    const out = mkdtempSync(join(tmp, "out-"));
    const host = compile(
      "- uses: go/install\n  with:\n    package: example.com/tool/cmd/tool\n    version: v0.4.0\n",
      undefined,
      { variables: { "targets.contextdir": out } },
    );
    const { bin, log } = stubs(["go"], { go: 'echo built > "$GOBIN/tool"' });
    const r = runSteps(host, tmp, bin);
    expect(r.status, r.stderr).toBe(0);
    expect(calls(log)[0]).toEqual([
      "go",
      "install",
      "-tags",
      "netgo,osusergo,",
      "-ldflags",
      "-w ",
      "-trimpath",
      "example.com/tool/cmd/tool@v0.4.0",
    ]);
    expect(readFileSync(join(out, "usr/bin/tool"), "utf8")).toBe("built\n");
  });

  it("go/bump, go/covdata: gobump flags and the covdata input directory", () => {
    const bump = script(
      compile("- uses: go/bump\n  with:\n    deps: golang.org/x/crypto@v0.35.0\n    modroot: cmd\n    tidy: false\n"),
    );
    expect(bump).toContain('cd "cmd"');
    expect(bump).toMatch(
      /gobump \\\n\s+--packages "golang.org\/x\/crypto@v0.35.0" \\\n\s+--replaces "" \\\n\s+--tidy=false/,
    );
    expect(bump).toContain("--show-diff=false");
    expect(bump).toContain("--work=false");
    const cov = compile("- runs: true", "- uses: go/covdata\n  with:\n    cover-dir: /tmp/cover\n");
    expect(cov.test!.pipeline[0]!.runs).toContain('go tool covdata func -i "/tmp/cover"');
    expect(cov.test!.environment.contents!.packages).toEqual(["busybox", "go", "hello", "jq"]);
  });
});

describe("cargo, python, ruby, perl", () => {
  it("cargo/build: cargo auditable build, offline, the named binary installed", () => {
    const c = compile(
      "- uses: cargo/build\n  with:\n    output: hello\n    jobs: 2\n    rustflags: -C target-cpu=x86-64-v2\n",
    );
    expect(script(c)).toContain('RUSTFLAGS="-C target-cpu=x86-64-v2" cargo auditable build --target-dir target "$@"');
    expect(c.environment.contents!.packages).toEqual(["build-base", "busybox", "cargo-auditable", "rust"]);
    const out = mkdtempSync(join(tmp, "out-"));
    const work = mkdtempSync(join(tmp, "cargo-"));
    mkdirSync(join(work, "target/release/deps"), { recursive: true });
    writeFileSync(join(work, "target/release/hello"), "elf");
    const host = compile("- uses: cargo/build\n  with:\n    output: hello\n    jobs: 2\n", undefined, {
      variables: { "targets.contextdir": out },
    });
    const { bin, log } = stubs(["cargo"], { cargo: 'echo "$CARGO_NET_OFFLINE" > "$0.offline"' });
    const r = runSteps(host, work, bin);
    expect(r.status, r.stderr).toBe(0);
    expect(calls(log)).toEqual([["cargo", "auditable", "build", "--target-dir", "target", "--release", "--jobs", "2"]]);
    expect(readFileSync(join(bin, "cargo.offline"), "utf8")).toBe("true\n");
    expect(readFileSync(join(out, "usr/bin/hello"), "utf8")).toBe("elf");
  });

  it("python/build, install, build-wheel: setup.py and python -m build/installer", () => {
    expect(scripts(compile("- uses: python/build"))[1]).toContain('"$py" setup.py build');
    expect(scripts(compile("- uses: python/install"))[1]).toContain(
      `"$py" setup.py install --prefix=/usr --root="${OUT}"`,
    );
    const wheel = compile("- uses: python/build-wheel");
    expect(scripts(wheel)[1]).toContain('"$py" -m build --no-isolation');
    expect(scripts(wheel)[1]).toContain(`"$py" -m installer -d "${OUT}" dist/*.whl`);
    expect(wheel.environment.contents!.packages).toEqual([
      "build-base",
      "busybox",
      "py3-build",
      "py3-installer",
      "python3",
    ]);
  });

  const IMPORTS = "- uses: python/import\n  with:\n    python: python3\n    imports: |\n";

  it("python/import: each statement tried with the chosen python; comments skipped; a failure fails the step", () => {
    const c = compile(
      "- runs: true",
      `${IMPORTS}      import json   # the standard one\n      from os import  path\n      # a full-line comment\n\n      import "quoted" if False else json\n`,
    );
    expect(c.test!.environment.contents!.packages).toEqual(["hello", "wolfi-base"]);
    const steps = c.test!.pipeline.map((s) => s.runs).join("\n");
    const { bin, log } = stubs(["python3"]);
    const r = spawnSync("sh", ["-c", `set -e\n${steps}`], { encoding: "utf8", env: { PATH: `${bin}:/usr/bin:/bin` } });
    expect(r.status, r.stderr).toBe(0);
    expect(calls(log)).toEqual([
      ["python3", "-c", "import json"],
      ["python3", "-c", "from os import path"],
      ["python3", "-c", 'import "quoted" if False else json'],
    ]);
    expect(r.stdout).toContain('python3 -c "from os import path": PASS');
    const failing = stubs(["python3"], { python3: 'case "$2" in *missing*) exit 1;; esac' });
    const bad = compile("- runs: true", `${IMPORTS}      import missing\n      import json\n`);
    const rb = spawnSync("sh", ["-c", `set -e\n${bad.test!.pipeline[0]!.runs}`], {
      encoding: "utf8",
      env: { PATH: `${failing.bin}:/usr/bin:/bin` },
    });
    expect(rb.status).toBe(1);
    expect(rb.stdout).toContain('python3 -c "import missing": FAIL');
    expect(rb.stdout).toContain('python3 -c "import json": PASS');
  });

  it("python/import: import with from, and mixing import with imports is refused", () => {
    const { bin, log } = stubs(["python3"]);
    const run = (w: string) =>
      spawnSync(
        "sh",
        ["-c", `set -e\n${compile("- runs: true", `- uses: python/import\n  with:\n${w}`).test!.pipeline[0]!.runs}`],
        { encoding: "utf8", env: { PATH: `${bin}:/usr/bin:/bin` } },
      );
    expect(run("    python: python3\n    import: path\n    from: os\n").status).toBe(0);
    expect(calls(log)).toEqual([["python3", "-c", "from os import path"]]);
    const mixed = run("    python: python3\n    import: os\n    imports: import json\n");
    expect(mixed.status).toBe(1);
    expect(mixed.stderr).toContain("python/import: give import or imports, not both");
    expect(run("    python: python3\n    from: os\n").stderr).toContain("python/import: from needs import");
  });

  it("python/test runs the command as the step", () => {
    const c = compile("- runs: true", "- uses: python/test\n  with:\n    command: python3 -m pytest -k smoke\n");
    expect(c.test!.pipeline[0]!.runs).toBe("python3 -m pytest -k smoke");
  });

  it("ruby/build, install, clean: gem build of GEM.gemspec, gem install --local of GEM-VERSION.gem", () => {
    const b = scripts(compile("- uses: ruby/build\n  with:\n    gem: hello\n    output: hello.gem\n"));
    expect(b[1]).toContain('gemspec="hello.gemspec"');
    expect(b[1]).toContain("sed -i '/signing_key/d' \"$gemspec\"");
    expect(b[1]).toContain('set -- --output "hello.gem"');
    expect(b[1]).toContain('gem build "$gemspec" "$@"');
    const i = compile("- uses: ruby/install\n  with:\n    gem: hello\n    version: ${{package.version}}\n");
    expect(i.pipeline.map((s) => s.name)).toEqual(["Check ruby", "Ruby install"]);
    expect(scripts(i)[1]).toContain('version="1.2.3"');
    expect(scripts(i)[1]).toContain("--local");
    // Run the install with a ruby and gem that record their arguments.
    const out = mkdtempSync(join(tmp, "out-"));
    const host = compile("- uses: ruby/install\n  with:\n    gem: hello\n    version: 1.2.3\n", undefined, {
      variables: { "targets.contextdir": out },
    });
    const { bin, log } = stubs(["ruby", "gem"], { ruby: "echo /usr/lib/ruby/gems/3.4.0" });
    const r = runSteps(host, tmp, bin);
    expect(r.status, r.stderr).toBe(0);
    expect(calls(log).at(-1)).toEqual([
      "gem",
      "install",
      "hello-1.2.3.gem",
      "--install-dir",
      `${out}/usr/lib/ruby/gems/3.4.0/`,
      "--bindir",
      `${out}/usr/bin`,
      "--version",
      "1.2.3",
      "--ignore-dependencies",
      "--no-document",
      "--verbose",
      "--local",
    ]);
    const none = runSteps(compile("- uses: ruby/install\n  with:\n    version: 1.2.3\n"), tmp, bin);
    expect(none.status).toBe(1);
    expect(none.stderr).toContain("ruby/install: set gem or gem-file");
    expect(scripts(compile("- uses: ruby/clean"))[1]).toContain('rm -rf "$gemdir/build_info" "$gemdir/cache"');
  });

  it("perl/make and perl/cleanup: Makefile.PL with vendor dirs; install records removed", () => {
    const c = compile(
      "- uses: perl/make\n- uses: autoconf/make\n- uses: autoconf/make-install\n- uses: perl/cleanup\n",
    );
    expect(scripts(c)[0]).toContain("PERL_MM_USE_DEFAULT=1 perl -I. Makefile.PL INSTALLDIRS=vendor");
    expect(scripts(c).at(-1)).toContain(`find "${OUT}" \\( -name perllocal.pod -o -name .packlist \\)`);
    expect(c.environment.contents!.packages).toEqual(["build-base", "busybox", "make", "perl"]);
  });
});

describe("R, pecl, npm, maven, xcover, llvm", () => {
  it("R/build: install.packages from the path into usr/lib/R/library, no repository", () => {
    const c = compile(
      "- uses: R/build\n  with:\n    package: hello\n    version: 1.2.3\n    path: hello_1.2.3.tar.gz\n",
    );
    expect(script(c)).toContain(`library="${OUT}/usr/lib/R/library"`);
    expect(script(c)).toContain('KILN_R_SOURCE="hello_1.2.3.tar.gz"');
    expect(script(c)).toContain('repos = NULL, type = "source"');
    expect(c.environment.contents!.packages).toEqual(["R", "R-dev", "R-doc", "build-base", "busybox"]);
  });

  it("pecl/phpize and pecl/install: configure against php-config; the extension enabled", () => {
    const p = script(compile("- uses: pecl/phpize\n  with:\n    php-config: php-config8.4\n"));
    expect(p).toContain('./configure --prefix="/usr" --with-php-config="php-config8.4"');
    const out = mkdtempSync(join(tmp, "out-"));
    const host = compile("- uses: pecl/install\n  with:\n    extension: redis\n", undefined, {
      variables: { "targets.contextdir": out },
    });
    const { bin, log } = stubs(["make"]);
    const r = runSteps(host, tmp, bin);
    expect(r.status, r.stderr).toBe(0);
    expect(calls(log)).toEqual([["make", `INSTALL_ROOT=${out}`, "install"]]);
    expect(readFileSync(join(out, "etc/php/conf.d/redis.ini"), "utf8")).toBe("extension=redis.so\n");
  });

  it("npm/install: a global install under prefix, offline; overrides reinstall with forced versions", () => {
    const out = mkdtempSync(join(tmp, "out-"));
    const host = compile(
      "- uses: npm/install\n  with:\n    package: hello\n    version: ${{package.version}}\n    overrides: |\n      semver@^7.5.2 # CVE fix\n      @scope/tool@2.0.1, tar@6.2.1\n",
      undefined,
      { variables: { "targets.contextdir": out } },
    );
    expect(host.environment.contents!.packages).toEqual(["build-base", "busybox", "nodejs", "npm"]);
    const { bin, log } = stubs(["npm"], {
      npm: '[ "$1" = install ] && [ "$2" = -g ] && echo "$npm_config_offline" > "$0.offline"; [ "$2" = --install-strategy=shallow ] && cp package.json "$0.manifest"; :',
    });
    const node = spawnSync("sh", ["-c", "command -v node"], { encoding: "utf8" }).stdout.trim();
    const r = runSteps(host, tmp, `${bin}:${node.replace(/\/node$/, "")}`);
    expect(r.status, r.stderr).toBe(0);
    expect(calls(log)).toEqual([
      ["npm", "install", "-g", "hello@1.2.3", "--prefix", `${out}/usr/`],
      ["npm", "install", "--install-strategy=shallow", "."],
    ]);
    expect(readFileSync(join(bin, "npm.offline"), "utf8")).toBe("true\n");
    expect(JSON.parse(readFileSync(join(bin, "npm.manifest"), "utf8"))).toEqual({
      dependencies: { hello: "1.2.3" },
      overrides: { semver: "^7.5.2", "@scope/tool": "2.0.1", tar: "6.2.1" },
    });
    const pnpm = compile("- uses: npm/install\n  with:\n    package: hello\n    version: 1\n    npm-package: pnpm\n");
    expect(pnpm.environment.contents!.packages).toEqual(["build-base", "busybox", "nodejs", "npm", "pnpm"]);
    const bad = runSteps(
      compile("- uses: npm/install\n  with:\n    package: a\n    version: 1\n    npm-package: yarn\n"),
      tmp,
      bin,
    );
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("npm/install: npm-package must be npm or pnpm, got 'yarn'");
  });

  it("maven/configure-mirror: offline settings, or a mirror of central from MAVEN_MIRROR_URL", () => {
    const c = compile("- uses: maven/configure-mirror");
    const { bin } = stubs([]);
    const home = mkdtempSync(join(tmp, "home-"));
    const run = (env: Record<string, string>) =>
      spawnSync("sh", ["-c", `set -e\n${script(c)}`], {
        encoding: "utf8",
        env: { PATH: `${bin}:/usr/bin:/bin`, HOME: home, ...env },
      });
    expect(run({}).status).toBe(0);
    expect(readFileSync(join(home, ".m2/settings.xml"), "utf8")).toContain("<offline>true</offline>");
    expect(run({ MAVEN_MIRROR_URL: "file:///home/build/m2-mirror" }).status).toBe(0);
    const xml = readFileSync(join(home, ".m2/settings.xml"), "utf8");
    expect(xml).toContain("<url>file:///home/build/m2-mirror</url>");
    expect(xml).toContain("<mirrorOf>central</mirrorOf>");
    const bad = run({ MAVEN_MIRROR_URL: "http://x/</url><evil>" });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("MAVEN_MIRROR_URL must not contain");
  });

  it("maven/pombump: flags only for the files that exist and the inputs given", () => {
    const work = mkdtempSync(join(tmp, "pom-"));
    writeFileSync(join(work, "pom.xml"), "<project/>\n");
    writeFileSync(join(work, "pombump-deps.yaml"), "patches: []\n");
    const c = compile("- uses: maven/pombump\n  with:\n    properties: netty.version=4.1.118.Final\n");
    const { bin, log } = stubs(["pombump"], { pombump: "echo '<project>bumped</project>'" });
    const r = runSteps(c, work, bin);
    expect(r.status, r.stderr).toBe(0);
    expect(calls(log)).toEqual([
      ["pombump", "pom.xml", "--patch-file", "./pombump-deps.yaml", "--properties", "netty.version=4.1.118.Final"],
    ]);
    expect(readFileSync(join(work, "pom.xml"), "utf8")).toBe("<project>bumped</project>\n");
  });

  it("xcover: profile, wait, status, stop and ensure in a test; the minimum gate", () => {
    const c = compile(
      "- runs: true",
      [
        "- uses: xcover/profile",
        "  with:",
        "    executable-path: /usr/bin/hello",
        "    exclude-functions: ^runtime\\.",
        "- runs: hello --version",
        "- uses: xcover/stop",
        "- uses: xcover/ensure",
        "  with:",
        "    min-coverage: 50",
      ].join("\n"),
    );
    const steps = c.test!.pipeline.map((s) => s.runs);
    expect(steps[0]).toContain('--path "/usr/bin/hello"');
    expect(steps[0]).toContain('--exclude="^runtime\\."');
    expect(steps[0]).toContain('--scope="project"');
    expect(steps[0]).toContain('xcover wait --timeout "60s"');
    expect(c.test!.environment.contents!.packages).toEqual(["busybox", "hello", "jq", "xcover"]);
    const gate = (coverage: string) => {
      const work = mkdtempSync(join(tmp, "xcover-"));
      writeFileSync(join(work, "xcover-report.json"), "{}");
      const { bin } = stubs(["jq"], { jq: `echo ${coverage}` });
      return spawnSync("sh", ["-c", `set -e\n${steps[3]}`], {
        cwd: work,
        encoding: "utf8",
        env: { PATH: `${bin}:/usr/bin:/bin` },
      });
    };
    expect(gate("72.5").status).toBe(0);
    expect(gate("50").status).toBe(0);
    const low = gate("49.9");
    expect(low.status).toBe(1);
    expect(low.stderr).toContain("coverage 49.9 % is below the minimum 50 %");
    const custom = compile("- runs: true", "- uses: xcover/status\n  with:\n    package: xcover-nightly\n");
    expect(custom.test!.environment.contents!.packages).toEqual(["busybox", "hello", "xcover-nightly"]);
  });

  it("llvm/covreport: merge profiles and report on the object; the llvm package in the test environment", () => {
    const c = compile(
      "- runs: true",
      "- uses: llvm/covreport\n  with:\n    object: /usr/bin/hello\n    package: llvm-20\n",
    );
    const s = c.test!.pipeline[0]!.runs;
    expect(s).toContain("llvm-profdata merge --sparse default_*.profraw --output default.profdata");
    expect(s).toContain('object="/usr/bin/hello"');
    expect(c.test!.environment.contents!.packages).toEqual(["hello", "llvm-20"]);
    const d = compile("- runs: true", "- uses: llvm/covreport\n").test!;
    expect(d.environment.contents!.packages).toEqual(["hello", "llvm-19"]);
    expect(d.pipeline[0]!.runs).toContain('apk info -L "hello"');
  });
});
