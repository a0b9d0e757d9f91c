// APKINDEX text: records of `X:value` lines, each ended by one empty line.
// Also the shared single-letter field mapping used by the installed database.
//
// Indexes of 100k+ records are common, so parsing is built for memory: an
// incremental parser over the bytes (so a record bomb stops early), one
// object shape for every record, repeated values and dependency tokens
// stored once, and no per-record copies of empty lists or field orders.
// Name, version and arch are validated here, once, as they become paths.

import { isUtf8 } from "node:buffer";
import { ApkError } from "./errors.js";
import { checkArch, checkFileName, checkPackageName, checkVersion } from "./names.js";
import { type PackageInfo } from "./pkginfo.js";
import { decodeUtf8 } from "./utf8.js";

/**
 * One APKINDEX record: package metadata plus what identifies its file.
 * Records parsed from text share frozen empty arrays for absent lists (and
 * share string values): assign a new array rather than pushing onto a list.
 */
export interface IndexRecord extends PackageInfo {
  /** `Q1` + base64 SHA-1 of the control member's compressed bytes (the `C:` field). */
  checksum?: string;
  /** Exact byte size of the signed `.apk` file (the `S:` field). */
  fileSize?: number;
  /** Lowercase fields this library does not interpret, in file order; they round-trip. */
  unknownFields: Array<[string, string]>;
  /**
   * Field letters in the order the parsed text had them, kept only when that
   * differs from apk's order (tools disagree, e.g. some write k: after p:), so
   * an index read from any tool re-serializes identically.
   */
  fieldOrder?: string[];
}

/** Field order apk writes. Unknown lowercase fields follow. */
export const INDEX_FIELD_ORDER = [
  "C",
  "P",
  "V",
  "A",
  "S",
  "I",
  "T",
  "U",
  "L",
  "o",
  "m",
  "t",
  "c",
  "k",
  "D",
  "p",
  "i",
] as const;

const KNOWN = new Set<string>(INDEX_FIELD_ORDER);

function int(field: string, value: string, where: string): number {
  if (!/^\d+$/.test(value)) {
    throw new ApkError(
      "INVALID_FIELD",
      `${where}: field ${field} must be a whole number, got ${JSON.stringify(value)}`,
      { subject: where },
    );
  }
  return Number(value);
}

function list(value: string): string[] {
  return value.split(" ").filter((s) => s !== "");
}

/**
 * Apply one `X:value` field to a record. Returns false for a field that is not
 * an index field (the caller decides what that means).
 */
export function applyIndexField(rec: IndexRecord, key: string, value: string, where: string): boolean {
  switch (key) {
    case "C":
      rec.checksum = value;
      return true;
    case "P":
      rec.name = value;
      return true;
    case "V":
      rec.version = value;
      return true;
    case "A":
      rec.arch = value;
      return true;
    case "S":
      rec.fileSize = int(key, value, where);
      return true;
    case "I":
      rec.installedSize = int(key, value, where);
      return true;
    case "T":
      rec.description = value;
      return true;
    case "U":
      rec.url = value;
      return true;
    case "L":
      rec.license = value;
      return true;
    case "o":
      rec.origin = value;
      return true;
    case "m":
      rec.maintainer = value;
      return true;
    case "t":
      rec.buildDate = int(key, value, where);
      return true;
    case "c":
      rec.commit = value;
      return true;
    case "k":
      rec.providerPriority = int(key, value, where);
      return true;
    case "D":
      rec.depends = list(value);
      return true;
    case "p":
      rec.provides = list(value);
      return true;
    case "i":
      rec.installIf = list(value);
      return true;
    default:
      return false;
  }
}

export function newIndexRecord(): IndexRecord {
  return {
    name: "",
    version: "",
    arch: "",
    depends: [],
    provides: [],
    installIf: [],
    replaces: [],
    triggers: [],
    extra: [],
    unknownFields: [],
  };
}

/** Refuse an index with more records than this unless the caller raises it (memory guard). */
export const DEFAULT_MAX_INDEX_RECORDS = 1_000_000;

export interface ParseIndexOptions {
  /** Most records accepted; more is a LIMIT error. */
  maxRecords?: number;
}

// Parsed records share one frozen empty array for every absent list, and
// repeated values (arch, version, license, maintainer, url, origin, commit,
// description, dependency tokens, odd field orders) are stored once: an index
// of 100k records repeats a handful of arches and licenses and a few thousand
// dependency tokens, and per-record copies of them were most of its memory.
const EMPTY: never[] = Object.freeze([]) as unknown as never[];

const CACHE_BITS = 16;
const CACHE_MASK = (1 << CACHE_BITS) - 1;

