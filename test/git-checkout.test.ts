// git-checkout and git-am against real git servers on loopback: `git
// daemon` (git://) and `git http-backend` (http://) serving repositories the
// test writes (an annotated tag, a branch with a fix to cherry-pick, a
// submodule, a hostile symlink). Real `kiln build`s of small recipes, the
// packages opened and read. Also: expected-commit verified, the cache
// building again once the server is gone, the transport policy, the time
// budget against a server that never answers, and paths that would leave
// the workspace.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrapToolchain, upstreamArgs, type Bootstrap } from "./helpers/bootstrap.js";
import { kilnAsync, type Run } from "./helpers/cli.js";
import { git, gitDaemon, gitHttp, hangingServer, type GitServer } from "./helpers/git-server.js";

let root: string;
let srv: string;
let recipes: string;
let outside: string;
let boot: Bootstrap;
let daemon: GitServer;
let http: GitServer;
/** Commits of proj.git: C1 (tag v1.0), C2 (main's tip), F1 (branch fixes). */
const c: Record<string, string> = {};

function makeRepos(): void {
  const sub = join(root, "w-sub");
  mkdirSync(sub);
  git(sub, "init", "-q");
  writeFileSync(join(sub, "lib.txt"), "from the submodule\n");
  git(sub, "add", ".");
  git(sub, "commit", "-q", "-m", "sub");
  c.SUB = git(sub, "rev-parse", "HEAD");
  git(root, "clone", "-q", "--bare", sub, join(srv, "sub.git"));

  const w = join(root, "w-proj");
  mkdirSync(join(w, "docs"), { recursive: true });
  git(w, "init", "-q");
  writeFileSync(join(w, "hello.txt"), "hello 1\n");
  writeFileSync(join(w, "docs/readme.txt"), "the docs\n");
  mkdirSync(join(w, "extra"));
  writeFileSync(join(w, "extra/other.txt"), "not wanted in a sparse checkout\n");
  writeFileSync(join(w, ".gitmodules"), '[submodule "sub"]\n\tpath = sub\n\turl = ../sub.git\n');
  git(w, "add", ".");
  git(w, "update-index", "--add", "--cacheinfo", `160000,${c.SUB},sub`);
  git(w, "commit", "-q", "-m", "one");
  c.C1 = git(w, "rev-parse", "HEAD");
  git(w, "tag", "-a", "v1.0", "-m", "release 1.0");
  c.TAG_OBJECT = git(w, "rev-parse", "v1.0");
  git(w, "checkout", "-q", "-b", "fixes");
  writeFileSync(join(w, "fix.txt"), "fixed\n");
  git(w, "add", "fix.txt");
  git(w, "commit", "-q", "-m", "add the fix");
  c.F1 = git(w, "rev-parse", "HEAD");
  writeFileSync(join(root, "0001-fix.patch"), git(w, "format-patch", "-1", "--stdout", c.F1) + "\n");
  git(w, "checkout", "-q", "main");
  writeFileSync(join(w, "hello.txt"), "hello 2\n");
  git(w, "commit", "-q", "-am", "two");
  c.C2 = git(w, "rev-parse", "HEAD");
  git(root, "clone", "-q", "--bare", w, join(srv, "proj.git"));
  git(join(srv, "proj.git"), "config", "uploadpack.allowFilter", "true");

  // A repository whose `docs` is a symlink to a directory outside everything.
  const e = join(root, "w-evil");
  mkdirSync(e);
  git(e, "init", "-q");
  symlinkSync(outside, join(e, "docs"));
  git(e, "add", ".");
  git(e, "commit", "-q", "-m", "evil");
  c.EVIL = git(e, "rev-parse", "HEAD");
  git(root, "clone", "-q", "--bare", e, join(srv, "evil.git"));
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "kiln-git-"));
  srv = join(root, "srv");
  recipes = join(root, "recipes");
  outside = join(root, "outside");
  for (const d of [srv, recipes, outside]) mkdirSync(d);
  makeRepos();
  daemon = await gitDaemon(srv);
  http = await gitHttp(srv);
  boot = await bootstrapToolchain();
}, 900_000);
afterAll(async () => {
  await daemon?.close();
  await http?.close();
  rmSync(root, { recursive: true, force: true });
});

