// Loading YAML configs against a zod schema, reporting every problem at once
// with file:line:column, the dotted path, and what was expected. Hostile
// documents are refused before they cost anything: a size limit on the text,
// a nesting-depth limit checked on the lexer's flat token stream (before
// anything recursive runs, yaml's own parser included), and limits on alias
// expansion (billion laughs).

import { readFile } from "node:fs/promises";
import { KilnError } from "./errors.js";
import {
  CST,
  isMap,
  isScalar,
  Lexer,
  LineCounter,
  Parser,
  parseDocument,
  visit,
  type Alias,
  type Document,
  type Node as YNode,
} from "yaml";
import type { ZodIssue, ZodType, ZodTypeDef } from "zod";

export interface Problem {
  file: string;
  line?: number;
  col?: number;
  /** Dotted path, e.g. `contents.packages[2]`. */
  path: string;
  message: string;
}

export function formatProblem(p: Problem): string {
  const loc = p.line !== undefined ? `${p.file}:${p.line}:${p.col ?? 1}` : p.file;
  return `${loc}: ${p.path ? `${p.path}: ` : ""}${p.message}`;
}

export class ConfigError extends KilnError {
  readonly code = "INVALID_CONFIG";
  constructor(readonly problems: Problem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.name = "ConfigError";
  }
}

export function dotted(path: ReadonlyArray<string | number>): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s ? `.${p}` : p;
  return s;
}

export interface LoadedYaml<T> {
  value: T;
  doc: Document;
  /** Position of the node at `path` (or of its nearest existing ancestor). */
  locate(path: ReadonlyArray<string | number>): { line: number; col: number } | undefined;
  /** Raw source text of the scalar at `path`, if it is one. */
  source(path: ReadonlyArray<string | number>): string | undefined;
}

function describeIssue(i: ZodIssue): string {
  switch (i.code) {
    case "invalid_type":
      return i.received === "undefined"
        ? `required: expected ${i.expected}`
        : `expected ${i.expected}, got ${i.received}`;
    case "unrecognized_keys":
      return `unknown key${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => JSON.stringify(k)).join(", ")}`;
    case "invalid_enum_value":
      return `expected one of ${i.options.map((o) => JSON.stringify(o)).join(", ")}, got ${JSON.stringify(i.received)}`;
    default:
      return i.message;
  }
}

/** Limits every YAML config is read under; far above what any recipe, image config or distro.yaml needs. */
export const YAML_LIMITS = {
  /** Bytes of text. */
  maxBytes: 8 << 20,
  /** Nested collections (mappings and sequences). */
  maxDepth: 64,
  /** yaml's alias budget (resolutions weighted by the aliases inside each anchor). */
  maxAliasCount: 100,
  /** The document's size once aliases are expanded: characters of scalars plus 8 per node. */
  maxExpanded: 64 << 20,
};

// The lexer's markers that stand for no source text.
const ZERO_WIDTH = new Set(["\x02", "\x18", "\x1f"]);

/**
 * Note a block mapping (or, with `seq`, sequence) indicator at column `c`:
 * close the blocks to its right, then open one unless it continues the
 * collection already open there. Returns whether one was opened.
 */
function openBlock(blocks: Array<{ col: number; seq: boolean }>, c: number, seq: boolean): boolean {
  while (blocks.length && blocks[blocks.length - 1]!.col > c) blocks.pop();
  const top = blocks[blocks.length - 1];
  if (top && top.col === c && top.seq === seq) return false;
  // A key at the column of a sequence ends that (compact) sequence.
  if (!seq && top && top.col === c && top.seq) {
    blocks.pop();
    const parent = blocks[blocks.length - 1];
    if (parent && parent.col === c && !parent.seq) return false;
  }
  blocks.push({ col: c, seq });
  return true;
}

/**
 * Offset of the first place nested deeper than `max`, from the lexer's flat
 * token stream (yaml's parser and composer recurse per level, and overflow
 * the stack on a few thousand): flow collections by their brackets, block
 * collections by the columns of their keys and `-` indicators.
 */
