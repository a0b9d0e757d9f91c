// `kiln cache du | prune` through main(): one clear error for a bad size or
// duration, a dry run that removes nothing, a summary of what was freed.

import { mkdir, mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError } from "@kiln/core";
import { parseDistro } from "@kiln/distro";
import { main } from "../main.js";
import type { Io } from "../util.js";

function capture(env: NodeJS.ProcessEnv = {}): Io & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l), env };
}

let cache: string;
beforeEach(async () => {
  cache = await mkdtemp(join(tmpdir(), "kiln-cache-cmd-"));
  // Two legacy guests (plain copies) and one fetched package, used on three different days.
  for (const [i, k] of ["a", "b"].entries()) {
    const dir = join(cache, "guests", k.repeat(64));
    await mkdir(join(dir, "bin"), { recursive: true });
    await writeFile(join(dir, "bin/tool"), Buffer.alloc(300_000, k));
    await writeFile(join(dir, ".kiln-guest-complete"), "x\n");
    const t = new Date(Date.UTC(2026, 0, 1 + i));
    await utimes(join(dir, ".kiln-guest-complete"), t, t);
  }
  await mkdir(join(cache, "packages"));
  await writeFile(join(cache, "packages", "C-x-1.0-r0.apk"), Buffer.alloc(100_000, "p"));
});
afterEach(() => rm(cache, { recursive: true, force: true }));

describe("kiln cache", () => {
  it("a bad size or duration is one usage error naming the option", async () => {
    for (const [argv, option] of [
      [["--max-size", "4X"], "--max-size"],
      [["--older-than", "soon"], "--older-than"],
    ] as const) {
      const io = capture();
      expect(await main(["cache", "prune", "--cache-dir", cache, ...argv], io)).toBe(2);
      expect(io.stderr).toHaveLength(1);
      expect(io.stderr[0]).toContain(`${option}: expected a`);
    }
    const io = capture({ KILN_CACHE_MAX_SIZE: "lots" });
    expect(await main(["cache", "prune", "--cache-dir", cache], io)).toBe(2);
    expect(io.stderr).toEqual([
      expect.stringContaining('KILN_CACHE_MAX_SIZE: expected a size such as 512M, 4G or 1T, got "lots"'),
    ]);
  });

  it("du counts per kind; prune --dry-run removes nothing; prune frees least recently used first", async () => {
    const du = capture();
    expect(await main(["cache", "du", "--cache-dir", cache, "--json"], du)).toBe(0);
    const usage = JSON.parse(du.stdout.join("\n")) as { kinds: Record<string, number>; total: number; guests: number };
    expect(usage.guests).toBe(2);
    expect(usage.kinds.guests).toBeGreaterThanOrEqual(600_000);
    expect(usage.kinds.packages).toBeGreaterThanOrEqual(100_000);

    const dry = capture();
    expect(await main(["cache", "prune", "--cache-dir", cache, "--all-guests", "--dry-run"], dry)).toBe(0);
    expect(dry.stdout.at(-1)).toMatch(/^would free 0\.\d MiB: 2 guests, 0 packages; cache/);
    const again = capture();
    await main(["cache", "du", "--cache-dir", cache, "--json"], again);
    expect(JSON.parse(again.stdout.join("\n"))).toEqual(usage);

    // Room for one guest: the package (newest use: now) stays, guest a (oldest) goes first.
    const io = capture();
    expect(
      await main(["cache", "prune", "--cache-dir", cache, "--max-size", String(usage.total - 200_000), "--json"], io),
    ).toBe(0);
    const r = JSON.parse(io.stdout.join("\n")) as { evicted: Array<{ name: string }>; freed: number };
    expect(r.evicted.map((e) => e.name)).toEqual(["a".repeat(64)]);
    expect(r.freed).toBeGreaterThanOrEqual(300_000);
  });
});

describe("kiln cache verify", () => {
  it("names a store entry whose content does not match its name, exit 1", async () => {
    const entry = join(cache, "store", "ab", `${"ab".repeat(32)}-644`);
    await mkdir(join(cache, "store", "ab"), { recursive: true });
    await writeFile(entry, "not what the name says\n");
    const io = capture();
    expect(await main(["cache", "verify", "--cache-dir", cache], io)).toBe(1);
    expect(io.stdout).toEqual([`${entry}: content does not match its name`, "1 damaged store entries"]);
    await rm(entry);
    const ok = capture();
    expect(await main(["cache", "verify", "--cache-dir", cache], ok)).toBe(0);
    expect(ok.stdout).toEqual(["store verified"]);
  });
});

describe("distro.yaml cache:", () => {
  it("max-size is read as bytes; a bad one is one problem at its line naming the field", () => {
    expect(parseDistro("/d/distro.yaml", "name: T\nid: t\ncache:\n  max-size: 4G\n").cacheMaxSize).toBe(4 * 2 ** 30);
    expect(parseDistro("/d/distro.yaml", "name: T\nid: t\n").cacheMaxSize).toBeUndefined();
    let err: unknown;
    try {
      parseDistro("/d/distro.yaml", "name: T\nid: t\ncache:\n  max-size: huge\n");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => `${p.line}:${p.path}: ${p.message}`)).toEqual([
      '4:cache.max-size: expected a size such as 512M, 4G or 1T, got "huge"',
    ]);
  });
});
