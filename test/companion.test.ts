// The companion distribution in recipes/ and images/, as much of it as CI can
// afford: the stage-0 toolchain imported from Debian, a few stage-1 packages
// built from Debian's source archive (each running its own test:), and two
// images with their smoke tests. The whole distribution is `npm start`.

import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { readIndex } from "@kiln/apk";
import { kilnAsync } from "./helpers/cli.js";
import { bootstrapToolchain, type Bootstrap } from "./helpers/bootstrap.js";
import { realApk } from "./helpers/apk-tools.js";
import { REPO_ROOT } from "./helpers/paths.js";

let work: string;
let out: string;
let boot: Bootstrap;
let distroFile: string;

const R = (n: string) => join(REPO_ROOT, "recipes", `${n}.yaml`);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-companion-"));
  boot = await bootstrapToolchain();
  out = join(work, "out");
  cpSync(boot.repo, out, { recursive: true });
  mkdirSync(join(work, "images"));
  cpSync(join(REPO_ROOT, "images/static.yaml"), join(work, "images/static.yaml"));
  // CI's subset has the stage-0 C library, which keeps Debian's multiarch
  // layout: the smoke test lists its libc where that puts it.
  const dyn = readFileSync(join(REPO_ROOT, "images/glibc-dynamic.yaml"), "utf8");
  expect(dyn).toContain('"/usr/lib/libc.so.6"');
  writeFileSync(
    join(work, "images/glibc-dynamic.yaml"),
    dyn.replace('"/usr/lib/libc.so.6"', '"/usr/lib/x86_64-linux-gnu/libc.so.6"'),
  );
  distroFile = join(work, "distro.yaml");
  writeFileSync(
    distroFile,
    `name: Kiln Linux\nid: kiln\nversion: "1"\narchitectures: [x86_64]\nrecipes: ${join(REPO_ROOT, "recipes")}\nimages: images\nout: out\nsigning-key: ${boot.privateKey}\n`,
  );
}, 900_000);

