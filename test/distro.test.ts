// The distribution end to end, with synthetic distributions generated here:
// recipes whose steps are cheap shell commands in a busybox guest (busybox
// imported from Debian into an upstream repository once per file), known
// dependency shapes, images with smoke tests. What is checked: exactly the
// right packages and images are rebuilt, with raised release numbers; a
// second run builds nothing; git-based and key-based plans agree; cycles are
// named or broken with a published package; parallel builds overlap and a
// failure stops only its dependents; images are tested, and pushed only when
// their digest changed.

import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readIndex } from "@kiln/apk";
import { kilnAsync, type Run } from "./helpers/cli.js";
import { startRegistry } from "./helpers/fixtures.js";
import {
  distroYaml,
  makeUpstream,
  writeDistro,
  writeRecipe,
  type SynthDistro,
  type SynthRecipe,
  type Upstream,
} from "./helpers/distro.js";

let work: string;
let up: Upstream;
let cache: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-distro-"));
  cache = join(work, "cache");
  up = await makeUpstream(join(work, "up"));
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function kiln(dir: string, args: string[]): Promise<Run> {
  return kilnAsync([...args, "--cache-dir", cache], { cwd: dir });
}

async function ok(dir: string, args: string[]): Promise<Run> {
  const r = await kiln(dir, args);
  expect(r.status, `kiln ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

interface PlanJson {
  builds: Array<{
    recipe: string;
    fullVersion: string;
    current?: string;
    reasons: Array<{ kind: string; files?: string[]; recipes?: string[]; detail?: string }>;
    after: string[];
    standIns: string[];
  }>;
  upToDate: string[];
  images: Array<{ name: string; reasons: string[]; recipes: string[] }>;
  unchangedImages: string[];
  errors: string[];
  cycles: Array<{ recipes: string[]; path: string[]; broken: boolean; message: string }>;
}

async function plan(dir: string, extra: string[] = []): Promise<PlanJson> {
  const r = await ok(dir, ["plan", "--json", ...extra]);
  return JSON.parse(r.stdout).plans[0] as PlanJson;
}

interface ReportEntry {
  recipe: string;
  fullVersion: string;
  status: string;
  start?: number;
  end?: number;
  blockedBy?: string;
  error?: string;
  log?: string;
}

/** The build entries of the last run's report (every round). */
function report(dir: string): ReportEntry[] {
  return (
    JSON.parse(readFileSync(join(dir, "out/build-report.json"), "utf8")) as {
      rounds: Array<{ reports: Array<{ entries: ReportEntry[] }> }>;
    }
  ).rounds.flatMap((r) => r.reports.flatMap((x) => x.entries));
}

async function indexVersions(dir: string): Promise<string[]> {
  const idx = await readIndex(readFileSync(join(dir, "out/x86_64/APKINDEX.tar.gz")));
  return idx.records.map((r) => `${r.name}-${r.version}`).sort();
}

const built = (r: Run) => [...r.stdout.matchAll(/^ {2}built (\S+) (\S+):/gm)].map((m) => `${m[1]}-${m[2]}`);

/** libbase (+libbase-dev) ← libmid ← app; libbase ← leaf; solo alone. Three images. */
function shape(): SynthRecipe[] {
  return [
    { name: "libbase", subpackages: ["libbase-dev"] },
    { name: "libmid", deps: ["libbase-dev"], runtime: ["libbase"] },
    { name: "app", deps: ["libmid"], runtime: ["libmid"] },
    { name: "leaf", deps: ["libbase-dev"] },
    { name: "solo" },
  ];
}

function synth(recipes: SynthRecipe[], more: Partial<SynthDistro> = {}): SynthDistro {
  return {
    upstream: up,
    recipes,
    images: [
      {
        name: "app-image",
        packages: ["app", "busybox-static"],
        test: {
          command: ["/usr/bin/busybox", "cat", "/usr/share/app/data", "/usr/share/libbase/data"],
          expect: "app built",
        },
      },
      { name: "base-image", packages: ["libbase"] },
      {
        name: "solo-image",
        packages: ["solo", "busybox-static"],
        test: { command: ["/usr/bin/busybox", "id", "-u"], expect: "65532" },
      },
    ],
    ...more,
  };
}

async function newDistro(name: string, d: SynthDistro): Promise<string> {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  await writeDistro(dir, d);
  return dir;
}

describe("kiln build --all and kiln plan by build key", () => {
  let dir: string;
  const recipes = shape();

  it("a first build builds every recipe in dependency order; a second builds nothing", async () => {
    dir = await newDistro("basic", synth(recipes));
    const p = await plan(dir);
    expect(p.builds.map((b) => b.recipe)).toEqual(["libbase", "leaf", "libmid", "app", "solo"]);
    expect(p.builds[0]!.reasons).toEqual([{ kind: "missing", detail: "not in the repository" }]);
    expect(p.builds.find((b) => b.recipe === "app")!.after).toEqual(["libbase", "libmid"]);

    const r = await ok(dir, ["build", "--all"]);
    expect(built(r).sort()).toEqual(["app-1.0-r0", "leaf-1.0-r0", "libbase-1.0-r0", "libmid-1.0-r0", "solo-1.0-r0"]);
    const entries = report(dir);
    const end = (n: string) => entries.find((e) => e.recipe === n)!.end!;
    const start = (n: string) => entries.find((e) => e.recipe === n)!.start!;
    expect(start("libmid")).toBeGreaterThanOrEqual(end("libbase"));
    expect(start("app")).toBeGreaterThanOrEqual(end("libmid"));
    expect(await indexVersions(dir)).toEqual([
      "app-1.0-r0",
      "leaf-1.0-r0",
      "libbase-1.0-r0",
      "libbase-dev-1.0-r0",
      "libmid-1.0-r0",
      "solo-1.0-r0",
    ]);
    expect(existsSync(join(dir, "out/report.html"))).toBe(true);
    expect(readFileSync(join(dir, "out/logs/x86_64/app.log"), "utf8")).toContain("# guest:");

    const keys = readFileSync(join(dir, "out/x86_64/.kiln-build-keys.jsonl"), "utf8");
    expect(
      keys
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).recipe),
    ).toEqual(["app", "leaf", "libbase", "libmid", "solo"]);
    const again = await ok(dir, ["build", "--all"]);
    expect(again.stdout).toMatch(/0 built, 0 failed, 0 skipped, 0 not started, 5 up to date/);
    expect(readFileSync(join(dir, "out/x86_64/.kiln-build-keys.jsonl"), "utf8")).toBe(keys);
    expect((await plan(dir)).builds).toEqual([]);
  }, 120_000);

  it("changing a leaf rebuilds only it, at a raised release number", async () => {
    writeRecipe(dir, { ...recipes[3]!, content: "leaf v2" });
    const p = await plan(dir);
    expect(p.builds.map((b) => [b.recipe, b.current, b.fullVersion])).toEqual([["leaf", "1.0-r0", "1.0-r1"]]);
    expect(p.builds[0]!.reasons).toEqual([{ kind: "changed-file", files: ["recipes/leaf.yaml"] }]);
    // leaf is in no image: the images change only because they were never built.
    expect(p.images.map((i) => [i.name, i.reasons, i.recipes])).toEqual([
      ["app-image", ["not built yet"], []],
      ["base-image", ["not built yet"], []],
      ["solo-image", ["not built yet"], []],
    ]);
    const r = await ok(dir, ["build", "--all"]);
    expect(built(r)).toEqual(["leaf-1.0-r1"]);
    expect((await plan(dir)).builds).toEqual([]);
  });

  it("changing a base library rebuilds it, every transitive dependent (raised release numbers) and every image containing any of them, and nothing else", async () => {
    const reg = await startRegistry(join(work, "registry"));
    try {
      const first = await ok(dir, ["images", "--all", "--test", "--push", reg.host, "--insecure", "--json"]);
      const before = Object.fromEntries(
        (
          JSON.parse(first.stdout).images as Array<{
            name: string;
            digest: string;
            pushed?: string;
            test?: { ok: boolean };
          }>
        ).map((i) => [i.name, i]),
      );
      expect(Object.values(before).map((i) => [i.name, !!i.pushed, i.test?.ok])).toEqual([
        ["app-image", true, true],
        ["base-image", true, true],
        ["solo-image", true, true],
      ]);

      writeRecipe(dir, { ...recipes[0]!, content: "libbase v2" });
      const p = await plan(dir);
      expect(p.builds.map((b) => `${b.recipe} ${b.current} → ${b.fullVersion}`)).toEqual([
        "libbase 1.0-r0 → 1.0-r1",
        "leaf 1.0-r1 → 1.0-r2",
        "libmid 1.0-r0 → 1.0-r1",
        "app 1.0-r0 → 1.0-r1",
      ]);
      expect(p.builds[2]!.reasons).toEqual([{ kind: "changed-dependency", recipes: ["libbase"] }]);
      expect(p.upToDate).toEqual(["solo"]);
      expect(p.images.map((i) => [i.name, i.recipes])).toEqual([
        ["app-image", ["app", "libbase", "libmid"]],
        ["base-image", ["libbase"]],
      ]);
      expect(p.unchangedImages).toEqual(["solo-image"]);

      const r = await ok(dir, ["build", "--all", "--jobs", "2"]);
      expect(built(r).sort()).toEqual(["app-1.0-r1", "leaf-1.0-r2", "libbase-1.0-r1", "libmid-1.0-r1"]);
      const versions = await indexVersions(dir);
      // The index lists each package's newest build only; the superseded files moved to out/superseded/x86_64.
      expect(versions).toEqual([
        "app-1.0-r1",
        "leaf-1.0-r2",
        "libbase-1.0-r1",
        "libbase-dev-1.0-r1",
        "libmid-1.0-r1",
        "solo-1.0-r0",
      ]);
      expect(existsSync(join(dir, "out/x86_64/libbase-1.0-r0.apk"))).toBe(false);
      expect(existsSync(join(dir, "out/superseded/x86_64/libbase-1.0-r0.apk"))).toBe(true);
      expect(existsSync(join(dir, "out/superseded/x86_64/libbase-dev-1.0-r0.apk"))).toBe(true);
      expect(existsSync(join(dir, "out/superseded/x86_64/leaf-1.0-r1.apk"))).toBe(true);
      expect(r.stderr).toMatch(/x86_64: 5 superseded package files moved out of the index into superseded\/x86_64\//);
      // The dependent was really built against the new base: its guest had libbase-dev-1.0-r1.
      expect(readFileSync(join(dir, "out/logs/x86_64/libmid.log"), "utf8")).toMatch(/# guest: .*libbase-dev-1\.0-r1/);
      // Each build's log is kept: libmid.log is the newest, the r0 build's log is still there.
      expect(readFileSync(join(dir, "out/logs/x86_64/libmid-1.0-r1.log"), "utf8")).toMatch(
        /# guest: .*libbase-dev-1\.0-r1/,
      );
      expect(readFileSync(join(dir, "out/logs/x86_64/libmid-1.0-r0.log"), "utf8")).toMatch(
        /# guest: .*libbase-dev-1\.0-r0/,
      );
      expect(report(dir).find((e) => e.recipe === "libmid")!.log).toBe(join(dir, "out/logs/x86_64/libmid-1.0-r1.log"));

      const imgs = await ok(dir, ["images", "--test", "--push", reg.host, "--insecure", "--json"]);
      const after = Object.fromEntries(
        (
          JSON.parse(imgs.stdout).images as Array<{
            name: string;
            status: string;
            digest: string;
            changed: boolean;
            pushed?: string;
            test?: { ok: boolean };
          }>
        ).map((i) => [i.name, i]),
      );
      expect(after["app-image"]!.changed && after["base-image"]!.changed).toBe(true);
      expect(after["app-image"]!.digest).not.toBe(before["app-image"]!.digest);
      expect([after["app-image"]!.pushed, after["base-image"]!.pushed]).toEqual([
        `${reg.host}/app-image:latest`,
        `${reg.host}/base-image:latest`,
      ]);
      expect(after["app-image"]!.test?.ok).toBe(true);
      expect(after["solo-image"]!.status).toBe("not-selected");
      expect(after["solo-image"]!.digest).toBe(before["solo-image"]!.digest);
      // The registry serves the new digest.
      const head = await fetch(`http://${reg.host}/v2/app-image/manifests/latest`, {
        method: "HEAD",
        headers: { accept: "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json" },
      });
      expect(head.headers.get("docker-content-digest")).toBe(after["app-image"]!.digest);

      // A night with no package changes: every image rebuilt, no digest changes, nothing pushed.
      const night = await ok(dir, ["images", "--all", "--push", reg.host, "--insecure", "--json"]);
      const n = JSON.parse(night.stdout).images as Array<{
        name: string;
        changed: boolean;
        pushed?: string;
        digest: string;
      }>;
      expect(n.map((i) => [i.name, i.changed, i.pushed ?? null])).toEqual([
        ["app-image", false, null],
        ["base-image", false, null],
        ["solo-image", false, null],
      ]);
      expect((await ok(dir, ["images"])).stdout).toMatch(/0 images built/);
    } finally {
      await reg.stop();
    }
  }, 120_000);

  it("a failing smoke test fails kiln images --test and is retried next time", async () => {
    writeFileSync(
      join(dir, "images/solo-image.yaml"),
      readFileSync(join(dir, "images/solo-image.yaml"), "utf8").replace('expect: "65532"', 'expect: "root"'),
    );
    const r = await kiln(dir, ["images", "--test"]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/solo-image: .*test FAILED \(output "65532" does not contain "root"\)/);
    expect((await plan(dir)).images.map((i) => i.name)).toEqual(["solo-image"]);
  });

  it("a fresh checkout whose upstream is the published repository builds nothing; a change builds above the published release", async () => {
    const pub = join(work, "published");
    cpSync(join(dir, "out/x86_64"), join(pub, "x86_64"), { recursive: true });
    const fresh = await newDistro(
      "fresh",
      synth(
        recipes.map((r) =>
          r.name === "libbase" ? { ...r, content: "libbase v2" } : r.name === "leaf" ? { ...r, content: "leaf v2" } : r,
        ),
      ),
    );
    writeFileSync(
      join(fresh, "distro.yaml"),
      distroYaml({ repo: pub, publicKey: join(dir, "keys/synth.rsa.pub") }).replace(
        /upstream:\n {2}repositories: \[(.*)\]\n {2}keyring: \[(.*)\]/,
        `upstream:\n  repositories: [${up.repo}, $1]\n  keyring: [${up.publicKey}, $2]`,
      ),
    );
    expect((await plan(fresh)).builds).toEqual([]);
    writeRecipe(fresh, { name: "solo", content: "solo v2" });
    const p = await plan(fresh);
    expect(p.builds.map((b) => [b.recipe, b.current, b.fullVersion])).toEqual([["solo", "1.0-r0", "1.0-r1"]]);
    const r = await ok(fresh, ["build", "--all"]);
    expect(built(r)).toEqual(["solo-1.0-r1"]);
  });
});

