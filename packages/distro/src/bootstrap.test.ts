// The bootstrap planned once (distro.yaml `bootstrap:`): on a fresh
// repository, stage 0 (the imports) then one plan of everything else builds
// every recipe once, and the plan after that builds nothing; without the
// mapping the same distribution needs a second round. Simulated over
// in-memory repository states with a builder that returns what a real build
// would detect (binutils needing libz and libzstd, zlib providing libz).

import { describe, expect, it } from "vitest";
import { newIndexRecord, type IndexRecord } from "@kiln/apk";
import { bootstrapExcluded, bootstrapMap, bootstrapPool } from "./bootstrap.js";
import { parseDistro } from "./config.js";
import { buildGraph, realPackages } from "./graph.js";
import { importsOnly } from "./job.js";
import { identity, type KeyStore } from "./keys.js";
import { planBuild } from "./plan.js";
import type { RecipeNode } from "./recipes.js";
import { runPlan, type Builder } from "./run.js";
import type { RepoState } from "./state.js";
import { ConfigError } from "@kiln/core";
import { Resolver } from "@kiln/repo";

interface Spec {
  requests?: string[];
  /** Declared provides and runtime dependencies of the main package. */
  provides?: string[];
  depends?: string[];
  subpackages?: string[];
  needsGuest?: boolean;
  /** What a build of it detects: provides of the main package, depends of the main package. */
  built?: { provides?: string[]; depends?: string[] };
}

const SPECS: Record<string, Spec> = {
  binutils: { needsGuest: false, built: { depends: ["so:libz.so.1", "so:libzstd.so.1"] } },
  "zlib-bootstrap": { needsGuest: false, built: { provides: ["so:libz.so.1=1.2.13"] } },
  "zstd-bootstrap": { needsGuest: false, built: { provides: ["so:libzstd.so.1=1.5.4"] } },
  zlib: { requests: ["binutils"], subpackages: ["zlib-dev"], built: { provides: ["so:libz.so.1=1.3.2"] } },
  zstd: { requests: ["binutils", "zlib-dev"], built: { provides: ["so:libzstd.so.1=1.5.7"] } },
  busybox: { requests: ["binutils"] },
  curl: { requests: ["binutils", "zlib-dev", "busybox"] },
};
const BOOTSTRAP = { "zlib-bootstrap": "zlib", "zstd-bootstrap": "zstd" };

function node(name: string, s: Spec): RecipeNode {
  return {
    name,
    file: `/d/recipes/${name}.yaml`,
    path: `recipes/${name}.yaml`,
    version: "1.0",
    epoch: 0,
    fullVersion: "1.0-r0",
    outputs: [
      { name, provides: s.provides ?? [], depends: s.depends ?? [], replaces: [] },
      ...(s.subpackages ?? []).map((n) => ({ name: n, provides: [], depends: [name], replaces: [] })),
    ],
    buildRequests: s.requests ?? [],
    testRequests: [],
    repositories: [],
    keyring: [],
    needsGuest: s.needsGuest ?? true,
    own: `own-${name}`,
    files: { [`recipes/${name}.yaml`]: `own-${name}` },
    absFiles: [`/d/recipes/${name}.yaml`],
  };
}

const RECIPES = Object.entries(SPECS).map(([n, s]) => node(n, s));

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

const KEYS = {
  records: new Map(),
  load: async () => new Map(),
  append: async () => undefined,
  compact: async () => undefined,
} as unknown as KeyStore;

/** What each build's guest held, by recipe, in build order. */
type Guests = Array<[string, string[]]>;

/** A builder that writes what a real build would detect and reports its guest: the names it resolves from the repository without `guestExclude`, as @kiln/builder does. */
function fakeBuilder(
  state: RepoState,
  guests: Guests,
  specs: Record<string, Spec>,
  bootstrap: Record<string, string> | undefined,
): Builder {
  return async (job) => {
    const s = specs[job.recipe.name]!;
    // Stage-0 recipes, and only they, go to the bootstrap repository.
    expect(job.stage0Repository).toBe(!!bootstrap && job.recipe.name in bootstrap);
    const records = job.recipe.outputs.map((o, i) =>
      rec(o.name, job.fullVersion, {
        origin: job.recipe.name,
        provides: i === 0 ? [...(s.provides ?? []), ...(s.built?.provides ?? [])] : [],
        depends: i === 0 ? (s.built?.depends ?? []) : o.depends,
      }),
    );
    const exclude = new Set(job.guestExclude);
    const pool = realPackages(state).filter((p) => !exclude.has(p.record.name));
    const resolved = job.recipe.buildRequests.length
      ? new Resolver(pool, { arch: "x86_64" }).resolve(job.recipe.buildRequests).packages
      : [];
    const names = resolved.map((p) => p.record.name).sort();
    // The run's own view of the environment agrees with what the guest was told to leave out.
    expect(
      job
        .resolveEnvironment()
        .map((e) => e.name)
        .sort(),
    ).toEqual(names);
    guests.push([job.recipe.name, names]);
    return {
      records,
      guest: resolved.map((p) => ({ name: p.record.name, version: p.record.version, checksum: p.record.checksum! })),
    };
  };
}

