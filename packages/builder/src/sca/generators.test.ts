// Each generator of dependency detection on its own: a file as the driver
// would classify it, and a context that records what the generator adds.

import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { commands } from "./commands.js";
import { classify, DEFAULT_GENERATORS, detectDependencies, emptyDetails, walk } from "./detect.js";
import type { ElfInfo } from "./elf.js";
import { pkgConfig } from "./pkgconfig.js";
import { interpreters } from "./shebang.js";
import { neededLibraries } from "./shlib-depends.js";
import { sharedLibraryProvides } from "./shlib-provides.js";
import { DEFAULT_LIB_DIRS, type ScaContext, type ScaFile, type WalkEntry } from "./types.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-sca-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function put(rel: string, body: string): void {
  mkdirSync(dirname(join(dir, rel)), { recursive: true });
  writeFileSync(join(dir, rel), body);
}

function recorder(byPath: ReadonlyMap<string, WalkEntry> = new Map()) {
  const details = emptyDetails();
  const got = { depends: [] as string[], provides: [] as string[], self: [] as string[] };
  const ctx: ScaContext = {
    dir,
    version: "2.0-r1",
    libDirs: DEFAULT_LIB_DIRS,
    byPath,
    details,
    addDepend: (t) => void got.depends.push(t),
    addProvide: (t) => void got.provides.push(t),
    addSelf: (t) => void got.self.push(t),
  };
  return { ctx, got, details };
}

function file(rel: string, category: ScaFile["category"], extra: Partial<ScaFile> = {}, mode = 0o100755): ScaFile {
  return {
    entry: { rel, kind: category === "symlink" ? "symlink" : "file", mode, size: 100 },
    rel,
    parent: posix.dirname(rel),
    base: posix.basename(rel),
    abs: join(dir, rel),
    category,
    ...extra,
  };
}

const elf = (o: Partial<ElfInfo>): ElfInfo => ({
  class: 64,
  endian: "le",
  type: 3,
  machine: 62,
  needed: [],
  runpath: [],
  dynamic: true,
  ...o,
});

describe("commands", () => {
  it("provides cmd: for executables in bin directories only", async () => {
    const { ctx, got, details } = recorder();
    await commands.visit(file("usr/bin/tool", "other"), ctx);
    await commands.visit(file("usr/bin/README", "other", {}, 0o100644), ctx);
    await commands.visit(file("usr/libexec/helper", "other"), ctx);
    expect(got.provides).toEqual(["cmd:tool=2.0-r1"]);
    expect(got.self).toEqual(["cmd:tool"]);
    expect(details.commands).toEqual([{ path: "usr/bin/tool", name: "tool" }]);
  });

  it("follows a symlink inside the package to an executable, never out of it", async () => {
    put("usr/libexec/real", "x");
    mkdirSync(join(dir, "usr/bin"), { recursive: true });
    symlinkSync("../libexec/real", join(dir, "usr/bin/alias"));
    symlinkSync("/nonexistent", join(dir, "usr/bin/dangling"));
    const byPath = new Map<string, WalkEntry>([
      ["usr/libexec/real", { rel: "usr/libexec/real", kind: "file", mode: 0o100755, size: 1 }],
    ]);
    const { ctx, got, details } = recorder(byPath);
    await commands.visit(file("usr/bin/alias", "symlink"), ctx);
    await commands.visit(file("usr/bin/dangling", "symlink"), ctx);
    expect(got.provides).toEqual(["cmd:alias=2.0-r1"]);
    expect(details.commands).toEqual([{ path: "usr/bin/alias", name: "alias", viaSymlink: "usr/libexec/real" }]);
  });
});

describe("pkgConfig", () => {
  it("provides pc:name=version and depends on its Requires with apk constraints", async () => {
    put("usr/lib/pkgconfig/foo.pc", "v=1.2-rc1\nVersion: ${v}\nRequires: bar >= 2, baz != 3\nRequires.private: qux\n");
    const { ctx, got, details } = recorder();
    await pkgConfig.visit(file("usr/lib/pkgconfig/foo.pc", "pkgconfig", {}, 0o100644), ctx);
    await pkgConfig.visit(file("usr/lib/other.pc", "other", {}, 0o100644), ctx);
    expect(got.provides).toEqual(["pc:foo=1.2_rc1"]);
    expect(got.depends).toEqual(["pc:bar>=2", "pc:baz", "pc:qux"]);
    expect(got.self).toEqual(["pc:foo"]);
    expect(details.warnings).toEqual([expect.stringContaining('"baz != 3"')]);
  });
});