function recipe(name: string, pipeline: string, extra = ""): string {
  const f = join(recipes, `${name}.yaml`);
  writeFileSync(
    f,
    `package:\n  name: ${name}\n  version: 1.0.0\n  epoch: 0\n  description: git test\n  copyright:\n    - license: MIT\n${extra}pipeline:\n${pipeline}`,
  );
  return f;
}

/** A git-checkout step; `with` lines are given as "key: value". */
function checkout(...withLines: string[]): string {
  return `  - uses: git-checkout\n    with:\n${withLines.map((l) => `      ${l}\n`).join("")}`;
}

async function build(file: string, opts: { cache?: string; env?: NodeJS.ProcessEnv; test?: boolean } = {}) {
  const out = mkdtempSync(join(root, "out-"));
  const cache = opts.cache ?? mkdtempSync(join(root, "cache-"));
  const t0 = Date.now();
  const r = await kilnAsync(
    ["build", file, "--out", out, ...upstreamArgs(boot, cache), ...(opts.test ? [] : ["--no-test"])],
    ...(opts.env ? [{ env: opts.env }] : []),
  );
  return { ...r, out, cache, ms: Date.now() - t0 };
}

/** The package's files, extracted. */
function unpack(r: { out: string }, name: string): string {
  const dir = mkdtempSync(join(root, "x-"));
  execFileSync("tar", ["-xzf", join(r.out, "x86_64", `${name}-1.0.0-r0.apk`), "-C", dir], { stdio: "pipe" });
  return dir;
}

/** Every path under `dir` with its type and content (links: their target), hashed. */
function treeDigest(dir: string, skip = ""): string {
  const h = createHash("sha256");
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d).sort()) {
      if (n === skip) continue;
      const p = join(d, n);
      const st = lstatSync(p);
      h.update(`${rel}${n} ${st.mode.toString(8)}\n`);
      if (st.isDirectory()) walk(p, `${rel}${n}/`);
      else if (st.isSymbolicLink()) h.update(readlinkSync(p));
      else h.update(readFileSync(p));
    }
  };
  walk(dir, "");
  return h.digest("hex");
}

function failsClearly(r: Run, file: string, ...patterns: RegExp[]): void {
  expect(r.status, r.stderr).toBe(1);
  expect(r.stderr).toContain(file.split("/").pop()!);
  for (const p of patterns) expect(r.stderr).toMatch(p);
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
}

const SRC = "${{targets.destdir}}/usr/src/proj";