const DISTRO = { name: "T", recipesDir: "/d/recipes", root: "/d" };

async function round(
  state: RepoState,
  guests: Guests,
  bootstrap?: Record<string, string>,
  stage?: "imports",
  specs: Record<string, Spec> = SPECS,
) {
  const recipes = specs === SPECS ? RECIPES : Object.entries(specs).map(([n, s]) => node(n, s));
  const g = buildGraph({ recipes, images: [], state, ...(bootstrap ? { bootstrap } : {}) });
  let p = planBuild(DISTRO, g, state);
  if (stage) p = importsOnly(p, g);
  expect(p.errors).toEqual([]);
  const report = await runPlan(
    { distro: { name: "T", outDir: "/d/out" }, graph: g, plan: p, state, keys: KEYS },
    { jobs: 2, keepGoing: false, builder: fakeBuilder(state, guests, specs, bootstrap) },
  );
  expect(report.entries.filter((e) => e.status !== "built")).toEqual([]);
  return { g, p, built: p.builds.map((b) => b.recipe) };
}

describe("the bootstrap, planned once", () => {
  it("builds every recipe once on a fresh repository: stage 0, then one plan that the next plan leaves alone", async () => {
    const state = emptyState();
    const guests: Guests = [];
    const s0 = await round(state, guests, BOOTSTRAP, "imports");
    expect(s0.built.sort()).toEqual(["binutils", "zlib-bootstrap", "zstd-bootstrap"]);

    const s1 = await round(state, guests, BOOTSTRAP);
    expect(s1.built).toHaveLength(4);
    expect(new Set(s1.built)).toEqual(new Set(["zlib", "zstd", "busybox", "curl"]));
    // zlib builds against both stage-0 libraries (its own, and zstd's through the cycle binutils makes);
    // zstd against its own only (it asks for zlib-dev); the rest against the replacements.
    expect(s1.g.stage0).toEqual({ zlib: ["zlib", "zstd"], zstd: ["zstd"] });
    const at = (n: string) => s1.built.indexOf(n);
    expect(at("zlib")).toBeLessThan(at("zstd"));
    expect(at("zstd")).toBeLessThan(at("busybox"));
    expect(at("busybox")).toBeLessThan(at("curl"));
    const guest = new Map(guests);
    expect(guest.get("zlib")).toEqual(["binutils", "zlib-bootstrap", "zstd-bootstrap"]);
    expect(guest.get("zstd")).toEqual(["binutils", "zlib", "zlib-dev", "zstd-bootstrap"]);
    expect(guest.get("busybox")).toEqual(["binutils", "zlib", "zstd"]);
    expect(guest.get("curl")).toEqual(["binutils", "busybox", "zlib", "zlib-dev", "zstd"]);

    const s2 = await round(state, guests, BOOTSTRAP);
    expect(s2.p.builds.map((b) => `${b.recipe}: ${b.reasons.map((r) => r.kind).join(",")}`)).toEqual([]);
  });

  it("a recipe that asks for a stage-0 package by name builds against it; everything after the replacement gets the replacement", async () => {
    // busybox's shape: build-base asks for the stage-0 applet list, which busybox provides.
    const specs: Record<string, Spec> = {
      "shell-static": { needsGuest: false },
      links: { requests: ["shell-static"], depends: ["shell-static"], built: { depends: ["shell-static"] } },
      layout: { requests: ["shell-static"] },
      base: { requests: ["links", "layout"], depends: ["links", "layout"], built: { depends: ["links", "layout"] } },
      shell: { requests: ["base"], provides: ["links=9"] },
      app: { requests: ["base"] },
    };
    const map = { "shell-static": "shell", links: "shell" };
    const state = emptyState();
    const guests: Guests = [];
    expect((await round(state, guests, map, "imports", specs)).built).toEqual(["shell-static"]);
    const s1 = await round(state, guests, map, undefined, specs);
    expect(s1.g.warnings).toEqual([]);
    expect(s1.g.stage0).toEqual({ base: ["shell"], layout: ["shell"], links: ["shell"], shell: ["shell"] });
    expect(new Set(s1.built)).toEqual(new Set(["links", "layout", "base", "shell", "app"]));
    const guest = new Map(guests);
    expect(guest.get("layout")).toEqual(["shell-static"]);
    expect(guest.get("shell")).toEqual(["base", "layout", "links", "shell-static"]);
    expect(guest.get("app")).toEqual(["base", "layout", "shell"]);
    expect((await round(state, guests, map, undefined, specs)).p.builds).toEqual([]);
  });

  it("without the mapping, the same distribution needs another round (what the mapping saves)", async () => {
    const state = emptyState();
    const guests: Guests = [];
    await round(state, guests, undefined, "imports");
    await round(state, guests);
    const again = await round(state, guests);
    expect(again.built.length).toBeGreaterThan(0);
  });

  it("a stage-0 package stays where its replacement is not built yet, and is left out once it is", () => {
    const bs = bootstrapMap(BOOTSTRAP, RECIPES, []);
    const producer = (n: string) => (n === "zlib-dev" ? "zlib" : RECIPES.find((r) => r.name === n)?.name);
    const pkg = (name: string) => ({ record: rec(name, "1.0-r0"), repo: { url: "/d/out" }, url: `/d/out/${name}.apk` });
    const before = [pkg("binutils"), pkg("zlib-bootstrap"), pkg("zstd-bootstrap")];
    expect(bootstrapPool(before, bs, producer, new Set()).map((p) => p.record.name)).toEqual([
      "binutils",
      "zlib-bootstrap",
      "zstd-bootstrap",
    ]);
    const after = [...before, pkg("zlib"), pkg("zlib-dev")];
    expect(bootstrapExcluded(after, bs, producer, new Set())).toEqual(["zlib-bootstrap"]);
    expect(bootstrapExcluded(after, bs, producer, new Set(["zlib"]))).toEqual(["zlib", "zlib-dev"]);
  });

  it("an image's package set is the published one: a stage-0 package with the same name as a replacement's provide never makes it look changed", async () => {
    // busybox-links (stage 0) is a package of that name; busybox provides busybox-links as well.
    const specs: Record<string, Spec> = {
      links: { needsGuest: false },
      box: { needsGuest: false, provides: ["links=1.0-r0"] },
    };
    const state = emptyState();
    await round(state, [], { links: "box" }, "imports", specs);
    await round(state, [], { links: "box" }, undefined, specs);
    expect(state.stage0!.map((r) => r.name)).toEqual(["links"]);
    const box = state.local.find((r) => r.name === "box")!;
    const img = {
      name: "i",
      file: "/d/images/i.yaml",
      path: "images/i.yaml",
      requests: ["links"],
      config: "c",
      hasTest: false,
    };
    // As the image build resolved it, from the output repository only.
    state.images.set("i", {
      name: "i",
      config: "c",
      packages: { x86_64: [identity(box)] },
      digest: "sha256:x",
      pushed: {},
    });
    const recipes = Object.entries(specs).map(([n, sp]) => node(n, sp));
    const g = buildGraph({ recipes, images: [img], state, bootstrap: { links: "box" } });
    const p = planBuild(DISTRO, g, state);
    expect(p.images).toEqual([]);
    expect(p.unchangedImages).toEqual(["i"]);
  });

  it("names bootstrap entries that are not recipes, and refuses self- and chained replacements in distro.yaml", () => {
    const warnings: string[] = [];
    const bs = bootstrapMap({ "zlib-bootstrap": "zlib", "gone-bootstrap": "gone" }, RECIPES, warnings);
    expect([...bs.replacementOf]).toEqual([["zlib-bootstrap", "zlib"]]);
    expect(warnings).toEqual([
      "distro.yaml: bootstrap: gone-bootstrap: gone-bootstrap and gone are not recipes of this architecture; the entry is ignored",
    ]);
    const problems = (text: string) => {
      try {
        parseDistro("/d/distro.yaml", text);
        return [];
      } catch (e) {
        if (e instanceof ConfigError) return e.problems.map((p) => `${p.line}:${p.path}: ${p.message}`);
        throw e;
      }
    };
    expect(parseDistro("/d/distro.yaml", "name: T\nid: t\nbootstrap:\n  a-boot: a\n").bootstrap).toEqual({
      "a-boot": "a",
    });
    expect(problems("name: T\nid: t\nbootstrap:\n  a: a\n")).toEqual([
      expect.stringMatching(/^4:bootstrap\.a: a recipe cannot replace itself/),
    ]);
    expect(problems("name: T\nid: t\nbootstrap:\n  a: b\n  b: c\n")).toEqual([
      expect.stringMatching(/^4:bootstrap\.a: b is itself a stage-0 recipe here/),
    ]);
    expect(problems("name: T\nid: t\nbootstrap:\n  A B: c\n")).toEqual([
      expect.stringMatching(/^4:bootstrap.*expected a recipe name/),
    ]);
  });
});
