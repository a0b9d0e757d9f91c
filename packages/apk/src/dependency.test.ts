import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  formatDependency,
  packageSatisfies,
  parseDependency,
  parseProvide,
  validateDependencyList,
  type Dependency,
} from "./dependency.js";
import { ApkError } from "./errors.js";
import { parseIndexText, type IndexRecord } from "./index-text.js";
import { APK_REAL, noShared } from "../../../test/helpers/paths.js";

/** The APKINDEX text of an APKINDEX.tar.gz: gunzip every member, walk the tar headers. */
function readIndexText(rel: string): string {
  const tar = gunzipSync(readFileSync(`${APK_REAL}/${rel}`));
  for (let off = 0; off + 512 <= tar.length;) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const nul = header.subarray(0, 100).indexOf(0);
    const name = header.subarray(0, nul < 0 ? 100 : nul).toString("latin1");
    const size = parseInt(
      header
        .subarray(124, 136)
        .toString("latin1")
        .replace(/[\0 ]+$/, ""),
      8,
    );
    const body = off + 512;
    if (name === "APKINDEX") return tar.subarray(body, body + size).toString("utf8");
    off = body + Math.ceil(size / 512) * 512;
  }
  throw new Error(`no APKINDEX entry in ${rel}`);
}

function thrown(f: () => unknown): ApkError {
  try {
    f();
  } catch (e) {
    if (e instanceof ApkError) return e;
    throw e;
  }
  throw new Error("expected an ApkError, nothing was thrown");
}

