import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  newIndexRecord,
  packageSatisfies,
  parseDependency,
  parseProvide,
  readIndex,
  type Dependency,
  type IndexRecord,
} from "@kiln/apk";
import { resolve, ResolveError, Resolver } from "./resolver.js";
import type { RepoPackage, RepositoryRef, Resolution } from "./types.js";
import { APK_REAL, noShared } from "../../../test/helpers/paths.js";

// --- helpers -----------------------------------------------------------------

const MAIN: RepositoryRef = { url: "main" };
const EXTRA: RepositoryRef = { url: "extra" };
const EDGE: RepositoryRef = { url: "https://example.org/edge", tag: "edge" };

interface Spec {
  D?: string;
  p?: string;
  i?: string;
  k?: number;
  A?: string;
  repo?: RepositoryRef;
}

/** `pkg("libfoo-1.0-r0", { D: "musl so:libc.so.6" })` */
function pkg(nameVersion: string, spec: Spec = {}): RepoPackage {
  const m = /^(.+)-([^-]+-r\d+)$/.exec(nameVersion);
  if (!m) throw new Error(`bad test package ${nameVersion}`);
  const record: IndexRecord = newIndexRecord();
  record.name = m[1]!;
  record.version = m[2]!;
  record.arch = spec.A ?? "x86_64";
  record.depends = spec.D ? spec.D.split(" ") : [];
  record.provides = spec.p ? spec.p.split(" ") : [];
  record.installIf = spec.i ? spec.i.split(" ") : [];
  if (spec.k !== undefined) record.providerPriority = spec.k;
  record.checksum = `Q1${record.name}${record.version}`;
  const repo = spec.repo ?? MAIN;
  return { record, repo, url: `${repo.url}/${record.arch}/${record.name}-${record.version}.apk` };
}

const ids = (r: Resolution): string[] => r.packages.map((p) => `${p.record.name}-${p.record.version}`);
const sorted = (r: Resolution): string[] => ids(r).sort();

function fails(fn: () => unknown): ResolveError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ResolveError) return e;
    throw e;
  }
  throw new Error("expected ResolveError");
}