/**
 * A direct-mapped cache from byte strings of the text being parsed to the
 * string decoded from them: a value whose bytes were seen before (and are
 * still in its slot) is neither decoded nor stored again. Lossy on purpose: a
 * hash table of every distinct value costs more time than it saves memory.
 */
class ValueCache {
  private buf: Buffer | undefined;
  private readonly strings: Array<string | undefined> = new Array<string | undefined>(CACHE_MASK + 1);
  private readonly offsets = new Int32Array(CACHE_MASK + 1);
  private readonly lengths = new Int32Array(CACHE_MASK + 1);

  get(buf: Buffer, s: number, e: number): string {
    if (buf !== this.buf) {
      // Offsets refer to one buffer.
      this.buf = buf;
      this.strings.fill(undefined);
    }
    let h = 0x811c9dc5;
    for (let i = s; i < e; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
    const slot = (h ^ (h >>> CACHE_BITS)) & CACHE_MASK;
    const len = e - s;
    const have = this.strings[slot];
    if (have !== undefined && this.lengths[slot] === len) {
      const o = this.offsets[slot]!;
      let i = 0;
      while (i < len && buf[o + i] === buf[s + i]) i++;
      if (i === len) return have;
    }
    const v = buf.toString("utf8", s, e);
    this.strings[slot] = v;
    this.offsets[slot] = s;
    this.lengths[slot] = len;
    return v;
  }
}

/** A record with every index field present (absent ones undefined) so all records share one shape. */
function blankRecord(): IndexRecord {
  return {
    name: "",
    version: "",
    arch: "",
    checksum: undefined,
    fileSize: undefined,
    installedSize: undefined,
    description: undefined,
    url: undefined,
    license: undefined,
    origin: undefined,
    maintainer: undefined,
    buildDate: undefined,
    commit: undefined,
    providerPriority: undefined,
    depends: EMPTY,
    provides: EMPTY,
    installIf: EMPTY,
    replaces: EMPTY,
    triggers: EMPTY,
    extra: EMPTY,
    unknownFields: EMPTY,
    fieldOrder: undefined,
  };
}

const c = (k: string) => k.charCodeAt(0);
const NL = 0x0a;
const COLON = 0x3a;
const SPACE = 0x20;
const NAME = /^[A-Za-z0-9+_][A-Za-z0-9+_.-]*$/;
const DIGITS = /^\d+$/;

/** Field letters formatIndexFields writes for `rec`, in apk's order, into `out` (reused). */
function canonicalLetters(rec: IndexRecord, out: number[]): void {
  out.length = 0;
  if (rec.checksum !== undefined) out.push(c("C"));
  out.push(c("P"), c("V"), c("A")); // written even when empty
  if (rec.fileSize !== undefined) out.push(c("S"));
  if (rec.installedSize !== undefined) out.push(c("I"));
  if (rec.description !== undefined) out.push(c("T"));
  if (rec.url !== undefined) out.push(c("U"));
  if (rec.license !== undefined) out.push(c("L"));
  if (rec.origin !== undefined) out.push(c("o"));
  if (rec.maintainer !== undefined) out.push(c("m"));
  if (rec.buildDate !== undefined) out.push(c("t"));
  if (rec.commit !== undefined) out.push(c("c"));
  if (rec.providerPriority !== undefined) out.push(c("k"));
  if (rec.depends.length) out.push(c("D"));
  if (rec.provides.length) out.push(c("p"));
  if (rec.installIf.length) out.push(c("i"));
  for (const [k] of rec.unknownFields) out.push(k.charCodeAt(0));
}

/**
 * An incremental APKINDEX parser over bytes: `feed` parses the complete lines
 * of `buf[0, end)` not parsed yet, so an index is parsed while it is inflated
 * and a record-count bomb stops early. The text is checked to be UTF-8 and
 * values are decoded one field at a time, so no record keeps a slice of a
 * larger string alive. `buf` must be the same buffer on every call.
 */
export class IndexTextParser {
  readonly records: IndexRecord[] = [];
  private readonly cache = new ValueCache();
  private readonly orders = new Map<string, string[]>();
  private readonly validVersions = new Set<string>();
  private readonly validArches = new Set<string>();
  private readonly maxRecords: number;
  private pos = 0;
  private line = 0;
  private rec: IndexRecord | undefined;
  private recLine = 0;
  private readonly order: number[] = [];
  private readonly canonical: number[] = [];
  private readonly tokens: string[] = [];

  constructor(
    private readonly subject: string,
    opts: ParseIndexOptions = {},
  ) {
    this.maxRecords = opts.maxRecords ?? DEFAULT_MAX_INDEX_RECORDS;
  }