describe("kiln plan --since agrees with the build keys on a scripted git history", () => {
  it("pipeline, source file, base library, image config and default environment changes", async () => {
    const recipes: SynthRecipe[] = [
      { name: "libbase", subpackages: ["libbase-dev"] },
      { name: "libmid", deps: ["libbase-dev"], runtime: ["libbase"], uses: "stamp" },
      { name: "app", deps: ["libmid"] },
      { name: "leaf", files: { "fix.patch": "v1\n" }, script: "cat fix.patch > /dev/null" },
      { name: "solo", uses: "stamp" },
    ];
    const stamp = (v: string) => `name: stamp\npipeline:\n  - runs: echo "stamp ${v}" > stamp.txt\n`;
    const dir = await newDistro("git", synth(recipes, { pipelines: { stamp: stamp("1") } }));
    const git = (...args: string[]) =>
      execFileSync("git", ["-c", "user.name=kiln", "-c", "user.email=kiln@example.invalid", ...args], {
        cwd: dir,
        encoding: "utf8",
      });
    writeFileSync(join(dir, ".gitignore"), "out/\n.kiln-keys/\n");
    git("init", "-q", "-b", "main");
    git("add", "-A");
    git("commit", "-q", "-m", "initial");
    await ok(dir, ["build", "--all"]);

    await ok(dir, ["images"]);
    const names = (p: PlanJson) => ({ builds: p.builds.map((b) => b.recipe), images: p.images.map((i) => i.name) });
    const step = async (what: string, change: () => void, expected: string[], useChanged = false) => {
      change();
      git("add", "-A");
      git("commit", "-q", "-m", what);
      const byKey = await plan(dir);
      const byGit = await plan(dir, ["--since", "HEAD~1"]);
      expect(
        byKey.builds.map((b) => b.recipe),
        what,
      ).toEqual(expected);
      expect(names(byGit), what).toEqual(names(byKey));
      const r = await ok(dir, [
        "build",
        useChanged ? "--changed" : "--all",
        ...(useChanged ? ["--since", "HEAD~1"] : []),
      ]);
      expect(
        built(r)
          .map((b) => b.replace(/-1\.0-r\d+$/, ""))
          .sort(),
        what,
      ).toEqual([...expected].sort());
      // The nightly images job brings the images up to date, so the next step starts clean.
      await ok(dir, ["images"]);
      const after = await plan(dir);
      expect([after.builds, after.images], what).toEqual([[], []]);
    };
    await step("pipeline", () => writeFileSync(join(dir, "pipelines/stamp.yaml"), stamp("2")), [
      "libmid",
      "app",
      "solo",
    ]);
    await step("patch", () => writeFileSync(join(dir, "recipes/leaf/fix.patch"), "v2\n"), ["leaf"], true);
    await step("base", () => writeRecipe(dir, { ...recipes[0]!, content: "base v2" }), ["libbase", "libmid", "app"]);
    await step(
      "image",
      () =>
        writeFileSync(
          join(dir, "images/base-image.yaml"),
          readFileSync(join(dir, "images/base-image.yaml"), "utf8") + "annotations:\n  x: y\n",
        ),
      [],
    );
    await step(
      "environment",
      () =>
        writeFileSync(
          join(dir, "distro.yaml"),
          readFileSync(join(dir, "distro.yaml"), "utf8") + "  environment:\n    LC_ALL: C\n",
        ),
      ["leaf", "libbase", "libmid", "app", "solo"],
      true,
    );
    // Uncommitted work counts too (--since HEAD), and agrees with the keys.
    writeFileSync(join(dir, "recipes/leaf/fix.patch"), "v3\n");
    expect((await plan(dir, ["--since", "HEAD"])).builds.map((b) => b.recipe)).toEqual(["leaf"]);
    expect((await plan(dir)).builds.map((b) => b.recipe)).toEqual(["leaf"]);
  }, 240_000);
});

