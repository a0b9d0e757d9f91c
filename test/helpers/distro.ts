// Synthetic distributions for the distro tests: an upstream repository with
// busybox-static (imported from Debian once per test file, the download cached
// under node_modules/.cache), and generated recipes whose steps are cheap
// shell commands in a busybox guest, with known dependency shapes.

import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateKey } from "@kiln/apk";
import { kilnAsync } from "./cli.js";
import { REPO_ROOT } from "./paths.js";

/** Shared with the other build tests: source downloads are content-addressed, so sharing is safe. */
export const TEST_CACHE = join(REPO_ROOT, "node_modules/.cache/kiln-tests/cache");

const BUSYBOX = `
package:
  name: busybox-static
  version: 1.35.0
  epoch: 0
  description: static busybox, imported from Debian (test upstream)
  copyright:
    - license: GPL-2.0-only
  target-architecture: [x86_64]
pipeline:
  - uses: fetch
    with:
      uri: \${{mirror.debian}}/pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_amd64.deb
      expected-sha256: 3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744
      extract: false
  - uses: deb/unpack
    with:
      deb: busybox-static_1.35.0-4+deb12u1+b1_amd64.deb
`;

export interface Upstream {
  repo: string;
  publicKey: string;
}

/** A signed repository holding busybox-static, the guest shell of every synthetic recipe. */
export async function makeUpstream(dir: string): Promise<Upstream> {
  mkdirSync(join(dir, "keys"), { recursive: true });
  const k = await generateKey(2048);
  const priv = join(dir, "keys/upstream.rsa");
  writeFileSync(priv, k.privatePem, { mode: 0o600 });
  writeFileSync(`${priv}.pub`, k.publicPem);
  writeFileSync(join(dir, "busybox-static.yaml"), BUSYBOX);
  const repo = join(dir, "repo");
  const r = await kilnAsync([
    "build",
    join(dir, "busybox-static.yaml"),
    "--out",
    repo,
    "--signing-key",
    priv,
    "--cache-dir",
    TEST_CACHE,
    "--no-test",
  ]);
  if (r.status !== 0) throw new Error(`upstream build failed:\n${r.stderr}`);
  return { repo, publicKey: `${priv}.pub` };
}

export interface SynthRecipe {
  name: string;
  version?: string;
  epoch?: number;
  /** Packages the build environment needs (besides the default busybox guest). */
  deps?: string[];
  /** Runtime dependencies of the main package. */
  runtime?: string[];
  subpackages?: string[];
  /** Text written into the package (change it to change the recipe). */
  content?: string;
  /** Extra shell appended to the build step. */
  script?: string;
  fail?: boolean;
  /** A named pipeline from the distribution's pipelines directory to use. */
  uses?: string;
  /** Files of the source directory recipes/NAME/ (patches, local sources). */
  files?: Record<string, string>;
}

export interface SynthImage {
  name: string;
  packages: string[];
  test?: { command: string[]; expect?: string };
}

export interface SynthDistro {
  upstream: Upstream;
  recipes: SynthRecipe[];
  images?: SynthImage[];
  /** pipelines/NAME.yaml contents. */
  pipelines?: Record<string, string>;
  extra?: string;
}

export function recipeYaml(r: SynthRecipe): string {
  const lines = [
    `package:`,
    `  name: ${r.name}`,
    `  version: "${r.version ?? "1.0"}"`,
    `  epoch: ${r.epoch ?? 0}`,
    `  description: synthetic ${r.name}`,
    `  copyright:`,
    `    - license: MIT`,
  ];
  if (r.runtime?.length) lines.push(`  dependencies:`, `    runtime: [${r.runtime.join(", ")}]`);
  if (r.deps?.length) lines.push(`environment:`, `  contents:`, `    packages: [${r.deps.join(", ")}]`);
  lines.push(`pipeline:`);
  if (r.uses) lines.push(`  - uses: ${r.uses}`);
  // Each step proves its build dependencies are installed by reading their data.
  const reads = (r.deps ?? []).map((d) => `cat /usr/share/${d}/data >/dev/null`);
  const body = [
    `mkdir -p \${{targets.destdir}}/usr/share/${r.name}`,
    `echo "${r.content ?? r.name} built" > \${{targets.destdir}}/usr/share/${r.name}/data`,
    ...reads,
    ...(r.script ? r.script.split("\n") : []),
    ...(r.fail ? [`echo "${r.name} is broken" >&2`, `exit 1`] : []),
  ];
  lines.push(`  - runs: |`, ...body.map((l) => `      ${l}`));
  if (r.subpackages?.length) {
    lines.push(`subpackages:`);
    for (const s of r.subpackages) {
      lines.push(
        `  - name: ${s}`,
        `    description: ${s}`,
        `    pipeline:`,
        `      - runs: |`,
        `          mkdir -p \${{targets.subpkgdir}}/usr/share/${s}`,
        `          echo "${s}" > \${{targets.subpkgdir}}/usr/share/${s}/data`,
      );
    }
  }
  return lines.join("\n") + "\n";
}

