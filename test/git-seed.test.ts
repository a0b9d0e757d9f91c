// Seeded git bundles: a repository written by the test is bundled with
// `git bundle create`, its server never started (the URL names a closed
// port), the bundle seeded with `kiln source add --git-repository`, and a
// real `kiln build` of a recipe with git-checkout (tag + expected-commit)
// checks it out from the seed. Also: no seed (fails naming the repository
// and how to seed it), a bundle without the commit, a corrupt bundle
// refused when added, a tag in the bundle pointing at another commit,
// submodules (each needs its own seed), and distro.yaml's sources:.

import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrapToolchain, upstreamArgs, type Bootstrap } from "./helpers/bootstrap.js";
import { kilnAsync, type Run } from "./helpers/cli.js";
import { distroYaml } from "./helpers/distro.js";
import { git } from "./helpers/git-server.js";

let root: string;
let boot: Bootstrap;
/** git://127.0.0.1:PORT on a port nothing listens on. */
let dead: string;
const c: Record<string, string> = {};
const b: Record<string, string> = {};

function commitAll(w: string, msg: string): string {
  git(w, "add", ".");
  git(w, "commit", "-q", "-m", msg);
  return git(w, "rev-parse", "HEAD");
}

function makeRepos(): void {
  const sub = join(root, "w-sub");
  mkdirSync(sub);
  git(sub, "init", "-q");
  writeFileSync(join(sub, "lib.txt"), "from the submodule\n");
  c.SUB = commitAll(sub, "sub");
  git(sub, "bundle", "create", "-q", join(root, "sub.bundle"), "--all");

  const w = join(root, "w-proj");
  mkdirSync(w);
  git(w, "init", "-q");
  writeFileSync(join(w, "hello.txt"), "hello 1\n");
  c.C1 = commitAll(w, "one");
  git(w, "tag", "-a", "v1.0", "-m", "release 1.0");
  c.TAG_OBJECT = git(w, "rev-parse", "v1.0");
  writeFileSync(join(w, "hello.txt"), "hello 2\n");
  c.C2 = commitAll(w, "two");
  git(w, "bundle", "create", "-q", join(root, "proj.bundle"), "--all");
  git(w, "bundle", "create", "-q", join(root, "part.bundle"), `${c.C1}..main`);
  // The same history, but v1.0 moved to the second commit.
  git(w, "tag", "-f", "-a", "v1.0", "-m", "moved", c.C2);
  git(w, "bundle", "create", "-q", join(root, "moved.bundle"), "--all");

  const o = join(root, "w-other");
  mkdirSync(o);
  git(o, "init", "-q");
  writeFileSync(join(o, "hello.txt"), "another project\n");
  commitAll(o, "other");
  git(o, "tag", "v1.0");
  git(o, "bundle", "create", "-q", join(root, "other.bundle"), "--all");

  const s = join(root, "w-super");
  mkdirSync(s);
  git(s, "init", "-q");
  writeFileSync(join(s, "top.txt"), "top\n");
  writeFileSync(join(s, ".gitmodules"), '[submodule "sub"]\n\tpath = sub\n\turl = ../sub.git\n');
  git(s, "add", ".");
  git(s, "update-index", "--add", "--cacheinfo", `160000,${c.SUB},sub`);
  git(s, "commit", "-q", "-m", "super");
  c.SUPER = git(s, "rev-parse", "HEAD");
  git(s, "tag", "v2.0");
  git(s, "bundle", "create", "-q", join(root, "super.bundle"), "--all");
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "kiln-git-seed-"));
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  dead = `git://127.0.0.1:${port}`;
  makeRepos();
  for (const n of ["proj", "moved", "other", "sub", "super"]) b[n] = join(root, `${n}.bundle`);
  boot = await bootstrapToolchain();
}, 900_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SRC = "${{targets.destdir}}/usr/src/proj";

function recipe(name: string, withLines: string[]): string {
  const f = join(root, `${name}.yaml`);
  writeFileSync(
    f,
    `package:\n  name: ${name}\n  version: 1.0.0\n  epoch: 0\n  description: seeded git test\n  copyright:\n    - license: MIT\n` +
      `pipeline:\n  - uses: git-checkout\n    with:\n${[...withLines, `destination: ${SRC}`, "max-retries: 0"].map((l) => `      ${l}\n`).join("")}`,
  );
  return f;
}

const seed = (cache: string, url: string, ...files: string[]) =>
  kilnAsync(["source", "add", "--cache-dir", cache, "--git-repository", url, ...files]);

async function build(file: string, cache: string) {
  const out = mkdtempSync(join(root, "out-"));
  const r = await kilnAsync(["build", file, "--out", out, ...upstreamArgs(boot, cache), "--no-test"]);
  return { ...r, out };
}

