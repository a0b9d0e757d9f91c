// Dependency detection over real build outputs: shared libraries, a dynamic
// and a static executable compiled here with gcc, scripts, pkg-config files;
// the ELF reader checked against binutils' readelf, for this machine's
// binaries and for 32-bit and big-endian files written here.

import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  detectDependencies,
  mergeDependencies,
  parsePkgConfig,
  readElf,
  shebangCommand,
  sonameVersion,
  splitModuleList,
} from "./detect-deps.js";

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "kiln-deps-"));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

const gcc = (args: string[], cwd: string): void => {
  execFileSync("gcc", args, { cwd, stdio: "pipe" });
};

function put(root: string, rel: string, body: string | Buffer, mode = 0o644): void {
  mkdirSync(dirname(join(root, rel)), { recursive: true });
  writeFileSync(join(root, rel), body);
  chmodSync(join(root, rel), mode);
}

/** readelf's view: interpreter, NEEDED, SONAME. */
function readelf(file: string): { interp?: string; needed: string[]; soname?: string } {
  const out = execFileSync("readelf", ["-W", "-l", "-d", file], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  const interp = /\[Requesting program interpreter: (.*)\]/.exec(out)?.[1];
  const needed = [...out.matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map((m) => m[1]!);
  const soname = /\(SONAME\)\s+Library soname: \[(.*)\]/.exec(out)?.[1];
  return { ...(interp ? { interp } : {}), needed, ...(soname ? { soname } : {}) };
}

describe("detectDependencies on a package built with gcc", () => {
  let pkg: string;
  let src: string;
  beforeAll(() => {
    src = mkdtempSync(join(work, "src-"));
    pkg = mkdtempSync(join(work, "pkg-"));
    writeFileSync(join(src, "demo.c"), "#include <math.h>\ndouble demo(double x) { return sqrt(x) + 1; }\n");
    writeFileSync(join(src, "multi.c"), "int multi(void) { return 2; }\n");
    writeFileSync(join(src, "priv.c"), "int priv(void) { return 3; }\n");
    writeFileSync(
      join(src, "main.c"),
      '#include <stdio.h>\ndouble demo(double);\nint priv(void);\nint main(void) { printf("%g %d\\n", demo(4), priv()); return 0; }\n',
    );
    writeFileSync(join(src, "static.c"), '#include <stdio.h>\nint main(void) { puts("static"); return 0; }\n');
    gcc(["-shared", "-fPIC", "-Wl,-soname,libdemo.so.1", "-o", "libdemo.so.1.2.3", "demo.c", "-lm"], src);
    gcc(["-shared", "-fPIC", "-Wl,-soname,libmulti.so.2", "-o", "libmulti.so.2.0.0", "multi.c"], src);
    gcc(["-shared", "-fPIC", "-Wl,-soname,libprivate.so", "-o", "libprivate.so", "priv.c"], src);
    symlinkSync("libdemo.so.1.2.3", join(src, "libdemo.so"));
    gcc(["-o", "demo", "main.c", "-L.", "-ldemo", "-lprivate", "-Wl,-rpath,/usr/libexec/demo"], src);
    gcc(["-static", "-o", "demo-static", "static.c"], src);

    const cp = (from: string, rel: string, mode: number): void => {
      mkdirSync(dirname(join(pkg, rel)), { recursive: true });
      execFileSync("cp", [join(src, from), join(pkg, rel)]);
      chmodSync(join(pkg, rel), mode);
    };
    cp("libdemo.so.1.2.3", "usr/lib/libdemo.so.1.2.3", 0o755);
    symlinkSync("libdemo.so.1.2.3", join(pkg, "usr/lib/libdemo.so.1"));
    cp("libmulti.so.2.0.0", "usr/lib/x86_64-linux-gnu/libmulti.so.2.0.0", 0o644);
    cp("libprivate.so", "usr/libexec/demo/libprivate.so", 0o644); // not a library directory: no provide
    cp("demo", "usr/bin/demo", 0o755);
    cp("demo-static", "usr/bin/demo-static", 0o755);
    symlinkSync("demo", join(pkg, "usr/bin/demo-alias"));
    symlinkSync("/nonexistent/tool", join(pkg, "usr/bin/dangling"));
    cp("demo.c", "usr/lib/debug/usr/lib/libdemo.so.1.2.3.debug", 0o644);
    put(pkg, "usr/bin/tool.py", "#!/usr/bin/env python3\nprint('hi')\n", 0o755);
    put(pkg, "usr/bin/run", "#!/bin/bash -e\necho run\n", 0o755);
    put(pkg, "usr/bin/plain", "#!/bin/sh\necho plain\n", 0o755);
    put(pkg, "usr/bin/envs", "#!/usr/bin/env -S PYTHONPATH=/x perl -w\n", 0o755);
    put(pkg, "usr/bin/selfish", "#!/usr/bin/demo\n", 0o755); // interpreter from this very package
    put(pkg, "usr/bin/README", "not executable\n", 0o644);
    put(pkg, "usr/share/demo/helper.py", "#!/usr/bin/env python2\n", 0o755); // not in a bin directory
    put(pkg, "sbin/demo-admin", "#!/usr/bin/env ruby\n", 0o750);
    put(
      pkg,
      "usr/lib/pkgconfig/demo.pc",
      "prefix=/usr\nexec_prefix=${prefix}\nlibdir=${exec_prefix}/lib\nmajor=1\nversion=${major}.2.3\n# a comment\n\nName: demo\nDescription: Demo library\nVersion: ${version}\nRequires: zlib >= 1.2, libfoo\nRequires.private: bar = 2.0 baz<3\nLibs: -L${libdir} -ldemo\n",
    );
    put(pkg, "usr/share/pkgconfig/demo-data.pc", "Name: demo-data\nVersion: 2.0-rc1\nRequires: gobject-2.0 != 2.1\n");
    put(pkg, "usr/lib/x86_64-linux-gnu/pkgconfig/multi.pc", "Name: multi\nVersion: 2.0.0\nRequires.private: demo\n");
    put(pkg, "usr/share/doc/demo/example.pc", "Name: ignored\nVersion: 1\n");
  });

  it("finds so:, cmd: and pc: dependencies and provides", async () => {
    const r = await detectDependencies(pkg, { version: "1.2.3-r0" });
    expect(r.provides).toEqual(
      [
        "cmd:demo-alias=1.2.3-r0",
        "cmd:demo-static=1.2.3-r0",
        "cmd:demo=1.2.3-r0",
        "cmd:demo-admin=1.2.3-r0",
        "cmd:envs=1.2.3-r0",
        "cmd:plain=1.2.3-r0",
        "cmd:run=1.2.3-r0",
        "cmd:selfish=1.2.3-r0",
        "cmd:tool.py=1.2.3-r0",
        "pc:demo-data=2.0_rc1",
        "pc:demo=1.2.3",
        "pc:multi=2.0.0",
        "so:libdemo.so.1=1",
        "so:libmulti.so.2=2",
      ].sort(),
    );
    expect(r.depends).toEqual([
      "cmd:bash",
      "cmd:demo",
      "cmd:perl",
      "cmd:python3",
      "cmd:ruby",
      "pc:bar=2.0",
      "pc:baz<3",
      "pc:demo",
      "pc:gobject-2.0",
      "pc:libfoo",
      "pc:zlib>=1.2",
      "so:ld-linux-x86-64.so.2",
      "so:libc.so.6",
      "so:libdemo.so.1",
      "so:libm.so.6",
      "so:libprivate.so",
    ]);
    expect(r.details.reasons["so:libm.so.6"]).toEqual(["usr/lib/libdemo.so.1.2.3"]);
    expect(r.details.reasons["cmd:python3"]).toEqual(["usr/bin/tool.py"]);
    expect(r.details.elf.find((e) => e.path === "usr/bin/demo-static")).toMatchObject({ static: true, needed: [] });
    expect(r.details.sharedLibraries).toEqual([
      { path: "usr/lib/libdemo.so.1.2.3", soname: "libdemo.so.1", provides: "so:libdemo.so.1=1" },
      { path: "usr/lib/x86_64-linux-gnu/libmulti.so.2.0.0", soname: "libmulti.so.2", provides: "so:libmulti.so.2=2" },
      { path: "usr/libexec/demo/libprivate.so", soname: "libprivate.so" },
    ]);
    expect(r.details.commands.find((c) => c.name === "demo-alias")).toEqual({
      path: "usr/bin/demo-alias",
      name: "demo-alias",
      viaSymlink: "usr/bin/demo",
    });
    expect(r.details.scripts.find((s) => s.path === "usr/bin/plain")).toEqual({
      path: "usr/bin/plain",
      interpreter: "/bin/sh",
    });
    expect(r.details.selfProvides).toEqual(
      expect.arrayContaining(["so:libprivate.so", "so:libdemo.so.1", "cmd:demo", "pc:demo"]),
    );
    expect(r.details.warnings.filter((w) => !/gobject-2\.0 != 2\.1/.test(w))).toEqual([]);

    // Merged with nothing declared: what the package satisfies itself is gone.
    const m = mergeDependencies({
      declared: { runtime: [], provides: [] },
      detected: r,
      options: {},
      selfProvides: r.details.selfProvides,
    });
    expect(m.depends).toEqual([
      "cmd:bash",
      "cmd:perl",
      "cmd:python3",
      "cmd:ruby",
      "pc:bar=2.0",
      "pc:baz<3",
      "pc:gobject-2.0",
      "pc:libfoo",
      "pc:zlib>=1.2",
      "so:ld-linux-x86-64.so.2",
      "so:libc.so.6",
      "so:libm.so.6",
    ]);
    expect(m.provides).toEqual(r.provides);
  });

  it("reads ELF files the way readelf does", async () => {
    const files = [
      join(pkg, "usr/bin/demo"),
      join(pkg, "usr/bin/demo-static"),
      join(pkg, "usr/lib/libdemo.so.1.2.3"),
      join(pkg, "usr/libexec/demo/libprivate.so"),
      "/bin/ls",
      "/usr/bin/gcc",
      execFileSync("gcc", ["-print-file-name=libc.so.6"], { encoding: "utf8" }).trim(),
      execFileSync("gcc", ["-print-file-name=libstdc++.so.6"], { encoding: "utf8" }).trim(),
    ];
    for (const f of files) {
      const mine = await readElf(f);
      expect(mine, f).not.toBeNull();
      const ref = readelf(f);
      expect({ interp: mine!.interp, needed: mine!.needed, soname: mine!.soname }, f).toEqual({
        interp: ref.interp,
        needed: ref.needed,
        soname: ref.soname,
      });
    }
    expect((await readElf(join(pkg, "usr/bin/demo")))!.runpath).toEqual(["/usr/libexec/demo"]);
    expect(await readElf(join(pkg, "usr/bin/run"))).toBeNull();
  });

  it("honours no-provides, no-commands and no-depends when merging", async () => {
    const r = await detectDependencies(pkg, { version: "1.2.3-r0" });
    const declared = {
      runtime: ["busybox", "so:libc.so.6", "pc:zlib>=1.3"],
      provides: ["cmd:demo=9.9-r0", "virtual-demo"],
    };
    const all = mergeDependencies({ declared, detected: r, options: {} });
    // The declared provide wins over the detected one of the same name; a bare
    // pc:zlib would be dropped next to a constrained one; declared runtime kept.
    expect(all.provides).toContain("cmd:demo=9.9-r0");
    expect(all.provides).not.toContain("cmd:demo=1.2.3-r0");
    expect(all.provides).toContain("virtual-demo");
    expect(all.depends).toEqual(expect.arrayContaining(["busybox", "pc:zlib>=1.2", "pc:zlib>=1.3", "so:libc.so.6"]));
    expect(all.depends.filter((d) => d === "so:libc.so.6")).toHaveLength(1);
    expect([...all.depends].sort()).toEqual(all.depends);

    const noCmd = mergeDependencies({ declared: {}, detected: r, options: { noCommands: true } });
    expect(noCmd.provides.filter((p) => p.startsWith("cmd:"))).toEqual([]);
    expect(noCmd.provides).toContain("so:libdemo.so.1=1");
    // A script run by the package's own command stays satisfied without the cmd: provide.
    expect(noCmd.depends).not.toContain("cmd:demo");

    const noProv = mergeDependencies({
      declared: { provides: ["virtual-demo"] },
      detected: r,
      options: { noProvides: true },
    });
    expect(noProv.provides).toEqual(["virtual-demo"]);
    expect(noProv.depends).not.toContain("so:libdemo.so.1");

    const noDep = mergeDependencies({ declared: { runtime: ["busybox"] }, detected: r, options: { noDepends: true } });
    expect(noDep.depends).toEqual(["busybox"]);
  });
});

describe("mergeDependencies", () => {
  it("removes what the package provides itself, by version too, and keeps conflicts", () => {
    const m = mergeDependencies({
      declared: {
        runtime: ["so:libfoo.so.1", "pc:foo>=2", "pc:foo>=4", "!oldfoo", "foo", "bar>1"],
        provides: ["pc:foo=3.0"],
      },
      detected: { depends: ["so:libbar.so.2", "so:libfoo.so.1", "cmd:sh"], provides: ["so:libfoo.so.1=1"] },
      selfProvides: ["cmd:sh"],
      packageName: "foo",
      packageVersion: "3.0-r1",
    });
    expect(m.depends).toEqual(["!oldfoo", "bar>1", "pc:foo>=4", "so:libbar.so.2"]);
    expect(m.provides).toEqual(["pc:foo=3.0", "so:libfoo.so.1=1"]);
  });
});

// ---------------------------------------------------------------------------
// ELF files of other classes and byte orders, checked against readelf

function makeElf(o: {
  is64: boolean;
  le: boolean;
  machine: number;
  type: number;
  interp?: string;
  needed: string[];
  soname?: string;
}): Buffer {
  const { is64, le } = o;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const phnum = 1 + (o.interp ? 1 : 0) + 1;
  const strs: string[] = ["", ...o.needed, ...(o.soname ? [o.soname] : [])];
  const strOff: number[] = [];
  let dynstr = Buffer.alloc(0);
  for (const s of strs) {
    strOff.push(dynstr.length);
    dynstr = Buffer.concat([dynstr, Buffer.from(s + "\0")]);
  }
  const interpBuf = o.interp ? Buffer.from(o.interp + "\0") : Buffer.alloc(0);
  const interpAt = ehsize + phnum * phentsize;
  const dynstrAt = interpAt + interpBuf.length;
  const dynAt = Math.ceil((dynstrAt + dynstr.length) / 8) * 8;
  const dynEnt = is64 ? 16 : 8;
  const dyn: Array<[number, number]> = [
    ...o.needed.map((_, i): [number, number] => [1, strOff[i + 1]!]),
    ...(o.soname ? [[14, strOff[strs.length - 1]!] as [number, number]] : []),
    [5, 0x10000 + dynstrAt],
    [10, dynstr.length],
    [0, 0],
  ];
  const total = dynAt + dyn.length * dynEnt;
  const b = Buffer.alloc(total);
  const u16 = (v: number, at: number): void => void (le ? b.writeUInt16LE(v, at) : b.writeUInt16BE(v, at));
  const u32 = (v: number, at: number): void => void (le ? b.writeUInt32LE(v, at) : b.writeUInt32BE(v, at));
  const u64 = (v: number, at: number): void =>
    void (le ? b.writeBigUInt64LE(BigInt(v), at) : b.writeBigUInt64BE(BigInt(v), at));
  const addr = (v: number, at: number): void => (is64 ? u64(v, at) : u32(v, at));
  b.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, le ? 1 : 2, 1], 0);
  u16(o.type, 16);
  u16(o.machine, 18);
  u32(1, 20);
  addr(0, 24); // entry
  addr(ehsize, is64 ? 32 : 28); // phoff
  addr(0, is64 ? 40 : 32); // shoff
  u16(ehsize, is64 ? 52 : 40);
  u16(phentsize, is64 ? 54 : 42);
  u16(phnum, is64 ? 56 : 44);
  u16(is64 ? 64 : 40, is64 ? 58 : 46);
  const ph = (i: number, type: number, offset: number, size: number, flags: number): void => {
    const at = ehsize + i * phentsize;
    u32(type, at);
    if (is64) {
      u32(flags, at + 4);
      u64(offset, at + 8);
      u64(0x10000 + offset, at + 16);
      u64(0x10000 + offset, at + 24);
      u64(size, at + 32);
      u64(size, at + 40);
      u64(type === 1 ? 0x1000 : 8, at + 48);
    } else {
      u32(offset, at + 4);
      u32(0x10000 + offset, at + 8);
      u32(0x10000 + offset, at + 12);
      u32(size, at + 16);
      u32(size, at + 20);
      u32(flags, at + 24);
      u32(type === 1 ? 0x1000 : 4, at + 28);
    }
  };
  let i = 0;
  if (o.interp) ph(i++, 3, interpAt, interpBuf.length, 4);
  ph(i++, 1, 0, total, 5);
  ph(i++, 2, dynAt, dyn.length * dynEnt, 6);
  interpBuf.copy(b, interpAt);
  dynstr.copy(b, dynstrAt);
  dyn.forEach(([tag, val], k) => {
    const at = dynAt + k * dynEnt;
    if (is64) {
      u64(tag, at);
      u64(val, at + 8);
    } else {
      u32(tag, at);
      u32(val, at + 4);
    }
  });
  return b;
}

