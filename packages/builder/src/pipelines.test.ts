import { execFileSync } from "node:child_process";
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
import { ConfigError } from "@kiln/image";
import { evaluateCondition } from "./conditions.js";
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
    // Every input of the fetch pipeline reaches the native step under the same name.
    expect(Object.keys(fetch.pipeline[0]!.with!).sort()).toEqual(Object.keys(fetch.inputs).sort());
    expect(Object.keys(NATIVE_PIPELINES["kiln:fetch"]!.inputs).sort()).toEqual(Object.keys(fetch.inputs).sort());
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
    writeFileSync(join(d, "oops.yaml"), "inputs:\n  x:\n    defualt: 1\npipeline:\n  - runs: true\n");
    const reg = loadPipelines([d]);
    expect(reg.has("oops")).toBe(true);
    let err: unknown;
    try {
      reg.get("oops");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(`${join(d, "oops.yaml")}:3:5: inputs.x.defualt: unknown key "defualt"`);
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
    ...Object.entries(extra),
  ]);
  for (const [k, i] of Object.entries(def.inputs))
    vars.set(`inputs.${k}`, inputs[k] ?? substitute(i.default ?? "", vars));
  for (const step of def.pipeline) {
    if (step.if && !evaluateCondition(substitute(step.if, vars, true))) continue;
    execFileSync("/bin/sh", ["-c", `set -e\n${substitute(String(step.runs ?? ""), vars)}`], {
      cwd: root,
      stdio: "pipe",
    });
  }
}

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
    // In the main package itself (destdir = contextdir) the if: skips the move.
    const r2 = scratch();
    populate(join(r2, "out/p"), ["usr/share/man/man1/p.1"]);
    run(reg.get("split/manpages")!, r2, "p", "p");
    expect(tree(join(r2, "out/p"))).toEqual(["usr/share/man/man1/p.1"]);
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

  it.skipIf(!existsSync("/usr/bin/gcc") || !existsSync("/usr/bin/objcopy"))(
    "strip and split/debug handle ELF files only",
    () => {
      const root = scratch();
      const bin = join(root, "out/p/usr/bin");
      mkdirSync(bin, { recursive: true });
      writeFileSync(join(root, "m.c"), "int main(void){return 0;}\n");
      execFileSync("gcc", ["-g", "-o", join(bin, "m"), join(root, "m.c")]);
      writeFileSync(join(bin, "script"), "#!/bin/sh\necho hi\n");
      chmodSync(join(bin, "script"), 0o755);
      const sections = () => execFileSync("objdump", ["-h", join(bin, "m")], { encoding: "utf8" });
      expect(sections()).toContain(".debug_info");
      run(reg.get("split/debug")!, root, "p", "p-dbg");
      expect(tree(join(root, "out/p-dbg"))).toEqual(["usr/lib/debug/usr/bin/m.debug"]);
      expect(sections()).not.toContain(".debug_info");
      expect(sections()).toContain(".gnu_debuglink");
      run(reg.get("strip")!, root, "p", "p");
      expect(readFileSync(join(bin, "script"), "utf8")).toBe("#!/bin/sh\necho hi\n");
      execFileSync(join(bin, "m"));
    },
  );
});
