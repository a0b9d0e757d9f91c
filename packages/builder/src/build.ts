// Building a recipe: compile, assemble the guest, run the steps (kiln-native
// ones on the host, the rest under bubblewrap), emit the main package and its
// subpackages, run the recipe's tests against them in a fresh guest, and only
// then move them into the output repository and merge its signed index. A
// failed build leaves the previous packages and index untouched.

import { joinUnder, KilnError } from "@kiln/core";
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { stringify as yamlStringify } from "yaml";
import {
  buildIndex,
  indexRecordForPackage,
  mergeIndexRecords,
  readIndex,
  type IndexRecord,
  type ScriptName,
  type SigningKey,
} from "@kiln/apk";
import type { ImageConfigInput } from "@kiln/image";
import {
  compileRecipe,
  environmentImageConfig,
  loadRecipe,
  type CompiledRecipe,
  type CompiledStep,
  type CompiledScriptlets,
  type CompiledTest,
} from "./compile.js";
import type { MirrorOptions } from "./fetch-source.js";
import { emitPackage, type EmittedPackage } from "./emit.js";
import { ensureDirUnder, type FileRoot } from "./host-files.js";
import {
  copySourceDir,
  keyringKeys,
  publicHalf,
  runNativeStep,
  workspaceRelative,
  type FetchedSource,
  type KeyringSources,
} from "./native-steps.js";
import { assembleGuest, resolveGuest, type Guest } from "./guest.js";
import type { BuildLog, LogLimits } from "./log-capture.js";
import type { Recipe } from "./recipe-schema.js";
import { formatTail, GUEST_WORKSPACE, openLog, runInSandbox, type StepResult } from "./sandbox.js";

export type BuildEvent =
  | { kind: "start"; package: string }
  | { kind: "guest"; package: string; packages: number; reused: boolean; purpose: "build" | "test" }
  | { kind: "step"; package: string; step: string; index: number; total: number; native: boolean }
  | { kind: "step-done"; package: string; step: string; ms: number }
  | { kind: "emit"; package: string; file: string; size: number }
  | { kind: "test"; package: string; target: string }
  | { kind: "done"; package: string; ms: number; files: string[] };

export interface BuildOptions {
  arch: string;
  /** Repository root: packages land in OUT/ARCH. */
  outDir: string;
  signingKey: SigningKey;
  /** The signing key's public half (trusted for the local repository). */
  publicKeyPem: Buffer;
  repositoryAppend?: string[];
  keyringAppend?: Array<{ name: string; pem: Buffer }>;
  pipelineDirs?: string[];
  /**
   * Copied into the workspace (patches, local sources); default: a directory
   * named after the package beside the recipe. Given explicitly (--source-dir),
   * it is also where file:// sources and keyring entries may be read besides
   * the recipe's own directory.
   */
  sourceDir?: string;
  cacheDir: string;
  sourceDateEpoch: number;
  mirrors?: MirrorOptions;
  runTests?: boolean;
  /** Default per-step limit when the recipe sets no timeout. */
  stepTimeoutMs?: number;
  /** The package log's size cap and line limit (defaults: 256 MiB, 64 KiB). */
  logLimits?: LogLimits;
  onEvent?: (e: BuildEvent) => void;
  /** Extra `${{ }}` variables. */
  variables?: Record<string, string>;
  /**
   * Build at this release number instead of `package.epoch` (`${{package.epoch}}`,
   * `${{package.full-version}}`, the file names and the embedded recipe follow).
   * The distribution raises it when only a dependency changed, so no two
   * different builds share NAME-VER-rN.
   */
  epochOverride?: number;
  /**
   * Use this as the recipe's `environment` (the distribution passes the
   * recipe's own environment merged with distro.yaml's default one). It is
   * embedded in the package's .melange.yaml, so a rebuild from the package sees it.
   */
  environment?: ImageConfigInput;
}

export interface BuildResult {
  recipe: string;
  name: string;
  fullVersion: string;
  skipped?: string;
  packages: Array<{
    name: string;
    file: string;
    size: number;
    checksum: string;
    depends: string[];
    provides: string[];
  }>;
  log: string;
  ms: number;
  steps: Array<{ name: string; ms: number }>;
  /** What the build guest resolved to (empty when the recipe needs no guest): the inputs of the distribution's build key. */
  guest: Array<{ name: string; version: string; checksum: string }>;
}