function shuffle<T>(xs: readonly T[], seed: number): T[] {
  const out = xs.slice();
  let s = seed >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const cleanProvides = new WeakMap<IndexRecord, string[]>();
const parsedDeps = new Map<string, Dependency>();
const dep = (t: string): Dependency => parsedDeps.get(t) ?? parsedDeps.set(t, parseDependency(t)).get(t)!;

/** packageSatisfies over the provides apk can parse (the real index has `pc:librtmp=v2.4`). */
function satisfies(rec: IndexRecord, d: Dependency): boolean {
  let provides = cleanProvides.get(rec);
  if (!provides) {
    provides = rec.provides.filter((p) => {
      try {
        parseProvide(p);
        return true;
      } catch {
        return false;
      }
    });
    cleanProvides.set(rec, provides);
  }
  return packageSatisfies({ name: rec.name, version: rec.version, provides }, d);
}

/**
 * What every resolution must be: one version per name; every request and
 * every dependency of every chosen package satisfied by the set; no conflict
 * holds; each package after the packages satisfying its dependencies unless
 * the two depend on each other (a cycle).
 */
function checkConsistent(requests: string[], r: Resolution): void {
  const recs = r.packages.map((p) => p.record);
  const names = recs.map((x) => x.name);
  expect(new Set(names).size).toBe(names.length);
  expect(r.world).toEqual(requests);
  const pos = new Map(recs.map((x, i) => [x, i] as const));
  const depEdges = new Map<IndexRecord, IndexRecord[]>();
  for (const tok of requests) {
    const d = dep(tok);
    const hit = recs.filter((x) => satisfies(x, d));
    if (d.conflict) expect(hit, `request ${tok}`).toEqual([]);
    else expect(hit.length, `request ${tok}`).toBeGreaterThan(0);
  }
  for (const x of recs) {
    const edges: IndexRecord[] = [];
    for (const tok of x.depends) {
      const d = dep(tok);
      const hit = recs.filter((y) => y !== x && satisfies(y, d));
      if (d.conflict) {
        expect(
          hit.map((y) => y.name),
          `${x.name} depends on ${tok}`,
        ).toEqual([]);
      } else {
        expect(hit.length + (satisfies(x, d) ? 1 : 0), `${x.name}-${x.version} depends on ${tok}`).toBeGreaterThan(0);
        edges.push(...hit);
      }
    }
    depEdges.set(x, edges);
  }
  const reaches = (from: IndexRecord, to: IndexRecord): boolean => {
    const seen = new Set<IndexRecord>();
    const todo = [from];
    while (todo.length) {
      const n = todo.pop()!;
      if (n === to) return true;
      if (seen.has(n)) continue;
      seen.add(n);
      todo.push(...(depEdges.get(n) ?? []));
    }
    return false;
  };
  for (const [x, edges] of depEdges) {
    for (const y of edges) {
      if (pos.get(y)! > pos.get(x)!)
        expect(reaches(y, x), `${y.name} installed after its dependent ${x.name} outside a cycle`).toBe(true);
    }
  }
}

// --- behaviour -----------------------------------------------------------------

describe("resolve: closure and versions", () => {
  const repo = [
    pkg("app-1.0-r0", { D: "liba libb" }),
    pkg("liba-1.0-r0", { D: "libc" }),
    pkg("libb-2.0-r0", { D: "libc" }),
    pkg("libc-1.0-r0"),
    pkg("unrelated-1.0-r0", { D: "libc" }),
  ];

  it("takes the transitive closure of a request, nothing more", () => {
    const r = resolve(["app"], repo);
    expect(sorted(r)).toEqual(["app-1.0-r0", "liba-1.0-r0", "libb-2.0-r0", "libc-1.0-r0"]);
    expect(r.world).toEqual(["app"]);
    expect(r.packages[0]!.url).toBe("main/x86_64/libc-1.0-r0.apk");
    checkConsistent(["app"], r);
  });

  it("returns nothing for no requests, and the world as given", () => {
    expect(resolve([], repo)).toEqual({ packages: [], world: [] });
    expect(resolve(["libc", "liba"], repo).world).toEqual(["libc", "liba"]);
  });

  const versions = [
    pkg("foo-1.0-r0"),
    pkg("foo-1.5-r0"),
    pkg("foo-1.5-r1"),
    pkg("foo-2.0_rc1-r0"),
    pkg("foo-2.0-r0"),
    pkg("foo-1.6.2-r0"),
    pkg("foo-1.60-r0"),
  ];
  const pick = (req: string): string => ids(resolve([req], versions))[0]!;

  it("picks the newest version satisfying each operator", () => {
    expect(pick("foo")).toBe("foo-2.0-r0");
    expect(pick("foo<2.0")).toBe("foo-2.0_rc1-r0");
    expect(pick("foo<2")).toBe("foo-1.60-r0"); // 2.0_rc1 > 2 in apk's order
    expect(pick("foo<=1.5-r0")).toBe("foo-1.5-r0");
    expect(pick("foo<1.5")).toBe("foo-1.0-r0");
    expect(pick("foo=1.5-r0")).toBe("foo-1.5-r0");
    expect(pick("foo=1.5-r1")).toBe("foo-1.5-r1");
    expect(pick("foo>=1.6")).toBe("foo-2.0-r0");
    expect(pick("foo>1.0-r0")).toBe("foo-2.0-r0");
    expect(pick("foo<1.60")).toBe("foo-1.6.2-r0");
  });

  it("treats ~ as a prefix match", () => {
    expect(pick("foo~1.5")).toBe("foo-1.5-r1");
    expect(pick("foo~1.6")).toBe("foo-1.6.2-r0"); // not 1.60
    expect(pick("foo~1")).toBe("foo-1.60-r0");
    expect(pick("foo~2")).toBe("foo-2.0-r0");
    expect(pick("foo>~1.6")).toBe("foo-2.0-r0");
    expect(pick("foo<~1.5")).toBe("foo-1.5-r1");
  });

  it("applies version constraints inside dependencies, and several constraints on one name together", () => {
    const r = resolve(
      ["a", "b"],
      [...versions, pkg("a-1.0-r0", { D: "foo>=1.5 foo<1.6" }), pkg("b-1.0-r0", { D: "foo~1.5" })],
    );
    expect(sorted(r)).toEqual(["a-1.0-r0", "b-1.0-r0", "foo-1.5-r1"]);
  });

  it("prefers the earlier repository among equal versions, newest across repositories", () => {
    const a = pkg("foo-1.0-r0", { repo: EXTRA });
    const b = pkg("foo-1.0-r0", { repo: MAIN });
    expect(resolve(["foo"], [a, b]).packages[0]!.repo).toBe(EXTRA);
    expect(resolve(["foo"], [b, a]).packages[0]!.repo).toBe(MAIN);
    expect(ids(resolve(["foo"], [b, pkg("foo-1.1-r0", { repo: EXTRA })]))).toEqual(["foo-1.1-r0"]);
  });

  it("ignores packages of another arch when an arch is given", () => {
    const mixed = [
      pkg("foo-2.0-r0", { A: "aarch64" }),
      pkg("foo-1.0-r0"),
      pkg("bar-1.0-r0", { A: "noarch" }),
      pkg("baz-1.0-r0", { A: "aarch64" }),
    ];
    expect(ids(resolve(["foo", "bar"], mixed, { arch: "x86_64" })).sort()).toEqual(["bar-1.0-r0", "foo-1.0-r0"]);
    expect(ids(resolve(["foo"], mixed))).toEqual(["foo-2.0-r0"]);
    const e = fails(() => resolve(["baz"], mixed, { arch: "x86_64", preferNewest: true }));
    expect(e.explanation).toEqual([`request baz : no package provides "baz" in main (only for arch aarch64)`]);
  });

  it("rejects malformed requests as INVALID_REQUEST", () => {
    const e = fails(() => resolve(["ok", "bad name", "x<>1"], repo));
    expect(e.code).toBe("INVALID_REQUEST");
    expect(e.explanation).toHaveLength(2);
    expect(e.explanation[0]).toMatch(/^request "bad name" : /);
  });
});

describe("resolve: provides", () => {
  const repo = [
    pkg("glibc-2.39-r0", { p: "so:libc.so.6=6 so:libm.so.6=6" }),
    pkg("busybox-1.36.1-r3", { D: "so:libc.so.6", p: "cmd:sh=1.36.1-r3 cmd:busybox=1.36.1-r3 /bin/sh" }),
    pkg("zlib-1.3-r0", { D: "so:libc.so.6", p: "so:libz.so.1=1.3" }),
    pkg("zlib-dev-1.3-r0", { D: "zlib=1.3-r0 pkgconf", p: "pc:zlib=1.3" }),
    pkg("pkgconf-2.1-r0", { D: "so:libc.so.6", p: "cmd:pkg-config=2.1-r0 pkgconfig=1" }),
    pkg("app-1.0-r0", { D: "so:libz.so.1 so:libm.so.6 cmd:sh /bin/sh" }),
    pkg("tool-1.0-r0", { D: "pc:zlib>=1.2 pkgconfig>=1" }),
    pkg("old-1.0-r0", { D: "pc:zlib<1.0" }),
  ];

  it("satisfies so:, cmd:, pc: and plain names through provides", () => {
    expect(sorted(resolve(["app"], repo))).toEqual(["app-1.0-r0", "busybox-1.36.1-r3", "glibc-2.39-r0", "zlib-1.3-r0"]);
    expect(sorted(resolve(["tool"], repo))).toEqual([
      "glibc-2.39-r0",
      "pkgconf-2.1-r0",
      "tool-1.0-r0",
      "zlib-1.3-r0",
      "zlib-dev-1.3-r0",
    ]);
    expect(ids(resolve(["cmd:pkg-config"], repo))).toContain("pkgconf-2.1-r0");
    expect(ids(resolve(["so:libc.so.6=6"], repo))).toEqual(["glibc-2.39-r0"]);
    checkConsistent(["app", "tool"], resolve(["app", "tool"], repo));
  });

  it("checks versions against the provided version", () => {
    const e = fails(() => resolve(["old"], repo));
    expect(e.code).toBe("UNSATISFIABLE");
    expect(e.explanation).toEqual(["old-1.0-r0 → pc:zlib<1.0 : only zlib-dev-1.3-r0 (provides pc:zlib=1.3) in main"]);
  });

  it("chooses among versioned providers by provider_priority, then provided version", () => {
    const libs = [pkg("libssl3-3.1-r0", { p: "so:libssl.so=3.1" }), pkg("libressl-3.8-r0", { p: "so:libssl.so=3.8" })];
    expect(ids(resolve(["so:libssl.so"], libs))).toEqual(["libressl-3.8-r0"]);
    const ranked = [
      pkg("libssl3-3.1-r0", { p: "so:libssl.so=3.1", k: 10 }),
      pkg("libressl-3.8-r0", { p: "so:libssl.so=3.8" }),
    ];
    expect(ids(resolve(["so:libssl.so"], ranked))).toEqual(["libssl3-3.1-r0"]);
  });

  it("prefers the package of that name over other providers", () => {
    const d = [pkg("dnsmasq-2.86-r3"), pkg("dnsmasq-dnssec-2.86-r3", { p: "dnsmasq=2.86-r3", k: 10 })];
    expect(ids(resolve(["dnsmasq"], d))).toEqual(["dnsmasq-2.86-r3"]);
    expect(ids(resolve(["dnsmasq-dnssec"], d))).toEqual(["dnsmasq-dnssec-2.86-r3"]);
  });

  it("lets one package hold a versioned name: two providers of so:libssl.so=... cannot both be installed", () => {
    const libs = [pkg("libssl3-3.1-r0", { p: "so:libssl.so=3.1" }), pkg("libressl-3.8-r0", { p: "so:libssl.so=3.8" })];
    const e = fails(() => resolve(["libssl3", "libressl"], libs));
    expect(e.explanation).toEqual([
      `request libressl : libressl-3.8-r0 and libssl3-3.1-r0 both provide "so:libssl.so" (selected by request libssl3)`,
    ]);
  });
});

describe("resolve: virtual provides", () => {
  const luas = [
    pkg("lua5.1-5.1.5-r12", { p: "lua", k: 100 }),
    pkg("lua5.2-5.2.4-r11", { p: "lua" }),
    pkg("lua5.4-5.4.4-r6", { p: "lua", k: 200 }),
    pkg("needs-lua-1.0-r0", { D: "lua" }),
  ];

  it("picks the provider with the highest provider_priority", () => {
    expect(ids(resolve(["lua"], luas))).toEqual(["lua5.4-5.4.4-r6"]);
    expect(sorted(resolve(["needs-lua"], luas))).toEqual(["lua5.4-5.4.4-r6", "needs-lua-1.0-r0"]);
  });

  it("uses a provider already required by something else, in any order", () => {
    expect(sorted(resolve(["needs-lua", "lua5.2"], luas))).toEqual(["lua5.2-5.2.4-r11", "needs-lua-1.0-r0"]);
    expect(sorted(resolve(["lua5.2", "needs-lua"], luas))).toEqual(["lua5.2-5.2.4-r11", "needs-lua-1.0-r0"]);
  });

  it("refuses to guess between several providers without provider_priority", () => {
    const plain = [
      pkg("mawk-1.3-r0", { p: "awk" }),
      pkg("gawk-5.2-r0", { p: "awk" }),
      pkg("script-1.0-r0", { D: "awk" }),
    ];
    const e = fails(() => resolve(["script"], plain));
    expect(e.code).toBe("UNSATISFIABLE");
    expect(e.explanation).toEqual([
      `script-1.0-r0 → awk : "awk" is virtual, provided by gawk, mawk with no provider_priority and none of them selected; request one of them`,
    ]);
    expect(sorted(resolve(["script", "mawk"], plain))).toEqual(["mawk-1.3-r0", "script-1.0-r0"]);
  });

  it("takes the only provider of a virtual name even without priority", () => {
    const one = [pkg("busybox-1.36-r0", { p: "/bin/sh" }), pkg("script-1.0-r0", { D: "/bin/sh" })];
    expect(sorted(resolve(["script"], one))).toEqual(["busybox-1.36-r0", "script-1.0-r0"]);
  });

  it("never satisfies a versioned dependency with a virtual provide", () => {
    const e = fails(() => resolve(["lua>=5"], luas));
    expect(e.explanation[0]).toMatch(
      /^request lua>=5 : only lua5\.4-5\.4\.4-r6 \(provides lua without a version\), .* in main$/,
    );
  });

  it("prefers a real package over prioritized virtual providers, several virtual providers may coexist", () => {
    const r = [pkg("vi-1.0-r0"), pkg("nvi-2.0-r0", { p: "vi", k: 500 }), pkg("elvis-1.0-r0", { p: "vi", k: 1 })];
    expect(ids(resolve(["vi"], r))).toEqual(["vi-1.0-r0"]);
    expect(sorted(resolve(["nvi", "elvis"], r))).toEqual(["elvis-1.0-r0", "nvi-2.0-r0"]);
    // ...but a virtual provide of a name and a package of that name exclude each other
    expect(sorted(resolve(["vi", "nvi"], r))).toEqual(["nvi-2.0-r0"]); // nvi satisfies the request vi
    expect(fails(() => resolve(["vi>=1", "nvi"], r)).explanation[0]).toContain(
      `nvi-2.0-r0 and vi-1.0-r0 both provide "vi"`,
    );
  });
});

describe("resolve: repository tags", () => {
  const repo = [
    pkg("musl-1.2-r0"),
    pkg("foo-1.0-r0", { D: "musl" }),
    pkg("foo-2.0-r0", { D: "musl libnew", repo: EDGE }),
    pkg("libnew-1.0-r0", { repo: EDGE }),
    pkg("musl-1.3-r0", { repo: EDGE }),
    pkg("bar-1.0-r0", { D: "foo" }),
    pkg("onlyedge-1.0-r0", { repo: EDGE }),
  ];

  it("untagged requests never pick packages from tagged repositories", () => {
    expect(sorted(resolve(["foo"], repo))).toEqual(["foo-1.0-r0", "musl-1.2-r0"]);
    expect(sorted(resolve(["bar"], repo))).toEqual(["bar-1.0-r0", "foo-1.0-r0", "musl-1.2-r0"]);
  });

  it("name@tag admits the tagged repository; its package's dependencies may come from the same tag", () => {
    const r = resolve(["foo@edge"], repo);
    expect(sorted(r)).toEqual(["foo-2.0-r0", "libnew-1.0-r0", "musl-1.3-r0"]);
    expect(r.packages.find((p) => p.record.name === "foo")!.repo).toBe(EDGE);
    expect(r.world).toEqual(["foo@edge"]);
  });

  it("a world pin name@tag applies to every dependency on that name", () => {
    expect(sorted(resolve(["bar", "foo@edge"], repo))).toEqual([
      "bar-1.0-r0",
      "foo-2.0-r0",
      "libnew-1.0-r0",
      "musl-1.3-r0",
    ]);
  });

  it("explains a package that exists only in a tagged repository, and refuses unknown tags", () => {
    const e = fails(() => resolve(["onlyedge"], repo));
    expect(e.code).toBe("UNSATISFIABLE");
    expect(e.explanation).toEqual([
      "request onlyedge : onlyedge-1.0-r0 is only in repository @edge https://example.org/edge, which serves only onlyedge@edge requests",
    ]);
    expect(ids(resolve(["onlyedge@edge"], repo))).toEqual(["onlyedge-1.0-r0"]);
    const u = fails(() => resolve(["foo@testing"], repo));
    expect(u.code).toBe("INVALID_REQUEST");
    expect(u.explanation).toEqual(["request foo@testing : no repository is tagged @testing (tagged: @edge)"]);
  });
});

describe("resolve: conflicts", () => {
  it("honours !name in requests", () => {
    const repo = [
      pkg("a-1.0-r0", { D: "sh" }),
      pkg("bash-5.0-r0", { p: "sh", k: 10 }),
      pkg("busybox-1.0-r0", { p: "sh", k: 1 }),
    ];
    expect(sorted(resolve(["a"], repo))).toEqual(["a-1.0-r0", "bash-5.0-r0"]);
    expect(sorted(resolve(["a", "!bash"], repo))).toEqual(["a-1.0-r0", "busybox-1.0-r0"]);
    const e = fails(() => resolve(["bash", "!bash"], repo));
    expect(e.explanation).toEqual(["request bash : bash-5.0-r0 conflicts with request !bash"]);
  });

  it("honours versioned conflicts and conflicts declared by chosen packages", () => {
    const repo = [
      pkg("app-1.0-r0", { D: "lib tool" }),
      pkg("lib-2.0-r0"),
      pkg("lib-1.0-r0"),
      pkg("tool-1.0-r0", { D: "!lib>=2" }),
    ];
    expect(sorted(resolve(["app"], repo))).toEqual(["app-1.0-r0", "lib-1.0-r0", "tool-1.0-r0"]);
    checkConsistent(["app"], resolve(["app"], repo));
  });

  it("names both packages when a conflict cannot be avoided", () => {
    const repo = [
      pkg("app-1.0-r0", { D: "openssh-client dropbear-scp" }),
      pkg("openssh-client-9.0-r0"),
      pkg("dropbear-scp-2022.82-r1", { D: "!openssh-client" }),
    ];
    const e = fails(() => resolve(["app"], repo));
    expect(e.code).toBe("UNSATISFIABLE");
    expect(e.explanation).toEqual([
      "app-1.0-r0 → dropbear-scp : dropbear-scp-2022.82-r1 depends on !openssh-client but openssh-client-9.0-r0 is selected (selected by app-1.0-r0 → openssh-client)",
    ]);
    const e2 = fails(() => resolve(["dropbear-scp", "openssh-client"], repo));
    expect(e2.explanation).toEqual([
      "request openssh-client : openssh-client-9.0-r0 conflicts with dropbear-scp-2022.82-r1, which depends on !openssh-client (selected by request dropbear-scp)",
    ]);
  });

  it("installs only one version per name", () => {
    const repo = [
      pkg("a-1.0-r0", { D: "lib=1.0-r0" }),
      pkg("b-1.0-r0", { D: "lib=2.0-r0" }),
      pkg("lib-1.0-r0"),
      pkg("lib-2.0-r0"),
    ];
    const e = fails(() => resolve(["a", "b"], repo));
    expect(e.explanation).toEqual([
      "b-1.0-r0 → lib=2.0-r0 : lib-2.0-r0 cannot be installed: lib-1.0-r0 is already selected (selected by a-1.0-r0 → lib=1.0-r0)",
    ]);
  });
});

describe("resolve: install_if", () => {
  const repo = [
    pkg("docs-0.2-r0"),
    pkg("openrc-0.44-r0"),
    pkg("foo-1.0-r0"),
    pkg("foo-doc-1.0-r0", { i: "docs foo=1.0-r0", D: "man-pages" }),
    pkg("man-pages-6.0-r0"),
    pkg("man-pages-doc-6.0-r0", { i: "docs man-pages=6.0-r0" }),
    pkg("foo-openrc-1.0-r0", { i: "openrc foo=1.0-r0" }),
    pkg("bar-2.0-r0"),
    pkg("bar-doc-1.0-r0", { i: "docs bar=1.0-r0" }),
    pkg("x-doc-1.0-r0", { i: "docs", D: "nonexistent" }),
  ];

  it("adds packages whose install_if holds, with their dependencies, to a fixpoint", () => {
    const r = resolve(["foo", "docs", "bar"], repo);
    // foo-doc pulls man-pages, which then triggers man-pages-doc; bar-doc wants bar=1.0-r0; x-doc cannot be installed
    expect(sorted(r)).toEqual([
      "bar-2.0-r0",
      "docs-0.2-r0",
      "foo-1.0-r0",
      "foo-doc-1.0-r0",
      "man-pages-6.0-r0",
      "man-pages-doc-6.0-r0",
    ]);
    checkConsistent(["foo", "docs", "bar"], r);
  });

  it("adds nothing when a trigger is missing", () => {
    expect(sorted(resolve(["foo"], repo))).toEqual(["foo-1.0-r0"]);
    expect(sorted(resolve(["foo", "openrc"], repo))).toEqual(["foo-1.0-r0", "foo-openrc-1.0-r0", "openrc-0.44-r0"]);
  });

  it("honours a negated entry: !name holds only while nothing selected satisfies name", () => {
    const r = [
      pkg("docs-0.2-r0"),
      pkg("bar-1.0-r0"),
      pkg("foo-1.0-r0"),
      pkg("foo-2.0-r0"),
      pkg("bar-doc-1.0-r0", { i: "docs bar !foo" }),
      pkg("bar-man-1.0-r0", { i: "docs bar !foo>=2" }),
    ];
    expect(sorted(resolve(["bar", "docs"], r))).toEqual([
      "bar-1.0-r0",
      "bar-doc-1.0-r0",
      "bar-man-1.0-r0",
      "docs-0.2-r0",
    ]);
    expect(sorted(resolve(["bar", "docs", "foo"], r))).toEqual(["bar-1.0-r0", "docs-0.2-r0", "foo-2.0-r0"]);
    expect(sorted(resolve(["bar", "docs", "foo<2"], r))).toEqual([
      "bar-1.0-r0",
      "bar-man-1.0-r0",
      "docs-0.2-r0",
      "foo-1.0-r0",
    ]);
    expect(sorted(resolve(["docs", "foo"], r))).toEqual(["docs-0.2-r0", "foo-2.0-r0"]);
  });

  it("does not add a package whose negated entry its own dependencies would break", () => {
    const r = [
      pkg("docs-0.2-r0"),
      pkg("bar-1.0-r0"),
      pkg("foo-1.0-r0"),
      pkg("bar-doc-1.0-r0", { i: "docs bar !foo", D: "foo" }),
      pkg("baz-doc-1.0-r0", { i: "docs bar", D: "foo" }),
    ];
    // bar-doc would bring foo, which its install_if excludes; baz-doc may bring it
    expect(sorted(resolve(["bar", "docs"], r))).toEqual(["bar-1.0-r0", "baz-doc-1.0-r0", "docs-0.2-r0", "foo-1.0-r0"]);
    expect(
      sorted(
        resolve(
          ["bar", "docs"],
          r.filter((p) => p.record.name !== "baz-doc"),
        ),
      ),
    ).toEqual(["bar-1.0-r0", "docs-0.2-r0"]);
  });
});

describe("resolve: backtracking", () => {
  it("falls back to an older candidate when the newest leads to a missing version", () => {
    const repo = [
      pkg("app-1.0-r0", { D: "libfoo libbar" }),
      pkg("libfoo-2.0-r0"),
      pkg("libbar-2.0-r0", { D: "libfoo>=3" }),
      pkg("libbar-1.0-r0", { D: "libfoo" }),
    ];
    const r = resolve(["app"], repo);
    expect(sorted(r)).toEqual(["app-1.0-r0", "libbar-1.0-r0", "libfoo-2.0-r0"]);
    checkConsistent(["app"], r);
  });

  it("falls back when the newest candidate conflicts deeper down", () => {
    const repo = [
      pkg("app-1.0-r0", { D: "libbar libfoo" }),
      pkg("libfoo-1.0-r0"),
      pkg("libbar-2.0-r0", { D: "helper" }),
      pkg("helper-1.0-r0", { D: "!libfoo" }),
      pkg("libbar-1.5-r0", { D: "helper2" }),
      pkg("helper2-1.0-r0", { D: "libfoo>=2" }),
      pkg("libbar-1.0-r0", { D: "helper3" }),
      pkg("helper3-1.0-r0", { D: "libfoo" }),
    ];
    const r = resolve(["app"], repo);
    expect(sorted(r)).toEqual(["app-1.0-r0", "helper3-1.0-r0", "libbar-1.0-r0", "libfoo-1.0-r0"]);
    checkConsistent(["app"], r);
  });

  it("revisits an earlier choice when a later dependency rules out every candidate", () => {
    // x: newest x-2 needs z>=2; y needs w which pins z<2, discovered only after x is chosen.
    const repo = [
      pkg("x-2.0-r0", { D: "z>=2" }),
      pkg("x-1.0-r0", { D: "z" }),
      pkg("y-2.0-r0", { D: "w" }),
      pkg("y-1.0-r0", { D: "w" }),
      pkg("w-1.0-r0", { D: "z<2" }),
      pkg("z-2.0-r0"),
      pkg("z-1.0-r0"),
    ];
    const r = resolve(["x", "y"], repo);
    expect(sorted(r)).toEqual(["w-1.0-r0", "x-1.0-r0", "y-2.0-r0", "z-1.0-r0"]);
  });

  it("explains every attempt when no candidate works", () => {
    const repo = [
      pkg("app-1.0-r0", { D: "libfoo libbar" }),
      pkg("libfoo-2.0-r0"),
      pkg("libbar-2.0-r0", { D: "libfoo>=3" }),
      pkg("libbar-1.0-r0", { D: "libfoo<2" }),
    ];
    const e = fails(() => resolve(["app"], repo));
    expect(e.explanation).toEqual([
      "app-1.0-r0 → libbar-2.0-r0 → libfoo>=3 : only libfoo-2.0-r0 in main",
      "app-1.0-r0 → libbar-1.0-r0 → libfoo<2 : only libfoo-2.0-r0 in main",
    ]);
  });

  it("backjumps over unrelated choices instead of enumerating them", () => {
    // 24 independent two-version choices, then one that can never work: a
    // chronological search would try 2^24 combinations.
    const repo: RepoPackage[] = [];
    const deps: string[] = [];
    for (let i = 0; i < 24; i++) {
      repo.push(pkg(`p${i}-2.0-r0`), pkg(`p${i}-1.0-r0`));
      deps.push(`p${i}`);
    }
    repo.push(pkg("q-2.0-r0", { D: "r>=2" }), pkg("q-1.0-r0", { D: "r>=3" }), pkg("r-1.0-r0"));
    repo.push(pkg("app-1.0-r0", { D: [...deps, "q"].join(" ") }));
    const e = fails(() => resolve(["app"], repo));
    expect(e.explanation).toEqual([
      "app-1.0-r0 → q-2.0-r0 → r>=2 : only r-1.0-r0 in main",
      "app-1.0-r0 → q-1.0-r0 → r>=3 : only r-1.0-r0 in main",
    ]);
    // and with a working q it takes the newest of everything
    const ok = resolve(["app"], [...repo, pkg("r-3.0-r0")]);
    expect(ok.packages).toHaveLength(27);
    expect(ids(ok)).toContain("p23-2.0-r0");
  });
});

describe("resolve: explanations", () => {
  const repo = [pkg("app-1.0-r0", { D: "libfoo>=2" }), pkg("libfoo-1.0-r0"), pkg("top-1.0-r0", { D: "app" })];

  it("names the missing package and the repositories searched", () => {
    const e = fails(() => resolve(["foo"], [...repo, pkg("other-1.0-r0", { repo: EXTRA })]));
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe("UNSATISFIABLE");
    expect(e.explanation).toEqual([`request foo : no package provides "foo" in main, extra`]);
    expect(e.message).toContain(`request foo : no package provides "foo" in main, extra`);
  });

  it("shows the chain down to an unsatisfiable version and the versions that exist", () => {
    expect(fails(() => resolve(["app"], repo)).explanation).toEqual([
      "app-1.0-r0 → libfoo>=2 : only libfoo-1.0-r0 in main",
    ]);
    expect(fails(() => resolve(["top"], repo)).explanation).toEqual([
      "top-1.0-r0 → app-1.0-r0 → libfoo>=2 : only libfoo-1.0-r0 in main",
    ]);
    const two = [...repo, pkg("libfoo-1.5-r0", { repo: EXTRA })];
    expect(fails(() => resolve(["app"], two)).explanation).toEqual([
      "app-1.0-r0 → libfoo>=2 : only libfoo-1.0-r0 in main; libfoo-1.5-r0 in extra",
    ]);
  });

  it("shows the request when it named a provided name", () => {
    const r = [pkg("busybox-1.0-r0", { D: "libfoo>=2", p: "cmd:sh=1.0-r0" }), pkg("libfoo-1.0-r0")];
    expect(fails(() => resolve(["cmd:sh"], r)).explanation).toEqual([
      "request cmd:sh → busybox-1.0-r0 → libfoo>=2 : only libfoo-1.0-r0 in main",
    ]);
  });
});

describe("resolve: determinism and install order", () => {
  const repo = [
    pkg("app-1.0-r0", { D: "liba libb so:libz.so.1 sh" }),
    pkg("liba-1.0-r0", { D: "libb libc" }),
    pkg("libb-1.0-r0", { D: "libc" }),
    pkg("libb-0.9-r0", { D: "libc" }),
    pkg("libc-1.0-r0"),
    pkg("zlib-1.3-r0", { D: "libc", p: "so:libz.so.1=1" }),
    pkg("bash-5.0-r0", { D: "libc", p: "sh", k: 5 }),
    pkg("dash-0.5-r0", { D: "libc", p: "sh", k: 5 }),
    pkg("cyc-a-1.0-r0", { D: "cyc-b libc" }),
    pkg("cyc-b-1.0-r0", { D: "cyc-a" }),
  ];

  it("gives the same output for shuffled input", () => {
    const want = ids(resolve(["app", "cyc-b"], repo));
    for (let seed = 1; seed <= 20; seed++) expect(ids(resolve(["app", "cyc-b"], shuffle(repo, seed)))).toEqual(want);
  });

  it("installs dependencies before dependents and breaks cycles by name", () => {
    const r = resolve(["app", "cyc-b"], repo);
    expect(ids(r)).toEqual([
      "libc-1.0-r0",
      "bash-5.0-r0",
      "libb-1.0-r0",
      "liba-1.0-r0",
      "zlib-1.3-r0",
      "app-1.0-r0",
      "cyc-b-1.0-r0",
      "cyc-a-1.0-r0",
    ]);
    checkConsistent(["app", "cyc-b"], r);
  });
});

describe("resolve: completeness against brute force", () => {
  // Small random universes (no virtual provides, no tags: the documented
  // policy limits do not apply), compared with an exhaustive search over
  // every subset: resolve must succeed exactly when some valid set exists.
  function rng(seed: number): () => number {
    let x = seed >>> 0;
    return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  }

  function universe(seed: number): { repo: RepoPackage[]; requests: string[] } {
    const r = rng(seed);
    const names = ["a", "b", "c", "d", "e"];
    const ops = [">=", "<", "=", "~", ">"];
    const repo: RepoPackage[] = [];
    const constraint = (n: string): string => {
      const x = r();
      if (x < 0.5) return n;
      return `${n}${ops[Math.floor(r() * ops.length)]}${1 + Math.floor(r() * 3)}`;
    };
    for (const n of names) {
      const nv = 1 + Math.floor(r() * 3);
      for (let v = 1; v <= nv; v++) {
        if (repo.length >= 11) break;
        const deps: string[] = [];
        for (const m of names) {
          if (m === n) continue;
          const x = r();
          if (x < 0.25) deps.push(constraint(m));
          else if (x < 0.32) deps.push("!" + constraint(m));
        }
        const provides = r() < 0.15 ? [`so:lib${names[Math.floor(r() * names.length)]}.so=${v}`] : [];
        if (r() < 0.2) deps.push(constraint(`so:lib${names[Math.floor(r() * names.length)]}.so`));
        repo.push(pkg(`${n}-${v}.0-r0`, { D: deps.join(" ") || undefined, p: provides.join(" ") || undefined }));
      }
    }
    const requests = [constraint(names[Math.floor(r() * 2)]!)];
    if (r() < 0.7) requests.push(constraint(names[2 + Math.floor(r() * 3)]!));
    if (r() < 0.2) requests.push("!" + constraint(names[Math.floor(r() * names.length)]!));
    return { repo, requests };
  }

  function valid(set: IndexRecord[], requests: string[]): boolean {
    const slots = new Map<string, IndexRecord>();
    for (const x of set) {
      for (const n of [x.name, ...x.provides.map((p) => parseProvide(p).name)]) {
        const h = slots.get(n);
        if (h && h !== x) return false;
        slots.set(n, x);
      }
    }
    const holds = (d: Dependency, self?: IndexRecord): boolean =>
      d.conflict
        ? !set.some((y) => y !== self && satisfies(y, { ...d, conflict: false }))
        : set.some((y) => satisfies(y, d));
    return requests.every((t) => holds(dep(t))) && set.every((x) => x.depends.every((t) => holds(dep(t), x)));
  }

  it("finds a solution exactly when one exists (400 random universes)", () => {
    let solvable = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const { repo, requests } = universe(seed);
      const recs = repo.map((p) => p.record);
      let exists = false;
      for (let mask = 0; mask < 1 << recs.length && !exists; mask++)
        exists = valid(
          recs.filter((_, i) => mask & (1 << i)),
          requests,
        );
      let got: Resolution | undefined;
      try {
        got = resolve(requests, repo);
      } catch (e) {
        if (!(e instanceof ResolveError)) throw e;
        expect(e.code).toBe("UNSATISFIABLE");
        expect(e.explanation.length).toBeGreaterThan(0);
      }
      expect(
        got !== undefined,
        `seed ${seed}: ${requests.join(" ")} over ${recs.map((x) => `${x.name}-${x.version}[${x.depends.join(",")}|${x.provides.join(",")}]`).join(" ")}`,
      ).toBe(exists);
      if (got) {
        expect(
          valid(
            got.packages.map((p) => p.record),
            requests,
          ),
          `seed ${seed}`,
        ).toBe(true);
        checkConsistent(requests, got);
        solvable++;
      }
    }
    expect(solvable).toBeGreaterThan(50);
    expect(solvable).toBeLessThan(390);
  });
});

