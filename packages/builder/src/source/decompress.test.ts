import { execFileSync } from "node:child_process";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { decompress } from "./decompress.js";
import { readTar } from "./tar-read.js";
import { SourceError } from "./errors.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readAll(s: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c);
  return Buffer.concat(parts);
}

describe("decompress with a host tool", () => {
  // A small member decompresses and the tool exits before the caller reads
  // (it was still creating the destination directory): Node then resumes an
  // unread child stdout and drops its data. Twice CI built an empty stage-0
  // package that way (libgcc, mpc), which left gcc without its libraries.
  it("keeps the output of a tool that exits before anyone reads it", async () => {
    const text = Buffer.from("a small member\n".repeat(20));
    const xz = execFileSync("xz", ["-c"], { input: text });
    const d = decompress(Readable.from([xz]), "xz", "test.xz");
    await sleep(700); // the tool is long gone
    expect((await readAll(d.stream)).equals(text)).toBe(true);
    await d.done;
  });

  it("an empty stream is no tar archive: one clear error instead of nothing extracted", async () => {
    const run = async () => {
      for await (const _ of readTar(Readable.from([]), "empty.tar")) {
        /* none */
      }
    };
    await expect(run()).rejects.toThrow(SourceError);
    await expect(run()).rejects.toThrow(/empty\.tar: empty archive/);
  });

  it("an archive of only end-of-archive blocks is a valid empty tar", async () => {
    const entries: unknown[] = [];
    for await (const e of readTar(Readable.from([Buffer.alloc(1024)]), "zero.tar")) entries.push(e);
    expect(entries).toEqual([]);
  });
});