export class BuildError extends KilnError {
  readonly code = "BUILD_FAILED";
  constructor(
    message: string,
    readonly recipe: string,
    readonly step?: string,
    readonly result?: StepResult,
    readonly log?: string,
  ) {
    super(message);
    this.name = "BuildError";
  }
}

const locks = new Map<string, Promise<void>>();
/** Serialise index updates of one repository within this process. */
async function withRepoLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(dir) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  locks.set(
    dir,
    prev.then(() => mine),
  );
  await prev;
  // And across processes: an atomic mkdir lock.
  const lockDir = join(dir, ".kiln-lock");
  for (let i = 0; ; i++) {
    try {
      await mkdir(lockDir);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || i > 600) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
    release();
  }
}

function scripts(s: CompiledScriptlets): { scripts: Partial<Record<ScriptName, string>>; triggers: string[] } {
  const out: Partial<Record<ScriptName, string>> = {};
  for (const k of [
    "pre-install",
    "post-install",
    "pre-deinstall",
    "post-deinstall",
    "pre-upgrade",
    "post-upgrade",
  ] as const) {
    if (s[k]) out[`.${k}` as ScriptName] = s[k];
  }
  if (s.trigger) out[".trigger"] = s.trigger.script;
  return { scripts: out, triggers: s.trigger?.paths ?? [] };
}

async function localRepoUsable(outDir: string, arch: string): Promise<boolean> {
  return !!(await stat(join(outDir, arch, "APKINDEX.tar.gz")).catch(() => undefined));
}

/** The directories a recipe may read local files from: its own, and an explicit --source-dir. */
function recipeRoots(file: string, sourceDir: string | undefined): FileRoot[] {
  return [
    { dir: resolve(dirname(file)), what: "the recipe's directory" },
    ...(sourceDir ? [{ dir: resolve(sourceDir), what: "--source-dir" }] : []),
  ];
}

/** Keyring entries a recipe names itself (build and test environments), as written. */
function ownKeyring(recipe: Recipe): Set<string> {
  const envs = [
    recipe.environment,
    recipe.test?.environment,
    ...(recipe.subpackages ?? []).map((s) => s.test?.environment),
  ];
  return new Set(envs.flatMap((e) => e?.contents?.keyring ?? []));
}

/** Every key a guest trusts, public halves only. */
function publicKeys(keys: Array<{ name: string; pem: Buffer }>): Array<{ name: string; pem: Buffer }> {
  return keys.map((k) => ({ name: k.name, pem: publicHalf(k.pem, `key ${k.name}`) }));
}

/** Make the step's working directory (inside the workspace) exist, as melange does; guest paths outside it are the guest's. */
async function prepareWorkdir(workspace: string, guestDir: string, what: string): Promise<void> {
  if (guestDir !== GUEST_WORKSPACE && !guestDir.startsWith(`${GUEST_WORKSPACE}/`)) return;
  await ensureDirUnder(workspace, workspaceRelative("", guestDir, what), what);
}

/** The environment every step of a recipe starts from (build and test alike). */
function guestEnvironment(compiled: CompiledRecipe, sourceDateEpoch: number): Record<string, string> {
  return {
    HOME: GUEST_WORKSPACE,
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin",
    SOURCE_DATE_EPOCH: String(sourceDateEpoch),
    ...(compiled.environment.environment ?? {}),
  };
}

function needsGuest(steps: CompiledStep[]): boolean {
  return steps.some((s) => !s.native);
}

