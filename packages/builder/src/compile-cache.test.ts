import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CompileCache, MAX_CACHE_FILE_BYTES, compilerFingerprint } from "./compile-cache.js";

const isEntry = (v: unknown) =>
  v && typeof v === "object" && typeof (v as { n?: unknown }).n === "number" ? (v as { n: number }) : undefined;

describe("compile cache", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kiln-compile-cache-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps entries across processes' opens and counts hits and misses", async () => {
    const a = await CompileCache.open(dir, "t", isEntry);
    const k = a.key("recipe", "x86_64", "abc");
    expect(a.get(k)).toBeUndefined();
    a.set(k, { n: 7 });
    await a.save();
    const b = await CompileCache.open(dir, "t", isEntry);
    expect(b.get(k)).toEqual({ n: 7 });
    expect(b.get(b.key("recipe", "x86_64", "abd"))).toBeUndefined();
    expect(b.stats).toEqual({ hits: 1, misses: 1, rejected: 0 });
  });

  it("keys separate their parts and include the compiler's code", async () => {
    const a = await CompileCache.open(dir, "t", isEntry);
    expect(a.key("ab", "c")).not.toBe(a.key("a", "bc"));
    const other = await CompileCache.open(dir, "t", isEntry, { extraCode: [join(dir, "nothing.js")] });
    expect(other.key("ab", "c")).not.toBe(a.key("ab", "c"));
    expect(compilerFingerprint()).toMatch(/^[0-9a-f]{64}$/);
  });

  it("ignores a corrupt, foreign or oversized store and rebuilds it", async () => {
    const file = join(dir, "t.json");
    for (const text of ["{not json", "[]", JSON.stringify({ format: "other", entries: {} }), "null"]) {
      await writeFile(file, text);
      const c = await CompileCache.open(dir, "t", isEntry);
      expect(c.get(c.key("x"))).toBeUndefined();
      c.set(c.key("x"), { n: 1 });
      await c.save();
      expect((await CompileCache.open(dir, "t", isEntry)).get(c.key("x"))).toEqual({ n: 1 });
    }
    await writeFile(file, Buffer.alloc(MAX_CACHE_FILE_BYTES + 1, 0x20));
    expect((await CompileCache.open(dir, "t", isEntry)).get("x")).toBeUndefined();
  });

  it("refuses an entry its validator rejects and drops it from the store", async () => {
    const a = await CompileCache.open(dir, "t", isEntry);
    const good = a.key("good");
    const bad = a.key("bad");
    a.set(good, { n: 1 });
    await a.save();
    const stored = JSON.parse(await readFile(join(dir, "t.json"), "utf8")) as { entries: Record<string, unknown> };
    stored.entries[bad] = { n: "../../etc/passwd" };
    stored.entries["__proto__"] = { n: 3 };
    await writeFile(join(dir, "t.json"), JSON.stringify(stored));
    const b = await CompileCache.open(dir, "t", isEntry);
    expect(b.get(bad)).toBeUndefined();
    expect(b.stats.rejected).toBe(1);
    expect(b.get("constructor")).toBeUndefined();
    expect(b.get(good)).toEqual({ n: 1 });
    await b.save();
    const after = JSON.parse(await readFile(join(dir, "t.json"), "utf8")) as { entries: Record<string, unknown> };
    expect(Object.keys(after.entries)).not.toContain(bad);
    expect(Object.keys(after.entries)).toContain(good);
  });

  it("writes nothing when nothing changed, and refuses a bad store name", async () => {
    const a = await CompileCache.open(dir, "t", isEntry);
    await a.save();
    await expect(readFile(join(dir, "t.json"))).rejects.toThrow(/ENOENT/);
    await expect(CompileCache.open(dir, "../x", isEntry)).rejects.toThrow(/bad store name/);
  });
});
