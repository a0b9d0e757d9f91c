import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, formatProblem } from "@kiln/image";
import { evaluateCondition } from "./conditions.js";
import { checkRecipe, compileRecipe, parseRecipe, type CompiledRecipe } from "./compile.js";
import { BUILTIN_PIPELINE_DIR, loadPipelines, NATIVE_PIPELINES, type PipelineDefinition } from "./pipelines.js";
import { substitute } from "./substitute.js";

const fixtures = join(import.meta.dirname, "../../../test/fixtures/recipes");
const tmp = mkdtempSync(join(tmpdir(), "kiln-pipelines-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const REQUIRED = [
  "fetch",
  "patch",
  "strip",
  "autoconf/configure",
  "autoconf/make",
  "autoconf/make-install",
  "cmake/configure",
  "cmake/build",
  "cmake/install",
  "meson/configure",
  "meson/compile",
  "meson/install",
  "split/dev",
  "split/static",
  "split/manpages",
  "split/alldocs",
  "split/infodir",
  "split/locales",
  "split/debug",
  "split/lib",
  "split/bin",
  "deb/unpack",
];

describe("built-in pipelines", () => {
  const reg = loadPipelines();

  it("ships every required pipeline, each valid", () => {
    for (const name of REQUIRED) {
      const def = reg.get(name);
      expect(def, name).toBeDefined();
      expect(def!.builtin).toBe(true);
      expect(def!.file).toBe(join(BUILTIN_PIPELINE_DIR, `${name}.yaml`));
      expect(def!.pipeline.length, name).toBeGreaterThan(0);
    }
    expect(reg.names()).toEqual(expect.arrayContaining([...REQUIRED, "kiln:fetch", "kiln:deb-unpack"]));
  });

  it("fetch and deb/unpack are single native steps", () => {
    const fetch = reg.get("fetch")!;
    expect(fetch.pipeline).toHaveLength(1);
    expect(fetch.pipeline[0]!.uses).toBe("kiln:fetch");
    expect(fetch.needs).toEqual([]);
    expect(fetch.inputs.uri!.required).toBe(true);
    expect(fetch.inputs.extract!.default).toBe("true");
    expect(fetch.inputs["strip-components"]!.default).toBe("1");
    expect(fetch.inputs.directory!.default).toBe(".");
    // Every input of the fetch pipeline reaches the native step under the same name, but
    // reason: a note for the reader that nothing acts on.
    const passed = Object.keys(fetch.inputs)
      .filter((k) => k !== "reason")
      .sort();
    expect(fetch.inputs.reason).toEqual({ description: expect.stringMatching(/git-checkout/), required: false });
    expect(Object.keys(fetch.pipeline[0]!.with!).sort()).toEqual(passed);
    expect(Object.keys(NATIVE_PIPELINES["kiln:fetch"]!.inputs).sort()).toEqual(passed);
    const deb = reg.get("deb/unpack")!;
    expect(deb.pipeline[0]!.uses).toBe("kiln:deb-unpack");
    expect(deb.inputs.deb!.required).toBe(true);
    expect(reg.get("kiln:deb-unpack")!.native).toBe("deb-unpack");
  });

  it("every ${{inputs.X}} a built-in uses is one of its inputs", () => {
    for (const name of REQUIRED) {
      const def = reg.get(name)!;
      const text = JSON.stringify(def.pipeline);
      for (const m of text.matchAll(/\$\{\{ *inputs\.([a-z0-9._-]+) *\}\}/g))
        expect(Object.keys(def.inputs), `${name} uses inputs.${m[1]}`).toContain(m[1]);
    }
  });
});

// What a recipe gets from the built-ins once compiled: defaults, the inputs
// melange has, and the directories steps run in.
describe("built-in pipelines as compiled into a recipe", () => {
  const RECIPE = (main: string, sub = "      - uses: strip") => `
package: {name: p, version: 1.0.0, epoch: 0, description: p, copyright: [{license: MIT}]}
pipeline:
${main}
subpackages:
  - name: p-tools
    pipeline:
${sub}
`;
  const compile = (text: string) => {
    const loaded = parseRecipe("p.yaml", text);
    expect(lintLines(loaded)).toEqual([]);
    return compileRecipe(loaded, { arch: "x86_64" });
  };
  const lintLines = (loaded: ReturnType<typeof parseRecipe>) =>
    checkRecipe(loaded, { arch: "x86_64" }).problems.map((p) => formatProblem(p));
  const steps = (c: CompiledRecipe, uses: string) => [
    ...c.pipeline.filter((s) => s.uses === uses),
    ...c.subpackages.flatMap((sp) => sp.pipeline.filter((s) => s.uses === uses)),
  ];

  it("strip: -g by default, in the main package's directory or the subpackage's", () => {
    const c = compile(RECIPE("  - uses: strip"));
    const [main, sub] = steps(c, "strip");
    expect(main!.workingDirectory).toBe("/home/build/melange-out/p");
    expect(sub!.workingDirectory).toBe("/home/build/melange-out/p-tools");
    expect(main!.runs).toContain('strip -g "$f"');
    expect(main!.runs).toContain("x86_64) want=62");
    const s2 = compile(RECIPE("  - uses: strip\n    with: {opts: --strip-all}"));
    expect(steps(s2, "strip")[0]!.runs).toContain('strip --strip-all "$f"');
  });

  it("cmake/configure builds Release with a verbose makefile; meson/install rebuilds what is stale", () => {
    const c = compile(
      RECIPE("  - uses: cmake/configure\n  - uses: cmake/build\n  - uses: cmake/install\n  - uses: meson/install"),
    );
    const configure = steps(c, "cmake/configure")[0]!.runs;
    expect(configure).toContain("-DCMAKE_BUILD_TYPE=Release");
    expect(configure).toContain("-DCMAKE_VERBOSE_MAKEFILE=ON");
    expect(configure).not.toContain("MinSizeRel");
    expect(steps(c, "meson/install")[0]!.runs).toBe('DESTDIR="/home/build/melange-out/p" meson install -C "output"\n');
  });

  it("patch.fuzz (default 2), autoconf/make-install.targets (default install), split/dev.prefix (default /usr)", () => {
    const c = compile(
      RECIPE(
        "  - uses: patch\n    with: {patches: a.patch}\n  - uses: autoconf/make-install",
        "      - uses: split/dev",
      ),
    );
    expect(steps(c, "patch")[0]!.runs).toContain("fuzz='2'");
    expect(steps(c, "autoconf/make-install")[0]!.runs).toContain(
      'make -C "." install DESTDIR="/home/build/melange-out/p" V=1',
    );
    expect(steps(c, "split/dev")[0]!.runs).toContain("p='/usr'");
    const d = compile(
      RECIPE(
        "  - uses: patch\n    with: {patches: a.patch, fuzz: 0}\n" +
          "  - uses: autoconf/make-install\n    with: {targets: install-lib install-headers}",
        "      - uses: split/dev\n        with: {prefix: /opt/p}",
      ),
    );
    expect(steps(d, "patch")[0]!.runs).toContain("fuzz='0'");
    expect(steps(d, "autoconf/make-install")[0]!.runs).toContain(
      'make -C "." install-lib install-headers DESTDIR="/home/build/melange-out/p" V=1',
    );
    expect(steps(d, "split/dev")[0]!.runs).toContain("p='/opt/p'");
  });

  it("every split/* takes `package`", () => {
    for (const name of ["alldocs", "bin", "debug", "dev", "infodir", "lib", "locales", "manpages", "static"]) {
      const c = compile(RECIPE("  - runs: true", `      - uses: split/${name}\n        with: {package: other}`));
      expect(steps(c, `split/${name}`)[0]!.runs, name).toContain('="/home/build/melange-out/other"');
    }
  });

  it("fetch takes reason and ftp:// URIs", () => {
    const sha = "a".repeat(64);
    const c = compile(
      RECIPE(
        `  - uses: fetch\n    with:\n      uri: ftp://ftp.example.invalid/pub/p-1.0.0.tar.gz\n` +
          `      expected-sha256: ${sha}\n      reason: upstream publishes no git repository`,
      ),
    );
    const f = c.pipeline.find((s) => s.native === "fetch");
    expect(f!.with).toMatchObject({ uri: "ftp://ftp.example.invalid/pub/p-1.0.0.tar.gz" });
    // Other schemes are still refused, naming the field.
    const bad = parseRecipe(
      "p.yaml",
      RECIPE(`  - uses: fetch\n    with: {uri: "gopher://example.invalid/p.tar.gz", expected-sha256: ${sha}}`),
    );
    expect(lintLines(bad).join("\n")).toMatch(
      /^p\.yaml:\d+:\d+: pipeline\[0\]\.with\.uri: uri must be an http:\/\/, https:\/\/, ftp:\/\//m,
    );
  });
});

describe("user pipeline directories", () => {
  it("extend and override the built-ins", () => {
    const reg = loadPipelines([join(fixtures, "user-pipelines/pipelines")]);
    expect(reg.get("custom/greet")!.builtin).toBe(false);
    expect(reg.get("custom/greet")!.inputs).toEqual({
      who: { description: "who to greet", required: true },
      greeting: { default: "hello", required: false },
      times: { default: "2", required: false },
    });
    expect(reg.get("split/manpages")!.title).toBe("Split manpages (site override)");
    expect(reg.get("split/dev")!.builtin).toBe(true);
    expect(reg.get("autoconf/make")!.builtin).toBe(true);
  });

  it("earlier directories win", () => {
    const a = join(tmp, "a");
    const b = join(tmp, "b");
    for (const [d, who] of [
      [a, "first"],
      [b, "second"],
    ] as const) {
      mkdirSync(join(d, "x"), { recursive: true });
      writeFileSync(join(d, "x/y.yaml"), `name: ${who}\npipeline:\n  - runs: echo ${who}\n`);
    }
    writeFileSync(join(b, "only-b.yaml"), "pipeline:\n  - runs: echo b\n");
    const reg = loadPipelines([a, b]);
    expect(reg.get("x/y")!.title).toBe("first");
    expect(reg.get("only-b")!.file).toBe(join(b, "only-b.yaml"));
  });

  it("reports an invalid pipeline file with its position, and a missing directory", () => {
    const d = join(tmp, "bad");
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "oops.yaml"), "inputs:\n  x:\n    default: [1]\npipeline:\n  - runs: true\n");
    const reg = loadPipelines([d]);
    expect(reg.has("oops")).toBe(true);
    let err: unknown;
    try {
      reg.get("oops");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(
      `${join(d, "oops.yaml")}:3:14: inputs.x.default: expected a string, number or boolean`,
    );
    expect(() => loadPipelines([join(tmp, "missing")])).toThrow(/pipeline directory: no such directory/);
  });
});