describe("parseDependency / formatDependency", () => {
  const table: Array<[string, Dependency]> = [
    ["busybox", { name: "busybox", conflict: false }],
    ["musl=1.2.3-r0", { name: "musl", conflict: false, op: "=", version: "1.2.3-r0" }],
    ["apk-tools<3", { name: "apk-tools", conflict: false, op: "<", version: "3" }],
    ["apk-tools<=2.14.4-r1", { name: "apk-tools", conflict: false, op: "<=", version: "2.14.4-r1" }],
    ["abuild>2.20.0", { name: "abuild", conflict: false, op: ">", version: "2.20.0" }],
    ["busybox>=1.26.1-r3", { name: "busybox", conflict: false, op: ">=", version: "1.26.1-r3" }],
    ["python3~3.10", { name: "python3", conflict: false, op: "~", version: "3.10" }],
    ["openssl>~3.0", { name: "openssl", conflict: false, op: ">~", version: "3.0" }],
    ["openssl<~3.1", { name: "openssl", conflict: false, op: "<~", version: "3.1" }],
    ["!hylafax", { name: "hylafax", conflict: true }],
    ["!openssh-client<9", { name: "openssh-client", conflict: true, op: "<", version: "9" }],
    ["nginx@edge", { name: "nginx", conflict: false, tag: "edge" }],
    ["nginx@edge>=1.25", { name: "nginx", conflict: false, tag: "edge", op: ">=", version: "1.25" }],
    ["!foo@testing=1.0", { name: "foo", conflict: true, tag: "testing", op: "=", version: "1.0" }],
    ["so:libc.so.6", { name: "so:libc.so.6", conflict: false }],
    ["so:libc.so.6=6", { name: "so:libc.so.6", conflict: false, op: "=", version: "6" }],
    ["so:libstdc++.so.6", { name: "so:libstdc++.so.6", conflict: false }],
    ["so:libc.musl-x86_64.so.1", { name: "so:libc.musl-x86_64.so.1", conflict: false }],
    ["cmd:busybox=1.36.1-r3", { name: "cmd:busybox", conflict: false, op: "=", version: "1.36.1-r3" }],
    ["cmd:[=9.1-r0", { name: "cmd:[", conflict: false, op: "=", version: "9.1-r0" }],
    ["pc:zlib=1.3", { name: "pc:zlib", conflict: false, op: "=", version: "1.3" }],
    ["pc:gtk+-3.0>=3.24", { name: "pc:gtk+-3.0", conflict: false, op: ">=", version: "3.24" }],
    ["gtk+2.0>=2.24.31", { name: "gtk+2.0", conflict: false, op: ">=", version: "2.24.31" }],
    ["so-ver:libc.so.6=2.41-r55", { name: "so-ver:libc.so.6", conflict: false, op: "=", version: "2.41-r55" }],
    ["py3.10:setuptools", { name: "py3.10:setuptools", conflict: false }],
    ["nagios-plugins-ide_smart", { name: "nagios-plugins-ide_smart", conflict: false }],
    ["/bin/sh", { name: "/bin/sh", conflict: false }],
    ["perl-timedate=2.33-r1", { name: "perl-timedate", conflict: false, op: "=", version: "2.33-r1" }],
    ["openssh=6.8.0p2-r4", { name: "openssh", conflict: false, op: "=", version: "6.8.0p2-r4" }],
  ];

  it.each(table)("%s", (token, want) => {
    const got = parseDependency(token);
    expect(got).toEqual(want);
    expect(formatDependency(got)).toBe(token);
  });

  it("formats from fields", () => {
    expect(formatDependency({ name: "foo", conflict: false })).toBe("foo");
    expect(formatDependency({ name: "foo", conflict: true, tag: "t", op: ">=", version: "1.0-r2" })).toBe(
      "!foo@t>=1.0-r2",
    );
  });

  it("refuses fields that do not make a token", () => {
    const cases: Dependency[] = [
      { name: "", conflict: false },
      { name: "foo", conflict: false, op: "=" },
      { name: "foo", conflict: false, version: "1.0" },
      { name: "foo", conflict: false, op: "=", version: "1.0_foo" },
      { name: "foo@bar", conflict: false },
      { name: "foo>1", conflict: false },
      { name: "foo", conflict: false, tag: "" },
      { name: "foo", conflict: false, tag: "a@b" },
      { name: "foo bar", conflict: false },
    ];
    for (const d of cases) expect(thrown(() => formatDependency(d)).code, JSON.stringify(d)).toBe("INVALID_DEPENDENCY");
  });

  const invalid: Array<[string, string]> = [
    ["", "empty"],
    ["!", "empty name"],
    ["foo bar", "whitespace"],
    [" foo", "whitespace"],
    ["foo\t", "whitespace"],
    ["foo\n", "whitespace"],
    ["foo=", "missing version"],
    ["foo>=", "missing version"],
    ["foo=1.0_foo", "not a valid apk version"],
    ["foo>=v2.4", "not a valid apk version"],
    ["foo=1.2aa", "not a valid apk version"],
    ["foo=1.0-r1.2", "not a valid apk version"],
    ["foo<>1.0", "unknown operator"],
    ["foo<=>1.0", "unknown operator"],
    ["foo><Q1abcdef=", "unknown operator"],
    ["=1.0", "empty name"],
    ["!!foo", 'contains "!"'],
    ["foo!", 'contains "!"'],
    ["foo@", "bad repository tag"],
    ["foo@a@b", "bad repository tag"],
    ["foo@ta:g", "bad repository tag"],
    ["@edge", "empty name"],
    ["foo,bar", 'contains ","'],
    ["foo;rm", 'contains ";"'],
    ["fo\u00f6", "contains"],
    ["foo*", 'contains "*"'],
    ["foo=1.0 bar", "whitespace"],
  ];

  it.each(invalid)("rejects %j (%s)", (token, what) => {
    const err = thrown(() => parseDependency(token));
    expect(err.code).toBe("INVALID_DEPENDENCY");
    expect(err.message).toContain(JSON.stringify(token));
    expect(err.message).toContain(what);
    expect(err.message).toContain("expected");
  });
});

