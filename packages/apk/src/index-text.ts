// APKINDEX text: records of `X:value` lines, each ended by one empty line.
// Also the shared single-letter field mapping used by the installed database.

import { ApkError } from "./errors.js";
import { type PackageInfo } from "./pkginfo.js";

/** One APKINDEX record: package metadata plus what identifies its file. */
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
export const INDEX_FIELD_ORDER = ["C", "P", "V", "A", "S", "I", "T", "U", "L", "o", "m", "t", "c", "k", "D", "p", "i"] as const;

const KNOWN = new Set<string>(INDEX_FIELD_ORDER);

function int(field: string, value: string, where: string): number {
  if (!/^\d+$/.test(value)) {
    throw new ApkError("INVALID_FIELD", `${where}: field ${field} must be a whole number, got ${JSON.stringify(value)}`, { subject: where });
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
    case "C": rec.checksum = value; return true;
    case "P": rec.name = value; return true;
    case "V": rec.version = value; return true;
    case "A": rec.arch = value; return true;
    case "S": rec.fileSize = int(key, value, where); return true;
    case "I": rec.installedSize = int(key, value, where); return true;
    case "T": rec.description = value; return true;
    case "U": rec.url = value; return true;
    case "L": rec.license = value; return true;
    case "o": rec.origin = value; return true;
    case "m": rec.maintainer = value; return true;
    case "t": rec.buildDate = int(key, value, where); return true;
    case "c": rec.commit = value; return true;
    case "k": rec.providerPriority = int(key, value, where); return true;
    case "D": rec.depends = list(value); return true;
    case "p": rec.provides = list(value); return true;
    case "i": rec.installIf = list(value); return true;
    default: return false;
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

/** Parse APKINDEX text. Unknown uppercase fields are an error, as they make apk refuse the package. */
export function parseIndexText(text: string, subject = "APKINDEX"): IndexRecord[] {
  const out: IndexRecord[] = [];
  let rec: IndexRecord | undefined;
  let recLine = 0;
  let order: string[] = [];
  const lines = text.split("\n");
  // A trailing newline yields one empty string at the end; ignore it.
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  const finish = () => {
    if (!rec) return;
    if (!rec.name || !rec.version) {
      throw new ApkError("INVALID_FIELD", `${subject}:${recLine}: record lacks ${rec.name ? "V" : "P"}:`, { subject });
    }
    const canonical = formatIndexFields(rec).map((l) => l[0]!);
    if (canonical.join("") !== order.join("")) rec.fieldOrder = order;
    out.push(rec);
    rec = undefined;
    order = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === "") {
      finish();
      continue;
    }
    if (line.length < 2 || line[1] !== ":") {
      throw new ApkError("INVALID_FIELD", `${subject}:${i + 1}: expected "X:value", got ${JSON.stringify(line.slice(0, 80))}`, { subject });
    }
    if (!rec) {
      rec = newIndexRecord();
      recLine = i + 1;
    }
    const key = line[0]!;
    const value = line.slice(2);
    const where = `${subject}:${i + 1}`;
    order.push(key);
    if (!applyIndexField(rec, key, value, where)) {
      if (key >= "A" && key <= "Z") {
        throw new ApkError("INVALID_FIELD", `${where}: unknown uppercase field ${key}: (apk would refuse to install this package)`, { subject });
      }
      rec.unknownFields.push([key, value]);
    }
  }
  finish();
  return out;
}

function field(out: string[], key: string, value: string | number | undefined) {
  if (value === undefined) return;
  const s = String(value);
  if (s.includes("\n")) throw new ApkError("INVALID_FIELD", `index field ${key} must not contain a newline`, { subject: key });
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
      throw new ApkError("INVALID_FIELD", `cannot write field ${JSON.stringify(k)}: only unknown lowercase single-letter fields are carried (an unknown uppercase field makes apk refuse the package)`, { subject: k });
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
