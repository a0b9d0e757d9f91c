import { spawnSync } from "node:child_process";
import { gunzipSync, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { parallelGzip } from "./pgzip.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** Half-random words: compresses about 2:1, like binaries. */
function data(n: number, seed = 1): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(n);
  for (let k = 0; k + 4 <= n; k += 4) b.writeUInt32LE(r() < 0.5 ? 0 : Math.floor(r() * 2 ** 32), k);
  return b;
}

async function* sliced(b: Buffer, step: number): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < b.length; o += step) yield b.subarray(o, Math.min(b.length, o + step));
}

async function gz(src: AsyncIterable<Uint8Array>, opts: Parameters<typeof parallelGzip>[1]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of parallelGzip(src, opts)) parts.push(c);
  return Buffer.concat(parts);
}

const CHUNK = 64 * 1024;

describe("parallelGzip", () => {
  it("is one gzip member that inflates to the input, at sizes around the chunk boundaries", async () => {
    for (const n of [0, 1, 511, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 12345]) {
      const input = data(n, n + 1);
      const out = await gz(sliced(input, 7000), { level: 6, chunkSize: CHUNK });
      expect(gunzipSync(out).equals(input), `size ${n}`).toBe(true);
      // Fixed header: no name, mtime 0, OS 3 (Unix), XFL 0 at level 6.
      expect([...out.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
      expect(out.readUInt32LE(out.length - 4)).toBe(n);
    }
  });

  it("gives the same bytes however the input is sliced and however many chunks are in flight", async () => {
    const input = data(9 * CHUNK + 777, 42);
    const a = await gz(sliced(input, 65536), { level: 6, chunkSize: CHUNK, inFlight: 1 });
    const b = await gz(sliced(input, 1000), { level: 6, chunkSize: CHUNK, inFlight: 8 });
    const c = await gz(sliced(input, 3 * CHUNK), { level: 6, chunkSize: CHUNK, inFlight: 3 });
    expect(b.equals(a)).toBe(true);
    expect(c.equals(a)).toBe(true);
    // A different level is a different stream (the level is honoured).
    const d = await gz(sliced(input, 65536), { level: 1, chunkSize: CHUNK });
    expect(d.equals(a)).toBe(false);
    expect(d[8]).toBe(4);
  });

  it("compresses about as well as one zlib stream (dictionary carried across chunks)", async () => {
    // Repetitive text across chunk boundaries: without the previous chunk as dictionary each chunk would restart cold.
    const line = Buffer.from("usr/lib/python3.12/site-packages/example/module.py 0644 root root\n");
    const input = Buffer.concat(Array.from({ length: 20000 }, (_, i) => Buffer.concat([line, Buffer.from(`${i}\n`)])));
    const par = await gz(sliced(input, 65536), { level: 6, chunkSize: CHUNK });
    const one = gzipSync(input, { level: 6 });
    expect(gunzipSync(par).equals(input)).toBe(true);
    expect(par.length).toBeLessThan(one.length * 1.02 + 64);
  });

  it("is accepted by gzip -t", async () => {
    const input = data(4 * CHUNK + 99, 5);
    const out = await gz(sliced(input, 50000), { level: 9, chunkSize: CHUNK });
    const r = spawnSync("gzip", ["-t"], { input: out });
    expect(r.error).toBeUndefined();
    expect(r.status, r.stderr?.toString()).toBe(0);
    const back = spawnSync("gzip", ["-dc"], { input: out, maxBuffer: 1 << 24 });
    expect(Buffer.from(back.stdout).equals(input)).toBe(true);
  });

  it("refuses a level outside 1-9 and a chunk smaller than the deflate window", async () => {
    await expect(gz(sliced(data(10), 10), { level: 0 })).rejects.toThrow(/level 0/);
    await expect(gz(sliced(data(10), 10), { level: 6, chunkSize: 1000 })).rejects.toThrow(/chunk size/);
  });

  it("passes a failing source's error through", async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield data(3 * CHUNK);
      throw new Error("disk went away");
    }
    await expect(gz(failing(), { level: 6, chunkSize: CHUNK })).rejects.toThrow(/disk went away/);
  });
});
