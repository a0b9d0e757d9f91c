// Recipes: compile 500 generated recipes against the floor of parsing the
// same YAML; and the sandbox's cost per step: kiln's runInSandbox running a
// `true` step vs running `bwrap ... /bin/sh -c true` directly.

import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { compileRecipe, loadRecipe, runInSandbox, bwrapArgs } from "@kiln/builder";
import { best, fmtRate } from "./common.mjs";

function recipeText(i) {
  return `package:
  name: pkg${i}
  version: 1.${i % 50}.${i % 7}
  epoch: ${i % 3}
  description: generated recipe ${i}
  copyright:
    - license: MIT
  dependencies:
    runtime:
      - lib${(i * 7) % 500}
vars:
  soname: "lib${i}.so.1"
environment:
  contents:
    packages:
      - build-base
      - lib${(i * 13) % 500}-dev
pipeline:
  - uses: fetch
    with:
      uri: https://example.invalid/pkg${i}-\${{package.version}}.tar.gz
      expected-sha256: ${"a".repeat(64)}
  - uses: autoconf/configure
    with:
      opts: --disable-static
  - uses: autoconf/make
  - uses: autoconf/make-install
  - uses: strip
subpackages:
  - name: pkg${i}-dev
    pipeline:
      - uses: split/dev
  - name: pkg${i}-doc
    pipeline:
      - uses: split/manpages
test:
  pipeline:
    - runs: pkg${i} --version
`;
}

function sh(args) {
  return new Promise((resolve, reject) => {
    const p = spawn("bwrap", args, { stdio: "ignore" });
    p.on("error", reject);
    p.on("close", (c) => (c === 0 ? resolve() : reject(new Error(`bwrap exited ${c}`))));
  });
}

export async function buildBenchmarks(log) {
  const results = [];
  const dir = await mkdtemp(join(tmpdir(), "kiln-bench-recipes-"));
  try {
    const N = 500;
    const files = [];
    for (let i = 0; i < N; i++) {
      const f = join(dir, `pkg${i}.yaml`);
      await writeFile(f, recipeText(i));
      files.push(f);
    }
    log(`compile ${N} generated recipes`);
    const kiln = await best(3, async () => {
      for (const f of files) compileRecipe(await loadRecipe(f, { arch: "x86_64" }), { arch: "x86_64" });
    });
    const { readFile } = await import("node:fs/promises");
    const floor = await best(3, async () => {
      for (const f of files) parseYaml(await readFile(f, "utf8"));
    });
    results.push({
      name: `compile ${N} recipes`,
      kiln: fmtRate(N, "recipes/s", kiln.ms),
      peer: fmtRate(N, "recipes/s", floor.ms),
      ratio: kiln.ms / floor.ms,
      note: "floor = read + YAML-parse the same files; kiln validates, expands pipelines, substitutes",
    });

    log("sandbox overhead per step (a `true` step, 50 runs each)");
    const ws = join(dir, "ws");
    await (await import("node:fs/promises")).mkdir(ws);
    // A tiny guest: the host's dash with its C library and loader.
    const fsp = await import("node:fs/promises");
    const guest = join(dir, "guest");
    for (const d of ["usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64", "home/build", "tmp", "proc", "dev", "run"])
      await fsp.mkdir(join(guest, d), { recursive: true });
    await fsp.copyFile("/bin/dash", join(guest, "usr/bin/sh"));
    await fsp.copyFile("/lib/x86_64-linux-gnu/libc.so.6", join(guest, "usr/lib/x86_64-linux-gnu/libc.so.6"));
    await fsp.copyFile("/lib64/ld-linux-x86-64.so.2", join(guest, "usr/lib64/ld-linux-x86-64.so.2"));
    await fsp.chmod(join(guest, "usr/bin/sh"), 0o755);
    await fsp.chmod(join(guest, "usr/lib64/ld-linux-x86-64.so.2"), 0o755);
    for (const [l, t] of [
      ["bin", "usr/bin"],
      ["lib", "usr/lib"],
      ["lib64", "usr/lib64"],
    ])
      await fsp.symlink(t, join(guest, l));
    const cfg = { guestRoot: guest, workspace: ws, env: { PATH: "/usr/bin:/bin" } };
    const STEPS = 50;
    const k = await best(3, async () => {
      for (let i = 0; i < STEPS; i++) {
        const r = await runInSandbox(cfg, "true");
        if (r.exitCode !== 0) throw new Error("true failed in the sandbox");
      }
    });
    const direct = await best(3, async () => {
      for (let i = 0; i < STEPS; i++) await sh([...bwrapArgs(cfg, "/home/build"), "/bin/sh", "-c", "true"]);
    });
    results.push({
      name: "sandbox: one `true` step",
      kiln: `${(k.ms / STEPS).toFixed(1)} ms/step`,
      peer: `${(direct.ms / STEPS).toFixed(1)} ms/step`,
      ratio: k.ms / direct.ms,
      note: "peer = bwrap with the same arguments spawned directly",
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}
