// melange reads many YAML scalars into Go strings, so `1.10`, `1` and `true`
// mean the text as written. The YAML parser turns them into numbers and
// booleans; this puts the source text back at the places that are strings.

import type { LoadedYaml } from "@kiln/core";

export type PathPattern = ReadonlyArray<string | number>;

function matches(pattern: PathPattern, path: ReadonlyArray<string | number>, pi = 0, i = 0): boolean {
  if (pi === pattern.length) return i === path.length;
  const p = pattern[pi];
  if (p === "**") {
    for (let k = i; k <= path.length; k++) if (matches(pattern, path, pi + 1, k)) return true;
    return false;
  }
  if (i === path.length) return false;
  return (p === "*" || p === path[i]) && matches(pattern, path, pi + 1, i + 1);
}

/** Replace numbers and booleans found at `patterns` (`*` one segment, `**` any number) by their YAML source text, in place. */
export function normalizeScalars(
  value: unknown,
  loaded: Pick<LoadedYaml<unknown>, "source">,
  patterns: PathPattern[],
): void {
  const walk = (node: unknown, path: Array<string | number>) => {
    if (Array.isArray(node)) {
      node.forEach((child, i) => {
        if (typeof child === "number" || typeof child === "boolean") {
          if (patterns.some((p) => matches(p, [...path, i]))) node[i] = loaded.source([...path, i]) ?? String(child);
        } else walk(child, [...path, i]);
      });
    } else if (node && typeof node === "object") {
      const obj = node as Record<string, unknown>;
      for (const [k, child] of Object.entries(obj)) {
        if (typeof child === "number" || typeof child === "boolean") {
          if (patterns.some((p) => matches(p, [...path, k]))) obj[k] = loaded.source([...path, k]) ?? String(child);
        } else walk(child, [...path, k]);
      }
    }
  };
  walk(value, []);
}