describe("operators as apk spells them", () => {
  // apk ORs the meanings of an operator's characters: Wolfi writes `==` and `~=`.
  it.each([
    ["foo==1.0", "=", "foo=1.0"],
    ["foo~=2.1.28", "~", "foo~2.1.28"],
    ["foo=~2.1", "~", "foo~2.1"],
    ["foo=<1", "<=", "foo<=1"],
    ["foo=>1", ">=", "foo>=1"],
    ["!foo==1-r0", "=", "!foo=1-r0"],
  ])("reads %j as %j (canonical %j)", (token, op, canonical) => {
    const d = parseDependency(token);
    expect(d.op).toBe(op);
    expect(formatDependency(d)).toBe(canonical);
  });
});

describe("parseProvide", () => {
  it("reads virtual and versioned provides", () => {
    expect(parseProvide("cmd:busybox")).toEqual({ name: "cmd:busybox" });
    expect(parseProvide("so:libc.so.6=6")).toEqual({ name: "so:libc.so.6", version: "6" });
    expect(parseProvide("pc:zlib=1.3")).toEqual({ name: "pc:zlib", version: "1.3" });
    expect(parseProvide("cmd:[=9.1-r0")).toEqual({ name: "cmd:[", version: "9.1-r0" });
  });

  it("reads !name (apk parses provides as dependencies) and == as =", () => {
    expect(parseProvide("!py3.10-numpy-2.2")).toEqual({ name: "py3.10-numpy-2.2", conflict: true });
    expect(parseProvide("foo==1")).toEqual({ name: "foo", version: "1" });
    const pkg = { name: "numpy-1", version: "1.26-r0", provides: ["!numpy-2", "numpy=1.26"] };
    expect(packageSatisfies(pkg, parseDependency("numpy-2"))).toBe(false);
    expect(packageSatisfies(pkg, parseDependency("numpy"))).toBe(true);
  });

  it.each(["", "foo>=1.0", "foo~1.0", "foo<1", "!!foo", "!", "foo@edge", "foo=", "foo=v2.4", "a b", "=1.0"])(
    "rejects %j",
    (s) => {
      expect(thrown(() => parseProvide(s)).code).toBe("INVALID_DEPENDENCY");
    },
  );
});