export function excessiveNesting(text: string, max: number): number | undefined {
  const blocks: Array<{ col: number; seq: boolean }> = [];
  let flow = 0;
  let offset = 0;
  let col = 0;
  let keyCol = -1; // column of the first content since the last line start or indicator: a key, if ':' follows
  let scalarNext = false;
  const deeper = (): boolean => blocks.length + flow > max;
  const open = (c: number, seq: boolean): boolean => openBlock(blocks, c, seq) && deeper();
  for (const tok of new Lexer().lex(text)) {
    const start = offset;
    if (ZERO_WIDTH.has(tok)) {
      if (tok === "\x1f") scalarNext = true;
      continue;
    }
    offset += tok.length;
    const advance = () => {
      const nl = tok.lastIndexOf("\n");
      col = nl === -1 ? col + tok.length : tok.length - nl - 1;
    };
    if (scalarNext) {
      scalarNext = false;
      if (keyCol === -1) keyCol = col;
      advance();
      continue;
    }
    switch (CST.tokenType(tok)) {
      case "newline":
        col = 0;
        keyCol = -1;
        continue;
      case "doc-start":
      case "doc-end":
        blocks.length = 0;
        flow = 0;
        break;
      case "flow-map-start":
      case "flow-seq-start":
        flow++;
        if (deeper()) return start;
        keyCol = -1;
        break;
      case "flow-map-end":
      case "flow-seq-end":
        flow = Math.max(flow - 1, 0);
        break;
      case "comma":
        keyCol = -1;
        break;
      case "seq-item-ind":
        if (flow === 0 && open(col, true)) return start;
        keyCol = -1;
        break;
      case "explicit-key-ind":
        if (flow === 0 && open(col, false)) return start;
        keyCol = -1;
        break;
      case "map-value-ind":
        if (flow === 0 && open(keyCol === -1 ? col : keyCol, false)) return start;
        keyCol = -1;
        break;
      case "anchor":
      case "tag":
      case "alias":
        if (keyCol === -1) keyCol = col;
        break;
      default:
        break;
    }
    advance();
  }
  return undefined;
}

/** Offset of the first collection nested deeper than `max`, exactly, from the parser's tokens (once excessiveNesting said the parser is safe to run). */
function exactNesting(text: string, max: number): number | undefined {
  for (const top of new Parser().parse(text)) {
    const stack: Array<[CST.Token | undefined, number]> = [[top, 0]];
    while (stack.length) {
      const [t, d] = stack.pop()!;
      if (!t) continue;
      if (t.type === "document") stack.push([t.value, d]);
      else if (t.type === "block-map" || t.type === "block-seq" || t.type === "flow-collection") {
        if (d + 1 > max) return t.offset;
        for (const it of t.items) {
          stack.push(["key" in it ? (it.key ?? undefined) : undefined, d + 1]);
          stack.push([it.value, d + 1]);
        }
      }
    }
  }
  return undefined;
}

/** True when `value` (aliases expanded, shared nodes counted each time) is larger than `budget`; stops as soon as it is. */
export function expandsBeyond(value: unknown, budget: number): boolean {
  let used = 0;
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    used += typeof v === "string" ? v.length + 8 : 8;
    if (used > budget) return true;
    if (Array.isArray(v)) for (const x of v) stack.push(x);
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        used += k.length;
        stack.push(x);
      }
    }
  }
  return false;
}