describe("the companion distribution (CI subset)", () => {
  it("stage 0 imports and stage 1 source packages build, each passing its own test", async () => {
    const recipes = ["ca-certificates", "ca-certificates-bundle", "tzdata", "busybox", "zlib", "xz"].map(R);
    const r = await kilnAsync([
      "build",
      ...recipes,
      "--out",
      out,
      "--signing-key",
      boot.privateKey,
      "--cache-dir",
      boot.cacheDir,
      "--json",
    ]);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const built = JSON.parse(r.stdout) as Array<{
      name: string;
      packages: Array<{ name: string; provides: string[] }>;
    }>;
    const zlib = built.find((b) => b.name === "zlib")!;
    expect(zlib.packages.map((p) => p.name)).toEqual(["zlib", "zlib-dev", "zlib-doc"]);
    expect(zlib.packages[0]!.provides).toContain("so:libz.so.1=1");
    const xz = built.find((b) => b.name === "xz")!;
    // The recipe's own version (kiln update bumps it), not one written here.
    const xzVersion = readFileSync(join(REPO_ROOT, "recipes/xz.yaml"), "utf8").match(
      /^ {2}version: "?([^"\n]+)"?$/m,
    )![1];
    expect(xz.packages[0]!.provides).toEqual(expect.arrayContaining([`cmd:xz=${xzVersion}-r0`, "so:liblzma.so.5=5"]));
    // Each recipe's test ran (the log shows it).
    for (const n of ["busybox", "zlib", "xz"])
      expect(readFileSync(join(out, `logs/x86_64/${n}.log`), "utf8")).toMatch(/# test /);
    const idx = await readIndex(readFileSync(join(out, "x86_64/APKINDEX.tar.gz")));
    expect(idx.records.map((x) => x.name)).toEqual(
      expect.arrayContaining([
        "busybox",
        "zlib",
        "zlib-dev",
        "xz",
        "glibc-bootstrap",
        "gcc",
        "tzdata",
        "ca-certificates-bundle",
      ]),
    );
  }, 1_200_000);

  it("the real apk client verifies every package and installs busybox on an empty root: glibc brings base-layout, busybox runs, apk audit is clean", async () => {
    const apk = await realApk();
    const keys = join(work, "apk-keys");
    mkdirSync(keys);
    copyFileSync(boot.publicKey, join(keys, basename(boot.publicKey)));
    const apks = readdirSync(join(out, "x86_64"))
      .filter((f) => f.endsWith(".apk"))
      .map((f) => join(out, "x86_64", f));
    expect(apks.length).toBeGreaterThan(20);
    execFileSync(apk, ["verify", "--keys-dir", keys, ...apks], { encoding: "utf8" });
    const root = join(work, "apk-root");
    const add = execFileSync(
      apk,
      ["add", "--root", root, "--initdb", "--arch", "x86_64", "--keys-dir", keys, "--repository", out, "busybox"],
      { encoding: "utf8" },
    );
    expect(add).toMatch(/Installing base-layout /);
    // CI's subset builds against the stage-0 C library
    expect(add).toMatch(/Installing glibc-bootstrap /);
    // /lib is apk's database directory; the other top-level links lead into /usr.
    expect(existsSync(join(root, "lib/apk/db/installed"))).toBe(true);
    for (const [l, t] of [
      ["bin", "usr/bin"],
      ["sbin", "usr/sbin"],
      ["lib64", "usr/lib64"],
    ])
      expect(execFileSync("readlink", [join(root, l)], { encoding: "utf8" }).trim()).toBe(t);
    const stray = execFileSync("find", [root, "-name", ".apk.*"], { encoding: "utf8" });
    expect(stray).toBe("");
    const ran = execFileSync(
      "bwrap",
      [
        "--bind",
        root,
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "/usr/bin/busybox",
        "sh",
        "-c",
        "echo ran as $(/usr/bin/busybox id -u) on $(/usr/bin/busybox grep ^ID= /etc/os-release)",
      ],
      { encoding: "utf8" },
    );
    expect(ran.trim()).toBe("ran as 0 on ID=kiln");
    expect(execFileSync(apk, ["audit", "--root", root], { encoding: "utf8" })).toBe("");
    expect(execFileSync(apk, ["audit", "--system", "--root", root], { encoding: "utf8" })).toBe("");
  }, 300_000);

  it("the static and glibc-dynamic images build and pass their smoke tests; a second run changes no digest", async () => {
    const a = await kilnAsync(["images", "--all", "--test", "--distro", distroFile, "--cache-dir", boot.cacheDir]);
    expect(a.status, a.stderr + a.stdout).toBe(0);
    expect(a.stdout).toMatch(/glibc-dynamic: sha256:[0-9a-f]{64} new; test passed/);
    expect(a.stdout).toMatch(/static: sha256:[0-9a-f]{64} new; test passed/);
    const b = await kilnAsync(["images", "--all", "--test", "--distro", distroFile, "--cache-dir", boot.cacheDir]);
    expect(b.status, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/static: sha256:[0-9a-f]{64} unchanged/);
    expect(b.stdout).toMatch(/0 with a new digest/);
    expect(existsSync(join(out, "images/static/index.json"))).toBe(true);
  }, 600_000);

  it("changing zlib plans exactly zlib, its dependents and the images that contain them", async () => {
    const repo = join(work, "git");
    mkdirSync(repo);
    cpSync(join(REPO_ROOT, "recipes"), join(repo, "recipes"), { recursive: true });
    cpSync(join(REPO_ROOT, "images"), join(repo, "images"), { recursive: true });
    cpSync(join(REPO_ROOT, "distro.yaml"), join(repo, "distro.yaml"));
    const git = (...args: string[]) =>
      execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.invalid", ...args], {
        cwd: repo,
        encoding: "utf8",
      });
    git("init", "-q");
    git("add", "-A");
    git("commit", "-qm", "base");
    writeFileSync(
      join(repo, "recipes/zlib.yaml"),
      readFileSync(join(repo, "recipes/zlib.yaml"), "utf8").replace("epoch: 0", "epoch: 1"),
    );
    const r = await kilnAsync(["plan", "--since", "HEAD", "--json", "--distro", join(repo, "distro.yaml")]);
    expect(r.status, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout).plans[0];
    expect(plan.mode).toBe("since");
    const names: string[] = plan.builds.map((b: { recipe: string }) => b.recipe);
    expect(plan.builds[0].reasons).toEqual([{ kind: "changed-file", files: ["recipes/zlib.yaml"] }]);
    for (const b of plan.builds.slice(1))
      expect(b.reasons.some((x: { kind: string; recipes?: string[] }) => x.kind === "changed-dependency")).toBe(true);
    expect(names).toContain("zlib");
    // Its dependents: recipes whose build environment needs zlib (e.g. pcre2 links it).
    const dependents = ["pcre2", "zstd", "bzip2"].filter((n) => existsSync(join(repo, "recipes", `${n}.yaml`)));
    for (const d of dependents)
      if (readFileSync(join(repo, "recipes", `${d}.yaml`), "utf8").includes("zlib-dev")) expect(names).toContain(d);
    // And nothing that has no path to zlib.
    for (const unrelated of ["lz4", "gcc", "glibc", "tzdata", "busybox-static", "base-layout"])
      expect(names).not.toContain(unrelated);
    const images: string[] = plan.images.map((i: { name: string }) => i.name);
    // An image changes exactly when its packages include a rebuilt recipe's.
    for (const i of plan.images) expect(i.recipes.some((x: string) => names.includes(x))).toBe(true);
    expect(images).not.toContain("static");
    expect(images).not.toContain("glibc-dynamic");
  });
});
