import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, formatProblem, type Problem } from "@kiln/image";
import {
  canonicalJson,
  checkRecipe,
  compileRecipe,
  environmentImageConfig,
  loadRecipe,
  parseRecipe,
  readRecipe,
  recipeHash,
  recipePackageVersion,
  type CompileOptions,
  type CompiledStep,
} from "./compile.js";
import { loadPipelines } from "./pipelines.js";

const FIXTURES = join(import.meta.dirname, "../../../test/fixtures/recipes");
const tmp = mkdtempSync(join(tmpdir(), "kiln-compile-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function fixtureOptions(name: string, extra: CompileOptions = {}): CompileOptions {
  const pd = join(FIXTURES, name, "pipelines");
  return { arch: "x86_64", pipelineDirs: existsSync(pd) ? [pd] : [], ...extra };
}

async function compileFixture(name: string, extra: CompileOptions = {}) {
  const opts = fixtureOptions(name, extra);
  return compileRecipe(await loadRecipe(join(FIXTURES, name, "recipe.yaml"), opts), opts);
}

/** Problems as lint prints them, with paths relative to the fixture directory. */
function lines(dir: string, problems: Problem[]): string[] {
  return problems.map((p) => formatProblem({ ...p, file: relative(dir, p.file) || p.file }));
}

function parse(text: string, file = "inline.yaml") {
  return parseRecipe(file, text);
}

function problemsOf(text: string, opts: CompileOptions = { arch: "x86_64" }): string[] {
  try {
    return lines(".", checkRecipe(parse(text), opts).problems);
  } catch (e) {
    if (e instanceof ConfigError) return lines(".", e.problems);
    throw e;
  }
}

const byName = (steps: CompiledStep[]) => steps.map((s) => s.name);

describe("valid recipes", () => {
  it("zlib: fetch + autoconf + strip, -static/-dev/-doc subpackages, tests", async () => {
    const c = await compileFixture("zlib");
    expect(c.arch).toBe("x86_64");
    expect(c.supportsArch).toBe(true);
    expect(c.package).toMatchObject({
      name: "zlib",
      version: "1.3.1",
      epoch: 2,
      fullVersion: "1.3.1-r2",
      license: "Zlib",
      url: "https://zlib.net/",
    });
    expect(c.package.dependencies.provides).toEqual(["libz=1.3.1-r2"]);

    expect(byName(c.pipeline)).toEqual([
      "fetch",
      "configure",
      "autoconf/make",
      "autoconf/make-install",
      "autoconf/make-install",
      "pipeline[4]",
      "strip",
    ]);
    const [fetch, configure, make, install, la, mv, strip] = c.pipeline;
    expect(fetch).toEqual({
      name: "fetch",
      origin: "pipeline[0] › fetch pipeline[0]",
      uses: "kiln:fetch",
      native: "fetch",
      runs: "",
      workingDirectory: "/home/build",
      environment: {},
      with: {
        uri: "https://zlib.net/fossils/zlib-1.3.1.tar.gz",
        "expected-sha256": "9a93b2b7dfdac77ceba5a558a580e74667dd6fede4585b91eefb60f03b72df23",
        "expected-sha512": "",
        "expected-none": "",
        extract: "true",
        "strip-components": "1",
        directory: ".",
        delete: "false",
        "purl-name": "zlib",
        "purl-version": "1.3.1",
        timeout: "5",
        "dns-timeout": "20",
        "retry-limit": "5",
      },
    });
    expect(configure!.runs).toBe(
      "CHOST=x86_64-pc-linux-gnu ./configure \\\n  --prefix=/usr \\\n  --libdir=/lib \\\n  --shared\n",
    );
    expect(make).toMatchObject({
      uses: "autoconf/make",
      origin: "pipeline[2] › autoconf/make pipeline[0]",
      runs: 'make -C "." -j"$(nproc)" V=1  \n',
    });
    expect(install!.runs).toBe('make -C "." install DESTDIR="/home/build/melange-out/zlib" V=1 \n');
    expect(la!.runs).toContain(`find "/home/build/melange-out/zlib" -name '*.la'`);
    expect(mv!.runs).toBe(
      "mkdir -p /home/build/melange-out/zlib/usr/lib\nmv /home/build/melange-out/zlib/lib/pkgconfig /home/build/melange-out/zlib/usr/lib/\n",
    );
    expect(strip!.workingDirectory).toBe("/home/build/melange-out/zlib");
    expect(strip!.runs).toContain('strip -g "$f"');

    // needs of the steps join the recipe's packages; the build user is added.
    expect(c.environment.contents).toEqual({
      repositories: ["https://packages.example.org/os"],
      keyring: ["https://packages.example.org/os/key.rsa.pub"],
      packages: ["binutils", "busybox", "gcc", "glibc-dev", "make"],
    });
    expect(c.environment.accounts).toEqual({
      groups: [{ groupname: "build", gid: 1000, members: ["build"] }],
      users: [{ username: "build", uid: 1000, gid: 1000 }],
    });
    expect(c.environment.environment).toEqual({ HOME: "/home/build", GOPATH: "/home/build/.cache/go" });
    expect(environmentImageConfig(c.environment).users).toEqual([
      { username: "build", uid: 1000, gid: 1000, shell: "/bin/sh", homedir: "/home/build" },
    ]);

    expect(c.subpackages.map((s) => s.name)).toEqual(["zlib-static", "zlib-dev", "zlib-doc"]);
    const dev = c.subpackages[1]!;
    expect(dev.dependencies.runtime).toEqual(["zlib"]);
    expect(dev.pipeline).toHaveLength(1);
    expect(dev.pipeline[0]!.runs).toContain('PACKAGE_DIR="/home/build/melange-out/zlib"');
    expect(dev.pipeline[0]!.runs).toContain('d="/home/build/melange-out/zlib-dev/${i%/*}"');
    expect(dev.test!.environment.contents!.packages).toEqual(["zlib-dev"]);
    expect(dev.test!.pipeline.map((s) => s.runs)).toEqual(["test -f /usr/include/zlib.h"]);
    expect(c.subpackages[2]!.pipeline[0]!.runs).toContain(
      'mv "$mandir"/* "/home/build/melange-out/zlib-doc/usr/share/man/"',
    );
    expect(c.test!.environment.contents!.packages).toEqual(["busybox", "zlib"]);
    expect(c.test!.pipeline[0]!.runs).toBe("test -e /lib/libz.so.1");
  });

  it("ranged subpackages: sorted items, keys as written, range/subpkg/context variables, if:", async () => {
    const c = await compileFixture("ranged");
    expect(c.package.version).toBe("2.0");
    expect(c.subpackages.map((s) => s.name)).toEqual([
      "py3.10-tools",
      "py3.11-tools",
      "py3.12-tools",
      "py3-supported-tools-x86-only",
    ]);
    const py310 = c.subpackages[0]!;
    expect(py310.description).toBe("tools for python 3.10");
    expect(py310.dependencies).toEqual({
      runtime: ["python-3.10"],
      provides: ["py3-tools"],
      replaces: [],
      providerPriority: 310,
    });
    expect(py310.pipeline).toEqual([
      {
        name: "install for 3.10",
        origin: "subpackages[0].pipeline[0]",
        runs: "mkdir -p /home/build/melange-out/py3.10-tools/usr/lib/python3.10\necho py3.10-tools py3.10-tools > /home/build/melange-out/py3.10-tools/usr/lib/python3.10/NAME\n",
        workingDirectory: "/home/build",
        environment: {},
      },
    ]);
    expect(py310.test!.pipeline[0]!.runs).toBe("python3.10 -c 'import tools'");
    expect(py310.test!.environment.contents!.packages).toEqual(["py3.10-tools"]);
    expect(c.subpackages[3]!.pipeline[0]!.runs).toBe("echo /home/build/melange-out/py3.12-tools");

    const arm = await compileFixture("ranged", { arch: "arm64" });
    expect(arm.arch).toBe("aarch64");
    expect(arm.subpackages.map((s) => s.name)).toEqual(["py3.10-tools", "py3.11-tools", "py3.12-tools"]);
  });

  it("var-transforms follow Go regexp replacement", async () => {
    const c = await compileFixture("var-transforms");
    expect(c.vars).toEqual({
      "base-url": "https://github.com/unicode-org/icu/releases/download",
      "dash-version": "74-2",
      "go-template-gotcha": "v-v",
      tag: "release-74-2",
      "underscore-version": "74_2_1",
    });
    expect(c.pipeline[0]!.with!.uri).toBe(
      "https://github.com/unicode-org/icu/releases/download/release-74-2/icu4c-74_2_1-src.tgz",
    );
    expect(c.pipeline[0]!.with!["strip-components"]).toBe("2");
    expect(c.pipeline[1]!.runs).toBe("echo 74-2 v-v");
  });

  it("if:, working-directory, environment and needs per architecture", async () => {
    const x86 = await compileFixture("conditions");
    expect(x86.pipeline.map((s) => [s.name, s.workingDirectory, s.environment, s.runs])).toEqual([
      ["x86 only", "/home/build", {}, "nasm --version"],
      ["grouped", "/home/build/src", { CFLAGS: "-O2", FLAVOUR: "full" }, "echo in src"],
      ["grouped", "/opt/other", { CFLAGS: "-O3", FLAVOUR: "full" }, "echo elsewhere"],
      [
        "grouped",
        "/home/build/src",
        { CFLAGS: "-O2", FLAVOUR: "full" },
        'make -C "." -j"$(nproc)" V=1 FLAVOUR=full \n',
      ],
    ]);
    expect(x86.environment.contents!.packages).toEqual(["make", "nasm"]);
    expect(x86.supportsArch).toBe(true);
    expect(x86.package.targetArchitecture).toEqual(["x86_64", "aarch64"]);

    const arm = await compileFixture("conditions", { arch: "aarch64" });
    expect(byName(arm.pipeline)).toEqual(["arm only", "grouped", "grouped", "grouped", "grouped"]);
    expect(arm.pipeline[3]!.runs).toBe("echo not on x86");
    expect(arm.environment.contents!.packages).toEqual(["make"]);
    expect((await compileFixture("conditions", { arch: "armv7" })).supportsArch).toBe(false);
  });

  it("split pipelines in the main package compile, and refuse when they run (as melange's do)", () => {
    const c = compileRecipe(
      parse("package: {name: p, version: 1.0.0}\npipeline:\n  - uses: split/static\n  - uses: split/locales\n"),
      { arch: "x86_64" },
    );
    expect(c.pipeline.map((s) => s.name)).toEqual(["split/static", "split/locales"]);
    for (const s of c.pipeline) expect(s.runs).toContain("a package cannot split files from itself");
  });

  it("a .deb bootstrap: native fetch and deb-unpack steps, caller-provided variables", async () => {
    const file = join(FIXTURES, "deb-bootstrap/recipe.yaml");
    // The mirror stays symbolic unless the caller resolves it.
    const symbolic = await compileFixture("deb-bootstrap");
    expect(symbolic.pipeline[0]!.with!.uri).toBe("mirror://debian/pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb");
    const c = await compileFixture("deb-bootstrap", { variables: { "mirror.debian": "http://deb.example/debian" } });
    expect(c.package.version).toBe("4.3");
    expect(c.package.targetArchitecture).toEqual(["x86_64"]);
    expect(c.pipeline.map((s) => [s.native, s.with?.uri ?? s.with?.deb])).toEqual([
      ["fetch", "http://deb.example/debian/pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb"],
      ["deb-unpack", "make_4.3-4.1_amd64.deb"],
      [undefined, undefined],
    ]);
    expect(c.pipeline[0]!.with!.extract).toBe("false");
    expect(c.pipeline[1]!.with).toEqual({
      deb: "make_4.3-4.1_amd64.deb",
      directory: "/home/build/melange-out/make",
      exclude: "",
    });
    expect(c.environment.contents!.packages).toEqual([]);
    const l = parse(readFileSync(file, "utf8").replace("${{mirror.debian}}", "${{mirorr.debian}}"), file);
    expect(checkRecipe(l, { arch: "x86_64" }).problems).toEqual([
      { file, line: 19, col: 12, path: "pipeline[0].with.uri", message: "undefined variable ${{mirorr.debian}}" },
    ]);
  });

  it("user pipeline directories extend and override the built-ins", async () => {
    const c = await compileFixture("user-pipelines");
    expect(c.pipeline.map((s) => [s.name, s.uses, s.runs])).toEqual([
      ["custom/greet", "custom/greet", 'for i in $(seq 2); do\n  echo "hello, world from hello"\ndone\n'],
      ["nested", "custom/greet", 'echo "still see world"'],
      ["autoconf/make", "autoconf/make", 'make -C "." -j"$(nproc)" V=1  \n'],
      ["split/manpages", "split/manpages", "echo site manpages /home/build/melange-out/hello"],
    ]);
    expect(c.subpackages[0]!.pipeline[0]!.runs).toBe("echo site manpages /home/build/melange-out/hello-doc");
    expect(c.environment.contents!.packages).toEqual(["coreutils", "make"]);
    const dir = join(FIXTURES, "user-pipelines");
    expect(lines(dir, checkRecipe(await readRecipe(join(dir, "recipe.yaml")), { arch: "x86_64" }).problems)).toEqual([
      'recipe.yaml:10:11: pipeline[0].uses: unknown pipeline "custom/greet": not built in nor in a --pipeline-dir',
    ]);
  });
});

describe("invalid recipes: every problem, with file:line:col", () => {
  const cases = readdirSync(FIXTURES)
    .filter((d) => d.startsWith("invalid-"))
    .sort();
  it("has the cases", () => {
    expect(cases).toEqual(
      expect.arrayContaining([
        "invalid-yaml",
        "invalid-unknown-keys",
        "invalid-name",
        "invalid-version",
        "invalid-unknown-uses",
        "invalid-unknown-input",
        "invalid-missing-input",
        "invalid-undefined-variable",
        "invalid-if",
        "invalid-duplicate-subpackage",
        "invalid-range",
      ]),
    );
  });
  for (const name of cases) {
    it(name, async () => {
      const dir = join(FIXTURES, name);
      const file = join(dir, "recipe.yaml");
      let err: unknown;
      try {
        await loadRecipe(file, fixtureOptions(name));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe("INVALID_CONFIG");
      const got = lines(dir, (err as ConfigError).problems);
      const golden = join(dir, "expected-problems.txt");
      if (process.env.UPDATE_GOLDEN) writeFileSync(golden, `${got.join("\n")}\n`);
      expect(got).toEqual(readFileSync(golden, "utf8").trimEnd().split("\n"));
      // The error message is the same list, one problem per line.
      expect((err as ConfigError).message.split("\n")).toHaveLength(got.length);
    });
  }
});

describe("checks and semantics", () => {
  it("reads YAML scalars as melange does: 1.10 stays 1.10", () => {
    const l = parse(
      "package: {name: p, version: 1.10}\nvars: {v: 2.50, 3.10: x}\npipeline:\n  - uses: autoconf/make\n    with: {opts: 0.20, dir: true}\n    environment: {N: 1.0}\n",
    );
    expect(l.recipe.package.version).toBe("1.10");
    expect(l.recipe.vars).toEqual({ v: "2.50", "3.10": "x" });
    const c = compileRecipe(l, { arch: "x86_64" });
    expect(c.package.fullVersion).toBe("1.10-r0");
    expect(c.pipeline[0]!.runs).toBe('make -C "true" -j"$(nproc)" V=1 0.20 \n');
    expect(c.pipeline[0]!.environment).toEqual({ N: "1.0" });
  });

  it("vars may use package.* and each other; cycles are reported", () => {
    const c = compileRecipe(
      parse("package: {name: p, version: 1.2.3}\nvars:\n  b: ${{vars.a}}-b\n  a: ${{package.name}}-a\n"),
      { arch: "x86_64" },
    );
    expect(c.vars).toEqual({ a: "p-a", b: "p-a-b" });
    expect(problemsOf("package: {name: p, version: 1.2.3}\nvars:\n  a: ${{vars.b}}\n  b: ${{vars.a}}\n")).toEqual([
      "inline.yaml:3:6: vars.a: variable vars.a refers to itself (vars.a → vars.b → vars.a)",
    ]);
  });

  it("melange build options: options.NAME.enabled, vars and packages", () => {
    const text = [
      "package: {name: p, version: 1.0.0}",
      "environment: {contents: {packages: [a, b]}}",
      "vars: {mode: normal}",
      "options:",
      "  bootstrap:",
      "    vars: {mode: bootstrap}",
      "    environment: {contents: {packages: {add: [c], remove: [b]}}}",
      "pipeline:",
      "  - runs: echo ${{vars.mode}} ${{options.bootstrap.enabled}}",
    ].join("\n");
    const off = compileRecipe(parse(text), { arch: "x86_64" });
    expect(off.pipeline[0]!.runs).toBe("echo normal false");
    expect(off.environment.contents!.packages).toEqual(["a", "b"]);
    const on = compileRecipe(parse(text), { arch: "x86_64", buildOptions: ["bootstrap"] });
    expect(on.pipeline[0]!.runs).toBe("echo bootstrap true");
    expect(on.environment.contents!.packages).toEqual(["a", "c"]);
    expect(() => compileRecipe(parse(text), { arch: "x86_64", buildOptions: ["nope"] })).toThrow(
      'inline.yaml: options: unknown build option "nope" (the recipe defines bootstrap)',
    );
  });

  it("named pipelines that use each other, cycles and assertions", () => {
    const dir = join(tmp, "pipes");
    mkdirSync(join(dir, "c"), { recursive: true });
    writeFileSync(
      join(dir, "c/outer.yaml"),
      "inputs:\n  msg: {default: hi}\npipeline:\n  - uses: c/inner\n    with:\n      text: ${{inputs.msg}} ${{package.name}}\n",
    );
    writeFileSync(
      join(dir, "c/inner.yaml"),
      "needs: {packages: [inner-tool]}\ninputs:\n  text: {required: true}\npipeline:\n  - runs: echo ${{inputs.text}}\n",
    );
    writeFileSync(join(dir, "c/loop-a.yaml"), "pipeline:\n  - uses: c/loop-b\n");
    writeFileSync(join(dir, "c/loop-b.yaml"), "pipeline:\n  - uses: c/loop-a\n");
    const opts = { arch: "x86_64", pipelines: loadPipelines([dir]) };
    const c = compileRecipe(
      parse("package: {name: p, version: 1.0.0}\npipeline:\n  - uses: c/outer\n    with: {msg: hello}\n"),
      opts,
    );
    expect(c.pipeline.map((s) => [s.name, s.uses, s.runs, s.origin])).toEqual([
      ["c/outer", "c/inner", "echo hello p", "pipeline[0] › c/outer pipeline[0] › c/inner pipeline[0]"],
    ]);
    expect(c.environment.contents!.packages).toEqual(["inner-tool"]);
    expect(problemsOf("package: {name: p, version: 1.0.0}\npipeline:\n  - uses: c/loop-a\n", opts)).toEqual([
      `inline.yaml:3:5: pipeline[0]: pipeline "c/loop-a" uses itself (c/loop-a → c/loop-b → c/loop-a) (in pipeline "c/loop-b" at pipeline[0].uses, ${join(dir, "c/loop-b.yaml")}:2:11)`,
    ]);
    expect(
      problemsOf(
        "package: {name: p, version: 1.0.0}\npipeline:\n  - assertions: {required-steps: 2}\n    pipeline:\n      - runs: a\n      - if: \"'a' == 'b'\"\n        runs: b\n",
      ),
    ).toEqual([
      "inline.yaml:3:34: pipeline[0].assertions.required-steps: assertion fails: 2 steps required, 1 of 2 have a true if:",
    ]);
  });

  it("a step that spells out its pipeline ignores uses (compiled recipes), with a warning", () => {
    const l = parse(
      "package: {name: p, version: 1.0.0, description: d, copyright: [{license: MIT}]}\npipeline:\n  - uses: fetch\n    pipeline:\n      - runs: echo inline\n",
    );
    const { problems, warnings } = checkRecipe(l, { arch: "x86_64" });
    expect(problems).toEqual([]);
    expect(lines(".", warnings)).toEqual([
      'inline.yaml:3:11: pipeline[0].uses: uses "fetch" is ignored: the step spells out its own pipeline',
    ]);
    expect(compileRecipe(l, { arch: "x86_64" }).pipeline.map((s) => s.runs)).toEqual(["echo inline"]);
  });

  it("warns about a missing license or description, and patches missing from the source dir", async () => {
    const src = join(tmp, "src");
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, "present.patch"), "");
    const l = parse(
      "package: {name: p, version: 1.0.0}\npipeline:\n  - uses: patch\n    with: {patches: present.patch missing.patch}\n",
    );
    expect(lines(".", checkRecipe(l, { arch: "x86_64", sourceDir: src }).warnings)).toEqual([
      "inline.yaml:1:10: package: no license: set package.copyright[].license",
      "inline.yaml:1:10: package: no description: set package.description",
      `inline.yaml:4:21: pipeline[0].with.patches: patch "missing.patch" is not in the source directory ${src}`,
    ]);
    const loaded = await loadRecipe(join(FIXTURES, "zlib/recipe.yaml"), { arch: "x86_64" });
    expect(loaded.warnings).toEqual([]);
  });

  it("checks copyright entries and dependency syntax", () => {
    expect(
      problemsOf(
        "package:\n  name: p\n  version: 1.0.0\n  copyright:\n    - paths: ['*']\n    - license: MIT\n      operator: AND\n      licenses: [{license: BSD-3-Clause}]\n  dependencies:\n    provides: ['p=']\n    provider-priority: high\n",
      ),
    ).toEqual([
      "inline.yaml:5:7: package.copyright[0]: expected license (or operator with licenses)",
      "inline.yaml:6:7: package.copyright[1]: either license or operator/licenses, not both",
      `inline.yaml:10:16: package.dependencies.provides[0]: invalid dependency "p=": "" is not a valid apk version; expected [!]name[@tag][op version]`,
      'inline.yaml:11:24: package.dependencies.provider-priority: expected an integer, got "high"',
    ]);
  });

  it("builds a license expression like melange", () => {
    const c = compileRecipe(
      parse(
        "package:\n  name: p\n  version: 1.0.0\n  copyright:\n    - license: MIT\n    - operator: OR\n      licenses: [{license: Apache-2.0}, {license: GPL-2.0-only}]\n",
      ),
      { arch: "x86_64" },
    );
    expect(c.package.license).toBe("MIT AND (Apache-2.0 OR GPL-2.0-only)");
  });

  it("rejects an unknown architecture", () => {
    expect(() => compileRecipe(parse("package: {name: p, version: 1.0.0}\n"), { arch: "mips" })).toThrow(
      'inline.yaml: unknown architecture "mips"',
    );
  });

  it("compiles a plain Recipe object, reporting without positions", () => {
    expect(() =>
      compileRecipe({ package: { name: "p", version: "1.0.0" }, pipeline: [{ runs: "${{x}}" }] }, { arch: "x86_64" }),
    ).toThrow("<recipe>: pipeline[0].runs: undefined variable ${{x}}");
  });
});

