// The companion distribution's plan for round 2 of a fresh build, from the
// real recipes and distro.yaml, once the stage-0 imports are built (the plan
// needs their packages' dependencies to see the cycles): every recipe
// planned once, and the bootstrap cut where it should be. glibc, binutils and
// make are built from source; only the builds in glibc's own cycle (the
// toolchain and what glibc's build needs) use the stage-0 C library,
// binutils and make, and glibc's python3 is the stage-0 one, so python and
// what it links are built against the new glibc. No timing here: this reads
// recipes and plans, it builds nothing but the imports.

import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { bootstrapToolchain } from "./helpers/bootstrap.js";
import { kilnAsync } from "./helpers/cli.js";
import { REPO_ROOT } from "./helpers/paths.js";

interface PlannedBuild {
  recipe: string;
  stage0?: string[];
}
let builds: PlannedBuild[];

beforeAll(async () => {
  const work = mkdtempSync(join(tmpdir(), "kiln-distro-plan-"));
  const boot = await bootstrapToolchain();
  // the imports as round 1 leaves them (the plan reads both repositories)
  cpSync(boot.repo, join(work, "out"), { recursive: true });
  const text = readFileSync(join(REPO_ROOT, "distro.yaml"), "utf8");
  for (const k of ["recipes", "images", "out"]) expect(text).toMatch(new RegExp(`^${k}: ${k}$`, "m"));
  expect(text).not.toMatch(/^signing-key:/m);
  const distro = join(work, "distro.yaml");
  writeFileSync(
    distro,
    text
      .replace(/^recipes: recipes$/m, `recipes: ${join(REPO_ROOT, "recipes")}`)
      .replace(/^images: images$/m, `images: ${join(REPO_ROOT, "images")}`)
      .replace(/^out: out$/m, `out: ${join(work, "out")}\nsigning-key: ${boot.privateKey}`),
  );
  const r = await kilnAsync(["plan", "--json", "--distro", distro, "--cache-dir", boot.cacheDir]);
  expect(r.status, r.stderr).toBe(0);
  const plan = JSON.parse(r.stdout).plans[0];
  expect(plan.errors).toEqual([]);
  builds = plan.builds;
}, 900_000);

const stage0 = (name: string) => {
  const b = builds.find((x) => x.recipe === name);
  expect(b, `${name} is planned`).toBeDefined();
  return [...(b!.stage0 ?? [])].sort();
};
const at = (name: string) => builds.findIndex((x) => x.recipe === name);

describe("the companion distribution's plan on a fresh machine", () => {
  it("plans every recipe not yet built exactly once", () => {
    const recipes = readdirSync(join(REPO_ROOT, "recipes"))
      .filter((f) => f.endsWith(".yaml"))
      .map((f) => f.replace(/\.yaml$/, ""));
    const planned = builds.map((b) => b.recipe);
    expect(new Set(planned).size).toBe(planned.length);
    // the toolchain imports are built; everything else is planned
    for (const r of recipes)
      if (!planned.includes(r))
        expect(r, r).toMatch(
          /bootstrap|^(busybox-static|busybox-links|base-layout|build-base|gcc|libgcc|libstdc\+\+|libxcrypt|linux-headers)$/,
        );
    for (const r of ["glibc", "binutils", "make", "perl", "python-3.13", "openssl", "gmp", "mpfr", "mpc", "isl"])
      expect(planned).toContain(r);
  });

  it("builds glibc against the stage-0 toolchain and python, after the builds of its cycle", () => {
    // (zlib, zstd, gmp, mpfr, mpc and isl too: the imported gcc links them)
    const gccLibs = ["zlib", "zstd", "gmp", "mpfr", "mpc", "isl"];
    expect(stage0("glibc")).toEqual(expect.arrayContaining(["binutils", "glibc", "make", "python-3.13"]));
    expect(
      stage0("glibc").filter((x) => !["binutils", "glibc", "make", "python-3.13", ...gccLibs].includes(x)),
    ).toEqual([]);
    // gcc's libraries from source are in the toolchain's cycle: built before
    // glibc against the stage-0 C library, each against its own stage-0
    // package (the imported gcc links it), and on the ones built before it:
    // mpfr links the new gmp, mpc the new gmp and mpfr.
    for (const n of ["gmp", "mpfr", "mpc", "isl"]) {
      expect(at(n), n).toBeLessThan(at("glibc"));
      expect(stage0(n), n).toEqual(expect.arrayContaining(["glibc", n]));
    }
    expect(at("mpfr")).toBeGreaterThan(at("gmp"));
    expect(at("mpc")).toBeGreaterThan(at("mpfr"));
    expect(stage0("mpfr")).not.toContain("gmp");
    expect(stage0("mpc")).not.toContain("gmp");
    expect(stage0("mpc")).not.toContain("mpfr");
    for (const n of ["busybox", "binutils", "make", "gawk", "m4", "bison", "patch"]) {
      expect(stage0(n), n).toEqual(expect.arrayContaining(["binutils", "glibc", "make"]));
      expect(at(n), n).toBeLessThan(at("glibc"));
    }
  });

  it("builds ca-certificates-bundle and openjdk-17 with the static busybox, so their guests hold no C library", () => {
    for (const n of ["ca-certificates-bundle", "openjdk-17"]) expect(stage0(n), n).toEqual(["busybox"]);
  });

  // glibc's own python is the stage-0 one: python builds after glibc, and a change to it does not rebuild glibc
  it("builds python, OpenSSL, perl and the rest against glibc 2.43 with binutils and make from source", () => {
    for (const n of ["python-3.13", "openssl", "perl", "sqlite", "curl", "bash", "jq", "xz", "ncurses"]) {
      expect(
        stage0(n).filter((x) => ["glibc", "binutils", "make"].includes(x)),
        n,
      ).toEqual([]);
      expect(at(n), n).toBeGreaterThan(at("glibc"));
    }
  });
});