describe("neededLibraries", () => {
  it("depends on the loader and every DT_NEEDED library", () => {
    const { ctx, got } = recorder();
    neededLibraries.visit(
      file("usr/bin/prog", "elf", {
        elf: elf({ type: 2, interp: "/lib64/ld-linux-x86-64.so.2", needed: ["libc.so.6", "libz.so.1"] }),
      }),
      ctx,
    );
    neededLibraries.visit(file("usr/bin/script", "script", { shebang: "#!/bin/sh" }), ctx);
    expect(got.depends).toEqual(["so:ld-linux-x86-64.so.2", "so:libc.so.6", "so:libz.so.1"]);
    expect(got.provides).toEqual([]);
  });
});

describe("sharedLibraryProvides", () => {
  it("provides SONAMEs of libraries in library directories; every .so name is the package's own", () => {
    const { ctx, got, details } = recorder();
    sharedLibraryProvides.visit(file("usr/lib/libz.so.1.3", "elf", { elf: elf({ soname: "libz.so.1" }) }), ctx);
    sharedLibraryProvides.visit(
      file("usr/lib/x86_64-linux-gnu/libm.so.6", "elf", { elf: elf({ soname: "libm.so.6" }) }),
      ctx,
    );
    sharedLibraryProvides.visit(file("opt/x/libp.so", "elf", { elf: elf({ soname: "libp.so" }) }), ctx);
    sharedLibraryProvides.visit(file("usr/lib/libz.so", "symlink"), ctx);
    expect(got.provides).toEqual(["so:libz.so.1=1", "so:libm.so.6=6"]);
    expect(got.self).toEqual([
      "so:libz.so.1.3",
      "so:libz.so.1",
      "so:libm.so.6",
      "so:libm.so.6",
      "so:libp.so",
      "so:libp.so",
      "so:libz.so",
    ]);
    expect(details.sharedLibraries).toEqual([
      { path: "usr/lib/libz.so.1.3", soname: "libz.so.1", provides: "so:libz.so.1=1" },
      { path: "usr/lib/x86_64-linux-gnu/libm.so.6", soname: "libm.so.6", provides: "so:libm.so.6=6" },
      { path: "opt/x/libp.so", soname: "libp.so" },
    ]);
  });
});

describe("interpreters", () => {
  it("depends on a script's interpreter command, not on sh", () => {
    const { ctx, got, details } = recorder();
    interpreters.visit(file("usr/bin/a", "script", { shebang: "#!/usr/bin/env -S python3 -u" }), ctx);
    interpreters.visit(file("usr/bin/b", "script", { shebang: "#!/bin/sh -e" }), ctx);
    interpreters.visit(file("usr/bin/c", "script", { shebang: "#!/usr/bin/env" }), ctx);
    expect(got.depends).toEqual(["cmd:python3"]);
    expect(details.scripts).toEqual([
      { path: "usr/bin/a", interpreter: "/usr/bin/env", command: "python3" },
      { path: "usr/bin/b", interpreter: "/bin/sh" },
    ]);
    expect(details.warnings).toEqual([expect.stringContaining("cannot read the interpreter")]);
  });
});

describe("the driver", () => {
  it("classifies each file once and runs only the generators it is given", async () => {
    const root = mkdtempSync(join(dir, "pkg-"));
    mkdirSync(join(root, "usr/bin"), { recursive: true });
    mkdirSync(join(root, "usr/lib/debug/usr/bin"), { recursive: true });
    writeFileSync(join(root, "usr/bin/run"), "#!/bin/bash\n", { mode: 0o755 });
    writeFileSync(join(root, "usr/lib/debug/usr/bin/run.debug"), "#!/bin/bash\n", { mode: 0o755 });
    writeFileSync(join(root, "usr/bin/x"), "ab", { mode: 0o755 });
    const entries = await walk(root);
    const { ctx } = recorder(new Map(entries.map((e) => [e.rel, e])));
    const cats = await Promise.all(entries.map(async (e) => (await classify(root, e, ctx))?.category));
    expect(Object.fromEntries(entries.map((e, i) => [e.rel, cats[i]]))).toEqual({
      "usr/bin/run": "script",
      "usr/bin/x": "other",
      "usr/lib/debug/usr/bin/run.debug": "debug",
    });
    expect((await detectDependencies(root, { version: "1-r0" }, [interpreters])).provides).toEqual([]);
    const all = await detectDependencies(root, { version: "1-r0" }, DEFAULT_GENERATORS);
    expect(all).toMatchObject({ depends: ["cmd:bash"], provides: ["cmd:run=1-r0", "cmd:x=1-r0"] });
    expect(all.details.reasons).toEqual({
      "cmd:bash": ["usr/bin/run"],
      "cmd:run=1-r0": ["usr/bin/run"],
      "cmd:x=1-r0": ["usr/bin/x"],
    });
  });
});