describe("git-checkout: a real build from real servers", () => {
  it("tag + expected-commit over git://, then a shell step in the guest packages the checked-out files (mtimes: the commit's)", async () => {
    const f = recipe(
      "gtag",
      checkout(`repository: ${daemon.url}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`) +
        "  - runs: |\n      mkdir -p ${{targets.destdir}}/usr/share/gtag\n      cat hello.txt docs/readme.txt > ${{targets.destdir}}/usr/share/gtag/out.txt\n" +
        "      stat -c %Y hello.txt docs > ${{targets.destdir}}/usr/share/gtag/mtimes\n",
      "environment:\n  contents:\n    packages:\n      - busybox-links\n      - base-layout\n",
    );
    const r = await build(f);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const x = unpack(r, "gtag");
    expect(readFileSync(join(x, "usr/share/gtag/out.txt"), "utf8")).toBe("hello 1\nthe docs\n");
    // In the workspace every file of the checkout has the commit's time (the package's are SOURCE_DATE_EPOCH).
    expect(readFileSync(join(x, "usr/share/gtag/mtimes"), "utf8")).toBe("1600000000\n1600000000\n");
    // The SBOM names the repository and the commit.
    const sbom = readFileSync(join(x, "var/lib/db/sbom/gtag-1.0.0-r0.spdx.json"), "utf8");
    expect(sbom).toContain(`git+${daemon.url}/proj.git@${c.C1}`);
  });

  it("a branch over http://: expected-commit older than the tip is checked out (full history)", async () => {
    const f = recipe(
      "gbranch",
      checkout(`repository: ${http.url}/proj.git`, "branch: main", `expected-commit: ${c.C1}`, `destination: ${SRC}`),
    );
    const r = await build(f);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const x = unpack(r, "gbranch");
    expect(readFileSync(join(x, "usr/src/proj/hello.txt"), "utf8")).toBe("hello 1\n");
    expect(git(join(x, "usr/src/proj"), "rev-list", "--count", "HEAD")).toBe("1");
  });

  it("a branch's tip with depth 1; an older expected-commit with depth 1 is refused, saying to set depth -1", async () => {
    const tip = recipe(
      "gtip",
      checkout(
        `repository: ${http.url}/proj.git`,
        "branch: main",
        `expected-commit: ${c.C2}`,
        "depth: 1",
        `destination: ${SRC}`,
      ),
    );
    const r = await build(tip);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(readFileSync(join(unpack(r, "gtip"), "usr/src/proj/hello.txt"), "utf8")).toBe("hello 2\n");
    const old = recipe(
      "gold",
      checkout(
        `repository: ${http.url}/proj.git`,
        "branch: main",
        `expected-commit: ${c.C1}`,
        "depth: 1",
        `destination: ${SRC}`,
      ),
    );
    failsClearly(await build(old), old, /expected-commit/, /depth: -1/);
  });

  it("recurse-submodules checks out the submodule (relative URL, same server)", async () => {
    const f = recipe(
      "gsub",
      checkout(
        `repository: ${daemon.url}/proj.git`,
        "tag: v1.0",
        `expected-commit: ${c.C1}`,
        "recurse-submodules: true",
        `destination: ${SRC}`,
      ),
    );
    const r = await build(f);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(readFileSync(join(unpack(r, "gsub"), "usr/src/proj/sub/lib.txt"), "utf8")).toBe("from the submodule\n");
  });

  it("sparse-paths checks out only those directories (and the top level, as cone mode does)", async () => {
    const f = recipe(
      "gsparse",
      checkout(
        `repository: ${http.url}/proj.git`,
        "tag: v1.0",
        `expected-commit: ${c.C1}`,
        "sparse-paths: |",
        "  docs",
        `destination: ${SRC}`,
      ),
    );
    const r = await build(f);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const dir = join(unpack(r, "gsparse"), "usr/src/proj");
    expect(readFileSync(join(dir, "docs/readme.txt"), "utf8")).toBe("the docs\n");
    expect(readFileSync(join(dir, "hello.txt"), "utf8")).toBe("hello 1\n");
    expect(existsSync(join(dir, "extra"))).toBe(false);
  });

  it("cherry-picks from a branch: applied with kiln's identity at SOURCE_DATE_EPOCH, the same commit on every build", async () => {
    const f = recipe(
      "gpick",
      checkout(
        `repository: ${daemon.url}/proj.git`,
        "tag: v1.0",
        `expected-commit: ${c.C1}`,
        `destination: ${SRC}`,
        "cherry-picks: |",
        `  # the fix, not yet released`,
        `  fixes/${c.F1}: add the fix`,
      ),
    );
    const heads = [];
    for (let i = 0; i < 2; i++) {
      const r = await build(f);
      expect(r.status, r.stderr.slice(-3000)).toBe(0);
      const dir = join(unpack(r, "gpick"), "usr/src/proj");
      expect(readFileSync(join(dir, "fix.txt"), "utf8")).toBe("fixed\n");
      expect(git(dir, "log", "-1", "--format=%cn <%ce> %ct")).toBe("kiln build <kiln-build@localhost> 1700000000");
      heads.push(git(dir, "rev-parse", "HEAD"));
    }
    expect(heads[0]).not.toBe(c.F1);
    expect(heads[1]).toBe(heads[0]);
  });

  it("in a recipe's test: pipeline too (test data), and the test's shell step sees the checkout", async () => {
    const withTest = (want: string) =>
      `test:\n  environment:\n    contents:\n      packages:\n        - busybox-links\n        - base-layout\n  pipeline:\n` +
      checkout(`repository: ${daemon.url}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`)
        .trimEnd()
        .replace(/^/gm, "  ") +
      "\n" +
      `    - runs: grep -qx "${want}" hello.txt\n`;
    const main = checkout(
      `repository: ${daemon.url}/proj.git`,
      "tag: v1.0",
      `expected-commit: ${c.C1}`,
      `destination: ${SRC}`,
    );
    const ok = await build(recipe("gtest", main, withTest("hello 1")), { test: true });
    expect(ok.status, ok.stderr.slice(-3000)).toBe(0);
    const bad = recipe("gtestbad", main, withTest("hello 2"));
    failsClearly(await build(bad, { test: true }), bad, /test of gtestbad, step 2/);
  });

  it("expected-commit that is not the tag's commit: exit 1 naming the field, the tag and the commit found", async () => {
    const wrong = "0123456789abcdef0123456789abcdef01234567";
    const f = recipe(
      "gwrong",
      checkout(`repository: ${daemon.url}/proj.git`, "tag: v1.0", `expected-commit: ${wrong}`),
    );
    const r = await build(f);
    failsClearly(r, f, new RegExp(`expected-commit ${wrong} does not match tag v1.0`), new RegExp(c.C1!));
    expect(existsSync(join(r.out, "x86_64"))).toBe(false);
  });

  it("the annotated tag's object hash as expected-commit is accepted (melange does), the log says which commit to pin", async () => {
    const f = recipe(
      "gtagobj",
      checkout(
        `repository: ${daemon.url}/proj.git`,
        "tag: v1.0",
        `expected-commit: ${c.TAG_OBJECT}`,
        `destination: ${SRC}`,
      ),
    );
    const r = await build(f);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(readFileSync(join(r.out, "logs/x86_64/gtagobj.log"), "utf8")).toContain(`its commit is ${c.C1}`);
  });
});

