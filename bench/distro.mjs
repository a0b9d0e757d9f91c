// Distribution benchmarks (issue: drive the distribution): graph + plan for a
// generated distribution of Wolfi's size (3,400 recipes, realistic fan-out:
// every recipe needs build-base and a few libraries, popular libraries much
// more often than the rest), and a no-op `kiln build --all` over built
// recipes (built = packages in the index and keys recorded, as a run leaves
// them). Floors: reading and sha256-hashing the same recipe files (in
// process for graph+plan; in a fresh node process for the no-op, which pays
// the same start-up). Both are measured at 340 and 3,400 recipes and the
// ratio between the sizes printed: near 10 means linear. Graph + plan is
// measured as planning runs again and again: through its caches under the
// cache directory (compiled recipes, remembered closures), and, printed
// beside it, without them and after editing one recipe.
// KILN_BENCH_RECIPES=DIR plans a real corpus too (DIR/*.yaml, DIR/pipelines).

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildIndex, generateKey, newIndexRecord, parseSigningKey } from "@kiln/apk";
import { Resolver } from "@kiln/repo";
import {
  analyzeDistro,
  buildKey,
  closure,
  formatKeyRecords,
  keyEnvironment,
  listRecipeFiles,
  loadDistro,
  planBuild,
  saveAnalysisCaches,
  KEYS_FILE,
} from "@kiln/distro";
import { best, peakRssMb, time } from "./common.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const KILN = join(here, "../packages/cli/dist/bin.js");

function rng(seed) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** The first BOOTSTRAP are imported binaries (native steps only, no guest), as a real distribution's stage 0. */
const BOOTSTRAP = 6;
const CORE = [
  "build-base",
  "make",
  "binutils",
  "busybox",
  "ca-certificates-bundle",
  "glibc",
  "zlib",
  "openssl",
  "ncurses",
  "readline",
  "libffi",
  "expat",
  "pcre2",
  "xz",
  "bzip2",
  "zstd",
  "sqlite",
  "curl",
  "python3",
  "perl",
  "libxml2",
  "gettext",
];

/** A distribution of `n` recipes: the first are core libraries; each later one needs build-base and ~3 others (exponential, up to 25), half from the popular 5%. */
export function generate(dir, n) {
  const r = rng(n * 7 + 1);
  mkdirSync(join(dir, "recipes"), { recursive: true });
  writeFileSync(join(dir, "distro.yaml"), `name: Bench Linux\nid: bench\narchitectures: [x86_64]\n`);
  const names = [];
  const isLib = [];
  for (let i = 0; i < n; i++) {
    const name = i < CORE.length ? CORE[i] : `pkg${i}-${["lib", "tool", "py", "go"][i % 4]}`;
    const lib = i >= BOOTSTRAP && (i < CORE.length || r() < 0.4);
    names.push(name);
    isLib.push(lib);
    const deps = new Set();
    if (i >= BOOTSTRAP) {
      deps.add("build-base");
      const k = Math.min(25, Math.floor(-Math.log(1 - r()) * 3));
      const popular = Math.max(1, Math.floor(Math.min(i, n * 0.05)));
      for (let j = 0; j < k; j++) {
        const t = r() < 0.5 ? Math.floor(r() * popular) : Math.floor(r() * i);
        if (t === 0) continue;
        deps.add(isLib[t] ? `${names[t]}-dev` : names[t]);
      }
    }
    const sha = createHash("sha256").update(name).digest("hex");
    const runtime = [...deps]
      .filter((d) => d.endsWith("-dev"))
      .slice(0, 3)
      .map((d) => `so:lib${d.slice(0, -4)}.so.1`);
    const lines = [
      `package:`,
      `  name: ${name}`,
      `  version: "${1 + (i % 7)}.${i % 13}.${i % 5}"`,
      `  epoch: ${i % 3}`,
      `  description: generated package number ${i}`,
      `  copyright:`,
      `    - license: MIT`,
      `  dependencies:`,
      `    runtime: [${runtime.join(", ")}]`,
      ...(lib ? [`    provides: [so:lib${name}.so.1=1]`] : []),
      ...(deps.size ? [`environment:`, `  contents:`, `    packages:`, ...[...deps].map((d) => `      - ${d}`)] : []),
      `pipeline:`,
      ...(i < BOOTSTRAP
        ? [
            `  - uses: fetch`,
            `    with:`,
            `      uri: https://example.invalid/pool/${name}_1.0_amd64.deb`,
            `      expected-sha256: ${sha}`,
            `      extract: false`,
            `  - uses: deb/unpack`,
            `    with:`,
            `      deb: ${name}_1.0_amd64.deb`,
          ]
        : guestSteps(name, sha)),
    ];
    if (lib)
      lines.push(
        `subpackages:`,
        `  - name: ${name}-dev`,
        `    description: ${name} headers`,
        `    pipeline:`,
        `      - uses: split/dev`,
        `    dependencies:`,
        `      runtime: [${name}]`,
      );
    lines.push(`update:`, `  enabled: true`, `  release-monitor:`, `    identifier: ${1000 + i}`);
    writeFileSync(join(dir, "recipes", `${name}.yaml`), lines.join("\n") + "\n");
  }
}

