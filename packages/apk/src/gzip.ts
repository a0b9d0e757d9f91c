// Concatenated gzip members. apk hashes and signs the compressed bytes of each
// member, so the reader reports exactly which compressed bytes belong to which
// member while inflating; a raw-mode inflater tells where each deflate stream
// ends. node's zlib inflates (about 3x pako's speed, off this thread): it stops
// at the end of the deflate data, and its bytesWritten says how much it took.

import { createInflateRaw, crc32, gzipSync, type InflateRaw } from "node:zlib";
import { ApkError } from "./errors.js";

export const DEFAULT_GZIP_LEVEL = 9;

/** One gzip member: fixed header (no name, mtime 0, OS byte 3) so output is reproducible. */
export function gzipMember(data: Uint8Array, level = DEFAULT_GZIP_LEVEL): Buffer {
  return gzipSync(data, { level });
}

export type GzipEvent =
  | { type: "data"; member: number; data: Uint8Array }
  | { type: "end"; member: number; compressedSize: number; size: number };

export interface GunzipOptions {
  /** Called with every compressed byte range, header and trailer included, tagged by member. */
  onCompressed?: (member: number, bytes: Uint8Array) => void;
  /** Largest inflated size allowed for a member (gzip-bomb guard). */
  maxMemberSize?: (member: number) => number;
  /**
   * Size of the buffers zlib inflates a member into (default 64 KiB). Each
   * buffer filled is a round trip to this thread, so a large member inflates
   * faster into large ones; each member allocates one, so small members want small ones.
   */
  outputChunkSize?: (member: number) => number | undefined;
  subject?: string;
}

// Input is fed to the inflater in slices this size so one step's output stays
// bounded (deflate's maximum ratio is about 1032:1).
const SLICE = 16 * 1024;

const DEFAULT_OUTPUT_CHUNK = 64 * 1024;

const FHCRC = 2,
  FEXTRA = 4,
  FNAME = 8,
  FCOMMENT = 16;

/** Length of a complete gzip header at the start of `b`, or -1 if more bytes are needed. */
export function headerLength(b: Uint8Array, subject: string): number {
  if (b.length < 10) return -1;
  if (b[0] !== 0x1f || b[1] !== 0x8b)
    throw new ApkError("BAD_ARCHIVE", `${subject}: not gzip data (bad magic)`, { subject });
  if (b[2] !== 8)
    throw new ApkError("BAD_ARCHIVE", `${subject}: unsupported gzip compression method ${b[2]}`, { subject });
  const flags = b[3]!;
  if (flags & 0xe0) throw new ApkError("BAD_ARCHIVE", `${subject}: reserved gzip header flags set`, { subject });
  let p = 10;
  if (flags & FEXTRA) {
    if (b.length < p + 2) return -1;
    p += 2 + (b[p]! | (b[p + 1]! << 8));
    if (b.length < p) return -1;
  }
  for (const f of [FNAME, FCOMMENT]) {
    if (flags & f) {
      const z = b.indexOf(0, p);
      if (z < 0) {
        if (b.length - p > 65536) throw new ApkError("LIMIT", `${subject}: gzip header string too long`, { subject });
        return -1;
      }
      p = z + 1;
    }
  }
  if (flags & FHCRC) p += 2;
  return b.length < p ? -1 : p;
}

/**
 * Inflate a stream of concatenated gzip members, yielding inflated data and a
 * marker at the end of each member. Throws ApkError on corrupt, truncated or
 * oversized input.
 */
export async function* gunzipMembers(
  source: AsyncIterable<Uint8Array>,
  opts: GunzipOptions = {},
): AsyncGenerator<GzipEvent> {
  const subject = opts.subject ?? "gzip stream";
  const it = source[Symbol.asyncIterator]();
  const input = new GzipInput(it);

  let member = 0;
  try {
    for (;;) {
      // Header
      const hl = await readHeaderLength(input, member, subject);
      if (hl < 0) return;
      opts.onCompressed?.(member, input.pending.subarray(0, hl));
      input.pending = input.pending.subarray(hl);
      let compressedSize = hl;

      // Body
      const { size, crc, used } = yield* inflateMember(input, member, opts, subject);
      compressedSize += used;

      // Trailer: CRC32 and size modulo 2^32
      await checkTrailer(input, member, crc, size, subject);
      opts.onCompressed?.(member, input.pending.subarray(0, 8));
      input.pending = input.pending.subarray(8);
      compressedSize += 8;
      yield { type: "end", member, compressedSize, size };
      member++;
    }
  } finally {
    await it.return?.();
  }
}

/**
 * Inflate the deflate data of one member from `input`, yielding its output;
 * returns its inflated size and CRC32 and the compressed bytes it took.
 */