  /** Parse what `buf[0, end)` adds; with `final`, also a last line without a newline, and the last record. */
  feed(buf: Buffer, end: number, final = false): void {
    const stop = final ? end : buf.lastIndexOf(NL, end - 1) + 1;
    if (stop > this.pos) {
      const part = buf.subarray(this.pos, stop);
      if (!isUtf8(part)) decodeUtf8(part, "text", this.subject, { code: "INVALID_FIELD", firstLine: this.line + 1 });
      let pos = this.pos;
      while (pos < stop) {
        let eol = buf.indexOf(NL, pos);
        if (eol < 0 || eol > stop) eol = stop;
        this.line++;
        if (eol === pos) this.finish();
        else this.field(buf, pos, eol);
        pos = eol + 1;
      }
      this.pos = stop;
    }
    if (final) this.finish();
  }

  private where(): string {
    return `${this.subject}:${this.line}`;
  }

  private int(key: string, value: string): number {
    if (!DIGITS.test(value)) int(key, value, this.where());
    return Number(value);
  }

  private field(buf: Buffer, pos: number, eol: number): void {
    const k = buf[pos]!;
    if (eol - pos < 2 || buf[pos + 1] !== COLON || k >= 0x80) {
      const shown = buf.toString("utf8", pos, Math.min(eol, pos + 80));
      throw new ApkError("INVALID_FIELD", `${this.where()}: expected "X:value", got ${JSON.stringify(shown)}`, {
        subject: this.subject,
      });
    }
    const rec = this.rec ?? this.startRecord();
    this.order.push(k);
    const s = pos + 2;
    const cached = () => this.cache.get(buf, s, eol);
    const plain = () => buf.toString("utf8", s, eol);
    switch (k) {
      case 0x43 /* C */:
        rec.checksum = plain();
        return;
      case 0x50 /* P */:
        rec.name = this.name(plain());
        return;
      case 0x56 /* V */:
        rec.version = this.version(cached());
        return;
      case 0x41 /* A */:
        rec.arch = this.arch(cached());
        return;
      case 0x53 /* S */:
        rec.fileSize = this.int("S", plain());
        return;
      case 0x49 /* I */:
        rec.installedSize = this.int("I", plain());
        return;
      case 0x54 /* T */:
        rec.description = cached();
        return;
      case 0x55 /* U */:
        rec.url = cached();
        return;
      case 0x4c /* L */:
        rec.license = cached();
        return;
      case 0x6f /* o */:
        rec.origin = cached();
        return;
      case 0x6d /* m */:
        rec.maintainer = cached();
        return;
      case 0x74 /* t */:
        rec.buildDate = this.int("t", plain());
        return;
      case 0x63 /* c */:
        rec.commit = cached();
        return;
      case 0x6b /* k */:
        rec.providerPriority = this.int("k", plain());
        return;
      case 0x44 /* D */:
        rec.depends = this.list(buf, s, eol, true);
        return;
      case 0x70 /* p */:
        rec.provides = this.list(buf, s, eol, false);
        return;
      case 0x69 /* i */:
        rec.installIf = this.list(buf, s, eol, true);
        return;
    }
    this.unknownField(rec, k, buf, s, eol);
  }

  /** Begin the record the current line is the first field of, within the record limit. */
  private startRecord(): IndexRecord {
    if (this.records.length >= this.maxRecords) {
      throw new ApkError(
        "LIMIT",
        `${this.where()}: more than ${this.maxRecords} records (the limit; raise it with maxRecords or KILN_MAX_INDEX_RECORDS)`,
        { subject: this.subject },
      );
    }
    this.rec = blankRecord();
    this.recLine = this.line;
    return this.rec;
  }

  /** Keep a lowercase field kiln does not know, with the value `buf[s, eol)`; refuse an uppercase one, as apk does. */
  private unknownField(rec: IndexRecord, k: number, buf: Buffer, s: number, eol: number): void {
    const key = String.fromCharCode(k);
    if (key >= "A" && key <= "Z") {
      throw new ApkError(
        "INVALID_FIELD",
        `${this.where()}: unknown uppercase field ${key}: (apk would refuse to install this package)`,
        { subject: this.subject },
      );
    }
    if (rec.unknownFields === EMPTY) rec.unknownFields = [];
    rec.unknownFields.push([key, buf.toString("utf8", s, eol)]);
  }

  private name(value: string): string {
    if (!NAME.test(value)) checkPackageName(value, this.where(), "P:");
    return value;
  }

  private version(v: string): string {
    if (!this.validVersions.has(v)) {
      checkVersion(v, this.where(), "V:");
      this.validVersions.add(v);
    }
    return v;
  }

  private arch(a: string): string {
    if (a !== "" && !this.validArches.has(a)) {
      checkArch(a, this.where(), "A:");
      this.validArches.add(a);
    }
    return a;
  }