describe("recipeHash and package-version", () => {
  it("is deterministic and changes with the resolved recipe", async () => {
    const a = await compileFixture("zlib");
    const b = await compileFixture("zlib");
    expect(recipeHash(a)).toBe(recipeHash(b));
    expect(recipeHash(a)).toMatch(/^[0-9a-f]{64}$/);
    const arm = await compileFixture("zlib", { arch: "aarch64" });
    expect(recipeHash(arm)).not.toBe(recipeHash(a));
    const bumped = structuredClone(a);
    bumped.package.epoch = 3;
    expect(recipeHash(bumped)).not.toBe(recipeHash(a));
    // Key order does not matter.
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[1,{"y":2,"z":1}]},"b":1}',
    );
  });

  it("prints NAME-VERSION-rEPOCH", async () => {
    expect(recipePackageVersion((await readRecipe(join(FIXTURES, "zlib/recipe.yaml"))).recipe)).toBe("zlib-1.3.1-r2");
    expect(recipePackageVersion(parse("package: {name: p, version: 1.10}\n").recipe)).toBe("p-1.10-r0");
  });

  it("compiles many recipes against one shared pipeline registry, each to its own version and the same steps", () => {
    // How fast this is belongs to `npm run bench` (group build), not to a timed test.
    const pipelines = loadPipelines();
    const text = readFileSync(join(FIXTURES, "zlib/recipe.yaml"), "utf8");
    const first = compileRecipe(parse(text), { arch: "x86_64", pipelines });
    for (let i = 0; i < 100; i++) {
      const c = compileRecipe(parse(text.replace("version: 1.3.1", `version: 1.3.${i}`)), {
        arch: "x86_64",
        pipelines,
      });
      expect(c.package.version).toBe(`1.3.${i}`);
      expect(c.pipeline.map((s) => s.name)).toEqual(first.pipeline.map((s) => s.name));
    }
  });
});