describe("resolve: random universes with virtual providers, priorities, tags and install_if", () => {
  // No brute force here (the provider and tag policies make some satisfiable
  // sets out of reach by design); every answer must still be consistent, the
  // same for shuffled input, and every failure an explained UNSATISFIABLE.
  function rng(seed: number): () => number {
    let x = seed >>> 0;
    return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  }

  function universe(seed: number): { repo: RepoPackage[]; requests: string[] } {
    const r = rng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const names = ["a", "b", "c", "d", "e", "f", "g"];
    const ops = [">=", "<", "=", "~", ">"];
    const constraint = (n: string): string => (r() < 0.6 ? n : `${n}${pick(ops)}${1 + Math.floor(r() * 3)}`);
    const repo: RepoPackage[] = [];
    for (const n of names) {
      const versions = 1 + Math.floor(r() * 3);
      for (let v = 1; v <= versions; v++) {
        const D: string[] = [];
        for (const m of names) {
          if (m === n) continue;
          const x = r();
          if (x < 0.18) D.push(constraint(m));
          else if (x < 0.22) D.push("!" + constraint(m));
        }
        if (r() < 0.2) D.push(pick(["va", "vb"]));
        if (r() < 0.15) D.push(`so:lib${pick(names)}.so`);
        const p: string[] = [];
        if (r() < 0.25) p.push(pick(["va", "vb"]));
        if (r() < 0.1) p.push(`so:lib${pick(names)}.so=${v}`);
        const i = r() < 0.12 ? [pick(names), ...(r() < 0.4 ? ["!" + pick(names)] : [])] : [];
        const k = r() < 0.5 ? Math.floor(r() * 3) : undefined;
        repo.push(
          pkg(`${n}-${v}.0-r0`, {
            D: D.join(" ") || undefined,
            p: p.join(" ") || undefined,
            i: i.join(" ") || undefined,
            k,
            repo: r() < 0.12 ? EDGE : MAIN,
          }),
        );
      }
    }
    const requests = [constraint(pick(names.slice(0, 3)))];
    if (r() < 0.7) requests.push(constraint(pick(names.slice(3))));
    if (r() < 0.2) requests.push(pick(names) + "@edge");
    if (r() < 0.15) requests.push("!" + constraint(pick(names)));
    if (r() < 0.15) requests.push(pick(["va", "vb"]));
    return { repo, requests };
  }

  it("gives consistent, deterministic answers and explained failures (2000 universes)", () => {
    let solvable = 0;
    for (let seed = 1; seed <= 2000; seed++) {
      const { repo, requests } = universe(seed);
      let got: Resolution | undefined;
      try {
        got = resolve(requests, repo);
      } catch (e) {
        if (!(e instanceof ResolveError)) throw new Error(`seed ${seed}: ${(e as Error).message}`);
        const noEdge = !repo.some((p) => p.repo === EDGE) && requests.some((t) => t.endsWith("@edge"));
        expect(e.code, `seed ${seed}`).toBe(noEdge ? "INVALID_REQUEST" : "UNSATISFIABLE");
        expect(e.explanation.length).toBeGreaterThan(0);
        continue;
      }
      solvable++;
      checkConsistent(requests, got);
      expect(ids(resolve(requests, shuffle(repo, seed))), `seed ${seed} shuffled`).toEqual(ids(got));
    }
    expect(solvable).toBeGreaterThan(200);
    expect(solvable).toBeLessThan(1800);
  });
});