export async function buildRecipe(file: string, opts: BuildOptions): Promise<BuildResult> {
  const t0 = Date.now();
  const emit = opts.onEvent ?? (() => undefined);
  const recipeDir = dirname(file);
  // ${{mirror.NAME}} compiles to mirror://NAME, resolved at fetch time from this
  // machine's configuration, so compiled recipes do not depend on the mirror.
  const variables = { ...opts.variables };
  const copts = { arch: opts.arch, ...(opts.pipelineDirs ? { pipelineDirs: opts.pipelineDirs } : {}), variables };
  const loaded = await loadRecipe(file, copts);
  // The recipe's own keyring entries are read only where its local files may be; the distribution's as given.
  const recipeKeyring = ownKeyring(loaded.recipe);
  const keyring: KeyringSources = {
    trusted: new Set((opts.environment?.contents?.keyring ?? []).filter((k) => !recipeKeyring.has(k))),
    roots: recipeRoots(file, opts.sourceDir),
    baseDir: recipeDir,
    subject: file,
  };
  if (opts.epochOverride !== undefined) loaded.recipe.package.epoch = opts.epochOverride;
  if (opts.environment !== undefined) loaded.recipe.environment = structuredClone(opts.environment);
  const compiled = compileRecipe(loaded, copts);
  const pkg = compiled.package;
  const label = `${pkg.name}-${pkg.fullVersion}`;
  const logDir = joinUnder(opts.outDir, "logs", { value: opts.arch, what: "architecture" });
  await mkdir(logDir, { recursive: true });
  const logPath = joinUnder(logDir, { value: `${pkg.name}.log`, what: "log file" });
  await writeFile(logPath, `# kiln build ${file} (${label}, ${opts.arch})\n`);
  const result: BuildResult = {
    recipe: file,
    name: pkg.name,
    fullVersion: pkg.fullVersion,
    packages: [],
    log: logPath,
    ms: 0,
    steps: [],
    guest: [],
  };
  if (!compiled.supportsArch) {
    result.skipped = `target-architecture excludes ${opts.arch}`;
    result.ms = Date.now() - t0;
    return result;
  }
  emit({ kind: "start", package: label });
  const work = await mkdtemp(joinUnder(tmpdir(), { value: `kiln-build-${pkg.name}-`, what: "work directory" }));
  const log = openLog(logPath, opts.logLimits);
  try {
    const workspace = join(work, "ws");
    const outDirOf = (name: string) => joinUnder(workspace, "melange-out", { value: name, what: "package name" });
    for (const name of [pkg.name, ...compiled.subpackages.map((sp) => sp.name)])
      await mkdir(outDirOf(name), { recursive: true });
    const sourceDir = opts.sourceDir ?? joinUnder(recipeDir, { value: pkg.name, what: "package name" });
    await copySourceDir(sourceDir, workspace, keyring.roots, file);

    const sources: FetchedSource[] = [];
    const allSteps = [...compiled.pipeline, ...compiled.subpackages.flatMap((s) => s.pipeline)];
    let guest: Guest | undefined;
    const localKeys = [{ name: opts.signingKey.name, pem: opts.publicKeyPem }];
    const envKeys = await keyringKeys(compiled.environment.contents?.keyring ?? [], keyring);
    const repos = async () => [
      ...(compiled.environment.contents?.repositories ?? []),
      ...(opts.repositoryAppend ?? []),
      ...((await localRepoUsable(opts.outDir, opts.arch)) ? [opts.outDir] : []),
    ];
    if (needsGuest(allSteps)) {
      const packages = compiled.environment.contents?.packages ?? [];
      if (packages.length === 0)
        throw new BuildError(
          `${file}: the pipeline runs shell steps, so environment.contents.packages must name a guest (at least a shell)`,
          file,
        );
      const spec = {
        arch: opts.arch,
        packages,
        repositories: await repos(),
        keys: publicKeys([...envKeys, ...localKeys, ...(opts.keyringAppend ?? [])]),
        buildUid: 1000,
        cacheDir: opts.cacheDir,
        image: environmentImageConfig(compiled.environment, file),
      };
      const resolved = await resolveGuest(spec);
      guest = await assembleGuest(spec, resolved);
      result.guest = resolved.map((p) => ({
        name: p.record.name,
        version: p.record.version,
        checksum: p.record.checksum ?? "",
      }));
      emit({ kind: "guest", package: label, packages: resolved.length, reused: guest.reused, purpose: "build" });
      log.write(`# guest: ${resolved.map((p) => `${p.record.name}-${p.record.version}`).join(" ")}\n`);
    }
    const baseEnv = guestEnvironment(compiled, opts.sourceDateEpoch);
    const timeoutMs = pkg.timeoutSeconds ? pkg.timeoutSeconds * 1000 : (opts.stepTimeoutMs ?? 3 * 3600 * 1000);
    const runSteps = async (steps: CompiledStep[], what: string) => {
      for (const [i, step] of steps.entries()) {
        const s0 = Date.now();
        emit({
          kind: "step",
          package: label,
          step: step.name,
          index: i + 1,
          total: steps.length,
          native: !!step.native,
        });
        log.write(`\n# step ${i + 1}/${steps.length} ${step.name} (${step.origin})\n`);
        if (step.native) {
          const fetched = await runNativeStep(step, {
            file,
            workspace,
            fileRoots: keyring.roots,
            cacheDir: opts.cacheDir,
            ...(opts.mirrors ? { mirrors: opts.mirrors } : {}),
            log,
          });
          if (fetched) sources.push(fetched);
        } else {
          const env = { ...baseEnv, ...step.environment };
          await prepareWorkdir(workspace, step.workingDirectory, `${file}: ${step.origin}: working-directory`);
          const r = await runInSandbox({ guestRoot: guest!.dir, workspace, env, timeoutMs }, step.runs, {
            workdir: step.workingDirectory,
            log,
          });
          if (r.exitCode !== 0) {
            const why = r.timedOut ? `timed out after ${timeoutMs / 1000} s` : `exited with status ${r.exitCode}`;
            throw new BuildError(
              `${file}: ${what} step ${i + 1} "${step.name}" ${why}\n  last output:\n${formatTail(r.tail)}\n  full log: ${logPath}`,
              file,
              step.name,
              r,
              logPath,
            );
          }
        }
        result.steps.push({ name: step.name, ms: Date.now() - s0 });
        emit({ kind: "step-done", package: label, step: step.name, ms: Date.now() - s0 });
      }
    };
    await runSteps(compiled.pipeline, "pipeline");
    for (const sp of compiled.subpackages) await runSteps(sp.pipeline, `subpackage ${sp.name}:`);

    // Emit into a staging repository.
    const staging = join(work, "staging");
    const stagingArch = joinUnder(staging, { value: opts.arch, what: "architecture" });
    await mkdir(stagingArch, { recursive: true });
    const melangeYaml = yamlStringify(loaded.recipe);
    const emitted: EmittedPackage[] = [];
    const targets = [
      {
        name: pkg.name,
        description: pkg.description,
        url: pkg.url,
        commit: pkg.commit,
        deps: pkg.dependencies,
        options: pkg.options,
        scriptlets: pkg.scriptlets,
      },
      ...compiled.subpackages.map((s) => ({
        name: s.name,
        description: s.description,
        url: s.url ?? pkg.url,
        commit: s.commit ?? pkg.commit,
        deps: s.dependencies,
        options: s.options,
        scriptlets: s.scriptlets,
      })),
    ];
    for (const t of targets) {
      const { scripts: sc, triggers } = scripts(t.scriptlets);
      const out = joinUnder(stagingArch, { value: `${t.name}-${pkg.fullVersion}.apk`, what: "package file" });
      // The guest's steps wrote here: the package's directory must still be a directory of the workspace, not a symlink out of it.
      const destdir = await ensureDirUnder(workspace, join("melange-out", t.name), `${file}: ${t.name}`);
      const e = await emitPackage(
        {
          name: t.name,
          version: pkg.fullVersion,
          arch: opts.arch,
          origin: pkg.name,
          ...(t.description ? { description: t.description } : {}),
          ...(t.url ? { url: t.url } : {}),
          ...(pkg.license ? { license: pkg.license } : {}),
          ...(t.commit ? { commit: t.commit } : {}),
          runtime: t.deps.runtime,
          provides: t.deps.provides,
          replaces: t.deps.replaces,
          ...(t.deps.providerPriority !== undefined ? { providerPriority: t.deps.providerPriority } : {}),
          ...(t.deps.replacesPriority !== undefined ? { replacesPriority: t.deps.replacesPriority } : {}),
          options: t.options,
          scripts: sc,
          triggers,
          controlFiles: { ".melange.yaml": melangeYaml },
          sources,
        },
        destdir,
        out,
        { signingKeys: [opts.signingKey], sourceDateEpoch: opts.sourceDateEpoch },
      );
      emitted.push(e);
      emit({ kind: "emit", package: label, file: basename(out), size: e.size });
    }
    const records: IndexRecord[] = [];
    for (const e of emitted) records.push(await indexRecordForPackage(e.path));
    await writeFile(
      join(stagingArch, "APKINDEX.tar.gz"),
      buildIndex(records, { signingKeys: [opts.signingKey], sourceDateEpoch: opts.sourceDateEpoch }),
    );

    // Tests: a fresh guest with the new packages (from staging, ahead of the output repository).
    if (opts.runTests !== false) {
      await runRecipeTests(compiled, {
        file,
        label,
        work,
        sourceDir,
        keyring,
        repositories: [staging, ...(await repos())],
        keys: [...envKeys, ...localKeys, ...(opts.keyringAppend ?? [])],
        baseEnv,
        timeoutMs,
        log,
        logPath,
        opts,
      });
    }

    // Publish into the output repository: packages first, then the merged index.
    await withRepoLock(opts.outDir, async () => {
      const dir = joinUnder(opts.outDir, { value: opts.arch, what: "architecture" });
      await mkdir(dir, { recursive: true });
      for (const e of emitted) await rename(e.path, join(dir, basename(e.path)));
      const indexFile = join(dir, "APKINDEX.tar.gz");
      let existing: IndexRecord[] = [];
      const old = await readFile(indexFile).catch(() => undefined);
      if (old) existing = (await readIndex(old, { subject: indexFile })).records;
      const merged = mergeIndexRecords(existing, records);
      const tmp = `${indexFile}.kiln-tmp-${process.pid}`;
      await writeFile(
        tmp,
        buildIndex(merged, { signingKeys: [opts.signingKey], sourceDateEpoch: opts.sourceDateEpoch }),
      );
      await rename(tmp, indexFile);
      // Consumers fetch the key beside the architectures (REPO/KEYNAME.rsa.pub).
      await writeFile(join(opts.outDir, opts.signingKey.name), opts.publicKeyPem);
    });
    result.packages = emitted.map((e, i) => ({
      name: records[i]!.name,
      file: join(opts.outDir, opts.arch, basename(e.path)),
      size: e.size,
      checksum: e.checksum,
      depends: e.info.depends,
      provides: e.info.provides,
    }));
    result.ms = Date.now() - t0;
    emit({ kind: "done", package: label, ms: result.ms, files: result.packages.map((p) => basename(p.file)) });
    return result;
  } finally {
    await log.close().catch(() => undefined); // a log that cannot be finished does not undo the build
    await rm(work, { recursive: true, force: true });
  }
}

