// Pure parts of @kiln/distro: distro.yaml validation, environment merging,
// release numbers, the graph (edges through provides, cycles, stand-ins) and
// the plan over in-memory repository states.

import { describe, expect, it } from "vitest";
import { newIndexRecord, type IndexRecord } from "@kiln/apk";
import { ConfigError } from "@kiln/image";
import { mergeEnvironment, parseDistro } from "./config.js";
import { buildGraph, cyclicComponents } from "./graph.js";
import { overheadText, overheadTotals, renderRunReport, sumOverhead } from "./render.js";
import { buildKey, formatKeyRecords, identity, parseKeyRecords, type KeyRecord, type KeyStore } from "./keys.js";
import { chooseEpoch, diffIdentities, planBuild } from "./plan.js";
import type { RecipeNode } from "./recipes.js";
import { runPlan, type Builder } from "./run.js";
import type { RepoState } from "./state.js";

function problems(text: string): string[] {
  try {
    parseDistro("/d/distro.yaml", text);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.line}:${p.path}: ${p.message}`);
    throw e;
  }
  return [];
}

describe("distro.yaml", () => {
  it("resolves paths against its directory and reads signing-key forms", () => {
    const d = parseDistro(
      "/d/distro.yaml",
      "name: T\nid: t\narchitectures: [amd64, arm64]\npipelines: [p1, /abs/p2]\nsigning-key: env:SIGN\nupstream:\n  repositories: [https://x.invalid/repo, ../up, '@tag ../tagged']\n",
    );
    expect(d.architectures).toEqual(["x86_64", "aarch64"]);
    expect(d.recipesDir).toBe("/d/recipes");
    expect(d.outDir).toBe("/d/out");
    expect(d.pipelineDirs).toEqual(["/d/p1", "/abs/p2"]);
    expect(d.signingKey).toEqual({ kind: "env", variable: "SIGN" });
    expect(d.upstream.repositories).toEqual(["https://x.invalid/repo", "/up", "@tag /tagged"]);
    expect(parseDistro("/d/distro.yaml", "name: T\nid: t\nsigning-key: keys/k.rsa\n").signingKey).toEqual({
      kind: "path",
      path: "/d/keys/k.rsa",
    });
  });

  it("reports every problem at its line with the dotted path", () => {
    const ps = problems(
      "name: T\nid: Not An Id\narchitectures: [x86_64, vax]\nrecipe: recipes\nmirrors:\n  debian: ftp://example.invalid\npublish:\n  target: https://bucket\n",
    );
    expect(ps).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^2:id: expected an os-release ID/),
        expect.stringMatching(/^4:recipe: unknown key "recipe"/),
        expect.stringMatching(/^6:mirrors.debian: expected an http/),
      ]),
    );
    expect(problems("name: T\nid: t\narchitectures: [x86_64, vax]\n")).toEqual([
      expect.stringMatching(/^3:architectures\[1\]: unknown architecture "vax"/),
    ]);
    expect(problems("name: T\nid: t\npublish:\n  target: https://bucket\n")).toEqual([
      expect.stringMatching(/^4:publish.target: publish to s3/),
    ]);
    expect(problems("name: T\nid: t\nenvironment:\n  contents:\n    packagez: [a]\n")).toEqual([
      expect.stringMatching(/^5:environment.contents.packagez: unknown key/),
    ]);
  });

  it("merges the default build environment under a recipe's own", () => {
    const def = {
      contents: { packages: ["busybox", "make"], repositories: ["r1"] },
      paths: [{ path: "/bin/sh", type: "symlink" as const, source: "/usr/bin/busybox" }],
      environment: { A: "1", B: "1" },
    };
    const m = mergeEnvironment(def, {
      contents: { packages: ["make", "zlib-dev"] },
      paths: [{ path: "/bin/sh", type: "symlink", source: "/usr/bin/bash" }],
      environment: { B: "2" },
    });
    expect(m.contents?.packages).toEqual(["busybox", "make", "zlib-dev"]);
    expect(m.contents?.repositories).toEqual(["r1"]);
    expect(m.paths).toEqual([{ path: "/bin/sh", type: "symlink", source: "/usr/bin/bash" }]);
    expect(m.environment).toEqual({ A: "1", B: "2" });
    expect(mergeEnvironment(def, undefined).contents?.packages).toEqual(["busybox", "make"]);
  });
});

describe("release numbers and identities", () => {
  it("a rebuild goes above every existing build of the version; a higher recipe epoch wins", () => {
    expect(chooseEpoch(0, [])).toBe(0);
    expect(chooseEpoch(0, [0])).toBe(1);
    expect(chooseEpoch(0, [0, 3, 1])).toBe(4);
    expect(chooseEpoch(7, [0, 3])).toBe(7);
    expect(chooseEpoch(2, [2])).toBe(3);
  });

  it("describes environment changes by package", () => {
    const a = [
      identity({ name: "glibc", version: "2.36-r0", checksum: "Q1a" }),
      identity({ name: "zlib-dev", version: "1.3-r0", checksum: "Q1b" }),
      identity({ name: "old", version: "1-r0", checksum: "Q1c" }),
    ];
    const b = [
      identity({ name: "glibc", version: "2.36-r1", checksum: "Q1d" }),
      identity({ name: "zlib-dev", version: "1.3-r0", checksum: "Q1e" }),
      identity({ name: "new-thing", version: "2-r0", checksum: "Q1f" }),
    ];
    expect(diffIdentities(a, b)).toEqual([
      "glibc 2.36-r0 → 2.36-r1",
      "+ new-thing-2-r0",
      "- old-1-r0",
      "zlib-dev-1.3-r0 rebuilt with different bytes",
    ]);
    expect(buildKey("own", ["b", "a"])).toBe(buildKey("own", ["a", "b"]));
    expect(buildKey("own", ["a"])).not.toBe(buildKey("own2", ["a"]));
  });

  it("key records: the last line per recipe wins, a torn line is skipped, compaction is sorted", () => {
    const r = (recipe: string, key: string) => ({ recipe, key, packages: [] }) as unknown as KeyRecord;
    const text = [
      JSON.stringify(r("b", "1")),
      JSON.stringify(r("a", "1")),
      JSON.stringify(r("b", "2")),
      '{"recipe":"c","ke',
    ].join("\n");
    const m = parseKeyRecords(text);
    expect([...m.keys()].sort()).toEqual(["a", "b"]);
    expect(m.get("b")!.key).toBe("2");
    expect(formatKeyRecords(m.values())).toBe(`${JSON.stringify(r("a", "1"))}\n${JSON.stringify(r("b", "2"))}\n`);
  });
});

// --- graph and plan over in-memory states --------------------------------

function node(
  name: string,
  opts: {
    requests?: string[];
    tests?: string[];
    provides?: string[];
    runtime?: string[];
    subpackages?: string[];
    own?: string;
    epoch?: number;
    needsGuest?: boolean;
  } = {},
): RecipeNode {
  return {
    name,
    file: `/d/recipes/${name}.yaml`,
    path: `recipes/${name}.yaml`,
    version: "1.0",
    epoch: opts.epoch ?? 0,
    fullVersion: `1.0-r${opts.epoch ?? 0}`,
    outputs: [
      { name, provides: opts.provides ?? [], depends: opts.runtime ?? [], replaces: [] },
      ...(opts.subpackages ?? []).map((s) => ({ name: s, provides: [], depends: [], replaces: [] })),
    ],
    buildRequests: opts.requests ?? [],
    testRequests: opts.tests ?? [],
    repositories: [],
    keyring: [],
    needsGuest: opts.needsGuest ?? true,
    own: opts.own ?? `own-${name}`,
    files: { [`recipes/${name}.yaml`]: opts.own ?? `own-${name}` },
    absFiles: [`/d/recipes/${name}.yaml`],
  };
}

function rec(name: string, version: string, extra: Partial<IndexRecord> = {}): IndexRecord {
  return { ...newIndexRecord(), name, version, arch: "x86_64", checksum: `Q1${name}${version}`, ...extra };
}

function emptyState(): RepoState {
  return {
    arch: "x86_64",
    outDir: "/d/out",
    local: [],
    upstream: [],
    keys: new Map(),
    upstreamKeys: new Map(),
    images: new Map(),
  };
}

/** A state in which every recipe is built with its current definition (as a run would have recorded it). */
function builtState(recipes: RecipeNode[], extraLocal: IndexRecord[] = []): RepoState {
  const state = emptyState();
  for (const r of recipes)
    for (const o of r.outputs)
      state.local.push(rec(o.name, r.fullVersion, { provides: o.provides, depends: o.depends }));
  state.local.push(...extraLocal);
  const record = (r: RecipeNode, environment: string[]) =>
    state.keys.set(r.name, {
      recipe: r.name,
      path: r.path,
      arch: "x86_64",
      version: r.version,
      epoch: r.epoch,
      fullVersion: r.fullVersion,
      key: buildKey(r.own, environment),
      own: r.own,
      files: r.files,
      environment,
      standIns: [],
      packages: r.outputs.map((o) => ({
        name: o.name,
        version: r.fullVersion,
        checksum: `Q1${o.name}${r.fullVersion}`,
      })),
    });
  // First the packages, then the environments as they resolve among the built packages.
  for (const r of recipes) record(r, []);
  const g = buildGraph({ recipes, images: [], state });
  for (const r of recipes) record(r, (g.environments[r.name] ?? []).map((p) => identity(p)).sort());
  return state;
}

const plan = (recipes: RecipeNode[], state: RepoState, images = [] as Parameters<typeof buildGraph>[0]["images"]) => {
  const g = buildGraph({ recipes, images, state });
  return { g, p: planBuild({ name: "T", recipesDir: "/d/recipes", root: "/d" }, g, state) };
};

describe("graph", () => {
  it("finds edges through names, subpackages, so:/cmd:/pc: provides and runtime closures", () => {
    const recipes = [
      node("zlib", { subpackages: ["zlib-dev"], provides: ["so:libz.so.1=1.3"] }),
      node("pkgconf", { provides: ["cmd:pkg-config=2.0"] }),
      node("curl", { requests: ["zlib-dev", "cmd:pkg-config"], runtime: ["so:libz.so.1"] }),
      node("app", { requests: ["curl"] }),
    ];
    const { g } = plan(recipes, emptyState());
    expect(g.edges.map((e) => `${e.from}->${e.to}:${e.packages.join(",")}`)).toEqual([
      "app->curl:curl",
      "app->zlib:zlib",
      "curl->pkgconf:pkgconf",
      "curl->zlib:zlib-dev",
    ]);
    expect(g.order).toEqual(["pkgconf", "zlib", "curl", "app"]);
  });

  it("names every recipe of an unbreakable cycle, with its path", () => {
    const recipes = [
      node("a", { requests: ["b"] }),
      node("b", { requests: ["c"] }),
      node("c", { requests: ["a"] }),
      node("d", { requests: ["a"] }),
    ];
    const { g, p } = plan(recipes, emptyState());
    expect(g.cycles).toHaveLength(1);
    expect(g.cycles[0]!.broken).toBe(false);
    expect(g.cycles[0]!.path).toEqual(["a", "b", "c", "a"]);
    expect(p.errors[0]).toContain("dependency cycle: a → b → c → a");
    expect(p.errors[0]).toContain("a needs b from b; b needs c from c; c needs a from a");
  });

  it("breaks a cycle with a package that already exists (Wolfi's stand-in), and says so", () => {
    const recipes = [node("a", { requests: ["b"] }), node("b", { requests: ["a"] })];
    const state = emptyState();
    state.upstream = [
      {
        record: rec("b", "0.9-r0"),
        repo: { url: "https://up.invalid" },
        url: "https://up.invalid/x86_64/b-0.9-r0.apk",
      },
    ];
    const { g, p } = plan(recipes, state);
    expect(g.cycles[0]!.broken).toBe(true);
    expect(g.cycles[0]!.message).toContain(
      "a builds against the existing b-0.9-r0 (https://up.invalid) instead of waiting for b",
    );
    expect(p.errors).toEqual([]);
    expect(p.builds.map((b) => b.recipe)).toEqual(["a", "b"]);
    expect(p.builds[0]!.standIns).toEqual(["b"]);
    expect(p.builds[1]!.after).toEqual(["a"]);
  });

  it("a recipe's tests wait for the runtime dependencies of the packages under test (test edges order, they do not rebuild)", () => {
    const recipes = [
      node("meta", { runtime: ["gcc", "make"], tests: ["meta"] }),
      node("gcc"),
      node("make"),
      node("user", { requests: ["make"] }),
    ];
    const { g } = plan(recipes, emptyState());
    expect(g.edges.map((e) => `${e.from}->${e.to}:${e.kind}`)).toEqual([
      "meta->gcc:test",
      "meta->make:test",
      "user->make:build",
    ]);
    expect(g.order).toEqual(["gcc", "make", "meta", "user"]);
    const state = builtState(recipes);
    recipes[1] = { ...recipes[1]!, own: "own-gcc-2" };
    expect(plan(recipes, state).p.builds.map((b) => b.recipe)).toEqual(["gcc"]);
  });

  it("images depend on the recipes of their runtime closure", () => {
    const recipes = [
      node("libc", { provides: ["so:libc.so.6=6"] }),
      node("tool", { runtime: ["so:libc.so.6"] }),
      node("other"),
    ];
    const { g } = plan(recipes, emptyState(), [
      {
        name: "img",
        file: "/d/images/img.yaml",
        path: "images/img.yaml",
        requests: ["tool"],
        config: "x",
        hasTest: false,
      },
    ]);
    expect(g.imageRecipes.img).toEqual(["libc", "tool"]);
  });
});

describe("plan by build key", () => {
  const shape = () => [
    node("base", { subpackages: ["base-dev"], provides: ["so:libbase.so.1=1"] }),
    node("mid", { requests: ["base-dev"], runtime: ["so:libbase.so.1"] }),
    node("top", { requests: ["mid"] }),
    node("leaf", { requests: ["base-dev"] }),
    node("solo"),
  ];

  it("nothing to do when every key matches", () => {
    const recipes = shape();
    const { p } = plan(recipes, builtState(recipes));
    expect(p.builds).toEqual([]);
    expect(p.upToDate.sort()).toEqual(["base", "leaf", "mid", "solo", "top"]);
  });

  it("a changed base rebuilds its transitive dependents at raised release numbers, nothing else", () => {
    const recipes = shape();
    const state = builtState(recipes);
    recipes[0] = { ...recipes[0]!, own: "own-base-2", files: { "recipes/base.yaml": "changed" } };
    const { p } = plan(recipes, state);
    expect(p.builds.map((b) => `${b.recipe} ${b.current} → ${b.fullVersion}`)).toEqual([
      "base 1.0-r0 → 1.0-r1",
      "leaf 1.0-r0 → 1.0-r1",
      "mid 1.0-r0 → 1.0-r1",
      "top 1.0-r0 → 1.0-r1",
    ]);
    expect(p.builds[0]!.reasons).toEqual([{ kind: "changed-file", files: ["recipes/base.yaml"] }]);
    expect(p.builds[3]!.reasons).toEqual([{ kind: "changed-dependency", recipes: ["base", "mid"] }]);
    expect(p.builds.find((b) => b.recipe === "top")!.after).toEqual(["base", "mid"]);
  });

  it("an upstream package moving changes the environment of the recipes that use it", () => {
    const recipes = [node("tool", { requests: ["libext"] }), node("solo")];
    const up = (v: string) => [{ record: rec("libext", v), repo: { url: "https://up.invalid" }, url: "" }];
    const state = emptyState();
    state.upstream = up("1.0-r0");
    const built = builtState(recipes);
    state.local = built.local;
    // Record the keys against upstream libext 1.0-r0.
    const g0 = buildGraph({ recipes, images: [], state });
    for (const r of recipes) {
      const env = (g0.environments[r.name] ?? []).map((x) => identity(x)).sort();
      state.keys.set(r.name, { ...built.keys.get(r.name)!, environment: env });
    }
    expect(plan(recipes, state).p.builds).toEqual([]);
    state.upstream = up("1.1-r0");
    const { p } = plan(recipes, state);
    expect(p.builds.map((b) => b.recipe)).toEqual(["tool"]);
    expect(p.builds[0]!.reasons).toEqual([{ kind: "environment", changes: ["libext 1.0-r0 → 1.1-r0"] }]);
    expect(p.builds[0]!.fullVersion).toBe("1.0-r1");
  });

  it("a recipe epoch bump above the existing builds is kept; a package built outside the distribution is not reused", () => {
    const recipes = shape();
    const state = builtState(recipes);
    recipes[4] = { ...node("solo", { epoch: 5, own: "own-solo-5" }) };
    state.keys.delete("leaf");
    const { p } = plan(recipes, state);
    const by = Object.fromEntries(p.builds.map((b) => [b.recipe, b]));
    expect(by.solo!.fullVersion).toBe("1.0-r5");
    expect(by.leaf!.fullVersion).toBe("1.0-r1");
    expect(by.leaf!.reasons[0]).toEqual({
      kind: "missing",
      detail: "built outside the distribution (no build key recorded)",
    });
  });
});

describe("imports (kiln-native recipes) come before every guest recipe", () => {
  // What an import needs is only known once it is built (binutils' scripts need
  // perl): nothing links the guest recipes to the imports yet, and by name the
  // guest recipes would come first.
  const recipes = () => [
    node("aaa-tool", { requests: ["busybox"] }),
    node("busybox", {}),
    node("binutils", { needsGuest: false }),
    node("perl-bootstrap", { needsGuest: false }),
    node("zz-late", { requests: ["aaa-tool"] }),
    node("gcc", { needsGuest: false, requests: [] }),
  ];

  it("in the graph's order and the plan", () => {
    const { g, p } = plan(recipes(), emptyState());
    const imports = ["binutils", "gcc", "perl-bootstrap"];
    expect(g.order.slice(0, 3)).toEqual(imports);
    expect(p.builds.slice(0, 3).map((b) => b.recipe)).toEqual(imports);
    // Dependencies still win over the rank: a guest recipe an import needs comes before it.
    const withDep = [
      ...recipes(),
      node("aaa-base", {}),
      node("imp-needs-base", { needsGuest: false, requests: ["aaa-base"] }),
    ];
    const order = plan(withDep, emptyState()).g.order;
    expect(order.indexOf("aaa-base")).toBeLessThan(order.indexOf("imp-needs-base"));
    for (const i of imports) expect(order.indexOf(i)).toBeLessThan(order.indexOf("busybox"));
  });

  it("when running: no guest recipe starts while an import is pending, even with free jobs", async () => {
    const { g, p } = plan(recipes(), emptyState());
    const events: string[] = [];
    const builder: Builder = async (job, progress) => {
      events.push(`start ${job.recipe.name}`);
      progress({
        kind: "step",
        package: job.recipe.name,
        step: "s",
        index: 1,
        total: 1,
        native: !job.recipe.needsGuest,
      });
      // Imports are slow: a scheduler that ignored them would start guest recipes meanwhile.
      await new Promise((r) => setTimeout(r, job.recipe.needsGuest ? 1 : 30));
      events.push(`end ${job.recipe.name}`);
      return { records: job.recipe.outputs.map((o) => rec(o.name, job.fullVersion)), guest: [] };
    };
    const keys = {
      records: new Map(),
      load: async () => new Map(),
      append: async () => undefined,
      compact: async () => undefined,
    } as unknown as KeyStore;
    const report = await runPlan(
      { distro: { name: "T", outDir: "/d/out" }, graph: g, plan: p, state: emptyState(), keys },
      { jobs: 3, keepGoing: false, builder },
    );
    expect(report.entries.every((e) => e.status === "built")).toBe(true);
    const lastImportEnd = Math.max(...["binutils", "gcc", "perl-bootstrap"].map((n) => events.indexOf(`end ${n}`)));
    const firstGuestStart = Math.min(...["aaa-tool", "busybox", "zz-late"].map((n) => events.indexOf(`start ${n}`)));
    expect(firstGuestStart, events.join(", ")).toBeGreaterThan(lastImportEnd);
  });
});

describe("strongly connected components", () => {
  it("finds rings and self-loops, not chains", () => {
    const g: Record<string, string[]> = { a: ["b"], b: ["a"], c: ["c"], d: ["e"], e: [] };
    expect(cyclicComponents(Object.keys(g), (n) => g[n]!)).toEqual([["a", "b"], ["c"]]);
  });
});

describe("per-build overhead", () => {
  it("is each build's time less its steps and tests, summed in the report and the HTML", async () => {
    const { g, p } = plan([node("a"), node("b", { requests: ["a"] }), node("c")], emptyState());
    const builder: Builder = async (job) => {
      await new Promise((r) => setTimeout(r, 40));
      if (job.recipe.name === "c") throw new Error("c failed before measuring anything");
      return {
        records: job.recipe.outputs.map((o) => rec(o.name, job.fullVersion)),
        guest: [],
        work: { steps: 30, tests: job.recipe.name === "a" ? 5 : 0 },
      };
    };
    const keys = {
      records: new Map(),
      load: async () => new Map(),
      append: async () => undefined,
      compact: async () => undefined,
    } as unknown as KeyStore;
    const report = await runPlan(
      { distro: { name: "T", outDir: "/d/out" }, graph: g, plan: p, state: emptyState(), keys },
      { jobs: 1, keepGoing: true, builder },
    );
    const byName = new Map(report.entries.map((e) => [e.recipe, e]));
    const a = byName.get("a")!;
    expect(a.phases).toEqual({ steps: 30, tests: 5, overhead: a.ms! - 35 });
    expect(a.phases!.overhead).toBeGreaterThanOrEqual(0);
    expect(byName.get("c")!.phases).toBeUndefined();
    const t = report.overhead;
    expect(t.builds).toBe(2);
    expect(t.steps).toBe(60);
    expect(t.tests).toBe(5);
    expect(t.overhead).toBe(a.phases!.overhead + byName.get("b")!.phases!.overhead);
    expect(t.percent).toBe(Math.round((t.overhead / 65) * 1000) / 10);
    expect(overheadText(sumOverhead([t, t]))).toMatch(
      /^per-build overhead [\d.]+ s over 0\.1 s of steps and tests \([\d.]+%\) in 4 builds$/,
    );
    expect(overheadText(overheadTotals([]))).toBeUndefined();
    const html = renderRunReport([report]);
    expect(html).toContain("steps / tests / overhead");
    expect(html).toContain("0.0 s / 0.0 s /");
    expect(html).toContain(`${overheadText(t)}.`);
  });
});