describe("recipes built to exhaust the compiler, or to reach outside the workspace", () => {
  it("bounds each substituted value and all of them together", () => {
    const doubling = [
      "vars:",
      "  v0: xxxxxxxxxx",
      ...Array.from({ length: 39 }, (_, i) => `  v${i + 1}: \${{vars.v${i}}}\${{vars.v${i}}}`),
    ].join("\n");
    expect(
      problemsOf(`package: {name: p, version: 1.0.0}\n${doubling}\npipeline:\n  - runs: echo \${{vars.v39}}\n`),
    ).toEqual([
      "inline.yaml:20:8: vars.v17: longer than 1048576 characters once its ${{ }} variables are substituted (variables that refer to each other multiply in size)",
    ]);
    // Each value within bounds, but 100 of them: the total is bounded too.
    const big = `vars:\n  big: ${"y".repeat(1000)}\n  bigger: ${"${{vars.big}}".repeat(1000)}\n`;
    const steps = Array.from({ length: 100 }, () => "  - runs: echo ${{vars.bigger}}").join("\n");
    expect(problemsOf(`package: {name: p, version: 1.0.0}\n${big}pipeline:\n${steps}\n`)).toEqual([
      expect.stringMatching(/^inline\.yaml:\d+:\d+: pipeline\[\d+\]\.runs: substituted values exceed 64 MiB in total/),
    ]);
    // var-transforms that multiply their input
    const transforms = Array.from(
      { length: 20 },
      (_, i) => `  - {from: "\${{vars.${i ? `t${i - 1}` : "a"}}}", match: "(.*)", replace: "$1$1$1", to: t${i}}`,
    ).join("\n");
    expect(
      problemsOf(
        `package: {name: p, version: 1.0.0}\nvars:\n  a: ${"z".repeat(100)}\nvar-transforms:\n${transforms}\npipeline:\n  - runs: echo \${{vars.t19}}\n`,
      ),
    ).toEqual([
      expect.stringMatching(
        /^inline\.yaml:\d+:\d+: var-transforms\[8\]\.replace: the replacement result is longer than 1048576 characters$/,
      ),
    ]);
  });

  it("kiln's own steps must stay in the workspace: working-directory, fetch directory, deb-unpack paths", () => {
    const sha = "a".repeat(64);
    expect(
      problemsOf(
        `package: {name: p, version: 1.0.0}\npipeline:\n  - working-directory: /opt\n    uses: fetch\n    with: {uri: "https://example.invalid/x.tar.gz", expected-sha256: ${sha}}\n`,
      ),
    ).toEqual([
      "inline.yaml:3:24: pipeline[0].working-directory: working-directory /opt is outside the workspace /home/build: fetch runs on the host, inside the workspace only (give a relative path or one under /home/build)",
    ]);
    // Inherited from the enclosing step, and through ../
    expect(
      problemsOf(
        `package: {name: p, version: 1.0.0}\npipeline:\n  - working-directory: ../..\n    pipeline:\n      - uses: fetch\n        with: {uri: "https://example.invalid/x.tar.gz", expected-sha256: ${sha}}\n`,
      ),
    ).toEqual([
      expect.stringMatching(
        /^inline\.yaml:5:9: pipeline\[0\]\.pipeline\[0\]\.working-directory: working-directory \/ is outside the workspace/,
      ),
    ]);
    expect(
      problemsOf(
        `package: {name: p, version: 1.0.0}\npipeline:\n  - uses: fetch\n    with: {uri: "https://example.invalid/x.tar.gz", expected-sha256: ${sha}, directory: /etc}\n`,
      ),
    ).toEqual([
      expect.stringMatching(
        /^inline\.yaml:4:\d+: pipeline\[0\]\.with\.directory: directory "\/etc" is outside the workspace/,
      ),
    ]);
    expect(
      problemsOf(
        "package: {name: p, version: 1.0.0}\npipeline:\n  - uses: deb/unpack\n    with: {deb: ../../../etc/x.deb, directory: /usr}\n",
      ),
    ).toEqual([
      expect.stringMatching(
        /^inline\.yaml:4:\d+: pipeline\[0\]\.with\.deb: deb "\.\.\/\.\.\/\.\.\/etc\/x\.deb" is outside the workspace/,
      ),
      expect.stringMatching(
        /^inline\.yaml:4:\d+: pipeline\[0\]\.with\.directory: directory "\/usr" is outside the workspace/,
      ),
    ]);
    // Shell steps may use guest paths, as in melange; relative and workspace paths are fine for kiln's steps.
    expect(
      problemsOf(
        `package: {name: p, version: 1.0.0}\npipeline:\n  - working-directory: /opt\n    runs: ls\n  - working-directory: src\n    uses: fetch\n    with: {uri: "https://example.invalid/x.tar.gz", expected-sha256: ${sha}, directory: /home/build/x}\n`,
      ),
    ).toEqual([]);
  });

  it("the patch check never looks outside the source directory", () => {
    const src = join(tmp, "patch-src");
    mkdirSync(src, { recursive: true });
    writeFileSync(join(tmp, "outside.patch"), "");
    symlinkSync(tmp, join(src, "up"));
    const l = parse(
      "package: {name: p, version: 1.0.0, description: d, copyright: [{license: MIT}]}\npipeline:\n  - uses: patch\n    with: {patches: ../outside.patch up/outside.patch up/nothing.patch /etc/passwd gone/x.patch}\n",
    );
    // Only names inside it are looked at: an existing and a missing file outside get the same answer (none).
    // (/etc/passwd is read as the source directory's etc/passwd, which is missing.)
    expect(lines(".", checkRecipe(l, { arch: "x86_64", sourceDir: src }).warnings)).toEqual([
      `inline.yaml:4:21: pipeline[0].with.patches: patch "/etc/passwd" is not in the source directory ${src}`,
      `inline.yaml:4:21: pipeline[0].with.patches: patch "gone/x.patch" is not in the source directory ${src}`,
    ]);
  });

  it("uses: names a pipeline, never a path", () => {
    expect(
      problemsOf(
        "package: {name: p, version: 1.0.0}\npipeline:\n  - uses: ../../../../etc/passwd\n  - uses: /etc/passwd\n",
      ),
    ).toEqual([
      'inline.yaml:3:11: pipeline[0].uses: unknown pipeline "../../../../etc/passwd": not built in nor in a --pipeline-dir',
      'inline.yaml:4:11: pipeline[1].uses: unknown pipeline "/etc/passwd": not built in nor in a --pipeline-dir',
    ]);
  });

  it("names that would not fit in a file name", () => {
    expect(problemsOf(`package: {name: ${"n".repeat(250)}, version: 1.0.0}\n`)).toEqual([
      expect.stringMatching(/^inline\.yaml:1:17: package\.name: "n{40}…" with its version is too long for a file name/),
    ]);
  });
});