describe("git-checkout: the cache", () => {
  it("builds again from the cache once the server is gone (a damaged entry is cloned again); without the cache that build fails", async () => {
    const own = await gitDaemon(srv);
    const f = recipe(
      "gcache",
      checkout(
        `repository: ${own.url}/proj.git`,
        "tag: v1.0",
        `expected-commit: ${c.C1}`,
        "max-retries: 0",
        `destination: ${SRC}`,
      ),
    );
    const cache = mkdtempSync(join(root, "cache-"));
    // The private directory of a kiln that was killed: removed; a build leaves none of its own.
    mkdirSync(join(cache, "git-work-2147483646-stale/clone"), { recursive: true });
    const first = await build(f, { cache });
    expect(first.status, first.stderr.slice(-3000)).toBe(0);
    expect(readdirSync(cache).filter((n) => n.startsWith("git-work-"))).toEqual([]);
    const tar = readdirSync(join(cache, "sources/git")).find((n) => n.endsWith(".tar"));
    expect(tar).toBeDefined();
    // A damaged cache entry is set aside: cloned again (the server is still up) and cached anew.
    writeFileSync(join(cache, "sources/git", tar!), "not a tar");
    const repaired = await build(f, { cache });
    expect(repaired.status, repaired.stderr.slice(-3000)).toBe(0);
    expect(readFileSync(join(repaired.out, "logs/x86_64/gcache.log"), "utf8")).toContain("is damaged: cloning again");
    await own.close();
    const again = await build(f, { cache });
    expect(again.status, again.stderr.slice(-3000)).toBe(0);
    expect(readFileSync(join(again.out, "logs/x86_64/gcache.log"), "utf8")).toContain("from the source cache");
    const a = join(unpack(first, "gcache"), "usr/src/proj");
    const b = join(unpack(again, "gcache"), "usr/src/proj");
    expect(readFileSync(join(b, "hello.txt"), "utf8")).toBe("hello 1\n");
    // From the cache: the tree it was stored from, .git included, byte for byte; and the same as the first clone's.
    const fixed = join(unpack(repaired, "gcache"), "usr/src/proj");
    expect(treeDigest(b)).toBe(treeDigest(fixed));
    expect(treeDigest(b)).toBe(treeDigest(a));
    const cold = await build(f);
    failsClearly(cold, f, /cloning git:\/\/127\.0\.0\.1/);
  });
});