export function imageYaml(i: SynthImage): string {
  const lines = [
    `contents:`,
    `  packages: [${i.packages.join(", ")}]`,
    `accounts:`,
    `  groups:`,
    `    - groupname: nonroot`,
    `      gid: 65532`,
    `  users:`,
    `    - username: nonroot`,
    `      uid: 65532`,
    `      gid: 65532`,
    `  run-as: nonroot`,
    `work-dir: /`,
  ];
  if (i.test) {
    lines.push(`test:`, `  command: [${i.test.command.map((c) => JSON.stringify(c)).join(", ")}]`);
    if (i.test.expect !== undefined) lines.push(`  expect: ${JSON.stringify(i.test.expect)}`);
  }
  return lines.join("\n") + "\n";
}

export function distroYaml(up: Upstream, extra = ""): string {
  return `name: Synthetic Linux
id: synth
architectures: [x86_64]
pipelines: pipelines
upstream:
  repositories: [${up.repo}]
  keyring: [${up.publicKey}]
signing-key: keys/synth.rsa
environment:
  contents:
    packages: [busybox-static]
  paths:
    - path: /bin/sh
      type: symlink
      source: /usr/bin/busybox
${extra}`;
}

export function writeRecipe(dir: string, r: SynthRecipe): void {
  writeFileSync(join(dir, "recipes", `${r.name}.yaml`), recipeYaml(r));
  if (r.files) {
    for (const [f, text] of Object.entries(r.files)) {
      mkdirSync(join(dir, "recipes", r.name), { recursive: true });
      writeFileSync(join(dir, "recipes", r.name, f), text);
    }
  }
}

/** Write distro.yaml, recipes/, images/ and pipelines/ into `dir` (replacing what was there), with a signing key. */
export async function writeDistro(dir: string, d: SynthDistro): Promise<void> {
  for (const sub of ["recipes", "images", "pipelines"]) {
    rmSync(join(dir, sub), { recursive: true, force: true });
    mkdirSync(join(dir, sub), { recursive: true });
  }
  writeFileSync(join(dir, "distro.yaml"), distroYaml(d.upstream, d.extra));
  if (!existsSync(join(dir, "keys/synth.rsa"))) {
    mkdirSync(join(dir, "keys"), { recursive: true });
    const k = await generateKey(2048);
    writeFileSync(join(dir, "keys/synth.rsa"), k.privatePem, { mode: 0o600 });
    writeFileSync(join(dir, "keys/synth.rsa.pub"), k.publicPem);
  }
  for (const r of d.recipes) writeRecipe(dir, r);
  for (const i of d.images ?? []) writeFileSync(join(dir, "images", `${i.name}.yaml`), imageYaml(i));
  for (const [name, text] of Object.entries(d.pipelines ?? {}))
    writeFileSync(join(dir, "pipelines", `${name}.yaml`), text);
}

const bootstrapSynthRecipe = (name: string, body: { provides?: string[]; runtime?: string[]; env?: string[] }) =>
  [
    `package:`,
    `  name: ${name}`,
    `  version: "1.0"`,
    `  epoch: 0`,
    `  description: synthetic ${name}`,
    `  copyright:`,
    `    - license: MIT`,
    `  dependencies:`,
    `    provides: [${(body.provides ?? []).join(", ")}]`,
    `    runtime: [${(body.runtime ?? []).join(", ")}]`,
    ...(body.env ? [`environment:`, `  contents:`, `    packages: [${body.env.join(", ")}]`] : []),
    `pipeline:`,
    `  - runs: |`,
    `      mkdir -p \${{targets.destdir}}/usr/share/${name}`,
    `      echo "${name} built" > \${{targets.destdir}}/usr/share/${name}/data`,
    // The build records which libsynth its guest had.
    `      cat /usr/share/synth*/data > \${{targets.destdir}}/usr/share/${name}/seen 2>/dev/null || true`,
  ].join("\n") + "\n";

/**
 * synth-bootstrap (stage 0) and synth (its replacement) both provide
 * so:libsynth.so.1; tool needs it at run time, so synth's own build (which
 * needs tool) is a cycle through synth: it gets the stage-0 one, app gets synth.
 */
export async function writeBootstrapSynth(dir: string, up: Upstream, mapping: boolean): Promise<void> {
  await writeDistro(dir, {
    upstream: up,
    recipes: [],
    extra: mapping ? "bootstrap:\n  synth-bootstrap: synth\n" : "",
  });
  const w = (n: string, text: string) => writeFileSync(join(dir, "recipes", `${n}.yaml`), text);
  w("synth-bootstrap", bootstrapSynthRecipe("synth-bootstrap", { provides: ["so:libsynth.so.1=1"] }));
  w("tool", bootstrapSynthRecipe("tool", { runtime: ["so:libsynth.so.1"] }));
  w("synth", bootstrapSynthRecipe("synth", { provides: ["so:libsynth.so.1=1"], env: ["tool"] }));
  w("app", bootstrapSynthRecipe("app", { runtime: ["synth", "tool"], env: ["tool"] }));
}
