// The built-in strip, split/debug and split/manpages behave as melange's do,
// proven on a real build in the sandbox with the stage-0 toolchain: strip in
// a subpackage strips that subpackage's files (and keeps their symbols with
// its default -g), split/debug takes ET_DYN files and leaves ET_EXEC ones,
// split/manpages gathers every man directory melange gathers. And the
// guest's shell (the stage-0 busybox) parses every one of these pipelines and
// runs patch's, fuzz and a list over several lines included.

import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileRecipe, loadPipelines, parseRecipe } from "@kiln/builder";
import { bootstrapToolchain, upstreamArgs, type Bootstrap } from "./helpers/bootstrap.js";
import { kilnAsync } from "./helpers/cli.js";

let work: string;
let boot: Bootstrap;

const RECIPE = `
package:
  name: parity
  version: 1.0.0
  epoch: 0
  description: melange parity of strip and the split pipelines
  copyright:
    - license: MIT
environment:
  contents:
    packages:
      - build-base
      - busybox-links
pipeline:
  - name: compile and install
    runs: |
      d="\${{targets.destdir}}"
      mkdir -p "$d/usr/bin" "$d/usr/lib" "$d/usr/share/man/man1" "$d/usr/local/share/man/man3" "$d/usr/man/man5"
      printf '%s\\n' 'int kiln_parity_marker(void) { return 0; }' 'int main(void) { return kiln_parity_marker(); }' > m.c
      printf '%s\\n' 'int kiln_parity_lib(void) { return 1; }' > l.c
      gcc -g -O0 -fPIE -pie -o "$d/usr/bin/pie" m.c
      gcc -g -O0 -fno-pie -no-pie -o "$d/usr/bin/nopie" m.c
      gcc -g -O0 -shared -fPIC -Wl,-soname,libparity.so.1 -o "$d/usr/lib/libparity.so.1" l.c
      echo '.TH PARITY 1' > "$d/usr/share/man/man1/parity.1"
      echo '.TH PARITY 3' > "$d/usr/local/share/man/man3/parity.3"
      echo '.TH PARITY.CONF 5' > "$d/usr/man/man5/parity.conf.5"
subpackages:
  - name: parity-tools
    description: a tool built into the subpackage itself, stripped there
    pipeline:
      - runs: |
          mkdir -p "\${{targets.contextdir}}/usr/bin"
          gcc -g -O0 -o "\${{targets.contextdir}}/usr/bin/parity-tool" m.c
      - uses: strip
  - name: parity-dbg
    description: debug information
    pipeline:
      - uses: split/debug
  - name: parity-doc
    description: manuals
    pipeline:
      - uses: split/manpages
`;

/** Unpack an .apk (concatenated gzip streams) into a fresh directory. */
function unpack(apk: string): string {
  const dir = mkdtempSync(join(work, "unpacked-"));
  execFileSync("tar", ["-xzf", apk, "-C", dir], { stdio: "pipe" });
  return dir;
}

function files(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...files(dir, r));
    else if (!e.name.startsWith(".")) out.push(r);
  }
  return out.sort();
}

const sections = (f: string) =>
  execFileSync("readelf", ["-S", "-W", f], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const symbols = (f: string) => spawnSync("nm", [f], { encoding: "utf8" });
const elfType = (f: string) => readFileSync(f).readUInt16LE(16);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-parity-e2e-"));
  boot = await bootstrapToolchain();
}, 900_000);
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("strip, split/debug and split/manpages in a real build", () => {
  it("strip works in its subpackage keeping symbols; split/debug takes ET_DYN only; split/manpages takes every man dir", async () => {
    const file = join(work, "parity.yaml");
    writeFileSync(file, RECIPE);
    const out = join(work, "out");
    mkdirSync(out);
    const r = await kilnAsync(["build", file, "--out", out, ...upstreamArgs(boot)]);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const arch = join(out, "x86_64");
    const main = unpack(join(arch, "parity-1.0.0-r0.apk"));
    const tools = unpack(join(arch, "parity-tools-1.0.0-r0.apk"));
    const dbg = unpack(join(arch, "parity-dbg-1.0.0-r0.apk"));
    const doc = unpack(join(arch, "parity-doc-1.0.0-r0.apk"));

    // strip in parity-tools: its own tool lost its debug information and kept its symbol table...
    const tool = join(tools, "usr/bin/parity-tool");
    expect(sections(tool)).not.toContain(".debug_info");
    expect(symbols(tool).stdout).toMatch(/ T kiln_parity_marker$/m);
    // ...and the main package was not touched by it: the non-PIE executable keeps its debug information.
    expect(elfType(join(main, "usr/bin/nopie"))).toBe(2); // ET_EXEC
    expect(sections(join(main, "usr/bin/nopie"))).toContain(".debug_info");

    // split/debug: the PIE executable and the library (ET_DYN), not the ET_EXEC one.
    expect(files(dbg).filter((f) => f.startsWith("usr/"))).toEqual([
      "usr/lib/debug/usr/bin/pie.debug",
      "usr/lib/debug/usr/lib/libparity.so.1.debug",
    ]);
    expect(sections(join(dbg, "usr/lib/debug/usr/bin/pie.debug"))).toContain(".debug_info");
    for (const f of ["usr/bin/pie", "usr/lib/libparity.so.1"]) {
      expect(elfType(join(main, f)), f).toBe(3); // ET_DYN
      expect(sections(join(main, f)), f).not.toContain(".debug_info");
      expect(sections(join(main, f)), f).toContain(".gnu_debuglink");
    }

    // split/manpages: usr/share/man, usr/local/share/man and usr/man, all under usr/share/man.
    expect(files(doc).filter((f) => f.startsWith("usr/"))).toEqual([
      "usr/share/man/man1/parity.1",
      "usr/share/man/man3/parity.3",
      "usr/share/man/man5/parity.conf.5",
    ]);
    expect(files(main).filter((f) => f.startsWith("usr/"))).toEqual([
      "usr/bin/nopie",
      "usr/bin/pie",
      "usr/lib/libparity.so.1",
    ]);
    // The binaries still run.
    execFileSync(join(main, "usr/bin/pie"));
    execFileSync(tool);
  }, 600_000);
});