describe("packageSatisfies", () => {
  const busybox = {
    name: "busybox",
    version: "1.36.1-r3",
    provides: ["cmd:busybox=1.36.1-r3", "cmd:sh=1.36.1-r3", "/bin/sh", "so:libbusy.so.1=1.0"],
  };
  const dep = parseDependency;

  it("matches the package by its own name and version", () => {
    expect(packageSatisfies(busybox, dep("busybox"))).toBe(true);
    expect(packageSatisfies(busybox, dep("busybox=1.36.1-r3"))).toBe(true);
    expect(packageSatisfies(busybox, dep("busybox=1.36.1"))).toBe(false);
    expect(packageSatisfies(busybox, dep("busybox<1.36.1-r3"))).toBe(false);
    expect(packageSatisfies(busybox, dep("busybox<=1.36.1-r3"))).toBe(true);
    expect(packageSatisfies(busybox, dep("busybox>1.36.1"))).toBe(true);
    expect(packageSatisfies(busybox, dep("busybox>=1.37"))).toBe(false);
    expect(packageSatisfies(busybox, dep("busybox~1.36"))).toBe(true);
    expect(packageSatisfies(busybox, dep("busybox~1.3"))).toBe(false);
    expect(packageSatisfies(busybox, dep("busybox>~1.36"))).toBe(true);
    expect(packageSatisfies(busybox, dep("busybox<~1.36"))).toBe(true);
    expect(packageSatisfies(busybox, dep("busybox<~1.35"))).toBe(false);
    expect(packageSatisfies(busybox, dep("toybox"))).toBe(false);
  });

  it("matches through versioned provides", () => {
    expect(packageSatisfies(busybox, dep("cmd:sh"))).toBe(true);
    expect(packageSatisfies(busybox, dep("cmd:sh>=1.30"))).toBe(true);
    expect(packageSatisfies(busybox, dep("cmd:sh<1.30"))).toBe(false);
    expect(packageSatisfies(busybox, dep("so:libbusy.so.1=1.0"))).toBe(true);
    expect(packageSatisfies(busybox, dep("so:libbusy.so.1>1.0"))).toBe(false);
    expect(packageSatisfies(busybox, dep("so:libbusy.so"))).toBe(false);
  });

  it("a provide without a version satisfies only an unversioned dependency", () => {
    expect(packageSatisfies(busybox, dep("/bin/sh"))).toBe(true);
    expect(packageSatisfies(busybox, dep("/bin/sh>=0"))).toBe(false);
    expect(packageSatisfies(busybox, dep("/bin/sh=1.36.1-r3"))).toBe(false);
    expect(packageSatisfies(busybox, dep("/bin/sh~1"))).toBe(false);
  });

  it("for a conflict, reports whether the package matches the named constraint", () => {
    expect(packageSatisfies(busybox, dep("!busybox"))).toBe(true);
    expect(packageSatisfies(busybox, dep("!busybox<1.30"))).toBe(false);
    expect(packageSatisfies(busybox, dep("!busybox>=1.30"))).toBe(true);
    expect(packageSatisfies(busybox, dep("!cmd:sh"))).toBe(true);
    expect(packageSatisfies(busybox, dep("!/bin/sh"))).toBe(true);
    expect(packageSatisfies(busybox, dep("!/bin/sh>1"))).toBe(false);
    expect(packageSatisfies(busybox, dep("!toybox"))).toBe(false);
  });

  it("ignores repository tags", () => {
    expect(packageSatisfies(busybox, dep("busybox@edge"))).toBe(true);
    expect(packageSatisfies(busybox, dep("busybox@edge>=1.36"))).toBe(true);
    expect(packageSatisfies(busybox, dep("busybox@edge<1"))).toBe(false);
  });

  it("~ is a prefix match on version components", () => {
    const at = (version: string) => packageSatisfies({ name: "lib", version, provides: [] }, dep("lib~1.6"));
    expect(at("1.6")).toBe(true);
    expect(at("1.6.0")).toBe(true);
    expect(at("1.6.9-r2")).toBe(true);
    expect(at("1.6-r0")).toBe(true);
    expect(at("1.6-r12")).toBe(true);
    expect(at("1.60")).toBe(false);
    expect(at("1.61-r0")).toBe(false);
    expect(at("1.7")).toBe(false);
    expect(at("1.5.99")).toBe(false);
    expect(at("2.6")).toBe(false);
  });

  it("throws for a malformed provide rather than guessing", () => {
    const bad = { name: "x", version: "1", provides: ["pc:librtmp=v2.4"] };
    expect(thrown(() => packageSatisfies(bad, dep("pc:librtmp"))).code).toBe("INVALID_DEPENDENCY");
  });
});

describe("validateDependencyList", () => {
  it("returns the parsed list when every token is valid", () => {
    expect(validateDependencyList(["a", "!b", "c>=1"], "pkg D:")).toEqual([
      { name: "a", conflict: false },
      { name: "b", conflict: true },
      { name: "c", conflict: false, op: ">=", version: "1" },
    ]);
    expect(validateDependencyList([], "pkg D:")).toEqual([]);
  });

  it("throws one error listing every invalid token", () => {
    const err = thrown(() =>
      validateDependencyList(["ok", "bad=1.0_foo", "fine>=2", "", "a b", "x<>1"], "foo-1.0-r0 D:"),
    );
    expect(err.code).toBe("INVALID_DEPENDENCY");
    expect(err.subject).toBe("foo-1.0-r0 D:");
    expect(err.message).toContain("foo-1.0-r0 D:");
    expect(err.message).toContain("4 invalid");
    for (const t of ["bad=1.0_foo", '""', "a b", "x<>1"]) expect(err.message).toContain(t);
    expect(err.message).not.toContain('"ok"');
    expect(err.message).not.toContain("fine>=2");
  });
});

