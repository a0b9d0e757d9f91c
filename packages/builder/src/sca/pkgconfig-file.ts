// pkg-config `.pc` files: variables, fields and module lists, and the
// mapping of an upstream version onto one apk accepts.

import { isValidVersion } from "@kiln/apk";

export interface PkgConfigFile {
  name: string;
  version?: string;
  requires: string[];
  requiresPrivate: string[];
  variables: Record<string, string>;
  fields: Record<string, string>;
}

/** Parse a .pc file: variables expanded (`${var}`, `$$`), `pcfiledir` predefined as `pcfiledir`. */
export function parsePkgConfig(text: string, name: string, pcfiledir = ""): PkgConfigFile {
  const raw: Record<string, string> = { pcfiledir, pc_sysrootdir: "" };
  const fieldsRaw: Record<string, string> = {};
  const lines = text.replace(/\\\r?\n/g, " ").split(/\r?\n/);
  for (let line of lines) {
    // Comments run from an unescaped "#" to the end of the line.
    line = line
      .replace(/(^|[^\\])#.*$/, "$1")
      .replace(/\\#/g, "#")
      .trim();
    if (line === "") continue;
    const m = /^([A-Za-z0-9_.]+)\s*([:=])\s*(.*)$/.exec(line);
    if (!m) continue;
    if (m[2] === "=") raw[m[1]!] = m[3]!;
    else fieldsRaw[m[1]!] = m[3]!;
  }
  const cache = new Map<string, string>();
  const expand = (v: string, depth: number): string => {
    if (depth > 64) throw new Error(`${name}.pc: variable expansion loops`);
    return v.replace(/\$\$|\$\{([^}]*)\}/g, (all, ref: string | undefined) => {
      if (all === "$$") return "$";
      const r = ref!;
      if (cache.has(r)) return cache.get(r)!;
      const val = raw[r] === undefined ? "" : expand(raw[r]!, depth + 1);
      cache.set(r, val);
      return val;
    });
  };
  const variables: Record<string, string> = {};
  for (const k of Object.keys(raw)) variables[k] = expand(raw[k]!, 0);
  const fields: Record<string, string> = {};
  for (const k of Object.keys(fieldsRaw)) fields[k] = expand(fieldsRaw[k]!, 0);
  const get = (k: string): string | undefined => {
    const key = Object.keys(fields).find((x) => x.toLowerCase() === k.toLowerCase());
    return key === undefined ? undefined : fields[key];
  };
  const version = get("Version")?.trim();
  return {
    name,
    ...(version ? { version } : {}),
    requires: splitModuleList(get("Requires") ?? ""),
    requiresPrivate: splitModuleList(get("Requires.private") ?? ""),
    variables,
    fields,
  };
}

/** pkg-config's module list: `a, b >= 1.2 c` → ["a", "b >= 1.2", "c"]. */
export function splitModuleList(s: string): string[] {
  const toks = s.match(/[<>!=]=?|[^\s,<>!=]+/g) ?? [];
  const out: string[] = [];
  for (let i = 0; i < toks.length; i++) {
    const name = toks[i]!;
    if (/^[<>!=]/.test(name)) continue; // a stray operator
    const op = toks[i + 1];
    const ver = toks[i + 2];
    if (op !== undefined && /^[<>!=]=?$/.test(op) && ver !== undefined && !/^[<>!=]/.test(ver)) {
      out.push(`${name} ${op} ${ver}`);
      i += 2;
    } else out.push(name);
  }
  return out;
}

/** A version apk accepts, from an upstream one (1.2.3-rc1 → 1.2.3_rc1), or undefined. */
export function toApkVersion(v: string): string | undefined {
  if (isValidVersion(v)) return v;
  const a = v
    .trim()
    .toLowerCase()
    .replace(/[-.~]?(alpha|beta|pre|rc)(\d*)/g, "_$1$2");
  if (isValidVersion(a)) return a;
  return undefined;
}