describe("the guest's shell and the parity pipelines", () => {
  const PARITY = /^(strip|patch|fetch|autoconf|cmake|meson|split)(\/|$)/;

  function busybox(): string {
    const dir = join(boot.repo, "x86_64");
    const apk = readdirSync(dir).find((f) => f.startsWith("busybox-static-"))!;
    const bb = mkdtempSync(join(work, "busybox-"));
    execFileSync("tar", ["-xzf", join(dir, apk), "-C", bb, "usr/bin/busybox"], { stdio: "pipe" });
    return join(bb, "usr/bin/busybox");
  }

  it("busybox sh parses every expanded script, and runs patch with fuzz over a list of several lines", () => {
    const bb = busybox();
    const registry = loadPipelines();
    const names = registry.names().filter((n) => PARITY.test(n));
    expect(names.length).toBe(21);
    const uses = (name: string, w: Record<string, string>) => {
      const lines = Object.entries(w).map(([k, v]) => `      ${k}: ${JSON.stringify(v)}\n`);
      return `  - uses: ${name}\n${lines.length ? `    with:\n${lines.join("")}` : ""}`;
    };
    for (const name of names) {
      const w: Record<string, string> = {};
      if (name === "fetch")
        Object.assign(w, { uri: "https://example.invalid/a.tar.gz", "expected-sha256": "0".repeat(64) });
      if (name === "patch") w.patches = "a.patch";
      const where = name.startsWith("split/") ? "subpackages" : "pipeline";
      const body = uses(name, w);
      const text =
        where === "pipeline"
          ? `package: {name: p, version: 1.0.0, epoch: 0}\npipeline:\n${body}`
          : `package: {name: p, version: 1.0.0, epoch: 0}\npipeline:\n  - runs: true\nsubpackages:\n  - name: p-x\n    pipeline:\n${body.replace(/^/gm, "    ")}`;
      const c = compileRecipe(parseRecipe("recipe.yaml", text), { arch: "x86_64", pipelines: registry });
      const steps = [...c.pipeline, ...c.subpackages.flatMap((sp) => sp.pipeline)].filter((s) => !s.native);
      if (name !== "fetch") expect(steps.length, name).toBeGreaterThan(0);
      for (const [i, step] of steps.entries()) {
        const r = spawnSync(bb, ["sh", "-n", "-c", `set -e\n${step.runs}`], { encoding: "utf8" });
        expect(r.status, `${name} step ${i}: ${r.stderr}`).toBe(0);
      }
    }

    // patch, run by busybox sh with the host's GNU patch: two patches on two lines, the second needing fuzz.
    const dir = mkdtempSync(join(work, "patch-"));
    writeFileSync(join(dir, "a.txt"), "a\n");
    writeFileSync(join(dir, "a.patch"), "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+A\n");
    writeFileSync(join(dir, "b.txt"), "1\n2\n3\n4\n5\n6\n7\n");
    // Its first and last context lines (TWO, SIX) no longer match: fuzz 1 applies it, fuzz 0 does not.
    writeFileSync(join(dir, "b.patch"), "--- a/b.txt\n+++ b/b.txt\n@@ -2,5 +2,5 @@\n TWO\n 3\n-4\n+FOUR\n 5\n SIX\n");
    const patchStep = (fuzz?: string) => {
      const w = `      patches: |\n        a.patch\n        b.patch\n${fuzz ? `      fuzz: ${fuzz}\n` : ""}`;
      const text = `package: {name: p, version: 1.0.0, epoch: 0}\npipeline:\n  - uses: patch\n    with:\n${w}`;
      const c = compileRecipe(parseRecipe("recipe.yaml", text), { arch: "x86_64", pipelines: registry });
      return spawnSync(bb, ["sh", "-c", `set -e\n${c.pipeline[0]!.runs}`], {
        encoding: "utf8",
        cwd: dir,
        env: { PATH: "/usr/bin:/bin" },
      });
    };
    const strict = patchStep("0");
    expect(strict.status, strict.stderr).not.toBe(0);
    expect(readFileSync(join(dir, "b.txt"), "utf8")).toBe("1\n2\n3\n4\n5\n6\n7\n");
    // The first patch applied, the second was rejected (into b.txt.rej): start again.
    expect(readFileSync(join(dir, "a.txt"), "utf8")).toBe("A\n");
    rmSync(join(dir, "b.txt.rej"));
    writeFileSync(join(dir, "a.txt"), "a\n");
    const fuzzy = patchStep();
    expect(fuzzy.status, fuzzy.stderr).toBe(0);
    expect(fuzzy.stdout).toContain("patch: applying a.patch");
    expect(fuzzy.stdout).toContain("patch: applying b.patch");
    expect(readFileSync(join(dir, "a.txt"), "utf8")).toBe("A\n");
    expect(readFileSync(join(dir, "b.txt"), "utf8")).toBe("1\n2\n3\nFOUR\n5\n6\n7\n");
    expect(readdirSync(dir).sort()).toEqual(["a.patch", "a.txt", "b.patch", "b.txt"]);
  });
});