describe("images that include other configs", () => {
  it("merge the included file, and a change to it alone brings only that image up for rebuilding", async () => {
    const dir = await newDistro("include", synth([{ name: "solo" }], { images: [] }));
    mkdirSync(join(dir, "images/common"), { recursive: true });
    // Not an image itself: only the images directory's own *.yaml are.
    writeFileSync(join(dir, "images/common/base.yaml"), "contents:\n  packages:\n    - busybox-static\n");
    writeFileSync(
      join(dir, "images/inc-image.yaml"),
      "include: common/base.yaml\ncontents:\n  packages:\n    - solo\n" +
        'test:\n  command: ["/usr/bin/busybox", "cat", "/usr/share/solo/data"]\n  expect: "solo built"\n',
    );
    writeFileSync(join(dir, "images/plain-image.yaml"), "contents:\n  packages:\n    - solo\n");
    await ok(dir, ["build", "--all"]);
    // The smoke test runs busybox from the included file's package list.
    await ok(dir, ["images", "--test"]);
    const clean = await plan(dir);
    expect(clean.images).toEqual([]);
    writeFileSync(
      join(dir, "images/common/base.yaml"),
      readFileSync(join(dir, "images/common/base.yaml"), "utf8") + "annotations:\n  x: y\n",
    );
    const p = await plan(dir);
    expect(p.builds).toEqual([]);
    expect(p.images.map((i) => i.name)).toEqual(["inc-image"]);
    expect(p.images[0]!.reasons.join(" ")).toMatch(/changed: images\/inc-image\.yaml/);
    writeFileSync(join(dir, "../outside.yaml"), "contents:\n  packages:\n    - solo\n");
    writeFileSync(join(dir, "images/common/base.yaml"), "include: ../../../outside.yaml\n");
    const bad = await kiln(dir, ["plan"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/base\.yaml.*include "\.\.\/\.\.\/\.\.\/outside\.yaml"/);
  }, 240_000);
});

describe("cycles", () => {
  it("a cycle nothing can break is an error naming every recipe in it, with its path", async () => {
    const dir = await newDistro(
      "cycle",
      synth(
        [
          { name: "alpha", deps: ["beta"] },
          { name: "beta", deps: ["gamma"] },
          { name: "gamma", deps: ["alpha"] },
          { name: "delta", deps: ["alpha"] },
          { name: "other" },
        ],
        { images: [] },
      ),
    );
    const r = await kiln(dir, ["plan"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      "dependency cycle: alpha → beta → gamma → alpha: alpha needs beta from beta; beta needs gamma from gamma; gamma needs alpha from alpha",
    );
    const b = await kiln(dir, ["build", "--all"]);
    expect(b.status).toBe(1);
    expect(b.stderr).toMatch(/alpha → beta → gamma → alpha/);
    expect(b.stderr).toMatch(/nothing was built/);
    expect(existsSync(join(dir, "out/x86_64"))).toBe(false);
  });

  it("where a published package can stand in for one edge, the plan says so and uses it, and the next run builds nothing", async () => {
    const dir = await newDistro("standin", synth([{ name: "xdep" }, { name: "ydep", deps: ["xdep"] }], { images: [] }));
    await ok(dir, ["build", "--all"]);
    writeRecipe(dir, { name: "xdep", deps: ["ydep"], content: "x v2" });
    const p = await plan(dir);
    expect(p.errors).toEqual([]);
    expect(p.cycles.map((c) => [c.path, c.broken])).toEqual([[["xdep", "ydep", "xdep"], true]]);
    expect(p.cycles[0]!.message).toContain("xdep builds against the existing ydep-1.0-r0");
    expect(p.builds.map((b) => [b.recipe, b.fullVersion, b.standIns])).toEqual([
      ["xdep", "1.0-r1", ["ydep"]],
      ["ydep", "1.0-r1", []],
    ]);
    const text = await ok(dir, ["plan"]);
    expect(text.stdout).toMatch(/uses the existing packages of ydep \(cycle\)/);
    const r = await ok(dir, ["build", "--all"]);
    expect(built(r)).toEqual(["xdep-1.0-r1", "ydep-1.0-r1"]);
    expect(readFileSync(join(dir, "out/logs/x86_64/xdep.log"), "utf8")).toMatch(/# guest: .*ydep-1\.0-r0/);
    expect((await plan(dir)).builds).toEqual([]);
  }, 120_000);
});

describe("parallel builds and failures", () => {
  it("with --jobs 2 independent recipes overlap in time; a failure skips its dependents while the others finish", async () => {
    const dir = await newDistro(
      "jobs",
      synth(
        [
          { name: "slow1", script: "sleep 2" },
          { name: "slow2", script: "sleep 2" },
          { name: "after-slow", deps: ["slow1"] },
          { name: "bad", fail: true },
          { name: "bad-child", deps: ["bad"] },
          { name: "bad-grandchild", deps: ["bad-child"] },
        ],
        { images: [] },
      ),
    );
    const r = await kiln(dir, ["build", "--all", "--jobs", "2", "--keep-going"]);
    expect(r.status, r.stderr).toBe(1);
    const e = Object.fromEntries(report(dir).map((x) => [x.recipe, x]));
    expect(Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v.status]))).toEqual({
      bad: "failed",
      "bad-child": "skipped",
      "bad-grandchild": "skipped",
      slow1: "built",
      slow2: "built",
      "after-slow": "built",
    });
    expect(e["bad-child"]!.blockedBy).toBe("bad");
    expect(e["bad-grandchild"]!.blockedBy).toBe("bad");
    expect(e.slow1!.start! < e.slow2!.end! && e.slow2!.start! < e.slow1!.end!).toBe(true);
    expect(e["after-slow"]!.start!).toBeGreaterThanOrEqual(e.slow1!.end!);
    expect(e.bad!.error).toContain("bad is broken");
    expect(readFileSync(e.bad!.log!, "utf8")).toContain("bad is broken");
    expect(r.stdout).toMatch(/3 built, 1 failed, 2 skipped/);
    expect(r.stderr).toMatch(/- bad-child skipped: bad failed/);
    const html = readFileSync(join(dir, "out/report.html"), "utf8");
    for (const n of ["slow1", "slow2", "after-slow", "bad", "bad-child", "bad-grandchild"])
      expect(html).toContain(`>${n}<br>`);
    expect(html).toMatch(/class="bar"/);
    expect(html).toContain("skipped (bad failed)");

    // Without --keep-going nothing new starts after a failure; fixing the recipe resumes where it stopped.
    writeRecipe(dir, { name: "slow3", script: "sleep 1" });
    const stop = await kiln(dir, ["build", "--all"]);
    expect(stop.status).toBe(1);
    const s = Object.fromEntries(report(dir).map((x) => [x.recipe, x.status]));
    expect(s).toEqual({ bad: "failed", "bad-child": "skipped", "bad-grandchild": "skipped", slow3: "not-started" });
    writeRecipe(dir, { name: "bad" });
    const fixed = await ok(dir, ["build", "--all", "--jobs", "2"]);
    expect(built(fixed).sort()).toEqual(["bad-1.0-r0", "bad-child-1.0-r0", "bad-grandchild-1.0-r0", "slow3-1.0-r0"]);
  }, 120_000);
});