function unpack(r: { out: string }, name: string): string {
  const dir = mkdtempSync(join(root, "x-"));
  execFileSync("tar", ["-xzf", join(r.out, "x86_64", `${name}-1.0.0-r0.apk`), "-C", dir], { stdio: "pipe" });
  return join(dir, "usr/src/proj");
}

function failsClearly(r: Run, file: string, ...patterns: RegExp[]): void {
  expect(r.status, r.stderr).toBe(1);
  expect(r.stderr).toContain(file.split("/").pop()!);
  for (const p of patterns) expect(r.stderr).toMatch(p);
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("git-checkout from a seeded bundle (no server)", () => {
  it("source add --git-repository, then a build with tag + expected-commit checks out the seed; source list shows it", async () => {
    const cache = mkdtempSync(join(root, "cache-"));
    // Seeded under a spelling with a trailing slash: the URL is normalised.
    const add = await seed(cache, `${dead}/proj.git/`, b.proj!);
    expect(add.status, add.stderr).toBe(0);
    expect(add.stdout).toMatch(/git bundle of .*proj\.git.*\n.*refs, 2 commits/);
    const list = await kilnAsync(["source", "list", "--cache-dir", cache]);
    expect(list.stdout).toContain(`git ${dead}/proj.git/`);
    expect(list.stdout).toContain(`refs/tags/v1.0 ${c.C1}`);
    expect(list.stdout).toContain(`refs/heads/main ${c.C2}`);

    const f = recipe("sd-tag", [`repository: ${dead}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`]);
    const r = await build(f, cache);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const dir = unpack(r, "sd-tag");
    expect(readFileSync(join(dir, "hello.txt"), "utf8")).toBe("hello 1\n");
    expect(git(dir, "rev-parse", "HEAD")).toBe(c.C1);
    // The clone names the repository, never kiln's private mirror.
    expect(git(dir, "config", "remote.origin.url")).toBe(`${dead}/proj.git`);
    expect(readFileSync(join(dir, ".git/FETCH_HEAD"), "utf8")).toContain(`tag 'v1.0' of ${dead}/proj\n`);
    for (const n of readdirSync(join(dir, ".git")))
      if (n === "config" || n === "FETCH_HEAD")
        expect(readFileSync(join(dir, ".git", n), "utf8")).not.toMatch(/file:|git-work-|seed-/);
    // An annotated tag's object as expected-commit (melange accepts it) finds the seed too.
    const t = recipe("sd-tagobj", [`repository: ${dead}/proj.git`, "tag: v1.0", `expected-commit: ${c.TAG_OBJECT}`]);
    const rt = await build(t, cache);
    expect(rt.status, rt.stderr.slice(-3000)).toBe(0);
    expect(readFileSync(join(unpack(rt, "sd-tagobj"), "hello.txt"), "utf8")).toBe("hello 1\n");
  });

  it("without a seed the build fails naming the repository and how to seed it", async () => {
    const f = recipe("sd-none", [`repository: ${dead}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`]);
    failsClearly(
      await build(f, mkdtempSync(join(root, "cache-"))),
      f,
      new RegExp(`no git bundle of ${esc(dead)}/proj\\.git is seeded`),
      new RegExp(`kiln source add --git-repository ${esc(dead)}/proj\\.git FILE\\.bundle`),
    );
  });

  it("a seeded bundle that does not hold expected-commit: the error says so", async () => {
    const cache = mkdtempSync(join(root, "cache-"));
    expect((await seed(cache, `${dead}/proj.git`, b.other!)).status).toBe(0);
    const f = recipe("sd-lacks", [`repository: ${dead}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`]);
    failsClearly(
      await build(f, cache),
      f,
      new RegExp(`the seeded bundles of ${esc(dead)}/proj\\.git \\([0-9a-f]{12}\\) do not hold commit ${c.C1}`),
    );
  });

  it("a corrupt bundle, a file that is no bundle, or a partial bundle is refused when added and not left in the cache", async () => {
    const cache = mkdtempSync(join(root, "cache-"));
    const cut = join(root, "cut.bundle");
    writeFileSync(cut, readFileSync(b.proj!));
    truncateSync(cut, readFileSync(b.proj!).length - 40);
    const r = await seed(cache, `${dead}/proj.git`, cut);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/kiln source add: .*cut\.bundle: git bundle: .*\(the bundle is refused\)/);
    const junk = join(root, "junk.bundle");
    writeFileSync(junk, "not a bundle\n");
    const j = await seed(cache, `${dead}/proj.git`, junk);
    expect(j.status).toBe(1);
    expect(j.stderr).toContain("junk.bundle: not a git bundle");
    // A bundle of part of the history (it needs commits it does not hold) is refused too.
    const part = await seed(cache, `${dead}/proj.git`, join(root, "part.bundle"));
    expect(part.status).toBe(1);
    expect(part.stderr).toContain(`part.bundle: the bundle needs commits it does not hold (${c.C1})`);
    const list = await kilnAsync(["source", "list", "--cache-dir", cache]);
    expect(list.status).toBe(0);
    expect(list.stdout).toBe("");
    // Nor any name of them (sha512 aliases, bundle records).
    expect(readdirSync(join(cache, "sources", "sha512"))).toEqual([]);
    expect(readdirSync(join(cache, "sources")).filter((n) => /^[0-9a-f]{64}$/.test(n))).toEqual([]);
  });

  it("a tag in the bundle pointing at another commit: expected-commit mismatch, as from the server", async () => {
    const cache = mkdtempSync(join(root, "cache-"));
    expect((await seed(cache, `${dead}/proj.git`, b.moved!)).status).toBe(0);
    const f = recipe("sd-moved", [`repository: ${dead}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`]);
    failsClearly(
      await build(f, cache),
      f,
      new RegExp(`expected-commit ${c.C1} does not match tag v1.0 of ${esc(dead)}/proj\\.git, which is commit ${c.C2}`),
    );
  });

  it("submodules: each submodule repository needs its seed (named when missing); with both, the submodule is checked out", async () => {
    const cache = mkdtempSync(join(root, "cache-"));
    expect((await seed(cache, `${dead}/super.git`, b.super!)).status).toBe(0);
    const f = recipe("sd-sub", [
      `repository: ${dead}/super.git`,
      "tag: v2.0",
      `expected-commit: ${c.SUPER}`,
      "recurse-submodules: true",
    ]);
    failsClearly(
      await build(f, cache),
      f,
      new RegExp(`submodule repository ${esc(dead)}/sub\\.git: no git bundle of ${esc(dead)}/sub\\.git is seeded`),
      new RegExp(`kiln source add --git-repository ${esc(dead)}/sub\\.git`),
    );
    expect((await seed(cache, `${dead}/sub.git`, b.sub!)).status).toBe(0);
    const r = await build(f, cache);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const dir = unpack(r, "sd-sub");
    expect(readFileSync(join(dir, "sub/lib.txt"), "utf8")).toBe("from the submodule\n");
    expect(git(dir, "config", "submodule.sub.url")).toBe(`${dead}/sub.git`);
  });
});

