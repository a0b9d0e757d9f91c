import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OciError } from "./errors.js";
import { indexTar, TarWriter } from "./tar.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-oci-tar-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("indexing a tar on disk", () => {
  it("finds regular files by normalised path with their content offsets, long (PAX) names included", async () => {
    const f = join(dir, "a.tar");
    const w = await TarWriter.create(f);
    const long = `blobs/sha256/${"d".repeat(150)}`;
    await w.dir("blobs", 0);
    await w.file("index.json", 2, 0, Buffer.from("{}"));
    await w.file(long, 5, 0, Buffer.from("hello"));
    await w.finish();
    const m = await indexTar(f);
    expect([...m.keys()].sort()).toEqual([long, "index.json"].sort());
    const bytes = await readFile(f);
    const e = m.get(long)!;
    expect(bytes.subarray(e.offset, e.offset + e.size).toString()).toBe("hello");
  });
  it("refuses a corrupt header as BAD_LAYOUT, naming the offset", async () => {
    const f = join(dir, "b.tar");
    const w = await TarWriter.create(f);
    await w.file("x", 1, 0, Buffer.from("x"));
    await w.finish();
    const bytes = await readFile(f);
    bytes[0] = 0x41; // the name changes, the checksum no longer matches
    await writeFile(f, bytes);
    const err = await indexTar(f).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OciError);
    expect((err as OciError).code).toBe("BAD_LAYOUT");
    expect((err as OciError).message).toMatch(/b\.tar: tar header checksum mismatch .* at offset 0$/);
  });
  it("refuses a truncated entry", async () => {
    const f = join(dir, "c.tar");
    const w = await TarWriter.create(f);
    await w.file("x", 2000, 0, Buffer.alloc(2000));
    await w.finish();
    await writeFile(f, (await readFile(f)).subarray(0, 1024));
    await expect(indexTar(f)).rejects.toThrow(/truncated tar entry at offset 0/);
  });
});