describe("kiln graph", () => {
  it("draws the graph as dot, json and svg", async () => {
    const dir = join(work, "basic");
    const dot = await ok(dir, ["graph"]);
    expect(dot.stdout).toContain('"recipe:libmid" -> "recipe:libbase" [label="libbase-dev"]');
    expect(dot.stdout).toContain('"image:app-image" -> "recipe:app"');
    const json = JSON.parse((await ok(dir, ["graph", "--format", "json"])).stdout);
    expect(json.order).toEqual(["libbase", "leaf", "libmid", "app", "solo"]);
    expect(json.edges).toContainEqual({ from: "app", to: "libmid", kind: "build", packages: ["libmid"] });
    const svg = await ok(dir, ["graph", "--format", "svg", "-o", join(work, "graph.svg")]);
    expect(svg.status).toBe(0);
    const text = readFileSync(join(work, "graph.svg"), "utf8");
    expect(text).toContain("<svg");
    expect(text).toContain("libmid");
    expect(statSync(join(work, "graph.svg")).size).toBeGreaterThan(1000);
  }, 120_000);

  it("distro.yaml problems are reported at their line", async () => {
    const dir = join(work, "bad-distro");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "distro.yaml"), "name: X\nid: x\narchitectures: [x86_64]\nrecipies: recipes\n");
    const r = await kiln(dir, ["plan"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${join(dir, "distro.yaml")}:4:1: recipies: unknown key "recipies"`);
  });
});
