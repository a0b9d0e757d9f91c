// The distribution's own advisories (advisories/NAME.yaml) load without a
// problem and each names one of its recipes; an advisory marked fixed names a
// version the recipe has reached.

import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { compareVersions } from "@kiln/apk";
import { loadDistroAdvisories, writeDistroFeed } from "./advisories.js";
import { loadDistro } from "./config.js";

const ROOT = join(import.meta.dirname, "../../..");

describe("the distribution's advisories", () => {
  it("load, and name recipes; a fixed one names a version the recipe has reached", async () => {
    const d = await loadDistro(join(ROOT, "distro.yaml"));
    const advisories = await loadDistroAdvisories(d);
    expect(advisories.length).toBeGreaterThan(0);
    for (const a of advisories) {
      const recipe = join(d.recipesDir, `${a.package}.yaml`);
      expect(existsSync(recipe), `${a.source}: no recipe ${recipe}`).toBe(true);
      const pkg = (parse(await readFile(recipe, "utf8")) as { package: { version: string; epoch?: number } }).package;
      const built = `${pkg.version}-r${pkg.epoch ?? 0}`;
      // "fixed in X" while the recipe still builds something older would tell scanners the fix is out.
      if (a.current.state === "fixed")
        expect(
          compareVersions(built, a.current.version),
          `${a.source}: fixed in ${a.current.version}, the recipe builds ${built}`,
        ).toBeGreaterThanOrEqual(0);
    }
  });

  it("distro-build's feed: OUT/security.json and OUT/osv/ from them", async () => {
    const d = await loadDistro(join(ROOT, "distro.yaml"));
    const out = await mkdtemp(join(tmpdir(), "kiln-distro-feed-"));
    try {
      const r = await writeDistroFeed({ ...d, outDir: out }, await loadDistroAdvisories(d));
      expect(r.written).toContain("security.json");
      const secdb = JSON.parse(await readFile(join(out, "security.json"), "utf8")) as {
        reponame: string;
        archs: string[];
        packages: Array<{ pkg: { name: string; secfixes: Record<string, string[]> } }>;
      };
      expect(secdb.reponame).toBe(d.id);
      expect(secdb.archs).toEqual(d.architectures);
      expect(secdb.packages.find((p) => p.pkg.name === "zlib")?.pkg.secfixes).toEqual({ "0": ["CVE-2023-45853"] });
      expect((await readdir(join(out, "osv"))).sort()).toEqual([
        "KILN-CVE-2023-38545.json",
        "KILN-CVE-2023-38546.json",
        "all.json",
      ]);
      const rec = JSON.parse(await readFile(join(out, "osv/KILN-CVE-2023-38545.json"), "utf8")) as {
        affected: Array<{ package: { name: string; ecosystem: string }; ranges: Array<{ events: unknown[] }> }>;
      };
      expect(rec.affected[0]!.package).toMatchObject({ name: "curl", ecosystem: d.id });
      expect(rec.affected[0]!.ranges[0]!.events).toEqual([{ introduced: "0" }]);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
