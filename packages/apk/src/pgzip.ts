// Parallel gzip of one stream, pigz's way: the input is cut into chunks of a
// fixed size (so the output never depends on timing or on the number of
// cores), each chunk is raw-deflated on its own, primed with the previous
// chunk's last 32 KiB as its dictionary, and ended with a sync flush so it
// stops on a byte boundary; the last chunk ends the deflate stream. The
// pieces, concatenated behind one gzip header and before one trailer (CRC32 of
// all the input, computed here in order, and its size), are one ordinary gzip
// member that gzip, umoci and skopeo read as any other.
//
// node:zlib's asynchronous calls run on libuv's thread pool, so the chunks in
// flight are compressed on several cores at once while this thread hashes and
// writes; at most `inFlight` chunks (input and output) are held at any time.

import { availableParallelism } from "node:os";
import { constants, crc32, deflateRaw } from "node:zlib";

/** Chunk size: large enough that per-chunk setup is negligible, small enough to keep every core busy. */
export const PGZIP_CHUNK = 1024 * 1024;
const WINDOW = 32 * 1024;

export interface ParallelGzipOptions {
  /** 1–9. */
  level: number;
  /** Uncompressed bytes per chunk; changing it changes the output bytes. */
  chunkSize?: number;
  /** Chunks compressed at once (memory bound: about 2 × inFlight × chunkSize); default cores + 1. */
  inFlight?: number;
}

/** gzip's XFL byte as zlib writes it: 2 = best compression, 4 = fastest, else 0. */
function xfl(level: number): number {
  return level === 9 ? 2 : level < 2 ? 4 : 0;
}

function deflateChunk(chunk: Buffer, dict: Buffer | undefined, level: number, last: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    deflateRaw(
      chunk,
      {
        level,
        // Output in one piece where it fits: each piece is a round trip through the thread pool.
        chunkSize: 256 * 1024,
        ...(dict ? { dictionary: dict } : {}),
        finishFlush: last ? constants.Z_FINISH : constants.Z_SYNC_FLUSH,
      },
      (err, out) => (err ? reject(err) : resolve(out)),
    );
  });
}

/** Re-cut a stream into buffers of exactly `size` bytes (the last one shorter, possibly empty). */
async function* fixedChunks(source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  let parts: Uint8Array[] = [];
  let have = 0;
  for await (const c of source) {
    let b = c;
    while (have + b.length >= size) {
      const take = size - have;
      parts.push(b.subarray(0, take));
      yield Buffer.concat(parts, size);
      parts = [];
      have = 0;
      b = b.subarray(take);
    }
    if (b.length) {
      // Copied: the source may reuse its buffer once it is handed the next chunk.
      parts.push(Buffer.from(b));
      have += b.length;
    }
  }
  yield Buffer.concat(parts, have);
}

/**
 * gzip `source` using several cores; yields the compressed stream in order.
 * Deterministic: the same input, level and chunk size give the same bytes.
 */
export async function* parallelGzip(
  source: AsyncIterable<Uint8Array>,
  opts: ParallelGzipOptions,
): AsyncGenerator<Buffer> {
  const { level } = opts;
  const size = opts.chunkSize ?? PGZIP_CHUNK;
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new RangeError(`gzip level ${level} is not 1–9`);
  if (!Number.isInteger(size) || size < WINDOW) throw new RangeError(`chunk size ${size} is below ${WINDOW}`);
  const inFlight = Math.max(1, opts.inFlight ?? availableParallelism() + 1);
  yield Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl(level), 3]);
  const queue: Array<Promise<Buffer>> = [];
  let crc = 0;
  let total = 0;
  let dict: Buffer | undefined;
  let pending: Buffer | undefined;
  try {
    // A chunk is known not to be the last once the next one exists.
    for await (const chunk of fixedChunks(source, size)) {
      if (pending) {
        queue.push(deflateChunk(pending, dict, level, false));
        dict = pending.subarray(pending.length - WINDOW);
        while (queue.length >= inFlight) yield await queue.shift()!;
      }
      crc = crc32(chunk, crc);
      total += chunk.length;
      pending = chunk;
    }
    queue.push(deflateChunk(pending ?? Buffer.alloc(0), dict, level, true));
    while (queue.length) yield await queue.shift()!;
  } finally {
    // On an early stop, let the chunks already handed to zlib finish quietly.
    for (const p of queue) p.catch(() => undefined);
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(total % 2 ** 32, 4);
  yield trailer;
}