// Run a built-in's scripts with /bin/sh against a scratch tree: the guest
// paths are replaced by directories under tmp.
function run(
  def: PipelineDefinition,
  root: string,
  pkg: string,
  context: string,
  inputs: Record<string, string> = {},
  extra: Record<string, string> = {},
): void {
  const out = join(root, "out");
  const vars = new Map<string, string>([
    ["targets.outdir", out],
    ["targets.destdir", join(out, pkg)],
    ["targets.contextdir", join(out, context)],
    ["context.name", context],
    ["package.name", pkg],
    ["build.arch", HOST_ARCH],
    ...Object.entries(extra),
  ]);
  for (const [k, i] of Object.entries(def.inputs))
    vars.set(`inputs.${k}`, inputs[k] ?? substitute(i.default ?? "", vars));
  for (const step of def.pipeline) {
    if (step.if && !evaluateCondition(substitute(step.if, vars, true))) continue;
    const wd = step["working-directory"] ? substitute(step["working-directory"], vars) : root;
    mkdirSync(wd, { recursive: true });
    execFileSync("/bin/sh", ["-c", `set -e\n${substitute(String(step.runs ?? ""), vars)}`], {
      cwd: wd,
      stdio: "pipe",
    });
  }
}

/** The apk architecture of this machine, for scripts that only handle native ELF files. */
const HOST_ARCH = process.arch === "arm64" ? "aarch64" : "x86_64";