function guestSteps(name, sha) {
  return [
    `  - uses: fetch`,
    `    with:`,
    `      uri: https://example.invalid/src/${name}/${name}-\${{package.version}}.tar.gz`,
    `      expected-sha256: ${sha}`,
    `  - uses: autoconf/configure`,
    `    with:`,
    `      opts: --enable-shared --disable-static`,
    `  - uses: autoconf/make`,
    `  - uses: autoconf/make-install`,
    `  - runs: |`,
    `      rm -rf \${{targets.destdir}}/usr/share/info`,
    `      install -Dm644 LICENSE \${{targets.destdir}}/usr/share/licenses/${name}/LICENSE`,
    `  - uses: strip`,
  ];
}

async function floorInProcess(files) {
  let total = 0;
  const h = createHash("sha256");
  for (const f of files) {
    const b = await readFile(f);
    total += b.length;
    h.update(createHash("sha256").update(b).digest());
  }
  return total;
}

/** Graph + plan as `kiln plan` does it; with `cacheDir`, through the compiled-recipe and closure caches there. */
async function graphPlan(file, cacheDir, { allowErrors = false } = {}) {
  const distro = await loadDistro(file);
  const v = await analyzeDistro(distro, "x86_64", { offline: true, ...(cacheDir ? { cacheDir } : {}) });
  const plan = planBuild(distro, v.graph, v.state, { errors: v.errors });
  await saveAnalysisCaches(v);
  if (plan.errors.length && !allowErrors)
    throw new Error(`bench distribution has problems: ${plan.errors.slice(0, 3).join("; ")}`);
  return { plan, v, distro };
}

/** Record every recipe as built: index records for each output and a build key, as a run would leave them. */
export async function fakeBuilt(file, key) {
  const { v, distro } = await graphPlan(file);
  const records = [];
  for (const r of v.graph.recipes) {
    for (const o of r.outputs) {
      const rec = {
        ...newIndexRecord(),
        name: o.name,
        version: r.fullVersion,
        arch: "x86_64",
        origin: r.name,
        depends: o.depends,
        provides: o.provides,
        replaces: o.replaces,
      };
      rec.checksum = "Q1" + createHash("sha1").update(`${o.name}-${r.fullVersion}`).digest("base64");
      rec.fileSize = 1000;
      rec.dataHash = createHash("sha256").update(o.name).digest("hex");
      records.push(rec);
    }
  }
  const repo = { url: distro.outDir };
  const pool = records.map((record) => ({ record, repo, url: "" }));
  const resolver = new Resolver(pool, { arch: "x86_64" });
  const producer = new Map(v.graph.recipes.flatMap((r) => r.outputs.map((o) => [o.name, r.name])));
  const keys = v.graph.recipes.map((r) => {
    const env = closure(resolver, r.buildRequests).packages.map((p) => ({
      name: p.record.name,
      version: p.record.version,
      checksum: p.record.checksum,
      recipe: producer.get(p.record.name),
      repository: "",
    }));
    const standIns = v.graph.edges.filter((e) => e.from === r.name && e.cut === "stand-in").map((e) => e.to);
    const environment = keyEnvironment(env, standIns);
    return {
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
      standIns,
      packages: r.outputs
        .map((o) => records.find((x) => x.name === o.name))
        .map((x) => ({ name: x.name, version: x.version, checksum: x.checksum })),
    };
  });
  mkdirSync(join(distro.outDir, "x86_64"), { recursive: true });
  writeFileSync(join(distro.outDir, "x86_64", "APKINDEX.tar.gz"), buildIndex(records, { signingKeys: [key] }));
  writeFileSync(join(distro.outDir, "x86_64", KEYS_FILE), formatKeyRecords(keys));
}

