// Loading YAML configs against a zod schema, reporting every problem at once
// with file:line:column, the dotted path, and what was expected.

import { KilnError } from "@kiln/core";
import { isMap, isScalar, LineCounter, parseDocument, type Document, type Node as YNode } from "yaml";
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
      return i.received === "undefined" ? `required: expected ${i.expected}` : `expected ${i.expected}, got ${i.received}`;
    case "unrecognized_keys":
      return `unknown key${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => JSON.stringify(k)).join(", ")}`;
    case "invalid_enum_value":
      return `expected one of ${i.options.map((o) => JSON.stringify(o)).join(", ")}, got ${JSON.stringify(i.received)}`;
    default:
      return i.message;
  }
}

export function loadYaml<T>(file: string, text: string, schema: ZodType<T, ZodTypeDef, unknown>): LoadedYaml<T> {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
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
  const raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
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