async function* inflateMember(
  input: GzipInput,
  member: number,
  opts: GunzipOptions,
  subject: string,
): AsyncGenerator<GzipEvent, { size: number; crc: number; used: number }> {
  // Asked again for every chunk: a reader may tighten it once it knows what the member holds.
  const maxOf = () => opts.maxMemberSize?.(member) ?? Number.MAX_SAFE_INTEGER;
  let out: Uint8Array[] = [];
  let size = 0;
  let crc = 0;
  let limitHit = false;
  let used = 0;
  const inflater = new RawInflater(opts.outputChunkSize?.(member) ?? DEFAULT_OUTPUT_CHUNK, (chunk) => {
    if (limitHit) return;
    size += chunk.length;
    if (size > maxOf()) {
      limitHit = true;
      return;
    }
    crc = crc32(chunk, crc);
    out.push(chunk);
  });
  const push = (): Promise<{ used: number; ended: boolean }> => {
    const p = inflater.push(input.pending.subarray(0, SLICE)).catch((e: Error) => {
      throw new ApkError(
        "BAD_ARCHIVE",
        `${subject}: corrupt deflate data in gzip member ${member + 1} (${e.message})`,
        { subject },
      );
    });
    // Observed when awaited; a prefetch abandoned by an early stop must not be an unhandled rejection.
    p.catch(() => undefined);
    return p;
  };
  // The next slice is handed to zlib (on the thread pool) before this one's output is
  // yielded, so inflating overlaps with whatever the consumer does with the output.
  let next: Promise<{ used: number; ended: boolean }> | undefined;
  try {
    for (;;) {
      if (!next) {
        if (input.pending.length === 0 && !(await input.pull())) {
          throw new ApkError("TRUNCATED", `${subject}: truncated inside gzip member ${member + 1}`, { subject });
        }
        next = push();
      }
      const step = await next;
      next = undefined;
      if (limitHit) {
        throw new ApkError("LIMIT", `${subject}: gzip member ${member + 1} inflates beyond the ${maxOf()}-byte limit`, {
          subject,
        });
      }
      opts.onCompressed?.(member, input.pending.subarray(0, step.used));
      used += step.used;
      input.pending = input.pending.subarray(step.used);
      const ready = out;
      out = [];
      if (!step.ended && input.pending.length) next = push();
      for (const c of ready) yield { type: "data", member, data: c };
      if (step.ended) break;
    }
  } finally {
    inflater.close();
  }
  return { size, crc, used };
}

/**
 * One raw deflate stream on node's zlib. push() feeds a slice and resolves
 * once zlib has taken what it wants of it, with how many bytes it used and
 * whether the deflate data ended there; output goes to `onData` as it comes.
 */
class RawInflater {
  private readonly z: InflateRaw;
  private fed = 0;
  private failed: Error | undefined;
  private fail: ((e: Error) => void) | undefined;

  constructor(
    chunkSize: number,
    private readonly onData: (chunk: Buffer) => void,
  ) {
    this.z = createInflateRaw({ chunkSize });
    this.z.on("error", (e: Error) => {
      this.failed ??= e;
      this.fail?.(e);
    });
    this.z.on("readable", () => this.drain());
  }

  private drain(): void {
    for (let c: Buffer | null; (c = this.z.read() as Buffer | null) !== null;) this.onData(c);
  }

  push(slice: Uint8Array): Promise<{ used: number; ended: boolean }> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.fail = reject;
      this.fed += slice.length;
      this.z.write(slice, (err) => {
        this.fail = undefined;
        if (err || this.failed) return reject(this.failed ?? err);
        this.drain();
        // zlib leaves unread whatever follows the end of the deflate data.
        const left = this.fed - this.z.bytesWritten;
        resolve({ used: slice.length - left, ended: left > 0 });
      });
    });
  }

  close(): void {
    this.z.removeAllListeners("readable");
    this.z.on("error", () => undefined);
    this.z.close();
  }
}

/** The compressed input: bytes pulled from the source and not yet consumed. */
class GzipInput {
  pending: Uint8Array = new Uint8Array(0);
  private eof = false;
  private readonly it: AsyncIterator<Uint8Array>;

  constructor(it: AsyncIterator<Uint8Array>) {
    this.it = it;
  }

  /** The source's next chunk, asked for before it is needed. */
  private ahead: Promise<IteratorResult<Uint8Array>> | undefined;

  /** Append the next source chunk to `pending`; false at the end of the source. */
  async pull(): Promise<boolean> {
    if (this.eof) return false;
    const r = await (this.ahead ?? this.it.next());
    this.ahead = undefined;
    if (r.done) {
      this.eof = true;
      return false;
    }
    this.pending = this.pending.length ? concat(this.pending, r.value) : r.value;
    // One chunk of read-ahead: the file is read while this one is inflated.
    this.ahead = this.it.next();
    this.ahead.catch(() => undefined);
    return true;
  }
}

/** Pull until the next member's gzip header is complete and return its length; -1 at a clean end of input. */
async function readHeaderLength(input: GzipInput, member: number, subject: string): Promise<number> {
  let hl = headerLength(input.pending, subject);
  while (hl < 0) {
    if (!(await input.pull())) {
      if (input.pending.length === 0) {
        if (member === 0) throw new ApkError("TRUNCATED", `${subject}: empty file`, { subject });
        return -1;
      }
      throw new ApkError("TRUNCATED", `${subject}: truncated in gzip header of member ${member + 1}`, { subject });
    }
    hl = headerLength(input.pending, subject);
  }
  return hl;
}

/** Pull the 8-byte trailer and check its CRC32 and size modulo 2^32 against what was inflated. */
async function checkTrailer(input: GzipInput, member: number, crc: number, size: number, subject: string) {
  while (input.pending.length < 8) {
    if (!(await input.pull()))
      throw new ApkError("TRUNCATED", `${subject}: truncated in gzip trailer of member ${member + 1}`, { subject });
  }
  const pending = input.pending;
  const dv = new DataView(pending.buffer, pending.byteOffset, 8);
  if (dv.getUint32(0, true) !== crc >>> 0)
    throw new ApkError("BAD_ARCHIVE", `${subject}: CRC mismatch in gzip member ${member + 1}`, { subject });
  if (dv.getUint32(4, true) !== size % 2 ** 32)
    throw new ApkError("BAD_ARCHIVE", `${subject}: size mismatch in gzip member ${member + 1}`, { subject });
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const r = new Uint8Array(a.length + b.length);
  r.set(a, 0);
  r.set(b, a.length);
  return r;
}