interface TestContext {
  file: string;
  label: string;
  work: string;
  sourceDir: string;
  keyring: KeyringSources;
  repositories: string[];
  keys: Array<{ name: string; pem: Buffer }>;
  baseEnv: Record<string, string>;
  timeoutMs: number;
  log: BuildLog;
  logPath: string;
  opts: Pick<BuildOptions, "arch" | "cacheDir" | "onEvent">;
}

/** Run a compiled recipe's `test:` pipelines (main and subpackages), each in a fresh guest. */
async function runRecipeTests(compiled: CompiledRecipe, t: TestContext): Promise<number> {
  const emit = t.opts.onEvent ?? (() => undefined);
  const tests: Array<{ target: string; test: CompiledTest }> = [];
  if (compiled.test) tests.push({ target: compiled.package.name, test: compiled.test });
  for (const sp of compiled.subpackages) if (sp.test) tests.push({ target: sp.name, test: sp.test });
  for (const { target, test } of tests) {
    emit({ kind: "test", package: t.label, target });
    t.log.write(`\n# test ${target}\n`);
    const tws = joinUnder(t.work, { value: `test-${target}`, what: "test workspace" });
    await mkdir(tws, { recursive: true });
    await copySourceDir(t.sourceDir, tws, t.keyring.roots, t.file);
    const spec = {
      arch: t.opts.arch,
      packages: test.environment.contents?.packages ?? [target],
      repositories: [...t.repositories, ...(test.environment.contents?.repositories ?? [])],
      keys: publicKeys([...(await keyringKeys(test.environment.contents?.keyring ?? [], t.keyring)), ...t.keys]),
      buildUid: 1000,
      cacheDir: t.opts.cacheDir,
      image: environmentImageConfig(test.environment, `${t.file} (test)`),
    };
    const resolved = await resolveGuest(spec);
    const tguest = await assembleGuest(spec, resolved);
    emit({ kind: "guest", package: t.label, packages: resolved.length, reused: tguest.reused, purpose: "test" });
    for (const [i, step] of test.pipeline.entries()) {
      if (step.native)
        throw new BuildError(
          `${t.file}: test step "${step.name}" uses ${step.native}, which tests cannot`,
          t.file,
          step.name,
        );
      const env = { ...t.baseEnv, ...(test.environment.environment ?? {}), ...step.environment };
      t.log.write(`# test step ${i + 1} ${step.name}\n`);
      await prepareWorkdir(tws, step.workingDirectory, `${t.file}: ${step.origin}: working-directory`);
      const r = await runInSandbox({ guestRoot: tguest.dir, workspace: tws, env, timeoutMs: t.timeoutMs }, step.runs, {
        workdir: step.workingDirectory,
        log: t.log,
      });
      if (r.exitCode !== 0) {
        throw new BuildError(
          `${t.file}: test of ${target}, step ${i + 1} "${step.name}" failed (status ${r.exitCode}${r.timedOut ? ", timed out" : ""})\n  last output:\n${formatTail(r.tail)}\n  full log: ${t.logPath}`,
          t.file,
          step.name,
          r,
          t.logPath,
        );
      }
    }
  }
  return tests.length;
}

