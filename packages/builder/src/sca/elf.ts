// The ELF reader of dependency detection: program headers and the dynamic
// section (PT_INTERP, DT_NEEDED, DT_SONAME, DT_RUNPATH/DT_RPATH), 32/64-bit,
// either byte order, parsed here without external tools.

import { KilnError } from "@kiln/core";
import * as fsp from "node:fs/promises";

export interface ElfInfo {
  class: 32 | 64;
  endian: "le" | "be";
  /** e_type: 1 REL, 2 EXEC, 3 DYN, 4 CORE. */
  type: number;
  machine: number;
  /** PT_INTERP, the program loader. */
  interp?: string;
  /** DT_NEEDED, in order. */
  needed: string[];
  soname?: string;
  runpath: string[];
  /** Has a PT_DYNAMIC segment. */
  dynamic: boolean;
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
const MAX_TABLE = 64 << 20;

export class ElfError extends KilnError {
  readonly code = "BAD_ELF";
}

/** Bounds-checked reads of one ELF file, and its integers in its class and byte order. */
class ElfFile {
  is64 = false;
  le = true;
  constructor(
    private readonly fh: fsp.FileHandle,
    readonly path: string,
    readonly size: number,
  ) {}
  async at(pos: number, len: number, what: string): Promise<Buffer> {
    const { path, size } = this;
    if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(len) || pos < 0 || len < 0 || pos + len > size) {
      throw new ElfError(`${path}: ${what} (offset ${pos}, ${len} bytes) lies outside the file (${size} bytes)`);
    }
    const b = Buffer.alloc(len);
    const { bytesRead } = await this.fh.read(b, 0, len, pos);
    if (bytesRead !== len) throw new ElfError(`${path}: short read of ${what}`);
    return b;
  }
  u16(b: Buffer, o: number): number {
    return this.le ? b.readUInt16LE(o) : b.readUInt16BE(o);
  }
  u32(b: Buffer, o: number): number {
    return this.le ? b.readUInt32LE(o) : b.readUInt32BE(o);
  }
  /** An address or offset: 32 or 64 bits, saturated at MAX_SAFE_INTEGER. */
  word(b: Buffer, o: number): number {
    if (!this.is64) return this.u32(b, o);
    const v = this.le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  }
  /** A signed word (a dynamic tag); -1 when out of range. */
  sword(b: Buffer, o: number): number {
    if (!this.is64) return this.le ? b.readInt32LE(o) : b.readInt32BE(o);
    const v = this.le ? b.readBigInt64LE(o) : b.readBigInt64BE(o);
    return v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER) ? -1 : Number(v);
  }
}

interface Segment {
  offset: number;
  filesz: number;
}

interface Segments {
  loads: Array<Segment & { vaddr: number }>;
  dyn?: Segment;
  interp?: Segment;
}

/**
 * Read an ELF file's program headers and dynamic section: 32/64-bit, little
 * and big endian. Returns null when the file is not ELF; throws ElfError when
 * it is ELF but malformed.
 */
export async function readElf(path: string): Promise<ElfInfo | null> {
  const fh = await fsp.open(path, "r");
  try {
    const f = new ElfFile(fh, path, (await fh.stat()).size);
    if (f.size < 52) return null;
    const id = await f.at(0, 16, "identification");
    if (id[0] !== 0x7f || id[1] !== 0x45 || id[2] !== 0x4c || id[3] !== 0x46) return null;
    const cls = id[4];
    const data = id[5];
    if ((cls !== 1 && cls !== 2) || (data !== 1 && data !== 2))
      throw new ElfError(`${path}: unknown ELF class ${cls} or data encoding ${data}`);
    f.is64 = cls === 2;
    f.le = data === 1;
    const is64 = f.is64;
    const eh = await f.at(0, is64 ? 64 : 52, "ELF header");
    const info: ElfInfo = {
      class: is64 ? 64 : 32,
      endian: f.le ? "le" : "be",
      type: f.u16(eh, 16),
      machine: f.u16(eh, 18),
      needed: [],
      runpath: [],
      dynamic: false,
    };
    const segs = await readSegments(f, eh);
    if (!segs) return info;
    if (segs.interp && segs.interp.filesz > 0) {
      if (segs.interp.filesz > 4096) throw new ElfError(`${path}: PT_INTERP of ${segs.interp.filesz} bytes`);
      const b = await f.at(segs.interp.offset, segs.interp.filesz, "PT_INTERP");
      const z = b.indexOf(0);
      info.interp = (z < 0 ? b : b.subarray(0, z)).toString("utf8");
    }
    if (!segs.dyn || segs.dyn.filesz === 0) return info;
    info.dynamic = true;
    await readDynamic(f, segs.dyn, segs.loads, info);
    return info;
  } finally {
    await fh.close();
  }
}

