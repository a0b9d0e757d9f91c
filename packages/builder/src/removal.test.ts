// Work directories leave a build's path at once and are gone once the
// background removals settle; what a killed run left aside is swept.

import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { removeAside, settleRemovals, sweepStaleRemovals } from "./removal.js";

let base: string;
beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), "kiln-removal-test-"));
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

function tree(dir: string, files: number): void {
  for (let d = 0; d < 10; d++) {
    mkdirSync(join(dir, `d${d}`, "deep"), { recursive: true });
    for (let f = 0; f < files / 10; f++) writeFileSync(join(dir, `d${d}`, "deep", `f${f}`), "x".repeat(f));
  }
}

describe("removeAside", () => {
  it("frees the directory's name at once and removes its tree in the background", async () => {
    const work = join(base, "kiln-build-x-abc");
    tree(work, 2000);
    await removeAside(work);
    expect(existsSync(work)).toBe(false);
    mkdirSync(work); // the name is free for the next run
    await settleRemovals();
    expect(readdirSync(base)).toEqual(["kiln-build-x-abc"]);
  });

  it("a directory that is not there is nothing to do", async () => {
    await removeAside(join(base, "missing"));
    await settleRemovals();
    expect(readdirSync(base)).toEqual([]);
  });

  it("sweeps what a killed run left renamed aside, and nothing else", async () => {
    tree(join(base, "kiln-build-y-def.removing"), 50);
    mkdirSync(join(base, "kiln-build-z-ghi"));
    mkdirSync(join(base, "other.removing"));
    await sweepStaleRemovals(base);
    await settleRemovals();
    expect(readdirSync(base).sort()).toEqual(["kiln-build-z-ghi", "other.removing"]);
  });
});