describe("git-checkout: hostile recipes and repositories", () => {
  it("a destination outside the workspace is refused (exit 1, naming the field)", async () => {
    const f = recipe(
      "gdest",
      checkout(`repository: ${daemon.url}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`, "destination: ../x"),
    );
    failsClearly(await build(f), f, /destination/, /outside the workspace/);
    expect(existsSync(join(root, "x"))).toBe(false);
  });

  it("a repository's symlink to a directory outside is checked out as a link; a later checkout replaces it, never writes through it", async () => {
    const f = recipe(
      "gevil",
      checkout(
        `repository: ${daemon.url}/evil.git`,
        `expected-commit: ${c.EVIL}`,
        "branch: main",
        `destination: ${SRC}`,
      ) +
        checkout(`repository: ${daemon.url}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`, `destination: ${SRC}`),
    );
    const r = await build(f);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(readdirSync(outside)).toEqual([]);
    const x = join(unpack(r, "gevil"), "usr/src/proj");
    expect(lstatSync(join(x, "docs")).isDirectory()).toBe(true);
    expect(readFileSync(join(x, "docs/readme.txt"), "utf8")).toBe("the docs\n");
    // The link alone, then a checkout into it: refused.
    const into = recipe(
      "gevil2",
      checkout(
        `repository: ${daemon.url}/evil.git`,
        `expected-commit: ${c.EVIL}`,
        "branch: main",
        `destination: ${SRC}`,
      ) +
        checkout(
          `repository: ${daemon.url}/proj.git`,
          "tag: v1.0",
          `expected-commit: ${c.C1}`,
          `destination: ${SRC}/docs`,
        ),
    );
    failsClearly(await build(into), into, /symlink/);
    expect(readdirSync(outside)).toEqual([]);
    const alone = recipe(
      "gevil3",
      checkout(
        `repository: ${daemon.url}/evil.git`,
        `expected-commit: ${c.EVIL}`,
        "branch: main",
        `destination: ${SRC}`,
      ),
    );
    const r3 = await build(alone);
    expect(r3.status, r3.stderr.slice(-3000)).toBe(0);
    expect(readlinkSync(join(unpack(r3, "gevil3"), "usr/src/proj/docs"))).toBe(outside);
  });

  it("transports outside the policy are refused: ext::, file:// without KILN_GIT_ALLOW_FILE=1, scp-style ssh", async () => {
    const marker = join(root, "pwned");
    for (const [name, repo, why] of [
      ["gext", `ext::sh -c touch% ${marker}`, /transport helpers/],
      ["gfile", `file://${srv}/proj.git`, /KILN_GIT_ALLOW_FILE=1/],
      ["gssh", "git@127.0.0.1:proj.git", /scp-style ssh/],
    ] as const) {
      const f = recipe(name, checkout(`repository: "${repo}"`, "tag: v1.0", `expected-commit: ${c.C1}`));
      failsClearly(await build(f), f, /repository/, /refused/, why);
    }
    expect(existsSync(marker)).toBe(false);
    // The opt-in works.
    const f = recipe(
      "gfileok",
      checkout(`repository: file://${srv}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`, `destination: ${SRC}`),
    );
    const r = await build(f, { env: { KILN_GIT_ALLOW_FILE: "1" } });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
  });

  it("a submodule URL outside the policy is refused before anything is fetched", async () => {
    const w = join(root, "w-badsub");
    mkdirSync(w);
    git(w, "init", "-q");
    writeFileSync(
      join(w, ".gitmodules"),
      `[submodule "s"]\n\tpath = s\n\turl = ext::sh -c touch% ${join(root, "pwned2")}\n`,
    );
    git(w, "add", ".");
    git(w, "update-index", "--add", "--cacheinfo", `160000,${c.SUB},s`);
    git(w, "commit", "-q", "-m", "bad submodule");
    const head = git(w, "rev-parse", "HEAD");
    git(root, "clone", "-q", "--bare", w, join(srv, "badsub.git"));
    const f = recipe(
      "gbadsub",
      checkout(
        `repository: ${daemon.url}/badsub.git`,
        "branch: main",
        `expected-commit: ${head}`,
        "recurse-submodules: true",
      ),
    );
    failsClearly(await build(f), f, /submodule s's url/, /refused/);
    expect(existsSync(join(root, "pwned2"))).toBe(false);
  });

  it("the size budget (KILN_GIT_MAX_BYTES): a tree larger than allowed is refused before it is written", async () => {
    const f = recipe(
      "gbig",
      checkout(`repository: ${daemon.url}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`, `destination: ${SRC}`),
    );
    const r = await build(f, { env: { KILN_GIT_MAX_BYTES: "20" } });
    failsClearly(r, f, /holds \d+ bytes, over the budget of 20 \(KILN_GIT_MAX_BYTES\)/);
  });

  it("the user's own git configuration is not read: its hooks and URL rewrites do not apply", async () => {
    const home = join(root, "home-with-gitconfig");
    mkdirSync(join(home, "hooks"), { recursive: true });
    const marker = join(root, "hook-ran");
    writeFileSync(join(home, "hooks/post-checkout"), `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
    writeFileSync(
      join(home, ".gitconfig"),
      `[core]\n\thooksPath = ${join(home, "hooks")}\n[url "${daemon.url}/evil.git"]\n\tinsteadOf = ${daemon.url}/proj.git\n`,
    );
    const f = recipe(
      "ghome",
      checkout(`repository: ${daemon.url}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`, `destination: ${SRC}`),
    );
    const r = await build(f, { env: { HOME: home, XDG_CONFIG_HOME: join(home, ".config") } });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(readFileSync(join(unpack(r, "ghome"), "usr/src/proj/hello.txt"), "utf8")).toBe("hello 1\n");
    expect(existsSync(marker)).toBe(false);
  });

  it("a server that never answers: killed at the time budget (KILN_GIT_TIMEOUT), one clear error", async () => {
    const hang = await hangingServer();
    try {
      const f = recipe("ghang", checkout(`repository: ${hang.url}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`));
      const r = await build(f, { env: { KILN_GIT_TIMEOUT: "3" } });
      failsClearly(r, f, /timed out after 3 s \(KILN_GIT_TIMEOUT\)/);
      expect(r.ms).toBeLessThan(30_000);
    } finally {
      await hang.close();
    }
  });
});

describe("git-am", () => {
  it("applies a mailbox patch from the recipe's directory to the checkout", async () => {
    mkdirSync(join(recipes, "gam"), { recursive: true });
    writeFileSync(join(recipes, "gam/0001-fix.patch"), readFileSync(join(root, "0001-fix.patch")));
    const f = recipe(
      "gam",
      checkout(`repository: ${daemon.url}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`, `destination: ${SRC}`) +
        `  - uses: git-am\n    working-directory: ${SRC}\n    with:\n      patches: 0001-fix.patch\n`,
    );
    const r = await build(f);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const x = join(unpack(r, "gam"), "usr/src/proj");
    expect(readFileSync(join(x, "fix.txt"), "utf8")).toBe("fixed\n");
    expect(readFileSync(join(x, "hello.txt"), "utf8")).toBe("hello 1\n");
  });

  it("never reads the workspace's .git: a planted config that would run a command is inert", async () => {
    // The source directory is copied into the workspace: melange-out/gamgit is the package's destdir.
    const dir = join(recipes, "gamgit");
    const tree = join(dir, "melange-out/gamgit");
    // A repository git would use (objects/, refs/, HEAD), whose config runs a command on `git add`.
    for (const d of [".git/objects", ".git/refs"]) mkdirSync(join(tree, d), { recursive: true });
    const marker = join(root, "fsmonitor-ran");
    writeFileSync(join(tree, "hello.txt"), "hello 1\n");
    writeFileSync(join(tree, ".git/HEAD"), "ref: refs/heads/main\n");
    // A filter driver named by .gitattributes: `git add` would run it (command-line -c settings cannot list every name).
    writeFileSync(join(tree, ".git/config"), `[filter "evil"]\n\tclean = "touch ${marker}; cat"\n`);
    writeFileSync(join(tree, ".gitattributes"), "* filter=evil\n");
    writeFileSync(join(dir, "0001-fix.patch"), readFileSync(join(root, "0001-fix.patch")));
    const f = recipe(
      "gamgit",
      "  - uses: git-am\n    working-directory: ${{targets.destdir}}\n    with:\n      patches: 0001-fix.patch\n",
    );
    const r = await build(f);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(readFileSync(join(unpack(r, "gamgit"), "fix.txt"), "utf8")).toBe("fixed\n");
    expect(existsSync(marker)).toBe(false);
  });

  it("a patch outside the recipe's source directory is refused, directly or through a symlink", async () => {
    const direct = recipe(
      "gamout",
      checkout(`repository: ${daemon.url}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`) +
        "  - uses: git-am\n    with:\n      patches: ../0001-fix.patch\n",
    );
    failsClearly(await build(direct), direct, /patches/, /outside the recipe's source directory/);
    mkdirSync(join(recipes, "gamlink"), { recursive: true });
    symlinkSync(join(root, "0001-fix.patch"), join(recipes, "gamlink/fix.patch"));
    const viaLink = recipe(
      "gamlink",
      checkout(`repository: ${daemon.url}/proj.git`, "tag: v1.0", `expected-commit: ${c.C1}`) +
        "  - uses: git-am\n    with:\n      patches: fix.patch\n",
    );
    failsClearly(await build(viaLink), viaLink, /patches/, /symlink leads it out of the workspace/);
  });
});