function runNode(args, cwd) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, {
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, KILN_CACHE_DIR: join(cwd, "cache") },
    });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("close", (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${args.join(" ")} exited ${code}: ${err.slice(-2000)}`)),
    );
  });
}

const FLOOR_SCRIPT = `import { readdirSync, readFileSync } from "node:fs"; import { createHash } from "node:crypto";
const d = process.argv[1] + "/recipes"; let n = 0; for (const f of readdirSync(d)) { createHash("sha256").update(readFileSync(d + "/" + f)).digest(); n++; } console.log(n);`;

/** Graph + plan over a real corpus: DIR's *.yaml as recipes, DIR/pipelines as its pipeline directory (Wolfi's layout). */
async function realCorpus(root, dir, log) {
  const d = join(root, "corpus");
  mkdirSync(d, { recursive: true });
  symlinkSync(resolve(dir), join(d, "recipes"));
  const pipelines = join(resolve(dir), "pipelines");
  writeFileSync(
    join(d, "distro.yaml"),
    `name: Corpus\nid: corpus\narchitectures: [x86_64]\n${existsSync(pipelines) ? `pipelines: [${JSON.stringify(pipelines)}]\n` : ""}`,
  );
  const file = join(d, "distro.yaml");
  const files = await listRecipeFiles(await loadDistro(file));
  const floor = await best(3, () => floorInProcess(files));
  const cold = await time(() => graphPlan(file, undefined, { allowErrors: true }));
  await graphPlan(file, join(d, "cache"), { allowErrors: true });
  const kiln = await best(3, () => graphPlan(file, join(d, "cache"), { allowErrors: true }));
  const { v, plan } = kiln.value;
  log(
    `real corpus ${dir}: ${files.length} files, ${v.graph.recipes.length} recipes, ${v.graph.edges.length} edges, ${v.errors.length} problems, ${v.graph.warnings.length} warnings; graph+plan ${ms(kiln.ms)} with its caches, ${ms(cold.ms)} without; floor ${ms(floor.ms)}`,
  );
  return {
    name: `graph+plan real corpus (${v.graph.recipes.length} recipes)`,
    kiln: ms(kiln.ms),
    peer: ms(floor.ms),
    ratio: kiln.ms / floor.ms,
    note: `${dir}; without caches ${ms(cold.ms)} (${(cold.ms / floor.ms).toFixed(1)}x); ${plan.builds.length} to build, ${v.errors.length} recipes kiln refuses`,
  };
}

const ms = (x) => `${x < 100 ? x.toFixed(1) : x.toFixed(0)} ms`;

export async function distroBenchmarks(log) {
  const results = [];
  const root = await mkdtemp(join(tmpdir(), "kiln-bench-distro-"));
  try {
    const k = await generateKey(2048);
    const key = parseSigningKey(k.privatePem, "bench.rsa.pub");
    const sizes = [340, 3400];
    const gp = {};
    for (const n of sizes) {
      const dir = join(root, `d${n}`);
      generate(dir, n);
      const file = join(dir, "distro.yaml");
      const cache = join(dir, "cache");
      const files = await listRecipeFiles(await loadDistro(file));
      const floor = await best(3, () => floorInProcess(files));
      await graphPlan(file); // warm the JIT and the file cache
      const cold = await best(1, () => graphPlan(file));
      await graphPlan(file, cache); // fill the caches
      const kiln = await best(3, () => graphPlan(file, cache));
      // One recipe edited (a leaf's version): its compile and every closure (the pool changed) are redone.
      const leaf = files[files.length - 1];
      const text = await readFile(leaf, "utf8");
      writeFileSync(leaf, text.replace(/version: "([^"]+)"/, 'version: "$1.1"'));
      const edited = await time(() => graphPlan(file, cache));
      writeFileSync(leaf, text);
      const p = kiln.value.plan;
      const edges = kiln.value.v.graph.edges.length;
      gp[n] = kiln.ms;
      log(
        `graph+plan ${n} recipes (${edges} edges, ${p.builds.length} to build): ${ms(kiln.ms)} with its caches, ${ms(cold.ms)} without, ${ms(edited.ms)} after editing one recipe; read+hash floor ${ms(floor.ms)} (${(floor.value / 1e6).toFixed(1)} MB)`,
      );
      results.push({
        name: `graph+plan ${n} recipes (${edges} edges)`,
        kiln: ms(kiln.ms),
        peer: ms(floor.ms),
        ratio: kiln.ms / floor.ms,
        note: "floor = read + sha256 the same recipe files in process; kiln reads and hashes them, compiles the changed ones (CACHE/compiled), resolves every build environment (remembered per pool), orders, plans",
      });
      results.push({
        name: `graph+plan ${n} recipes, no cache`,
        kiln: ms(cold.ms),
        peer: ms(floor.ms),
        ratio: cold.ms / floor.ms,
        note: "every recipe parsed and compiled, every environment resolved",
      });
      results.push({
        name: `graph+plan ${n} recipes, one recipe edited`,
        kiln: ms(edited.ms),
        peer: ms(floor.ms),
        ratio: edited.ms / floor.ms,
        note: "one compile; the pool changed, so every environment is resolved again",
      });
    }
    const corpus = process.env.KILN_BENCH_RECIPES;
    if (corpus) results.push(await realCorpus(root, corpus, log));
    else log("no real corpus (set KILN_BENCH_RECIPES=DIR, e.g. a Wolfi checkout, to plan it too)");
    results.push({
      name: `graph+plan scaling 340 → 3,400 recipes`,
      kiln: `×${(gp[3400] / gp[340]).toFixed(1)} time`,
      peer: `×10 recipes`,
      ratio: gp[3400] / gp[340] / 10,
      note: "ratio 1.0 = linear",
    });

    const noop = {};
    for (const n of [300, 340, 3400]) {
      const dir = join(root, `noop${n}`);
      generate(dir, n);
      await fakeBuilt(join(dir, "distro.yaml"), key);
      const check = JSON.parse(await runNode([KILN, "plan", "--json"], dir));
      if (check.plans[0].builds.length !== 0)
        throw new Error(
          `fake-built distribution of ${n} still plans ${check.plans[0].builds.length} builds (${JSON.stringify(check.plans[0].builds[0]?.reasons)})`,
        );
      const kiln = await best(3, () => runNode([KILN, "build", "--all"], dir));
      if (!/0 built, 0 failed, 0 skipped, 0 not started, \d+ up to date/.test(kiln.value))
        throw new Error(`no-op build did something: ${kiln.value}`);
      const floor = await best(3, () => runNode(["--input-type=module", "-e", FLOOR_SCRIPT, dir], dir));
      noop[n] = { kiln: kiln.ms, floor: floor.ms };
      log(`no-op kiln build --all over ${n} built recipes: ${ms(kiln.ms)}; node read+hash floor ${ms(floor.ms)}`);
      if (n === 300) {
        results.push({
          name: `no-op kiln build --all, 300 built recipes`,
          kiln: ms(kiln.ms),
          peer: ms(floor.ms),
          ratio: kiln.ms / floor.ms,
          note: "whole CLI process; floor = a node process reading + sha256-hashing the same recipe files",
        });
      }
    }
    results.push({
      name: `no-op build --all scaling 340 → 3,400 recipes`,
      kiln: `×${(noop[3400].kiln / noop[340].kiln).toFixed(1)} time`,
      peer: `×${(noop[3400].floor / noop[340].floor).toFixed(1)} floor`,
      ratio: noop[3400].kiln / noop[340].kiln / 10,
      note: `ratio 1.0 = linear (process start-up is in both sizes: ${ms(noop[340].kiln)} at 340, ${ms(noop[3400].kiln)} at 3,400)`,
    });
    log(`peak RSS so far: ${peakRssMb()} MB`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  return results;
}

// `node bench/distro.mjs` runs this group alone.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows = await distroBenchmarks((l) => process.stderr.write(`   ${l}\n`));
  for (const r of rows)
    console.log(
      `${r.name.padEnd(50)}${r.kiln.padStart(14)}${r.peer.padStart(14)}${r.ratio.toFixed(2).padStart(8)}x  (${r.note})`,
    );
}
