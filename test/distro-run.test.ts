// kiln distro-build end to end on a small synthetic distribution: the whole
// run's report (its rounds, the images with digests and smoke tests), a log
// per build kept across rebuilds, the index policy (superseded builds leave
// the index and move to OUT/superseded), the duplicate-provider check on a
// crafted pair, and the real apk-tools installing every package of the main
// index at once into an empty root.

import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readIndex } from "@kiln/apk";
import { realApk } from "./helpers/apk-tools.js";
import { kilnAsync, type Run } from "./helpers/cli.js";
import { makeUpstream, writeDistro, writeRecipe, type Upstream } from "./helpers/distro.js";

let work: string;
let up: Upstream;
let cache: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-distro-run-"));
  cache = join(work, "cache");
  up = await makeUpstream(join(work, "up"));
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

async function ok(dir: string, args: string[]): Promise<Run> {
  const r = await kilnAsync([...args, "--cache-dir", cache], { cwd: dir });
  expect(r.status, `kiln ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

async function indexed(dir: string): Promise<string[]> {
  const idx = await readIndex(readFileSync(join(dir, "out/x86_64/APKINDEX.tar.gz")));
  return idx.records.map((r) => `${r.name}-${r.version}`).sort();
}

interface Report {
  format: number;
  command: string;
  status: number;
  rounds: Array<{
    round: number;
    reports: Array<{ entries: Array<{ recipe: string; fullVersion: string; status: string; log?: string }> }>;
  }>;
  images: Array<{ name: string; status: string; digest?: string; test?: { ok: boolean } }>;
  index?: Array<{ message: string; duplicate: { name: string; packages: string[] } }>;
}
const readReport = (dir: string) => JSON.parse(readFileSync(join(dir, "out/build-report.json"), "utf8")) as Report;
const builds = (r: Report) =>
  r.rounds.flatMap((x) =>
    x.reports.flatMap((y) => y.entries.map((e) => `${x.round}:${e.recipe}-${e.fullVersion}:${e.status}`)),
  );

describe("kiln distro-build: the run's report, its logs and the index", () => {
  const dir = () => join(work, "run");

  it("reports every round's builds and the images with their digests and tests; a rebuild keeps both logs and leaves the index with the newest builds only", async () => {
    mkdirSync(dir(), { recursive: true });
    await writeDistro(dir(), {
      upstream: up,
      recipes: [
        { name: "libbase", subpackages: ["libbase-dev"] },
        { name: "app", deps: ["libbase-dev"], runtime: ["libbase"] },
      ],
      images: [
        {
          name: "app-image",
          packages: ["app", "busybox-static"],
          test: { command: ["/usr/bin/busybox", "cat", "/usr/share/app/data"], expect: "app built" },
        },
      ],
    });
    const first = await ok(dir(), ["distro-build", "--json"]);
    const r1 = JSON.parse(first.stdout) as Report;
    expect(r1).toEqual(readReport(dir()));
    expect(r1).toMatchObject({ format: 2, command: "distro-build", status: 0 });
    expect(builds(r1)).toEqual(["1:libbase-1.0-r0:built", "1:app-1.0-r0:built"]);
    // The run ended with a round that built nothing: it is in the report too.
    expect(r1.rounds.map((x) => x.round)).toEqual([1, 2]);
    expect(r1.images.map((i) => [i.name, i.status, /^sha256:[0-9a-f]{64}$/.test(i.digest ?? ""), i.test?.ok])).toEqual([
      ["app-image", "built", true, true],
    ]);
    const html = readFileSync(join(dir(), "out/report.html"), "utf8");
    expect(html).toContain("<h2>Round 1</h2>");
    expect(html).toContain("<h2>Images</h2>");
    expect(html).toContain(r1.images[0]!.digest!);
    expect(html).toContain('href="logs/x86_64/app-1.0-r0.log"');

    writeRecipe(dir(), { name: "libbase", subpackages: ["libbase-dev"], content: "libbase v2" });
    const second = await ok(dir(), ["distro-build"]);
    expect(second.stdout).toMatch(/^2 rounds: round 1 built 2; round 2 built 0; report /m);
    expect(builds(readReport(dir()))).toEqual(["1:libbase-1.0-r1:built", "1:app-1.0-r1:built"]);
    expect(readReport(dir()).images.map((i) => [i.name, i.status, i.test?.ok])).toEqual([["app-image", "built", true]]);
    const logs = join(dir(), "out/logs/x86_64");
    expect(readFileSync(join(logs, "app-1.0-r0.log"), "utf8")).toMatch(/# guest: .*libbase-dev-1\.0-r0/);
    expect(readFileSync(join(logs, "app-1.0-r1.log"), "utf8")).toMatch(/# guest: .*libbase-dev-1\.0-r1/);
    expect(readlinkSync(join(logs, "app.log"))).toBe("app-1.0-r1.log");
    expect(await indexed(dir())).toEqual(["app-1.0-r1", "libbase-1.0-r1", "libbase-dev-1.0-r1"]);
    expect(
      readdirSync(join(dir(), "out/superseded/x86_64"))
        .filter((f) => f.endsWith(".apk"))
        .sort(),
    ).toEqual(["app-1.0-r0.apk", "libbase-1.0-r0.apk", "libbase-dev-1.0-r0.apk"]);
    expect(second.stderr).toMatch(/x86_64: 3 superseded package files moved out of the index/);
  }, 600_000);

  it("the real apk installs every package of the main index at once into an empty root", async () => {
    const apk = await realApk();
    const keys = join(work, "keys");
    mkdirSync(keys, { recursive: true });
    for (const f of readdirSync(join(dir(), "out")).filter((f) => f.endsWith(".pub")))
      copyFileSync(join(dir(), "out", f), join(keys, f));
    const names = (await readIndex(readFileSync(join(dir(), "out/x86_64/APKINDEX.tar.gz")))).records.map((r) => r.name);
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
        ...names,
      ],
      { encoding: "utf8" },
    );
    for (const n of names) expect(add).toMatch(new RegExp(`Installing ${n} \\(1\\.0-r1\\)`));
    expect(readFileSync(join(root, "usr/share/libbase/data"), "utf8")).toBe("libbase v2 built\n");
  }, 300_000);

  it("two indexed packages providing the same cmd: without a provider priority are reported, naming both", async () => {
    const d = join(work, "dup");
    mkdirSync(d, { recursive: true });
    await writeDistro(d, { upstream: up, recipes: [] });
    for (const n of ["tool-a", "tool-b"])
      writeFileSync(
        join(d, "recipes", `${n}.yaml`),
        `package:\n  name: ${n}\n  version: "1.0"\n  epoch: 0\n  description: ${n}\n  copyright:\n    - license: MIT\n  dependencies:\n    provides: [cmd:tool=1.0]\npipeline:\n  - runs: mkdir -p \${{targets.destdir}}/usr/share/${n}\n`,
      );
    const r = await ok(d, ["build", "--all"]);
    const msg =
      "x86_64/APKINDEX.tar.gz: cmd:tool is provided by tool-a-1.0-r0 and tool-b-1.0-r0, not all with a provider_priority";
    expect(r.stderr).toContain(`warning: ${msg}`);
    expect(r.stdout).toContain(`INDEX ${msg}`);
    expect(readReport(d).index?.map((p) => p.duplicate)).toEqual([
      { name: "cmd:tool", packages: ["tool-a-1.0-r0", "tool-b-1.0-r0"] },
    ]);
    const keys = join(d, "out");
    const check = await kilnAsync(["repo", "check", join(d, "out"), "--keys-dir", keys], { cwd: d });
    expect(check.status).toBe(1);
    expect(check.stdout).toContain(
      "PROBLEM duplicate provider: cmd:tool is provided by tool-a-1.0-r0 and tool-b-1.0-r0",
    );
    expect(existsSync(join(d, "out/superseded"))).toBe(false);
    const apks = readdirSync(join(d, "out/x86_64"))
      .filter((f) => f.endsWith(".apk"))
      .map((f) => join(d, "out/x86_64", f));
    const index = await kilnAsync(["index", "-o", join(work, "dup-index.tar.gz"), ...apks], { cwd: d });
    expect(index.status).toBe(0);
    expect(index.stderr).toContain("warning: cmd:tool is provided by tool-a-1.0-r0 and tool-b-1.0-r0");
  }, 300_000);
});