function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    if (!existsSync(d)) return;
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out.push(`${r} -> ${readlinkSync(p)}`);
      else if (st.isDirectory()) walk(p, r);
      else out.push(r);
    }
  };
  walk(dir, "");
  return out;
}

function populate(root: string, files: string[], links: Record<string, string> = {}): void {
  for (const f of files) {
    mkdirSync(dirname(join(root, f)), { recursive: true });
    writeFileSync(join(root, f), f);
  }
  for (const [l, target] of Object.entries(links)) {
    mkdirSync(dirname(join(root, l)), { recursive: true });
    symlinkSync(target, join(root, l));
  }
}

describe("built-in pipeline scripts (run with /bin/sh)", () => {
  const reg = loadPipelines();
  let n = 0;
  const scratch = () => join(tmp, `run-${n++}`);

  it("split/dev moves headers, pkg-config, static libs, *-config and .so symlinks", () => {
    const root = scratch();
    populate(
      join(root, "out/zlib"),
      [
        "usr/include/zlib.h",
        "usr/lib/pkgconfig/zlib.pc",
        "usr/lib/libz.a",
        "usr/lib/libz.so.1.3.1",
        "usr/bin/zlib-config",
        "usr/bin/minigzip",
        "usr/share/aclocal/z.m4",
        "usr/lib/cmake/z/zConfig.cmake",
        "usr/share/man/man3/zlib.3",
      ],
      { "usr/lib/libz.so": "libz.so.1.3.1", "usr/lib/libz.so.1": "libz.so.1.3.1" },
    );
    run(reg.get("split/dev")!, root, "zlib", "zlib-dev");
    expect(tree(join(root, "out/zlib"))).toEqual([
      "usr/bin/minigzip",
      "usr/lib/libz.so.1 -> libz.so.1.3.1",
      "usr/lib/libz.so.1.3.1",
      "usr/share/man/man3/zlib.3",
    ]);
    expect(tree(join(root, "out/zlib-dev"))).toEqual([
      "usr/bin/zlib-config",
      "usr/include/zlib.h",
      "usr/lib/cmake/z/zConfig.cmake",
      "usr/lib/libz.a",
      "usr/lib/libz.so -> libz.so.1.3.1",
      "usr/lib/pkgconfig/zlib.pc",
      "usr/share/aclocal/z.m4",
    ]);
  });

  it("split/dev from another package, and never from itself", () => {
    const root = scratch();
    populate(join(root, "out/libfoo"), ["usr/include/foo.h"]);
    run(reg.get("split/dev")!, root, "foo", "foo-dev", { package: "libfoo" });
    expect(tree(join(root, "out/foo-dev"))).toEqual(["usr/include/foo.h"]);
    expect(() => run(reg.get("split/dev")!, root, "foo", "foo-dev", { package: "foo-dev" })).toThrow(
      /cannot split files from itself/,
    );
  });

  it("split/manpages, split/locales, split/static, split/infodir, split/alldocs", () => {
    const root = scratch();
    populate(join(root, "out/p"), [
      "usr/share/man/man1/p.1",
      "usr/share/locale/de/LC_MESSAGES/p.mo",
      "usr/lib/libp.a",
      "lib/libq.a",
      "usr/share/info/p.info",
      "usr/share/info/dir",
      "usr/share/doc/p/README",
      "usr/bin/p",
    ]);
    run(reg.get("split/manpages")!, root, "p", "p-man");
    run(reg.get("split/locales")!, root, "p", "p-lang");
    run(reg.get("split/static")!, root, "p", "p-static");
    run(reg.get("split/infodir")!, root, "p", "p-info");
    run(reg.get("split/alldocs")!, root, "p", "p-doc");
    expect(tree(join(root, "out/p-man"))).toEqual(["usr/share/man/man1/p.1"]);
    expect(tree(join(root, "out/p-lang"))).toEqual(["usr/share/locale/de/LC_MESSAGES/p.mo"]);
    expect(tree(join(root, "out/p-static"))).toEqual(["lib/libq.a", "usr/lib/libp.a"]);
    expect(tree(join(root, "out/p-info"))).toEqual(["usr/share/info/p.info"]);
    expect(tree(join(root, "out/p-doc"))).toEqual(["usr/share/doc/p/README"]);
    expect(tree(join(root, "out/p"))).toEqual(["usr/bin/p"]);
    // In the main package itself (destdir = contextdir) each refuses, and moves nothing.
    const r2 = scratch();
    populate(join(r2, "out/p"), ["usr/share/man/man1/p.1"]);
    for (const name of ["split/manpages", "split/locales", "split/static", "split/debug", "split/alldocs"])
      expect(() => run(reg.get(name)!, r2, "p", "p"), name).toThrow(/cannot split files from itself/);
    expect(tree(join(r2, "out/p"))).toEqual(["usr/share/man/man1/p.1"]);
  });

  it("split/manpages gathers usr/share/man, usr/local/share/man and usr/man, and removes what is left empty", () => {
    const root = scratch();
    populate(join(root, "out/p"), [
      "usr/share/man/man1/p.1",
      "usr/local/share/man/man3/p.3",
      "usr/man/man5/p.conf.5",
      "usr/bin/p",
    ]);
    run(reg.get("split/manpages")!, root, "p", "p-doc");
    expect(tree(join(root, "out/p-doc"))).toEqual([
      "usr/share/man/man1/p.1",
      "usr/share/man/man3/p.3",
      "usr/share/man/man5/p.conf.5",
    ]);
    expect(tree(join(root, "out/p"))).toEqual(["usr/bin/p"]);
    expect(readdirSync(join(root, "out/p/usr")).sort()).toEqual(["bin"]);
  });

  it("split/static, split/locales, split/manpages and split/debug take `package`", () => {
    const root = scratch();
    populate(join(root, "out/libp"), [
      "usr/lib/libp.a",
      "usr/share/locale/fr/LC_MESSAGES/p.mo",
      "usr/share/man/man3/p.3",
    ]);
    populate(join(root, "out/p"), ["usr/lib/libmain.a", "usr/share/man/man1/main.1"]);
    run(reg.get("split/static")!, root, "p", "libp-static", { package: "libp" });
    run(reg.get("split/locales")!, root, "p", "libp-lang", { package: "libp" });
    run(reg.get("split/manpages")!, root, "p", "libp-doc", { package: "libp" });
    run(reg.get("split/debug")!, root, "p", "libp-dbg", { package: "libp" });
    expect(tree(join(root, "out/libp-static"))).toEqual(["usr/lib/libp.a"]);
    expect(tree(join(root, "out/libp-lang"))).toEqual(["usr/share/locale/fr/LC_MESSAGES/p.mo"]);
    expect(tree(join(root, "out/libp-doc"))).toEqual(["usr/share/man/man3/p.3"]);
    expect(tree(join(root, "out/libp"))).toEqual([]);
    // The main package was not touched.
    expect(tree(join(root, "out/p"))).toEqual(["usr/lib/libmain.a", "usr/share/man/man1/main.1"]);
    for (const name of ["split/static", "split/locales", "split/manpages", "split/debug"])
      expect(() => run(reg.get(name)!, root, "p", "libp-x", { package: "libp-x" }), name).toThrow(
        /cannot split files from itself/,
      );
  });

  it("split/dev honours prefix, moves share/cmake, and the .so links beside a prefix ending in usr", () => {
    const root = scratch();
    populate(
      join(root, "out/q"),
      [
        "opt/q/usr/include/q.h",
        "opt/q/usr/share/cmake/Q/QConfig.cmake",
        "opt/q/usr/lib/libq.so.1",
        "opt/q/lib/libr.so.2",
        "usr/include/other.h",
        "usr/lib/libq.so.1",
      ],
      { "opt/q/usr/lib/libq.so": "libq.so.1", "opt/q/lib/libr.so": "libr.so.2", "usr/lib/libq.so": "libq.so.1" },
    );
    run(reg.get("split/dev")!, root, "q", "q-dev", { prefix: "/opt/q/usr" });
    expect(tree(join(root, "out/q-dev"))).toEqual([
      "opt/q/lib/libr.so -> libr.so.2",
      "opt/q/usr/include/q.h",
      "opt/q/usr/lib/libq.so -> libq.so.1",
      "opt/q/usr/share/cmake/Q/QConfig.cmake",
      "usr/include/other.h",
    ]);
    // Outside the prefix only include directories count (found anywhere), not .so links.
    expect(tree(join(root, "out/q"))).toEqual([
      "opt/q/lib/libr.so.2",
      "opt/q/usr/lib/libq.so.1",
      "usr/lib/libq.so -> libq.so.1",
      "usr/lib/libq.so.1",
    ]);
    // The default prefix, /usr, moves usr/share/cmake too.
    const r2 = scratch();
    populate(join(r2, "out/q"), ["usr/share/cmake/Q/QConfig.cmake", "usr/lib/cmake/Q/QTargets.cmake"]);
    run(reg.get("split/dev")!, r2, "q", "q-dev");
    expect(tree(join(r2, "out/q-dev"))).toEqual(["usr/lib/cmake/Q/QTargets.cmake", "usr/share/cmake/Q/QConfig.cmake"]);
    for (const bad of ["/", "../etc", "usr/../.."])
      expect(() => run(reg.get("split/dev")!, r2, "q", "q-dev", { prefix: bad }), bad).toThrow(/prefix must name/);
  });

  it("split/bin removes the directories it leaves empty under usr/", () => {
    const root = scratch();
    populate(join(root, "out/t"), ["usr/bin/t", "usr/lib/t/plugin.so"]);
    mkdirSync(join(root, "out/t/usr/share/empty"), { recursive: true });
    run(reg.get("split/bin")!, root, "t", "t-bin");
    expect(tree(join(root, "out/t-bin"))).toEqual(["usr/bin/t"]);
    expect(tree(join(root, "out/t"))).toEqual(["usr/lib/t/plugin.so"]);
    expect(readdirSync(join(root, "out/t/usr")).sort()).toEqual(["lib"]);
  });

  it("split/lib moves versioned libraries (and their symlinks), split/bin moves usr/bin", () => {
    const root = scratch();
    populate(
      join(root, "out/p"),
      ["usr/lib/libssl.so.3", "usr/lib/libcrypto.so.3", "usr/lib/engines/x.so", "usr/bin/openssl"],
      { "usr/lib/libssl.so": "libssl.so.3" },
    );
    run(reg.get("split/lib")!, root, "p", "libssl3", { patterns: "ssl" });
    expect(tree(join(root, "out/libssl3"))).toEqual(["usr/lib/libssl.so.3"]);
    run(reg.get("split/lib")!, root, "p", "libs");
    expect(tree(join(root, "out/libs"))).toEqual(["usr/lib/libcrypto.so.3"]);
    run(reg.get("split/bin")!, root, "p", "p-bin");
    expect(tree(join(root, "out/p-bin"))).toEqual(["usr/bin/openssl"]);
    expect(tree(join(root, "out/p"))).toEqual(["usr/lib/engines/x.so", "usr/lib/libssl.so -> libssl.so.3"]);
  });

  it("autoconf/make-install drops libtool archives; patch applies a series", () => {
    const root = scratch();
    mkdirSync(join(root, "src"), { recursive: true });
    writeFileSync(
      join(root, "src/Makefile"),
      "install:\n\tmkdir -p $(DESTDIR)/usr/lib\n\ttouch $(DESTDIR)/usr/lib/libx.la $(DESTDIR)/usr/lib/libx.so.1\n",
    );
    run(reg.get("autoconf/make-install")!, root, "x", "x", { dir: "src" });
    expect(tree(join(root, "out/x"))).toEqual(["usr/lib/libx.so.1"]);

    writeFileSync(join(root, "hello.txt"), "hello\n");
    writeFileSync(join(root, "fix.patch"), "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1 @@\n-hello\n+hello, world\n");
    run(reg.get("patch")!, root, "x", "x", { patches: "fix.patch" });
    expect(readFileSync(join(root, "hello.txt"), "utf8")).toBe("hello, world\n");
    expect(() => run(reg.get("patch")!, root, "x", "x")).toThrow(/neither patches nor series/);
  });

  it("patch applies with fuzz up to its fuzz input (default 2), and checks its numbers", () => {
    const root = scratch();
    const lines = (changed: string) => ["one", "two", "three", changed, "five", "six", "seven"].join("\n") + "\n";
    // A context diff whose first and last context lines no longer match the file.
    const diff = [
      "*** a/f.txt",
      "--- b/f.txt",
      "***************",
      "*** 2,6 ****",
      "  TWO",
      "  three",
      "! four",
      "  five",
      "  SIX",
      "--- 2,6 ----",
      "  TWO",
      "  three",
      "! FOUR",
      "  five",
      "  SIX",
      "",
    ].join("\n");
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, "fix.patch"), diff);
    writeFileSync(join(root, "f.txt"), lines("four"));
    expect(() => run(reg.get("patch")!, root, "x", "x", { patches: "fix.patch", fuzz: "0" })).toThrow();
    expect(readFileSync(join(root, "f.txt"), "utf8")).toBe(lines("four"));
    // patch rejected the hunk (and said so in a .rej file).
    rmSync(join(root, "f.txt.rej"));
    run(reg.get("patch")!, root, "x", "x", { patches: "fix.patch" });
    expect(readFileSync(join(root, "f.txt"), "utf8")).toBe(lines("FOUR"));
    expect(readdirSync(root).sort()).toEqual(["f.txt", "fix.patch"]);
    // A list over several lines is still a list.
    writeFileSync(join(root, "g.txt"), "g\n");
    writeFileSync(join(root, "g.patch"), "--- a/g.txt\n+++ b/g.txt\n@@ -1 +1 @@\n-g\n+G\n");
    writeFileSync(join(root, "h.txt"), "h\n");
    writeFileSync(join(root, "h.patch"), "--- a/h.txt\n+++ b/h.txt\n@@ -1 +1 @@\n-h\n+H\n");
    run(reg.get("patch")!, root, "x", "x", { patches: "g.patch\n  h.patch\n" });
    expect(readFileSync(join(root, "g.txt"), "utf8") + readFileSync(join(root, "h.txt"), "utf8")).toBe("G\nH\n");
    expect(() => run(reg.get("patch")!, root, "x", "x", { patches: "g.patch", fuzz: "two" })).toThrow(
      /fuzz must be a whole number, got 'two'/,
    );
    expect(() => run(reg.get("patch")!, root, "x", "x", { patches: "g.patch", "strip-components": "-1" })).toThrow(
      /strip-components must be a whole number/,
    );
    expect(() => run(reg.get("patch")!, root, "x", "x", { series: "nope.series" })).toThrow(
      /series file nope.series does not exist/,
    );
  });

  it.skipIf(!existsSync("/usr/bin/gcc") || !existsSync("/usr/bin/objcopy") || !existsSync("/usr/bin/nm"))(
    "strip keeps symbols by default, works in the package it is used in, and skips foreign ELF files",
    () => {
      const root = scratch();
      mkdirSync(root, { recursive: true });
      writeFileSync(join(root, "m.c"), "int kiln_marker(void){return 0;}\nint main(void){return kiln_marker();}\n");
      const cc = (out: string, ...flags: string[]) => {
        mkdirSync(dirname(out), { recursive: true });
        execFileSync("gcc", ["-g", ...flags, "-o", out, join(root, "m.c")]);
      };
      const sections = (f: string) => execFileSync("objdump", ["-h", f], { encoding: "utf8" });
      const symbols = (f: string) => spawnSync("nm", [f], { encoding: "utf8" });
      const main = join(root, "out/p/usr/bin/m");
      const sub = join(root, "out/p-tools/usr/bin/t");
      cc(main);
      cc(sub);
      // The same executable claiming to be for another machine (e_machine, bytes 18-19).
      const foreign = join(root, "out/p-tools/usr/bin/foreign");
      const bytes = readFileSync(sub);
      bytes.writeUInt16LE(HOST_ARCH === "x86_64" ? 183 : 62, 18);
      writeFileSync(foreign, bytes);
      // In the subpackage: its own files only.
      run(reg.get("strip")!, root, "p", "p-tools");
      expect(sections(sub)).not.toContain(".debug_info");
      expect(symbols(sub).stdout).toMatch(/ T kiln_marker$/m);
      expect(readFileSync(foreign).equals(bytes)).toBe(true);
      expect(sections(main)).toContain(".debug_info");
      // opts replaces -g.
      run(reg.get("strip")!, root, "p", "p", { opts: "--strip-all" });
      expect(sections(main)).not.toContain(".debug_info");
      expect(symbols(main).stderr).toMatch(/no symbols/);
      execFileSync(main);
      execFileSync(sub);
    },
  );

  it.skipIf(!existsSync("/usr/bin/gcc") || !existsSync("/usr/bin/objcopy"))(
    "split/debug takes shared objects and position-independent executables (ET_DYN), not ET_EXEC",
    () => {
      const root = scratch();
      const bin = join(root, "out/p/usr/bin");
      mkdirSync(bin, { recursive: true });
      mkdirSync(join(root, "out/p/usr/lib"), { recursive: true });
      writeFileSync(join(root, "m.c"), "int main(void){return 0;}\n");
      execFileSync("gcc", ["-g", "-fPIE", "-pie", "-o", join(bin, "m"), join(root, "m.c")]);
      execFileSync("gcc", ["-g", "-fno-pie", "-no-pie", "-o", join(bin, "e"), join(root, "m.c")]);
      writeFileSync(join(root, "l.c"), "int l(void){return 1;}\n");
      execFileSync("gcc", ["-g", "-shared", "-fPIC", "-o", join(root, "out/p/usr/lib/libl.so.1"), join(root, "l.c")]);
      writeFileSync(join(bin, "script"), "#!/bin/sh\necho hi\n");
      chmodSync(join(bin, "script"), 0o755);
      const sections = (f: string) => execFileSync("objdump", ["-h", join(root, "out/p", f)], { encoding: "utf8" });
      const etype = (f: string) => readFileSync(join(root, "out/p", f)).readUInt16LE(16);
      expect([etype("usr/bin/m"), etype("usr/bin/e"), etype("usr/lib/libl.so.1")]).toEqual([3, 2, 3]);
      run(reg.get("split/debug")!, root, "p", "p-dbg");
      expect(tree(join(root, "out/p-dbg"))).toEqual([
        "usr/lib/debug/usr/bin/m.debug",
        "usr/lib/debug/usr/lib/libl.so.1.debug",
      ]);
      expect(sections("usr/bin/m")).not.toContain(".debug_info");
      expect(sections("usr/bin/m")).toContain(".gnu_debuglink");
      expect(sections("usr/bin/e")).toContain(".debug_info");
      expect(readFileSync(join(bin, "script"), "utf8")).toBe("#!/bin/sh\necho hi\n");
      expect(tree(join(root, "out/p"))).not.toContain(".dbg-tmp");
      execFileSync(join(bin, "m"));
    },
  );
});
