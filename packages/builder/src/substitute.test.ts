import { describe, expect, it } from "vitest";
import {
  archVariables,
  goRegexp,
  goReplaceAll,
  packageVariables,
  quoteString,
  resolveWorkdir,
  scanReferences,
  substitute,
  substituteCollect,
  SubstitutionError,
  subpackageVariables,
} from "./substitute.js";

describe("${{ }} substitution", () => {
  const vars = new Map([
    ["package.name", "zlib"],
    ["vars.x", "${{package.name}}"],
  ]);

  it("replaces references, with or without inner spaces, in one pass", () => {
    expect(substitute("a ${{package.name}} b ${{ package.name }} c", vars)).toBe("a zlib b zlib c");
    // The value is inserted as is, not substituted again (melange's single pass).
    expect(substitute("${{vars.x}}", vars)).toBe("${{package.name}}");
    expect(substitute("no refs, $HOME ${HOME} $(x) {{ }}", vars)).toBe("no refs, $HOME ${HOME} $(x) {{ }}");
  });

  it("names every undefined variable", () => {
    expect(() => substitute("${{a.b}} ${{package.name}} ${{c}}", vars)).toThrow(
      new SubstitutionError("undefined variables ${{a.b}}, ${{c}}", ["a.b", "c"]),
    );
    const r = substituteCollect("x ${{nope}}", vars);
    expect(r.undefined).toEqual([{ name: "nope", index: 2, text: "${{nope}}" }]);
    expect(r.value).toBe("x ${{nope}}");
  });

  it("flags malformed references", () => {
    expect(scanReferences("${{ a b }} ${{ok}}")).toEqual({
      refs: [{ name: "ok", index: 11, text: "${{ok}}" }],
      malformed: [0],
    });
    expect(() => substitute("${{ bad name }}", vars)).toThrow("malformed variable reference at offset 0");
  });

  it("quotes values for if: expressions", () => {
    expect(substitute("${{package.name}} == 'zlib'", vars, true)).toBe(`"zlib" == 'zlib'`);
    expect(quoteString('a"b\\c\n')).toBe('"a\\"b\\\\c\\n"');
  });
});

describe("the variable table", () => {
  it("has melange's package and target variables", () => {
    const v = packageVariables({
      name: "zlib",
      version: "1.3.1",
      epoch: 2,
      description: "d",
      packageNames: ["zlib", "zlib-dev"],
    });
    expect(Object.fromEntries(v)).toEqual({
      "package.name": "zlib",
      "package.version": "1.3.1",
      "package.epoch": "2",
      "package.full-version": "1.3.1-r2",
      "package.description": "d",
      "package.srcdir": "/home/build",
      "targets.outdir": "/home/build/melange-out",
      "targets.destdir": "/home/build/melange-out/zlib",
      "targets.contextdir": "/home/build/melange-out/zlib",
      "context.name": "zlib",
      "targets.package.zlib": "/home/build/melange-out/zlib",
      "targets.package.zlib-dev": "/home/build/melange-out/zlib-dev",
    });
    const sub = subpackageVariables(v, "zlib-dev");
    expect(sub.get("targets.destdir")).toBe("/home/build/melange-out/zlib");
    expect(sub.get("targets.contextdir")).toBe("/home/build/melange-out/zlib-dev");
    expect(sub.get("targets.subpkgdir")).toBe("/home/build/melange-out/zlib-dev");
    expect(sub.get("subpkg.name")).toBe("zlib-dev");
    expect(sub.get("context.name")).toBe("zlib-dev");
    expect(v.has("targets.subpkgdir")).toBe(false);
  });

  it.each([
    ["x86_64", "amd64", "x86_64-pc-linux-gnu", "x86_64-unknown-linux-gnu"],
    ["aarch64", "arm64", "aarch64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"],
    ["armv7", "arm/v7", "armv7l-unknown-linux-gnueabihf", "armv7-unknown-linux-gnueabihf"],
    ["ppc64le", "ppc64le", "powerpc64le-unknown-linux-gnu", "powerpc64le-unknown-linux-gnu"],
    ["riscv64", "riscv64", "riscv64-unknown-linux-gnu", "riscv64gc-unknown-linux-gnu"],
  ])("%s triplets", (arch, goarch, gnu, rust) => {
    const v = archVariables(arch);
    expect(v.get("build.arch")).toBe(arch);
    expect(v.get("build.goarch")).toBe(goarch);
    expect(v.get("host.triplet.gnu")).toBe(gnu);
    expect(v.get("cross.triplet.gnu.glibc")).toBe(gnu);
    expect(v.get("host.triplet.rust")).toBe(rust);
    expect(v.get("cross.triplet.gnu.musl")).toBe(gnu.replace(/gnu(eabihf)?$/, "musl$1"));
  });

  it("resolves working directories against the workspace", () => {
    expect(resolveWorkdir(undefined)).toBe("/home/build");
    expect(resolveWorkdir("src/lib")).toBe("/home/build/src/lib");
    expect(resolveWorkdir("/opt/x/../y")).toBe("/opt/y");
  });
});

describe("Go regexp replacement (var-transforms)", () => {
  const rep = (pattern: string, input: string, template: string) => goReplaceAll(goRegexp(pattern), input, template);

  it.each([
    ["\\.", "1.2.3", "_", "1_2_3"],
    ["^(\\d+)\\.(\\d+)\\.(\\d+)$", "1.2.3", "$1$2-${3}", "12-3"],
    ["(?P<major>\\d+)\\.(?P<minor>\\d+)", "10.4", "${minor}.$major", "4.10"],
    // Go reads the longest name: $1x is group "1x", which does not exist.
    ["(\\d+)", "a1b", "<$1x>", "a<>b"],
    ["(\\d+)", "a1b", "<${1}x>", "a<1x>b"],
    ["b", "abc", "$$", "a$c"],
    ["b", "abc", "$", "a$c"],
    ["(?i)ABC", "xabcx", "-", "x-x"],
    ["[[:digit:]]+", "v12.3", "N", "vN.N"],
    ["a*", "baaac", "-", "-b-c-"],
    ["", "abc", "-", "-a-b-c-"],
    ["x*", "", "-", "-"],
    ["^v", "v1.0", "", "1.0"],
  ])("%s on %s with %s", (pattern, input, template, want) => {
    expect(rep(pattern, input, template)).toBe(want);
  });

  it("rejects what RE2 would not compile", () => {
    expect(() => goRegexp("(unclosed")).toThrow('invalid regular expression "(unclosed"');
    expect(() => goRegexp("[[:nope:]]")).toThrow("unknown character class [:nope:]");
  });
});