describe("distro.yaml sources: NAME.bundle with NAME.bundle.url", () => {
  function distro(name: string): string {
    const dir = join(root, name);
    mkdirSync(join(dir, "keys"), { recursive: true });
    mkdirSync(join(dir, "recipes"));
    mkdirSync(join(dir, "pipelines"));
    mkdirSync(join(dir, "seeded"));
    copyFileSync(boot.privateKey, join(dir, "keys/synth.rsa"));
    writeFileSync(
      join(dir, "distro.yaml"),
      distroYaml({ repo: boot.repo, publicKey: boot.publicKey }, "sources: seeded\n"),
    );
    copyFileSync(
      recipe(`${name}-r`, [`repository: ${dead}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`]),
      join(dir, "recipes/x.yaml"),
    );
    writeFileSync(
      join(dir, "recipes/x.yaml"),
      readFileSync(join(dir, "recipes/x.yaml"), "utf8").replace(`name: ${name}-r`, "name: x"),
    );
    copyFileSync(b.proj!, join(dir, "seeded/proj.bundle"));
    return dir;
  }

  it("seeds the bundle under the URL of its .url file, so the recipe builds; without the .url file: one clear error", async () => {
    const dir = distro("distro-git");
    writeFileSync(join(dir, "seeded/proj.bundle.url"), `${dead}/proj.git\n`);
    const r = await kilnAsync(["build", "--all", "--cache-dir", join(dir, "cache")], { cwd: dir });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toContain("1 source file seeded into the source cache (0 there already)");
    const x = mkdtempSync(join(root, "x-"));
    execFileSync("tar", ["-xzf", join(dir, "out/x86_64/x-1.0.0-r0.apk"), "-C", x], { stdio: "pipe" });
    expect(readFileSync(join(x, "usr/src/proj/hello.txt"), "utf8")).toBe("hello 1\n");
    // The next round finds the bundle recorded already and only hashes it.
    writeFileSync(join(dir, "recipes/x.yaml"), readFileSync(join(dir, "recipes/x.yaml"), "utf8") + "  - runs: ':'\n");
    const again = await kilnAsync(["build", "--all", "--cache-dir", join(dir, "cache")], { cwd: dir });
    expect(again.status, again.stdout + again.stderr).toBe(0);
    expect(again.stderr).toContain("1 source file seeded into the source cache (1 there already)");

    const bare = distro("distro-git-nourl");
    const r2 = await kilnAsync(["build", "--all", "--cache-dir", join(bare, "cache")], { cwd: bare });
    expect(r2.status).toBe(1);
    expect(r2.stderr).toContain(
      "sources: seeded/proj.bundle: a git bundle needs its repository's URL in seeded/proj.bundle.url",
    );
  }, 300_000);
});
