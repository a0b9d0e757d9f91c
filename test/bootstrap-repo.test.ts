// The bootstrap repository end to end, on a small synthetic distribution
// with a `bootstrap:` mapping: the stage-0 package is built into
// OUT/bootstrap/ARCH (its own signed index) and used by the one build that
// needs it, everything else lands in OUT/ARCH, which the real apk-tools then
// installs as a whole; `kiln publish` never sees the stage-0 package. A
// repository from before the split (the stage-0 package in OUT/ARCH) is
// moved over on the next run without a rebuild.

import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildIndex, parseSigningKey, readIndex } from "@kiln/apk";
import { realApk } from "./helpers/apk-tools.js";
import { kilnAsync, type Run } from "./helpers/cli.js";
import { makeUpstream, writeBootstrapSynth, type Upstream } from "./helpers/distro.js";

let work: string;
let up: Upstream;
let cache: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-bootstrap-repo-"));
  cache = join(work, "cache");
  up = await makeUpstream(join(work, "up"));
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

async function run(dir: string, args: string[]): Promise<Run> {
  return kilnAsync([...args, "--cache-dir", cache], { cwd: dir });
}

async function ok(dir: string, args: string[]): Promise<Run> {
  const r = await run(dir, args);
  expect(r.status, `kiln ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

async function names(file: string): Promise<string[]> {
  return (await readIndex(readFileSync(file))).records.map((r) => `${r.name}-${r.version}`).sort();
}

function seen(dir: string, repo: string, pkg: string): string {
  const file = readdirSync(join(dir, repo)).find((f) => f.startsWith(`${pkg}-1.0-`) && f.endsWith(".apk"))!;
  const x = join(work, `x-${pkg}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(x);
  execFileSync("tar", ["-xzf", join(dir, repo, file), "-C", x], { stdio: "ignore" });
  return readFileSync(join(x, `usr/share/${pkg}/seen`), "utf8");
}

describe("the bootstrap repository", () => {
  const dir = () => join(work, "d");

  it("stage-0 packages are built into OUT/bootstrap/ARCH, used where the plan says, and the real apk installs all of OUT/ARCH at once", async () => {
    mkdirSync(dir(), { recursive: true });
    await writeBootstrapSynth(dir(), up, true);
    const first = await ok(dir(), ["distro-build"]);
    expect(await names(join(dir(), "out/bootstrap/x86_64/APKINDEX.tar.gz"))).toEqual(["synth-bootstrap-1.0-r0"]);
    expect(await names(join(dir(), "out/x86_64/APKINDEX.tar.gz"))).toEqual([
      "app-1.0-r0",
      "synth-1.0-r0",
      "tool-1.0-r0",
    ]);
    expect(readdirSync(join(dir(), "out/x86_64")).filter((f) => f.startsWith("synth-bootstrap"))).toEqual([]);
    // synth's own build had the stage-0 library (a cycle through synth); app's had synth.
    expect(seen(dir(), "out/x86_64", "synth")).toBe("synth-bootstrap built\n");
    expect(seen(dir(), "out/x86_64", "app")).toBe("synth built\n");
    expect(first.stdout).toMatch(/round 1 built 4/);

    const apk = await realApk();
    const keys = join(work, "keys");
    mkdirSync(keys, { recursive: true });
    copyFileSync(join(dir(), "keys/synth.rsa.pub"), join(keys, "synth.rsa.pub"));
    execFileSync(apk, ["verify", "--keys-dir", keys, join(dir(), "out/bootstrap/x86_64/synth-bootstrap-1.0-r0.apk")]);
    const all = (await readIndex(readFileSync(join(dir(), "out/x86_64/APKINDEX.tar.gz")))).records.map((r) => r.name);
    const root = join(work, "root");
    const add = execFileSync(
      apk,
      [
        "add",
        "--root",
        root,
        "--initdb",
        "--arch",
        "x86_64",
        "--keys-dir",
        keys,
        "--repository",
        join(dir(), "out"),
        ...all,
      ],
      { encoding: "utf8" },
    );
    for (const n of ["app", "synth", "tool"]) expect(add).toMatch(new RegExp(`Installing ${n} \\(1\\.0-r0\\)`));
    expect(add).not.toMatch(/synth-bootstrap/);
    // Installed: exactly the main repository's packages (no base-layout here, so no apk audit).
    const info = execFileSync(apk, ["info", "--root", root], { encoding: "utf8" });
    expect(info.trim().split("\n").sort()).toEqual(["app", "synth", "tool"]);
    // The bootstrap repository is a repository in its own right, signed with the same key.
    const broot = join(work, "broot");
    const badd = execFileSync(
      apk,
      [
        "add",
        "--root",
        broot,
        "--initdb",
        "--arch",
        "x86_64",
        "--keys-dir",
        keys,
        "--repository",
        join(dir(), "out/bootstrap"),
        "synth-bootstrap",
      ],
      { encoding: "utf8" },
    );
    expect(badd).toMatch(/Installing synth-bootstrap \(1\.0-r0\)/);

    // Nothing left to do, and publish leaves the stage-0 package out.
    const again = await ok(dir(), ["distro-build"]);
    expect(again.stdout).toMatch(/round 1 built 0/);
    const dest = join(work, "published");
    const pub = await kilnAsync(
      ["publish", "--from", join(dir(), "out"), "--to", dest, "--signing-key", join(dir(), "keys/synth.rsa")],
      { cwd: dir() },
    );
    expect(pub.status, pub.stderr).toBe(0);
    expect(
      readdirSync(join(dest, "x86_64"))
        .filter((f) => f.endsWith(".apk"))
        .sort(),
    ).toEqual(["app-1.0-r0.apk", "synth-1.0-r0.apk", "tool-1.0-r0.apk"]);
    expect(existsSync(join(dest, "bootstrap"))).toBe(false);
  }, 600_000);

  it("a repository with a stage-0 package in OUT/ARCH has it moved to the bootstrap repository, and back when the mapping goes, without rebuilding", async () => {
    const d = join(work, "moved");
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d, { recursive: true });
    await writeBootstrapSynth(d, up, true);
    await ok(d, ["distro-build"]);
    // Put it back as an OUT from before the split had it: one index over all four.
    const key = parseSigningKey(readFileSync(join(d, "keys/synth.rsa")), "synth.rsa.pub");
    const main = (await readIndex(readFileSync(join(d, "out/x86_64/APKINDEX.tar.gz")))).records;
    const boot = (await readIndex(readFileSync(join(d, "out/bootstrap/x86_64/APKINDEX.tar.gz")))).records;
    copyFileSync(
      join(d, "out/bootstrap/x86_64/synth-bootstrap-1.0-r0.apk"),
      join(d, "out/x86_64/synth-bootstrap-1.0-r0.apk"),
    );
    writeFileSync(
      join(d, "out/x86_64/APKINDEX.tar.gz"),
      buildIndex([...main, ...boot], { signingKeys: [key], sourceDateEpoch: 0 }),
    );
    rmSync(join(d, "out/bootstrap"), { recursive: true });

    const r = await ok(d, ["distro-build"]);
    expect(r.stdout).toMatch(/round 1 built 0/);
    expect(r.stderr).toContain(
      "x86_64: 1 package of stage-0 recipes moved into the bootstrap repository bootstrap/x86_64/: synth-bootstrap-1.0-r0.apk",
    );
    expect(await names(join(d, "out/bootstrap/x86_64/APKINDEX.tar.gz"))).toEqual(["synth-bootstrap-1.0-r0"]);
    expect(await names(join(d, "out/x86_64/APKINDEX.tar.gz"))).toEqual(["app-1.0-r0", "synth-1.0-r0", "tool-1.0-r0"]);
    expect(existsSync(join(d, "out/x86_64/synth-bootstrap-1.0-r0.apk"))).toBe(false);
    expect(existsSync(join(d, "out/bootstrap/x86_64/synth-bootstrap-1.0-r0.apk"))).toBe(true);

    // Without the mapping synth-bootstrap is an ordinary recipe again: back into OUT/ARCH.
    writeFileSync(
      join(d, "distro.yaml"),
      readFileSync(join(d, "distro.yaml"), "utf8").replace(/^bootstrap:\n.*\n/m, ""),
    );
    const moved = await run(d, ["build", "--all", "--keep-going"]);
    expect(moved.stderr).toContain(
      "x86_64: 1 package moved out of the bootstrap repository into x86_64/ (their recipes are no longer stage-0 ones): synth-bootstrap-1.0-r0.apk",
    );
    expect(await names(join(d, "out/x86_64/APKINDEX.tar.gz"))).toContain("synth-bootstrap-1.0-r0");
    expect(await names(join(d, "out/bootstrap/x86_64/APKINDEX.tar.gz"))).toEqual([]);
  }, 600_000);
});