describe.skipIf(noShared())("real Alpine 3.16 index", () => {
  const records: IndexRecord[] = noShared() ? [] : parseIndexText(readIndexText("alpine-3.16/APKINDEX.tar.gz"));
  // Alpine shipped one provide that apk itself cannot parse ("v2.4" is not a
  // version): apk 2.14 drops it and the rest of that p: line. It is the only
  // token in the index this parser refuses, and it must stay refused.
  const KNOWN_BAD = new Set(["rtmpdump-dev p:pc:librtmp=v2.4"]);

  const tokens: Array<{ where: string; token: string }> = [];
  for (const r of records) {
    for (const t of r.depends) tokens.push({ where: `${r.name} D:`, token: t });
    for (const t of r.provides) tokens.push({ where: `${r.name} p:`, token: t });
    for (const t of r.installIf) tokens.push({ where: `${r.name} i:`, token: t });
  }

  it("has tens of thousands of D:/p:/i: tokens, including so:, cmd:, pc: and conflicts", () => {
    expect(tokens.length).toBeGreaterThan(20000);
    for (const prefix of ["so:", "cmd:", "pc:", "!", "/"]) {
      expect(
        tokens.some((t) => t.token.startsWith(prefix)),
        prefix,
      ).toBe(true);
    }
  });

  it("every token parses and re-formats identically", () => {
    const refused: string[] = [];
    const changed: string[] = [];
    for (const { where, token } of tokens) {
      let d: Dependency;
      try {
        d = parseDependency(token);
      } catch (e) {
        expect(e).toBeInstanceOf(ApkError);
        refused.push(`${where}${token}`);
        continue;
      }
      if (formatDependency(d) !== token) changed.push(`${where}${token}`);
    }
    expect(changed).toEqual([]);
    expect(refused).toEqual([...KNOWN_BAD]);
  });

  it("every p: token is a provide (name or name=version)", () => {
    const refused: string[] = [];
    for (const r of records) {
      for (const p of r.provides) {
        try {
          const prov = parseProvide(p);
          expect(prov.version === undefined ? prov.name : `${prov.name}=${prov.version}`).toBe(p);
        } catch (e) {
          expect(e).toBeInstanceOf(ApkError);
          refused.push(`${r.name} p:${p}`);
        }
      }
    }
    expect(refused).toEqual([...KNOWN_BAD]);
  });

  it("every dependency on a name the index has is satisfied by some package in it", () => {
    // Alpine's main repository is closed under its own dependencies, so this
    // exercises versionSatisfies on thousands of real constraints.
    // apk ignores a provide it cannot parse; so does this model of it.
    const valid = (p: string) => {
      try {
        parseProvide(p);
        return true;
      } catch {
        return false;
      }
    };
    const byName = new Map<string, Array<{ name: string; version: string; provides: string[] }>>();
    for (const r of records) {
      const pkg = { name: r.name, version: r.version, provides: r.provides.filter(valid) };
      for (const n of new Set([pkg.name, ...pkg.provides.map((p) => parseProvide(p).name)])) {
        const list = byName.get(n) ?? [];
        list.push(pkg);
        byName.set(n, list);
      }
    }
    let versioned = 0;
    const unsatisfied: string[] = [];
    for (const r of records) {
      for (const t of [...r.depends, ...r.installIf]) {
        const d = parseDependency(t);
        const candidates = byName.get(d.name);
        if (d.conflict || !candidates) continue;
        if (d.op) versioned++;
        if (!candidates.some((p) => packageSatisfies(p, d))) unsatisfied.push(`${r.name}: ${t}`);
      }
    }
    expect(unsatisfied).toEqual([]);
    expect(versioned).toBeGreaterThan(2000);
  });
});
