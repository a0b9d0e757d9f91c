// kiln update as typed: a fake file: archive (one suite), --check's lines and
// summary, --fail-on-outdated's exit status 3, --json, --apply, and a hostile
// index as one error with exit 1.

import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { main } from "./main.js";
import type { Io } from "./util.js";

const SHA = "ab".repeat(32);

function capture(env: NodeJS.ProcessEnv): Io & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l), env };
}

function fixture(sources: string) {
  const root = mkdtempSync(join(tmpdir(), "kiln-update-cli-"));
  const src = join(root, "mirror", "dists", "sid", "main", "source");
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, "Sources.xz"), execFileSync("xz", ["-c"], { input: sources }));
  mkdirSync(join(root, "mirror", "pool", "main", "f", "foo"), { recursive: true });
  writeFileSync(join(root, "mirror", "pool", "main", "f", "foo", "foo_1.1.orig.tar.gz"), "tarball\n");
  const recipe = join(root, "foo.yaml");
  writeFileSync(
    recipe,
    `package:\n  name: foo\n  version: "1.0"\n  epoch: 0\n  description: test\n  copyright:\n    - license: MIT\npipeline:\n  - uses: fetch\n    with:\n      uri: \${{mirror.debian}}/pool/main/f/foo/foo_\${{package.version}}.orig.tar.gz\n      expected-sha256: ${"cd".repeat(32)}\n`,
  );
  const env = { KILN_DEBIAN_MIRROR: pathToFileURL(join(root, "mirror")).href, KILN_CACHE_DIR: join(root, "cache") };
  return { recipe, env };
}

const FOO = `Package: foo\nVersion: 1.1-1\nDirectory: pool/main/f/foo\nChecksums-Sha256:\n ${SHA} 8 foo_1.1.orig.tar.gz\n`;

describe("kiln update", () => {
  it("--check reports the recipe behind; --fail-on-outdated exits 3; --apply bumps it", async () => {
    const { recipe, env } = fixture(FOO);
    const args = ["update", "--check", recipe, "--suite", "sid"];
    let io = capture(env);
    expect(await main(args, io)).toBe(0);
    expect(io.stdout).toEqual([
      "foo: 1.0 -> 1.1 in sid (Debian 1.1-1)\n    ${{mirror.debian}}/pool/main/f/foo/foo_1.1.orig.tar.gz\n    sha256 " +
        SHA,
      "1 recipes, suites sid: 1 behind, 0 current, 0 disabled, 0 not checked",
    ]);
    expect(io.stderr).toContain("reading sid's source index");
    io = capture(env);
    expect(await main([...args, "--fail-on-outdated"], io)).toBe(3);
    io = capture(env);
    expect(await main([...args, "--json"], io)).toBe(0);
    const json = JSON.parse(io.stdout.join("\n")) as { reports: Array<{ status: string; newest: { sha256: string } }> };
    expect(json.reports[0]).toMatchObject({ status: "outdated", newest: { sha256: SHA } });
    io = capture(env);
    expect(await main(["update", "--apply", recipe, "--suite", "sid", "--fail-on-outdated"], io)).toBe(0);
    expect(io.stdout[0]).toBe("foo: bumped 1.0 -> 1.1 (1.1 in sid (Debian 1.1-1))");
    expect(readFileSync(recipe, "utf8")).toContain(`version: "1.1"`);
    expect(readFileSync(recipe, "utf8")).toContain(`expected-sha256: ${SHA}`);
  });

  it("a hostile index is one error, exit 1, the recipe untouched", async () => {
    const { recipe, env } = fixture(FOO.replace("foo_1.1.orig.tar.gz", "../../foo_1.1.orig.tar.gz"));
    const before = readFileSync(recipe, "utf8");
    const io = capture(env);
    expect(await main(["update", "--apply", recipe, "--suite", "sid"], io)).toBe(1);
    expect(io.stderr.join("\n")).toMatch(
      /Sources\.xz:1: source foo: "\.\.\/\.\.\/foo_1\.1\.orig\.tar\.gz" is not a plain file name/,
    );
    expect(readFileSync(recipe, "utf8")).toBe(before);
  });
});
