// The built-in strip, split/debug and split/manpages behave as melange's do,
// proven on a real build in the sandbox with the stage-0 toolchain: strip in
// a subpackage strips that subpackage's files (and keeps their symbols with
// its default -g), split/debug takes ET_DYN files and leaves ET_EXEC ones,
// split/manpages gathers every man directory melange gathers.

import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { bootstrapToolchain, type Bootstrap } from "./helpers/bootstrap.js";
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

describe("strip, split/debug and split/manpages in a real build", () => {
  it("strip works in its subpackage keeping symbols; split/debug takes ET_DYN only; split/manpages takes every man dir", async () => {
    const file = join(work, "parity.yaml");
    writeFileSync(file, RECIPE);
    const out = join(work, "out");
    mkdirSync(out);
    const r = await kilnAsync([
      "build",
      file,
      "--out",
      out,
      "--signing-key",
      boot.privateKey,
      "--repository-append",
      boot.repo,
      "--keyring-append",
      boot.publicKey,
      "--cache-dir",
      boot.cacheDir,
    ]);
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