/** The PT_LOAD, PT_DYNAMIC and PT_INTERP segments; undefined without program headers. */
async function readSegments(f: ElfFile, eh: Buffer): Promise<Segments | undefined> {
  const { is64, path } = f;
  const phoff = f.word(eh, is64 ? 32 : 28);
  const shoff = f.word(eh, is64 ? 40 : 32);
  const phentsize = f.u16(eh, is64 ? 54 : 42);
  let phnum = f.u16(eh, is64 ? 56 : 44);
  if (phnum === 0xffff && shoff) {
    // PN_XNUM: the real count is in section header 0's sh_info.
    const sh0 = await f.at(shoff, is64 ? 64 : 40, "section header 0");
    phnum = f.u32(sh0, is64 ? 44 : 28);
  }
  if (phoff === 0 || phnum === 0) return undefined;
  const wantEnt = is64 ? 56 : 32;
  if (phentsize < wantEnt)
    throw new ElfError(`${path}: program header entries of ${phentsize} bytes (expected ${wantEnt})`);
  if (phnum * phentsize > MAX_TABLE) throw new ElfError(`${path}: ${phnum} program headers is too many`);
  const ph = await f.at(phoff, phnum * phentsize, "program headers");
  const out: Segments = { loads: [] };
  for (let i = 0; i < phnum; i++) {
    const o = i * phentsize;
    const pType = f.u32(ph, o);
    const offset = is64 ? f.word(ph, o + 8) : f.u32(ph, o + 4);
    const vaddr = is64 ? f.word(ph, o + 16) : f.u32(ph, o + 8);
    const filesz = is64 ? f.word(ph, o + 32) : f.u32(ph, o + 16);
    if (pType === PT_LOAD) out.loads.push({ vaddr, offset, filesz });
    else if (pType === PT_DYNAMIC) out.dyn = { offset, filesz };
    else if (pType === PT_INTERP) out.interp = { offset, filesz };
  }
  return out;
}

/** DT_NEEDED, DT_SONAME and DT_RUNPATH/DT_RPATH from the dynamic segment, through its string table, into `info`. */
async function readDynamic(f: ElfFile, dyn: Segment, loads: Segments["loads"], info: ElfInfo): Promise<void> {
  const { is64, path } = f;
  if (dyn.filesz > MAX_TABLE) throw new ElfError(`${path}: dynamic segment of ${dyn.filesz} bytes`);
  const db = await f.at(dyn.offset, dyn.filesz, "dynamic segment");
  const ent = is64 ? 16 : 8;
  const entries: Array<[number, number]> = [];
  for (let o = 0; o + ent <= db.length; o += ent) {
    const tag = f.sword(db, o);
    const val = f.word(db, o + (is64 ? 8 : 4));
    if (tag === DT_NULL) break;
    entries.push([tag, val]);
  }
  const strtabAddr = entries.find(([t]) => t === DT_STRTAB)?.[1];
  const strsz = entries.find(([t]) => t === DT_STRSZ)?.[1];
  if (strtabAddr === undefined) {
    if (entries.some(([t]) => t === DT_NEEDED || t === DT_SONAME))
      throw new ElfError(`${path}: dynamic section without DT_STRTAB`);
    return;
  }
  // DT_STRTAB is a virtual address: map it to a file offset through the PT_LOAD segments.
  const seg = loads.find((l) => strtabAddr >= l.vaddr && strtabAddr < l.vaddr + l.filesz);
  if (!seg) throw new ElfError(`${path}: DT_STRTAB address 0x${strtabAddr.toString(16)} is not in a loaded segment`);
  const strOff = strtabAddr - seg.vaddr + seg.offset;
  const strLen = Math.min(strsz ?? seg.vaddr + seg.filesz - strtabAddr, seg.vaddr + seg.filesz - strtabAddr, MAX_TABLE);
  const strtab = await f.at(strOff, strLen, "dynamic string table");
  const str = (idx: number): string => {
    if (idx >= strtab.length) throw new ElfError(`${path}: dynamic string index ${idx} beyond the string table`);
    const z = strtab.indexOf(0, idx);
    return strtab.subarray(idx, z < 0 ? strtab.length : z).toString("utf8");
  };
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) info.needed.push(str(val));
    else if (tag === DT_SONAME) info.soname = str(val);
    else if (tag === DT_RUNPATH || tag === DT_RPATH)
      info.runpath.push(
        ...str(val)
          .split(":")
          .filter((x) => x !== ""),
      );
  }
}
