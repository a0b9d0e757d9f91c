// melange reads recipes and pipeline files with Go's YAML decoder into typed
// structs. That decoder, not YAML's own types, decides what a value means:
//
// - a scalar read into a string field is its text as written: `1.10`, `0`
//   and `true` are the strings "1.10", "0" and "true" (map keys too);
// - `y`/`yes`/`on` and `n`/`no`/`off` (any case form) are booleans where a
//   boolean is read;
// - null (`~`, `null`, or nothing after the colon) is the zero value: an
//   absent field, "" (or an empty map or list) as a map's value, and a list
//   element that is dropped;
// - a mapping or a sequence where a string is read is an error.
//
// goDecode produces the plain data the zod schemas check, reading the YAML
// document this way guided by the schema itself, so each field gets the
// reading of its Go type. Where the schema does not know a key (which it then
// reports), the value is yaml's own.

import { isAlias, isMap, isScalar, isSeq, type Document, type Node as YNode } from "yaml";
import type { ZodTypeAny } from "zod";

const NULL = Symbol("null");
type Decoded = unknown;

const TRUE_WORDS = new Set(["y", "Y", "yes", "Yes", "YES", "on", "On", "ON"]);
const FALSE_WORDS = new Set(["n", "N", "no", "No", "NO", "off", "Off", "OFF"]);

interface Def {
  typeName?: string;
  innerType?: ZodTypeAny;
  schema?: ZodTypeAny;
  getter?: () => ZodTypeAny;
  in?: ZodTypeAny;
  type?: ZodTypeAny;
  options?: ZodTypeAny[];
  valueType?: ZodTypeAny;
  value?: unknown;
  shape?: () => Record<string, ZodTypeAny>;
}

const def = (s: ZodTypeAny): Def => s._def as Def;

/** The schema under optional/nullable/default/effects/lazy/branded/pipeline wrappers. */
function unwrap(s: ZodTypeAny): ZodTypeAny {
  for (let i = 0; i < 64; i++) {
    const d = def(s);
    const next =
      d.typeName === "ZodLazy" ? d.getter?.() : d.typeName === "ZodPipeline" ? d.in : (d.innerType ?? d.schema);
    if (
      !next ||
      ![
        "ZodOptional",
        "ZodNullable",
        "ZodDefault",
        "ZodEffects",
        "ZodLazy",
        "ZodBranded",
        "ZodCatch",
        "ZodPipeline",
        "ZodReadonly",
      ].includes(d.typeName ?? "")
    )
      return s;
    s = d.typeName === "ZodBranded" ? (d.type ?? next) : next;
  }
  return s;
}

/** Whether the schema reads a scalar as a Go string (string, enum, string literal, or a union with one). */
function stringish(s: ZodTypeAny): boolean {
  const d = def(unwrap(s));
  switch (d.typeName) {
    case "ZodString":
    case "ZodEnum":
    case "ZodNativeEnum":
      return true;
    case "ZodLiteral":
      return typeof d.value === "string";
    case "ZodUnion":
      return (d.options ?? []).some(stringish);
    default:
      return false;
  }
}

/**
 * A union of a number and a string without a boolean (a mode as 0o755 or
 * "0755", a uid as 0 or a name) is a Go number written either way: a YAML
 * number stays one. The scalar union (string, number and boolean) is a Go
 * string and gets the text.
 */
function numberOrText(s: ZodTypeAny): boolean {
  const d = def(s);
  if (d.typeName !== "ZodUnion") return false;
  const kinds = (d.options ?? []).map(typeName);
  return kinds.includes("ZodNumber") && !kinds.includes("ZodBoolean");
}

function typeName(s: ZodTypeAny | undefined): string | undefined {
  return s ? def(unwrap(s)).typeName : undefined;
}

/** The zero value a map entry gets for a null value (undefined: leave the entry out). */
function zeroOf(s: ZodTypeAny): unknown {
  if (stringish(s)) return "";
  switch (typeName(s)) {
    case "ZodObject":
    case "ZodRecord":
      return {};
    case "ZodArray":
      return [];
    default:
      return undefined;
  }
}

class GoDecoder {
  constructor(
    private readonly doc: Document,
    private readonly text: string,
    /** When given, keys the schema does not know are left out and listed here (else kept, for zod to report). */
    private readonly ignored?: IgnoredKey[],
  ) {}