describe("ELF classes and byte orders", () => {
  const variants = [
    { name: "32-bit little-endian (i386)", is64: false, le: true, machine: 3, interp: "/lib/ld-linux.so.2" },
    { name: "32-bit big-endian (MIPS)", is64: false, le: false, machine: 8, interp: "/lib/ld.so.1" },
    { name: "64-bit big-endian (s390x)", is64: true, le: false, machine: 22, interp: "/lib/ld64.so.1" },
    {
      name: "64-bit little-endian (aarch64)",
      is64: true,
      le: true,
      machine: 183,
      interp: "/lib/ld-linux-aarch64.so.1",
    },
  ];
  for (const v of variants) {
    it(`reads ${v.name} executables and libraries like readelf`, async () => {
      const dir = mkdtempSync(join(work, "elf-"));
      const exe = makeElf({ ...v, type: 2, needed: ["libc.so.6", "libfoo.so.3"] });
      const lib = makeElf({ ...v, type: 3, needed: ["libc.so.6"], soname: "libfoo.so.3.1" });
      put(dir, "usr/bin/prog", exe, 0o755);
      put(dir, "usr/lib/libfoo.so.3.1.0", lib, 0o644);
      for (const f of ["usr/bin/prog", "usr/lib/libfoo.so.3.1.0"]) {
        const mine = await readElf(join(dir, f));
        const ref = readelf(join(dir, f));
        expect(ref.needed.length, `readelf reads ${f}`).toBeGreaterThan(0);
        expect({ interp: mine!.interp, needed: mine!.needed, soname: mine!.soname }).toEqual({
          interp: ref.interp,
          needed: ref.needed,
          soname: ref.soname,
        });
        expect(mine!.class).toBe(v.is64 ? 64 : 32);
        expect(mine!.endian).toBe(v.le ? "le" : "be");
      }
      const r = await detectDependencies(dir, { version: "1.0-r0" });
      const loader = v.interp.split("/").pop()!;
      expect(r.depends).toEqual([`so:${loader}`, "so:libc.so.6", "so:libfoo.so.3"].sort());
      expect(r.provides).toEqual(["cmd:prog=1.0-r0", "so:libfoo.so.3.1=3.1"]);
    });
  }

  it("reports a truncated ELF file as a warning, not a crash", async () => {
    const dir = mkdtempSync(join(work, "bad-"));
    const good = makeElf({ is64: true, le: true, machine: 62, type: 3, needed: ["libc.so.6"], soname: "libx.so.1" });
    put(dir, "usr/lib/libx.so.1", good.subarray(0, 100));
    const r = await detectDependencies(dir, { version: "1.0-r0" });
    expect(r.provides).toEqual([]);
    expect(r.details.warnings.join("\n")).toMatch(/libx\.so\.1: program headers .* outside the file/);
  });
});