  /** Space-separated tokens; `shared` ones (dependencies, which repeat) go through the cache. */
  private list(buf: Buffer, s: number, eol: number, shared: boolean): string[] {
    const tokens = this.tokens;
    tokens.length = 0;
    for (let p = s; p < eol;) {
      if (buf[p] === SPACE) {
        p++;
        continue;
      }
      let q = buf.indexOf(SPACE, p);
      if (q < 0 || q > eol) q = eol;
      tokens.push(shared ? this.cache.get(buf, p, q) : buf.toString("utf8", p, q));
      p = q;
    }
    // An array grown by push keeps spare capacity; a copy is exactly its length.
    return tokens.length ? tokens.slice() : EMPTY;
  }

  private finish(): void {
    const rec = this.rec;
    if (!rec) return;
    if (!rec.name || !rec.version) {
      throw new ApkError("INVALID_FIELD", `${this.subject}:${this.recLine}: record lacks ${rec.name ? "V" : "P"}:`, {
        subject: this.subject,
      });
    }
    if (rec.name.length + rec.version.length > 250)
      checkFileName(rec.name, rec.version, `${this.subject}:${this.recLine}`);
    // The order is remembered only when it differs from what formatIndexFields writes.
    canonicalLetters(rec, this.canonical);
    if (!sameCodes(this.order, this.canonical)) rec.fieldOrder = this.orderOf(this.order);
    this.records.push(rec);
    this.rec = undefined;
    this.order.length = 0;
  }

  private orderOf(codes: number[]): string[] {
    const letters = String.fromCharCode(...codes);
    let o = this.orders.get(letters);
    if (!o) {
      o = Object.freeze([...letters]) as unknown as string[];
      this.orders.set(letters, o);
    }
    return o;
  }
}

function sameCodes(a: number[], b: number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Parse APKINDEX text. Unknown uppercase fields are an error, as they make apk refuse the package. */
export function parseIndexText(text: string, subject = "APKINDEX", opts: ParseIndexOptions = {}): IndexRecord[] {
  const buf = Buffer.from(text, "utf8");
  const p = new IndexTextParser(subject, opts);
  p.feed(buf, buf.length, true);
  return p.records;
}

function field(out: string[], key: string, value: string | number | undefined) {
  if (value === undefined) return;
  const s = String(value);
  if (s.includes("\n"))
    throw new ApkError("INVALID_FIELD", `index field ${key} must not contain a newline`, { subject: key });
  out.push(`${key}:${s}`);
}

/**
 * The index lines of one record, without the terminating blank line: in the
 * record's remembered order when it has one, else apk's order.
 */
export function formatIndexFields(rec: IndexRecord): string[] {
  const lines = canonicalFields(rec);
  if (!rec.fieldOrder) return lines;
  const byKey = new Map<string, string[]>();
  for (const l of lines) (byKey.get(l[0]!) ?? byKey.set(l[0]!, []).get(l[0]!)!).push(l);
  const out: string[] = [];
  for (const k of rec.fieldOrder) {
    const l = byKey.get(k)?.shift();
    if (l !== undefined) out.push(l);
  }
  // Fields added since parsing (not in the remembered order) follow in apk's order.
  for (const l of lines) if (byKey.get(l[0]!)?.includes(l)) out.push(l);
  return out;
}

function canonicalFields(rec: IndexRecord): string[] {
  const out: string[] = [];
  field(out, "C", rec.checksum);
  field(out, "P", rec.name);
  field(out, "V", rec.version);
  field(out, "A", rec.arch);
  field(out, "S", rec.fileSize);
  field(out, "I", rec.installedSize);
  field(out, "T", rec.description);
  field(out, "U", rec.url);
  field(out, "L", rec.license);
  field(out, "o", rec.origin);
  field(out, "m", rec.maintainer);
  field(out, "t", rec.buildDate);
  field(out, "c", rec.commit);
  field(out, "k", rec.providerPriority);
  if (rec.depends.length) field(out, "D", rec.depends.join(" "));
  if (rec.provides.length) field(out, "p", rec.provides.join(" "));
  if (rec.installIf.length) field(out, "i", rec.installIf.join(" "));
  for (const [k, v] of rec.unknownFields) {
    if (KNOWN.has(k) || k.length !== 1 || (k >= "A" && k <= "Z")) {
      throw new ApkError(
        "INVALID_FIELD",
        `cannot write field ${JSON.stringify(k)}: only unknown lowercase single-letter fields are carried (an unknown uppercase field makes apk refuse the package)`,
        { subject: k },
      );
    }
    field(out, k, v);
  }
  return out;
}

/** Serialize records in the order given (callers sort with `sortIndexRecords`). */
export function formatIndexText(records: readonly IndexRecord[]): string {
  let s = "";
  for (const r of records) s += formatIndexFields(r).join("\n") + "\n\n";
  return s;
}