/** The first alias node, and the first one that names no anchor before it. */
function aliases(doc: Document): { first?: YNode; unresolved?: Alias } {
  const out: { first?: YNode; unresolved?: Alias } = {};
  visit(doc, {
    Alias(_, node) {
      out.first ??= node;
      if (node.resolve(doc) === undefined) {
        out.unresolved = node;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return out;
}

/** Parse text that passed the size and depth checks into a document; throws ConfigError with the first limit exceeded. */
function checkedDocument(file: string, text: string, lc: LineCounter): Document {
  if (Buffer.byteLength(text) > YAML_LIMITS.maxBytes) {
    throw new ConfigError([{ file, path: "", message: `the file is larger than ${YAML_LIMITS.maxBytes >> 20} MiB` }]);
  }
  const deep = excessiveNesting(text, YAML_LIMITS.maxDepth) ?? exactNesting(text, YAML_LIMITS.maxDepth);
  if (deep !== undefined) {
    const before = text.slice(0, deep);
    const line = before.split("\n").length;
    const col = deep - before.lastIndexOf("\n");
    throw new ConfigError([
      { file, line, col, path: "", message: `YAML nested more than ${YAML_LIMITS.maxDepth} levels deep` },
    ]);
  }
  return parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
}

/** The document as plain data, refusing alias expansion beyond the limits (billion laughs). */
function checkedToJS(file: string, doc: Document, pos: (offset: number) => { line: number; col: number }): unknown {
  const found = aliases(doc);
  const at = (n: YNode | undefined) => (n?.range ? pos(n.range[0]) : {});
  if (found.unresolved)
    throw new ConfigError([
      {
        file,
        ...at(found.unresolved),
        path: "",
        message: `YAML alias *${found.unresolved.source} has no anchor &${found.unresolved.source} before it`,
      },
    ]);
  const refuse = (why: string): never => {
    throw new ConfigError([
      { file, ...at(found.first), path: "", message: `YAML aliases expand too much (${why}): refusing the document` },
    ]);
  };
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: YAML_LIMITS.maxAliasCount });
  } catch (e) {
    // With every alias resolvable, yaml's only ReferenceError is its alias budget; anything else is a bug.
    if (e instanceof ReferenceError && found.first) refuse(`more than ${YAML_LIMITS.maxAliasCount} alias resolutions`);
    throw e;
  }
  if (found.first && expandsBeyond(raw, YAML_LIMITS.maxExpanded))
    refuse(`more than ${YAML_LIMITS.maxExpanded >> 20} MiB once expanded`);
  return raw;
}

/** A config file's text, or a ConfigError naming the file ("no such file", or the system's reason). */
export async function readConfigText(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message;
    throw new ConfigError([{ file, path: "", message: `cannot read: ${reason}` }]);
  }
}

/**
 * Load `text` against `schema`. `decode`, if given, turns the checked document
 * into the plain data the schema sees (instead of yaml's own toJS), e.g. to
 * read scalars the way another tool's decoder would.
 */
export function loadYaml<T>(
  file: string,
  text: string,
  schema: ZodType<T, ZodTypeDef, unknown>,
  decode?: (doc: Document, text: string) => unknown,
): LoadedYaml<T> {
  const lc = new LineCounter();
  const doc = checkedDocument(file, text, lc);
  const problems: Problem[] = [];
  const pos = (offset: number) => {
    const p = lc.linePos(offset);
    return { line: p.line, col: p.col };
  };
  for (const e of [...doc.errors]) {
    problems.push({ file, ...pos(e.pos[0]), path: "", message: `YAML syntax: ${e.message.split("\n")[0]}` });
  }
  const nodeAt = (path: ReadonlyArray<string | number>): YNode | undefined => {
    let node: unknown = doc.contents;
    for (const k of path) {
      const next = (node as { get?: (k: unknown, keep: boolean) => unknown })?.get?.(k, true);
      if (next === undefined) return node as YNode;
      node = next;
    }
    return node as YNode;
  };
  const locate = (path: ReadonlyArray<string | number>) => {
    const n = nodeAt(path);
    return n?.range ? pos(n.range[0]) : undefined;
  };
  if (problems.length) throw new ConfigError(problems);
  const js = checkedToJS(file, doc, pos) ?? {};
  const raw = decode ? decode(doc, text) : js;
  const r = schema.safeParse(raw);
  if (!r.success) {
    for (const i of r.error.issues) {
      if (i.code === "unrecognized_keys") {
        const parent = nodeAt(i.path);
        for (const k of i.keys) {
          let at = parent?.range ? pos(parent.range[0]) : undefined;
          if (parent && isMap(parent)) {
            const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === k);
            if (pair && isScalar(pair.key) && pair.key.range) at = pos(pair.key.range[0]);
          }
          problems.push({ file, ...at, path: dotted([...i.path, k]), message: `unknown key ${JSON.stringify(k)}` });
        }
        continue;
      }
      problems.push({ file, ...locate(i.path), path: dotted(i.path), message: describeIssue(i) });
    }
    throw new ConfigError(problems);
  }
  return {
    value: r.data,
    doc,
    locate,
    source(path) {
      const n = nodeAt(path);
      if (n && isScalar(n) && n.range) return text.slice(n.range[0], n.range[1]);
      return undefined;
    },
  };
}