  private resolve(node: unknown): YNode | null | undefined {
    let n = node;
    for (let i = 0; i < 1000 && isAlias(n); i++) n = n.resolve(this.doc);
    return n as YNode | null | undefined;
  }

  private plain(node: unknown): unknown {
    const n = this.resolve(node);
    if (n === null || n === undefined) return null;
    return n.toJS(this.doc, { maxAliasCount: -1 });
  }

  /** A scalar's text as Go's decoder reads it into a string. */
  private textOf(node: YNode): string | undefined {
    if (!isScalar(node)) return undefined;
    if (typeof node.value === "string") return node.value;
    if (node.range) return this.text.slice(node.range[0], node.range[1]);
    return String(node.value);
  }

  key(node: unknown): string {
    const n = this.resolve(node);
    if (!n || (isScalar(n) && n.value === null)) return "";
    return this.textOf(n) ?? String(this.plain(n));
  }

  decode(node: unknown, schema: ZodTypeAny | undefined): Decoded | typeof NULL {
    const n = this.resolve(node);
    if (n === null || n === undefined || (isScalar(n) && n.value === null)) return NULL;
    if (!schema) return this.plain(n);
    const s = unwrap(schema);
    const d = def(s);
    if (isScalar(n)) {
      if (typeof n.value === "boolean" && d.typeName === "ZodBoolean") return n.value;
      if (typeof n.value === "number" && numberOrText(s)) return n.value;
      if (stringish(s)) return this.textOf(n);
      if (d.typeName === "ZodBoolean" && typeof n.value === "string") {
        if (TRUE_WORDS.has(n.value)) return true;
        if (FALSE_WORDS.has(n.value)) return false;
      }
      return this.plain(n);
    }
    if (isMap(n)) {
      const target =
        d.typeName === "ZodUnion" ? d.options?.find((o) => ["ZodObject", "ZodRecord"].includes(typeName(o) ?? "")) : s;
      const t = target ? unwrap(target) : undefined;
      if (typeName(t) === "ZodObject") return this.object(n, def(t!).shape!());
      if (typeName(t) === "ZodRecord") return this.record(n, def(t!).valueType!);
      return this.plain(n);
    }
    if (isSeq(n)) {
      const target = d.typeName === "ZodUnion" ? d.options?.find((o) => typeName(o) === "ZodArray") : s;
      if (target && typeName(target) === "ZodArray") {
        const el = def(unwrap(target)).type;
        const out: unknown[] = [];
        for (const item of n.items) {
          const v = this.decode(item, el);
          if (v !== NULL) out.push(v);
        }
        return out;
      }
      return this.plain(n);
    }
    return this.plain(n);
  }

  private object(n: import("yaml").YAMLMap, shape: Record<string, ZodTypeAny>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const pair of n.items) {
      const k = this.key(pair.key);
      const field = Object.hasOwn(shape, k) ? shape[k] : undefined;
      if (!field && this.ignored) {
        const at = this.resolve(pair.key)?.range?.[0];
        this.ignored.push({ key: k, offset: at ?? 0 });
        continue;
      }
      const v = field ? this.decode(pair.value, field) : this.plain(pair.value);
      if (v !== NULL) out[k] = v;
    }
    return out;
  }

  private record(n: import("yaml").YAMLMap, value: ZodTypeAny): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const pair of n.items) {
      const k = this.key(pair.key);
      const v = this.decode(pair.value, value);
      if (v !== NULL) out[k] = v;
      else {
        const z = zeroOf(value);
        if (z !== undefined) out[k] = z;
      }
    }
    return out;
  }
}

/** A key left out by goDecode, and the offset of its text. */
export interface IgnoredKey {
  key: string;
  offset: number;
}

/**
 * The document's data as Go's YAML decoder reads it into the types `schema`
 * describes. With `ignored`, unknown keys are dropped and listed there, as a
 * decoder without KnownFields does (melange reads pipeline files so).
 */
export function goDecode(doc: Document, text: string, schema: ZodTypeAny, ignored?: IgnoredKey[]): unknown {
  const v = new GoDecoder(doc, text, ignored).decode(doc.contents, schema);
  return v === NULL ? {} : v;
}