/**
 * `kiln test`: run a recipe's tests against its packages as they are in the
 * output repository (and the other repositories), without building.
 */
export async function testRecipe(
  file: string,
  opts: BuildOptions,
): Promise<{ tests: number; ms: number; log: string }> {
  const t0 = Date.now();
  const copts = {
    arch: opts.arch,
    ...(opts.pipelineDirs ? { pipelineDirs: opts.pipelineDirs } : {}),
    variables: { ...opts.variables },
  };
  const loaded = await loadRecipe(file, copts);
  const compiled = compileRecipe(loaded, copts);
  const label = `${compiled.package.name}-${compiled.package.fullVersion}`;
  const logDir = joinUnder(opts.outDir, "logs", { value: opts.arch, what: "architecture" });
  await mkdir(logDir, { recursive: true });
  const logPath = joinUnder(logDir, { value: `${compiled.package.name}.test.log`, what: "log file" });
  await writeFile(logPath, `# kiln test ${file} (${label})\n`);
  const log = openLog(logPath, opts.logLimits);
  const work = await mkdtemp(
    joinUnder(tmpdir(), { value: `kiln-test-${compiled.package.name}-`, what: "work directory" }),
  );
  const keyring: KeyringSources = {
    trusted: new Set(),
    roots: recipeRoots(file, opts.sourceDir),
    baseDir: dirname(file),
    subject: file,
  };
  try {
    const envKeys = await keyringKeys(compiled.environment.contents?.keyring ?? [], keyring);
    const repositories = [
      ...((await localRepoUsable(opts.outDir, opts.arch)) ? [opts.outDir] : []),
      ...(compiled.environment.contents?.repositories ?? []),
      ...(opts.repositoryAppend ?? []),
    ];
    const baseEnv = guestEnvironment(compiled, opts.sourceDateEpoch);
    const n = await runRecipeTests(compiled, {
      file,
      label,
      work,
      sourceDir: opts.sourceDir ?? joinUnder(dirname(file), { value: compiled.package.name, what: "package name" }),
      keyring,
      repositories,
      keys: [...envKeys, { name: opts.signingKey.name, pem: opts.publicKeyPem }, ...(opts.keyringAppend ?? [])],
      baseEnv,
      timeoutMs: opts.stepTimeoutMs ?? 3600_000,
      log,
      logPath,
      opts,
    });
    return { tests: n, ms: Date.now() - t0, log: logPath };
  } finally {
    await log.close().catch(() => undefined); // a log that cannot be finished does not undo the build
    await rm(work, { recursive: true, force: true });
  }
}

export async function listApks(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith(".apk")).sort();
}

export type { CompiledRecipe };