// ---------------------------------------------------------------------------
// Small parsers

describe("parsers", () => {
  it("parses pkg-config files with nested variables and module lists", () => {
    const pc = parsePkgConfig(
      "a=1\nb=${a}.2\nv=${b}.${c}\nc=3\nlit=$${a}\nVersion: ${v}\nRequires: x, y >= ${b} z<=2\nRequires.private: w\n",
      "t",
      "/usr/lib/pkgconfig",
    );
    expect(pc.version).toBe("1.2.3");
    expect(pc.variables.lit).toBe("${a}");
    expect(pc.variables.pcfiledir).toBe("/usr/lib/pkgconfig");
    expect(pc.requires).toEqual(["x", "y >= 1.2", "z <= 2"]);
    expect(pc.requiresPrivate).toEqual(["w"]);
    expect(splitModuleList("glib-2.0>=2.50,gio-2.0 , libffi")).toEqual(["glib-2.0 >= 2.50", "gio-2.0", "libffi"]);
    expect(() => parsePkgConfig("a=${b}\nb=${a}\nVersion: ${a}\n", "loop")).toThrow(/loops/);
  });

  it("reads #! lines", () => {
    expect(shebangCommand("#!/usr/bin/env python3")).toEqual({ interpreter: "/usr/bin/env", command: "python3" });
    expect(shebangCommand("#! /usr/bin/perl -w")).toEqual({ interpreter: "/usr/bin/perl", command: "perl" });
    expect(shebangCommand("#!/usr/bin/env -S LANG=C /usr/bin/python3.11 -u")).toEqual({
      interpreter: "/usr/bin/env",
      command: "python3.11",
    });
    expect(shebangCommand("#!/usr/bin/env")).toBeUndefined();
  });

  it("derives ABI versions from SONAMEs", () => {
    expect(sonameVersion("libz.so.1")).toBe("1");
    expect(sonameVersion("libpython3.11.so.1.0")).toBe("1.0");
    expect(sonameVersion("ld-linux-x86-64.so.2")).toBe("2");
    expect(sonameVersion("libprivate.so")).toBe("0");
    expect(sonameVersion("libweird.so.1a-b")).toBe("0");
  });
});
