// Running a compiled recipe's `test:` pipelines (main package and
// subpackages), each in a fresh guest holding the packages under test, for
// `kiln build` (from the staging repository, before publishing) and
// `kiln test` (from the output repository) alike.

import { joinUnder } from "@kiln/core";
import { mkdir } from "node:fs/promises";
import type { CompiledTest } from "./compile.js";
import { runAsIds } from "./compile/environment.js";
import { BuildError, prepareGuest, startPod, type RecipeContext, type Session } from "./context.js";
import { copySourceDir, keyringKeys } from "./native-steps.js";
import { formatTail } from "./sandbox.js";
import { runStep } from "./steps/index.js";

/** The repository holding the packages under test first, then the context's (without it again). */
export function testRepositories(underTest: string | undefined, repositories: readonly string[]): string[] {
  return underTest ? [underTest, ...repositories.filter((r) => r !== underTest)] : [...repositories];
}

/** Run every test of the recipe; returns how many there were. */
export async function runRecipeTests(
  ctx: RecipeContext,
  session: Session,
  underTest: string | undefined,
  /** Time spent in the test steps themselves is added to `timing.tests` (ms), the test guests' to `timing.parts.testGuests`. */
  timing?: { tests: number; parts: { testGuests: number } },
): Promise<number> {
  const { compiled } = ctx;
  const tests: Array<{ target: string; test: CompiledTest }> = [];
  if (compiled.test) tests.push({ target: compiled.package.name, test: compiled.test });
  for (const sp of compiled.subpackages) if (sp.test) tests.push({ target: sp.name, test: sp.test });
  const repositories = testRepositories(underTest, await ctx.repositories());
  const keys = await ctx.keys();
  for (const { target, test } of tests) await runOneTest(ctx, session, target, test, repositories, keys, timing);
  return tests.length;
}

async function runOneTest(
  ctx: RecipeContext,
  session: Session,
  target: string,
  test: CompiledTest,
  repositories: string[],
  keys: Array<{ name: string; pem: Buffer }>,
  timing?: { tests: number; parts: { testGuests: number } },
): Promise<void> {
  const file = ctx.file;
  const log = session.log;
  ctx.emit({ kind: "test", package: ctx.label, target });
  log.write(`\n# test ${target}\n`);
  const g0 = Date.now();
  const tws = joinUnder(session.work, { value: `test-${target}`, what: "test workspace" });
  await mkdir(tws, { recursive: true });
  await copySourceDir(ctx.sourceDir, tws, ctx.keyring.roots, file);
  const { guest } = await prepareGuest(ctx, {
    packages: test.environment.contents?.packages ?? [target],
    repositories: [...repositories, ...(test.environment.contents?.repositories ?? [])],
    keys: [...(await keyringKeys(test.environment.contents?.keyring ?? [], ctx.keyring)), ...keys],
    image: test.environment,
    label: `${file} (test)`,
    purpose: "test",
  });
  const pod = await startPod(ctx, guest, tws, runAsIds(test.environment.accounts));
  if (timing) timing.parts.testGuests += Date.now() - g0;
  try {
    const stepCtx = {
      file,
      workspace: tws,
      fileRoots: ctx.keyring.roots,
      cacheDir: ctx.opts.cacheDir,
      log,
      pod,
      env: { ...ctx.baseEnv, ...(test.environment.environment ?? {}) },
      timeoutMs: ctx.timeoutMs,
    };
    for (const [i, step] of test.pipeline.entries()) {
      // Host steps (git-checkout, fetch: melange's tests use them for test data) work in the test's workspace.
      log.write(`# test step ${i + 1} ${step.name}${step.native ? ` (kiln:${step.native})` : ""}\n`);
      const s0 = Date.now();
      const r = (await runStep(step, stepCtx)).result;
      if (timing) timing.tests += Date.now() - s0;
      if (r && r.exitCode !== 0) {
        throw new BuildError(
          `${file}: test of ${target}, step ${i + 1} "${step.name}" failed (status ${r.exitCode}${r.timedOut ? ", timed out" : ""})\n` +
            `  last output:\n${formatTail(r.tail)}\n  full log: ${ctx.logPath}`,
          file,
          step.name,
          r,
          ctx.logPath,
        );
      }
    }
  } finally {
    await pod.stop();
  }
}