// --- the real Alpine 3.16 main index ---------------------------------------------

describe.skipIf(noShared())("resolve: Alpine 3.16 main index", () => {
  const indexPath = `${APK_REAL}/alpine-3.16/APKINDEX.tar.gz`;
  const alpine: RepositoryRef = { url: "alpine" };
  let available: RepoPackage[] = [];

  beforeAll(async () => {
    const idx = await readIndex(readFileSync(indexPath));
    available = idx.records.map((record) => ({
      record,
      repo: alpine,
      url: `alpine/${record.arch}/${record.name}-${record.version}.apk`,
    }));
    expect(available.length).toBeGreaterThan(4000);
  });

  const cases: Array<[string[], string[]]> = [
    [
      ["alpine-base"],
      ["alpine-base", "busybox", "musl", "apk-tools", "openrc", "alpine-baselayout", "ifupdown-ng", "ssl_client"],
    ],
    [["build-base"], ["gcc", "g++", "make", "musl-dev", "binutils", "libc-dev", "fortify-headers", "patch"]],
    [["python3"], ["python3", "musl", "libffi", "sqlite-libs"]],
    [["git"], ["git", "libcurl", "pcre2", "zlib"]],
    [["nginx"], ["nginx", "pcre", "libssl1.1"]],
    [
      ["curl", "bash", "jq"],
      ["curl", "bash", "jq", "oniguruma", "readline"],
    ],
    [
      ["alpine-base", "docs", "postgresql", "lua", "cmd:psql"],
      ["postgresql14", "postgresql14-client", "lua5.1", "busybox-doc", "postgresql14-openrc"],
    ],
  ];

  for (const [requests, expected] of cases) {
    it(`resolves ${requests.join(" ")} to a consistent closure`, () => {
      const t0 = performance.now();
      const r = resolve(requests, available, { arch: "x86_64" });
      const ms = performance.now() - t0;
      console.log(`alpine-3.16: ${requests.join(" ")} → ${r.packages.length} packages in ${ms.toFixed(1)} ms`);
      const names = r.packages.map((p) => p.record.name);
      for (const n of expected) expect(names).toContain(n);
      checkConsistent(requests, r);
      // install_if is at a fixpoint: every package whose install_if holds and
      // whose name is free is installed (Alpine's are all installable).
      const chosen = r.packages.map((p) => p.record);
      for (const rp of available) {
        const rec = rp.record;
        if (!rec.installIf.length || names.includes(rec.name)) continue;
        const holds = rec.installIf.every((t) => chosen.some((c) => satisfies(c, dep(t))));
        expect(holds, `${rec.name} install_if ${rec.installIf.join(" ")}`).toBe(false);
      }
    });
  }

  it("is deterministic on the shuffled index", () => {
    const want = ids(resolve(["alpine-base", "build-base", "git"], available));
    expect(ids(resolve(["alpine-base", "build-base", "git"], shuffle(available, 7)))).toEqual(want);
  });

  it("picks real virtual providers by priority and explains real failures", () => {
    expect(resolve(["dhcp-server"], available).packages.map((p) => p.record.name)).toContain("dhcp-server-vanilla");
    expect(resolve(["lua"], available).packages.map((p) => p.record.name)).toContain("lua5.1");
    expect(fails(() => resolve(["vim", "gvim"], available)).explanation).toEqual([
      `request gvim : gvim-8.2.5000-r0 and vim-8.2.5000-r0 both provide "cmd:ex" (selected by request vim)`,
    ]);
    expect(fails(() => resolve(["python3>=3.11"], available)).explanation).toEqual([
      expect.stringMatching(/^request python3>=3\.11 : only python3-3\.10\.\d+-r\d+ in alpine$/),
    ]);
    expect(fails(() => resolve(["dropbear-scp", "openssh-client-default"], available)).explanation).toEqual([
      expect.stringMatching(
        /^request openssh-client-default : openssh-client-default-\S+ conflicts with dropbear-scp-\S+, which depends on !openssh-client \(selected by request dropbear-scp\)$/,
      ),
    ]);
    expect(fails(() => resolve(["nvme-cli"], available)).explanation).toEqual([
      `request nvme-cli : no package provides "nvme-cli" in alpine`,
    ]);
  });

  it("answers many requests from one Resolver", () => {
    const resolver = new Resolver(available, { arch: "x86_64" });
    const t0 = performance.now();
    let n = 0;
    for (const req of [["alpine-base"], ["build-base"], ["python3"], ["git"], ["nginx"], ["curl", "bash", "jq"]])
      n += resolver.resolve(req).packages.length;
    console.log(
      `alpine-3.16: six requests on one Resolver: ${n} packages in ${(performance.now() - t0).toFixed(1)} ms`,
    );
    expect(n).toBeGreaterThan(80);
  });
});
