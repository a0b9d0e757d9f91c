// `kiln build` and `kiln test` share one context constructor: the same
// repositories in the same order, the same default step limit (3 h), the
// same keys and base environment — so the two cannot drift apart again.

import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_STEP_TIMEOUT_MS, recipeContext, outputRepository, type BuildOptions } from "./context.js";
import { testRepositories } from "./recipe-tests.js";

const tmp = mkdtempSync(join(tmpdir(), "kiln-context-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function setup(timeout?: string) {
  const dir = mkdtempSync(join(tmp, "r-"));
  const file = join(dir, "hello.yaml");
  writeFileSync(
    file,
    `package:
  name: hello
  version: 1.0.0
  description: hi
  copyright:
    - license: MIT
${timeout ? `  timeout: ${timeout}\n` : ""}environment:
  contents:
    repositories: [/srv/upstream/main]
    packages: [busybox]
pipeline:
  - runs: echo hi
test:
  pipeline:
    - runs: hello
`,
  );
  const outDir = join(dir, "out");
  mkdirSync(join(outDir, "x86_64"), { recursive: true });
  writeFileSync(join(outDir, "x86_64", "APKINDEX.tar.gz"), "");
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const opts: BuildOptions = {
    arch: "x86_64",
    outDir,
    signingKey: { name: "local.rsa.pub", privateKey, publicKey },
    publicKeyPem: Buffer.from(publicKey.export({ type: "spki", format: "pem" }).toString()),
    repositoryAppend: ["/srv/extra"],
    keyringAppend: [{ name: "extra.rsa.pub", pem: Buffer.from("pem") }],
    cacheDir: join(dir, "cache"),
    sourceDateEpoch: 0,
  };
  return { file, outDir, opts };
}

describe("build context", () => {
  it("build and test agree on repositories, their order, the step limit, keys and environment", async () => {
    const { file, outDir, opts } = setup();
    const build = await recipeContext(file, opts, "build");
    const test = await recipeContext(file, opts, "test");
    const repos = await build.repositories();
    expect(repos).toEqual(["/srv/upstream/main", "/srv/extra", outDir]);
    expect(await test.repositories()).toEqual(repos);
    expect(build.timeoutMs).toBe(DEFAULT_STEP_TIMEOUT_MS);
    expect(DEFAULT_STEP_TIMEOUT_MS).toBe(3 * 3600 * 1000);
    expect(test.timeoutMs).toBe(build.timeoutMs);
    expect((await test.keys()).map((k) => k.name)).toEqual((await build.keys()).map((k) => k.name));
    expect(test.baseEnv).toEqual(build.baseEnv);
    expect(test.sourceDir).toBe(build.sourceDir);
    // Only the log differs.
    expect(build.logPath).toBe(join(outDir, "logs", "x86_64", "hello-1.0.0-r0.log"));
    expect(readlinkSync(join(outDir, "logs", "x86_64", "hello.log"))).toBe("hello-1.0.0-r0.log");
    expect(test.logPath).toBe(join(outDir, "logs", "x86_64", "hello.test.log"));
  });

  it("tests install from the repository holding the packages under test first", async () => {
    const { file, outDir, opts } = setup();
    const test = await recipeContext(file, opts, "test");
    const under = await outputRepository(test);
    expect(under).toBe(outDir);
    expect(testRepositories(under, await test.repositories())).toEqual([outDir, "/srv/upstream/main", "/srv/extra"]);
    expect(testRepositories("/staging", await test.repositories())).toEqual([
      "/staging",
      "/srv/upstream/main",
      "/srv/extra",
      outDir,
    ]);
  });

  it("a recipe's timeout and the caller's default apply to both alike", async () => {
    const { file, opts } = setup("30m");
    for (const purpose of ["build", "test"] as const)
      expect((await recipeContext(file, opts, purpose)).timeoutMs).toBe(1800_000);
    const plain = setup();
    for (const purpose of ["build", "test"] as const)
      expect((await recipeContext(plain.file, { ...plain.opts, stepTimeoutMs: 60_000 }, purpose)).timeoutMs).toBe(
        60_000,
      );
  });
});
