// The compiled-recipe cache as loadRecipes uses it: a warm load gives the
// same nodes as a cold one, a changed pipeline file or recipe is compiled
// again, and a corrupt or tampered store is ignored, never trusted.

import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { analyzeDistro, saveAnalysisCaches } from "./analyze.js";
import { parseDistro } from "./config.js";
import { planBuild } from "./plan.js";
import { loadRecipes } from "./recipes.js";

const recipe = (name: string, version: string, uses = "local/hello") => `package:
  name: ${name}
  version: "${version}"
  epoch: 0
  description: test
  copyright:
    - license: MIT
environment:
  contents:
    packages: [busybox, ${name}-dep]
pipeline:
  - uses: ${uses}
  - runs: echo built
subpackages:
  - name: ${name}-dev
    pipeline:
      - uses: split/dev
`;

describe("compiled-recipe cache", () => {
  let dir: string;
  let cache: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kiln-recipes-cache-"));
    cache = join(dir, "cache");
    await mkdir(join(dir, "recipes"), { recursive: true });
    await mkdir(join(dir, "pipelines", "local"), { recursive: true });
    await writeFile(join(dir, "pipelines", "local", "hello.yaml"), "pipeline:\n  - runs: echo hello\n");
    await writeFile(
      join(dir, "distro.yaml"),
      "name: T\nid: t\narchitectures: [x86_64]\npipelines: [pipelines]\nenvironment:\n  contents:\n    packages: [build-base]\n",
    );
    await writeFile(join(dir, "recipes", "a.yaml"), recipe("a", "1.0"));
    await writeFile(join(dir, "recipes", "b.yaml"), recipe("b", "2.0", "autoconf/make"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const distro = async () => parseDistro(join(dir, "distro.yaml"), await readFile(join(dir, "distro.yaml"), "utf8"));
  const storeFile = () => join(cache, "compiled", "recipes-x86_64.json");

  it("gives the same nodes warm as cold, and as without a cache", async () => {
    const d = await distro();
    const plain = await loadRecipes(d, "x86_64");
    const cold = await loadRecipes(d, "x86_64", { cacheDir: cache });
    const stored = await readFile(storeFile(), "utf8");
    const warm = await loadRecipes(d, "x86_64", { cacheDir: cache });
    expect(cold).toEqual(plain);
    expect(warm).toEqual(plain);
    expect(plain.recipes.map((r) => r.name)).toEqual(["a", "b"]);
    expect(plain.recipes[0]!.buildRequests).toEqual(["build-base", "a-dep", "busybox"]);
    expect(Object.keys(JSON.parse(stored).entries)).toHaveLength(2);
  });

  it("compiles again when a pipeline file it uses changes or a user pipeline shadows a built-in", async () => {
    const d = await distro();
    const before = await loadRecipes(d, "x86_64", { cacheDir: cache });
    await writeFile(join(dir, "pipelines", "local", "hello.yaml"), "pipeline:\n  - runs: echo hello again\n");
    const changed = await loadRecipes(d, "x86_64", { cacheDir: cache });
    expect(changed).toEqual(await loadRecipes(d, "x86_64"));
    expect(changed.recipes[0]!.own).not.toBe(before.recipes[0]!.own);
    expect(changed.recipes[1]!.own).toBe(before.recipes[1]!.own);
    await mkdir(join(dir, "pipelines", "autoconf"), { recursive: true });
    await writeFile(join(dir, "pipelines", "autoconf", "make.yaml"), "pipeline:\n  - runs: make -j1\n");
    const shadowed = await loadRecipes(d, "x86_64", { cacheDir: cache });
    expect(shadowed.recipes[1]!.own).not.toBe(before.recipes[1]!.own);
    expect(shadowed.recipes[1]!.files).toHaveProperty(["pipelines/autoconf/make.yaml"]);
    expect(shadowed).toEqual(await loadRecipes(d, "x86_64"));
  });

  it("ignores a corrupt store and refuses tampered entries", async () => {
    const d = await distro();
    const plain = await loadRecipes(d, "x86_64");
    await loadRecipes(d, "x86_64", { cacheDir: cache });
    const store = JSON.parse(await readFile(storeFile(), "utf8")) as {
      entries: Record<string, Record<string, unknown>>;
    };
    for (const e of Object.values(store.entries)) {
      e.name = "../../etc";
      e.environment = { contents: { packages: "not a list" } };
    }
    await writeFile(storeFile(), JSON.stringify(store));
    expect(await loadRecipes(d, "x86_64", { cacheDir: cache })).toEqual(plain);
    // Rewritten with good entries.
    const again = JSON.parse(await readFile(storeFile(), "utf8")) as { entries: Record<string, { name: string }> };
    expect(
      Object.values(again.entries)
        .map((e) => e.name)
        .sort(),
    ).toEqual(["a", "b"]);
    // An environment that fails the recipe schema is not merged from the cache.
    for (const e of Object.values(again.entries) as Array<Record<string, unknown>>)
      e.environment = { contents: { packages: 7 } };
    await writeFile(storeFile(), JSON.stringify(again));
    expect(await loadRecipes(d, "x86_64", { cacheDir: cache })).toEqual(plain);
    await writeFile(storeFile(), "{ truncated");
    expect(await loadRecipes(d, "x86_64", { cacheDir: cache })).toEqual(plain);
  });

  it("reports a recipe that stopped compiling even when an older version was cached", async () => {
    const d = await distro();
    await loadRecipes(d, "x86_64", { cacheDir: cache });
    await writeFile(join(dir, "recipes", "a.yaml"), recipe("a", "1.0", "no/such-pipeline"));
    const r = await loadRecipes(d, "x86_64", { cacheDir: cache });
    expect(r.recipes.map((x) => x.name)).toEqual(["b"]);
    expect(r.problems.map((p) => p.message).join("\n")).toMatch(/no\/such-pipeline/);
  });

  it("remembers environment closures: the graph and plan warm equal those without a cache, a tampered store is not trusted", async () => {
    await writeFile(join(dir, "recipes", "c.yaml"), recipe("c", "3.0").replace("c-dep]", "a-dev, b]"));
    const d = await distro();
    const analyse = async (cacheDir?: string) => {
      const v = await analyzeDistro(d, "x86_64", { offline: true, ...(cacheDir ? { cacheDir } : {}) });
      const plan = planBuild(d, v.graph, v.state, { errors: v.errors });
      await saveAnalysisCaches(v);
      return { graph: v.graph, plan };
    };
    const plain = await analyse();
    expect(plain.graph.edges.map((e) => `${e.from}>${e.to}`)).toEqual(["c>a", "c>b"]);
    expect(plain.graph.warnings.join("\n")).toMatch(/a-dep/);
    expect(await analyse(cache)).toEqual(plain);
    const file = join(cache, "compiled", "closures-x86_64.json");
    const store = JSON.parse(await readFile(file, "utf8")) as { entries: Record<string, { packages: number[] }> };
    expect(Object.keys(store.entries).length).toBeGreaterThan(0);
    expect(await analyse(cache)).toEqual(plain);
    for (const e of Object.values(store.entries)) e.packages = [0, 0, -1];
    await writeFile(file, JSON.stringify(store));
    expect(await analyse(cache)).toEqual(plain);
    for (const e of Object.values(store.entries)) e.packages = [99999];
    await writeFile(file, JSON.stringify(store));
    expect(await analyse(cache)).toEqual(plain);
  });
});
