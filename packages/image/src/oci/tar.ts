// A minimal deterministic tar writer (ustar headers from @kiln/apk, PAX for long
// names) that streams file content to disk, and a reader that indexes the
// regular files of a tar on disk so they can be streamed back by byte range
// (headers decoded by @kiln/apk's tar code, so kiln parses ustar/PAX headers in one place).

import { open, type FileHandle } from "node:fs/promises";
import { ApkError, decodeHeader, encodeHeader, isZeroBlock, parsePax, type RawTarHeader } from "@kiln/apk";
import { OciError, describeError } from "./errors.js";

const BLOCK = 512;

function pad(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

export class TarWriter {
  private written = 0;
  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
  ) {}

  static async create(path: string): Promise<TarWriter> {
    try {
      return new TarWriter(await open(path, "wx", 0o644), path);
    } catch (e) {
      throw new OciError("IO", `cannot create ${path}: ${describeError(e)}`, { subject: path, cause: e });
    }
  }

  private async write(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) {
      const { bytesWritten } = await this.fh.write(b, off, b.length - off);
      off += bytesWritten;
    }
    this.written += b.length;
  }

  async dir(name: string, mtime: number): Promise<void> {
    await this.write(
      encodeHeader({
        path: name.endsWith("/") ? name : name + "/",
        type: "dir",
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime,
      }),
    );
  }

  /** A regular file of exactly `size` bytes; the content stream must yield exactly that many. */
  async file(
    name: string,
    size: number,
    mtime: number,
    content: Uint8Array | AsyncIterable<Uint8Array>,
  ): Promise<void> {
    await this.write(encodeHeader({ path: name, type: "file", mode: 0o644, uid: 0, gid: 0, size, mtime }));
    let n = 0;
    if (content instanceof Uint8Array) {
      await this.write(content);
      n = content.length;
    } else {
      for await (const chunk of content) {
        n += chunk.length;
        if (n > size) break;
        await this.write(chunk);
      }
    }
    if (n !== size)
      throw new OciError("IO", `tar entry ${name}: expected ${size} bytes, content had ${n > size ? "more" : n}`, {
        subject: name,
      });
    const p = pad(size);
    if (p) await this.write(new Uint8Array(p));
  }

  /** End-of-archive marker (two zero blocks), flush and close. */
  async finish(): Promise<number> {
    await this.write(new Uint8Array(2 * BLOCK));
    await this.fh.sync();
    await this.fh.close();
    return this.written;
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
  }
}

export interface TarMember {
  /** Byte offset of the content in the file. */
  offset: number;
  size: number;
}

function readStr(b: Buffer, off: number, len: number): string {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return b.subarray(off, end).toString("utf8");
}

function asLayoutError(path: string, at: number, e: unknown): unknown {
  if (!(e instanceof ApkError)) return e;
  const msg = e.message.startsWith(`${path}: `) ? e.message.slice(path.length + 2) : e.message;
  return new OciError("BAD_LAYOUT", `${path}: ${msg} at offset ${at}`, { subject: path, cause: e });
}

/** One header block, decoded by @kiln/apk's tar code (the one ustar/PAX header parser: checksum, octal and base-256 fields, UTF-8 names). */
function decodeAt(path: string, at: number, block: Buffer): RawTarHeader {
  try {
    return decodeHeader(block);
  } catch (e) {
    throw asLayoutError(path, at, e);
  }
}

/** Index the regular files of an uncompressed tar on disk by normalized path ("./a/b" → "a/b"). */
export async function indexTar(path: string): Promise<Map<string, TarMember>> {
  const out = new Map<string, TarMember>();
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (e) {
    throw new OciError("BAD_LAYOUT", `cannot open ${path}: ${describeError(e)}`, { subject: path, cause: e });
  }
  try {
    const { size: total } = await fh.stat();
    const hdr = Buffer.alloc(BLOCK);
    let pos = 0;
    let longName: string | undefined;
    while (pos + BLOCK <= total) {
      await fh.read(hdr, 0, BLOCK, pos);
      if (isZeroBlock(hdr)) break;
      const h = decodeAt(path, pos, hdr);
      const { size, typeflag: type } = h;
      const body = pos + BLOCK;
      if (body + size > total)
        throw new OciError("BAD_LAYOUT", `${path}: truncated tar entry at offset ${pos}`, { subject: path });
      if (type === "x" || type === "L") {
        const b = Buffer.alloc(size);
        await fh.read(b, 0, size, body);
        try {
          longName = type === "x" ? parsePax(b, path).get("path")?.toString("utf8") : readStr(b, 0, size);
        } catch (e) {
          throw asLayoutError(path, pos, e);
        }
      } else {
        let name = longName ?? (h.prefix ? `${h.prefix}/${h.name}` : h.name);
        longName = undefined;
        name = name.replace(/^(\.\/)+/, "").replace(/^\/+/, "");
        if (type === "0" || type === "\0" || type === "7") out.set(name, { offset: body, size });
      }
      pos = body + size + pad(size);
    }
    return out;
  } finally {
    await fh.close();
  }
}
