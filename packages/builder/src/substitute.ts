// `${{ name }}` substitutions as melange performs them: the variable table a
// recipe sees (package, targets, build/host/cross triplets, vars,
// var-transforms, subpackage, range and pipeline inputs), strict lookup
// (an undefined name is an error naming it), and Go regexp replacement for
// var-transforms.

import { apkoArchName, KilnError } from "@kiln/core";
import { posix } from "node:path";

/** The guest's build workspace, as in melange. */
export const WORKSPACE_DIR = "/home/build";
/** Where each package's files are installed before packaging: `${{targets.outdir}}/<name>`. */
export const OUT_DIR = `${WORKSPACE_DIR}/melange-out`;

export class SubstitutionError extends KilnError {
  readonly code = "UNDEFINED_VARIABLE";
  constructor(
    message: string,
    /** The variable names that are not defined (empty for a malformed reference). */
    readonly variables: string[],
  ) {
    super(message);
    this.name = "SubstitutionError";
  }
}

export type Variables = ReadonlyMap<string, string>;

export interface Reference {
  /** The variable name, without `${{ }}`. */
  name: string;
  /** Offset of `${{` in the text. */
  index: number;
  /** The whole reference as written, e.g. `${{ package.name }}`. */
  text: string;
}

// melange's grammar (pkg/cond/subst.go): `${{`, spaces, [a-zA-Z0-9.-_]+, spaces, `}}`.
const REF_RE = /\$\{\{ *([a-zA-Z0-9._-]+) *\}\}/y;

/** Every `${{ name }}` reference in `text`; a `${{` that does not start a well-formed reference is returned in `malformed`. */
export function scanReferences(text: string): { refs: Reference[]; malformed: number[] } {
  const refs: Reference[] = [];
  const malformed: number[] = [];
  let i = text.indexOf("${{");
  while (i !== -1) {
    REF_RE.lastIndex = i;
    const m = REF_RE.exec(text);
    if (m) {
      refs.push({ name: m[1]!, index: i, text: m[0] });
      i = text.indexOf("${{", i + m[0].length);
    } else {
      malformed.push(i);
      i = text.indexOf("${{", i + 3);
    }
  }
  return { refs, malformed };
}

/** The longest value one substitution may produce (a script, a URI): far above any real recipe, far below what exhausts memory. */
export const MAX_SUBSTITUTED_LENGTH = 1 << 20;

export interface SubstituteResult {
  /** The result; when `overflow` is set, only its first `maxLength` characters or so. */
  value: string;
  /** True when the result would be longer than `maxLength`: building it stopped there. */
  overflow?: boolean;
  /** Undefined references, in order of appearance (left in `value` as written). */
  undefined: Reference[];
  /** Offsets of malformed `${{`. */
  malformed: number[];
}

/**
 * Replace each `${{ name }}` in `text` by its value. Substitution is a single
 * pass, as in melange: a value containing `${{ }}` is inserted as is.
 * `quote` wraps each value in double quotes (Go strconv.Quote style), which is
 * how melange prepares `if:` expressions.
 */
export function substituteCollect(
  text: string,
  vars: Variables,
  quote = false,
  maxLength = MAX_SUBSTITUTED_LENGTH,
): SubstituteResult {
  const { refs, malformed } = scanReferences(text);
  if (refs.length === 0) return { value: text, undefined: [], malformed };
  const missing: Reference[] = [];
  let out = "";
  let last = 0;
  for (const r of refs) {
    out += text.slice(last, r.index);
    const v = vars.get(r.name);
    if (v === undefined) {
      // Kept as written, so later checks can tell the value is incomplete.
      missing.push(r);
      out += r.text;
    } else out += quote ? quoteString(v) : v;
    last = r.index + r.text.length;
    // Variables that refer to each other can grow exponentially: stop before memory does.
    if (out.length > maxLength)
      return { value: out.slice(0, maxLength), overflow: true, undefined: missing, malformed };
  }
  out += text.slice(last);
  if (out.length > maxLength) return { value: out.slice(0, maxLength), overflow: true, undefined: missing, malformed };
  return { value: out, undefined: missing, malformed };
}

/** Like substituteCollect, but throws SubstitutionError on an undefined or malformed reference. */
export function substitute(text: string, vars: Variables, quote = false): string {
  const r = substituteCollect(text, vars, quote);
  if (r.overflow)
    throw new SubstitutionError(`the substituted value is longer than ${MAX_SUBSTITUTED_LENGTH} characters`, []);
  if (r.undefined.length) {
    const names = [...new Set(r.undefined.map((u) => u.name))];
    throw new SubstitutionError(
      `undefined variable${names.length > 1 ? "s" : ""} ${names.map((n) => "${{" + n + "}}").join(", ")}`,
      names,
    );
  }
  if (r.malformed.length)
    throw new SubstitutionError(`malformed variable reference at offset ${r.malformed[0]} (expected \${{ name }})`, []);
  return r.value;
}

/** A double-quoted string literal for an `if:` expression (Go strconv.Quote for printable text). */
export function quoteString(s: string): string {
  return `"${s
    .replace(/[\\"]/g, (c) => `\\${c}`)
    .replace(/\n/g, "\\n")
    .replace(/\t/g, "\\t")}"`;
}

// --- architectures ---------------------------------------------------------

interface Triplets {
  gnu: string;
  rust: string;
}

// apko's Architecture.ToTriplet / ToRustTriplet, keyed by apk arch (String(), the goarch, is @kiln/core's apkoArchName).
const ARCHS: Record<string, Triplets> = {
  x86_64: { gnu: "x86_64-pc-linux-", rust: "x86_64-unknown-linux-" },
  aarch64: { gnu: "aarch64-unknown-linux-", rust: "aarch64-unknown-linux-" },
  x86: { gnu: "i486-pc-linux-", rust: "i686-unknown-linux-" },
  armhf: { gnu: "arm-unknown-linux-%eabihf", rust: "armv6-unknown-linux-%eabihf" },
  armv7: { gnu: "armv7l-unknown-linux-%eabihf", rust: "armv7-unknown-linux-%eabihf" },
  ppc64le: { gnu: "powerpc64le-unknown-linux-", rust: "powerpc64le-unknown-linux-" },
  s390x: { gnu: "s390x-ibm-linux-", rust: "s390x-unknown-linux-" },
  riscv64: { gnu: "riscv64-unknown-linux-", rust: "riscv64gc-unknown-linux-" },
};

function triplet(pattern: string, flavor: string): string {
  return pattern.includes("%") ? pattern.replace("%", flavor) : pattern + flavor;
}

/** The apk architectures kiln knows triplets for. */
export const KNOWN_ARCHS = Object.keys(ARCHS);

/** Variables that depend on the target architecture only. */
export function archVariables(arch: string): Map<string, string> {
  const a = ARCHS[arch];
  if (!a) throw new Error(`unknown architecture ${JSON.stringify(arch)} (expected one of ${KNOWN_ARCHS.join(", ")})`);
  return new Map([
    ["build.arch", arch],
    ["build.goarch", apkoArchName(arch)!],
    // kiln builds a glibc distribution: the host flavour is always gnu.
    ["host.triplet.gnu", triplet(a.gnu, "gnu")],
    ["host.triplet.rust", triplet(a.rust, "gnu")],
    ["cross.triplet.gnu.glibc", triplet(a.gnu, "gnu")],
    ["cross.triplet.gnu.musl", triplet(a.gnu, "musl")],
    ["cross.triplet.rust.glibc", triplet(a.rust, "gnu")],
    ["cross.triplet.rust.musl", triplet(a.rust, "musl")],
  ]);
}

export interface PackageVariablesInput {
  name: string;
  version: string;
  epoch: number;
  description?: string;
  /** Names of every package the recipe produces (main first), for `targets.package.NAME`. */
  packageNames?: string[];
}

/** `package.*`, `targets.*` and `context.name` for the main package. */
export function packageVariables(p: PackageVariablesInput): Map<string, string> {
  const m = new Map<string, string>([
    ["package.name", p.name],
    ["package.version", p.version],
    ["package.epoch", String(p.epoch)],
    ["package.full-version", `${p.version}-r${p.epoch}`],
    ["package.description", p.description ?? ""],
    ["package.srcdir", WORKSPACE_DIR],
    ["targets.outdir", OUT_DIR],
    ["targets.destdir", `${OUT_DIR}/${p.name}`],
    ["targets.contextdir", `${OUT_DIR}/${p.name}`],
    ["context.name", p.name],
  ]);
  for (const n of p.packageNames ?? [p.name]) m.set(`targets.package.${n}`, `${OUT_DIR}/${n}`);
  return m;
}

/** The variables of a subpackage's context, on top of the recipe's. */
export function subpackageVariables(base: Variables, name: string): Map<string, string> {
  const m = new Map(base);
  m.set("subpkg.name", name);
  m.set("context.name", name);
  m.set("targets.subpkgdir", `${OUT_DIR}/${name}`);
  m.set("targets.contextdir", `${OUT_DIR}/${name}`);
  return m;
}

/** `working-directory` as melange resolves it: relative to the workspace. */
export function resolveWorkdir(wd: string | undefined): string {
  if (!wd) return WORKSPACE_DIR;
  return wd.startsWith("/") ? posix.normalize(wd) : posix.join(WORKSPACE_DIR, wd);
}

// --- Go regular expressions -------------------------------------------------

export class RegexpError extends KilnError {
  readonly code = "INVALID_REGEXP";
}

const POSIX_CLASSES: Record<string, string> = {
  alnum: "0-9A-Za-z",
  alpha: "A-Za-z",
  ascii: "\\x00-\\x7F",
  blank: "\\t ",
  cntrl: "\\x00-\\x1F\\x7F",
  digit: "0-9",
  graph: "!-~",
  lower: "a-z",
  print: " -~",
  punct: "!-\\/:-@\\[-`{-~",
  space: "\\t\\n\\v\\f\\r ",
  upper: "A-Z",
  word: "0-9A-Za-z_",
  xdigit: "0-9A-Fa-f",
};

/** Compile an RE2 (Go regexp) pattern into an equivalent JavaScript RegExp, for the syntax recipes use. */
export function goRegexp(pattern: string): RegExp {
  let src = pattern;
  let flags = "g";
  // Leading flag groups: (?i) (?s) (?m) (?is)…
  const lead = /^\(\?([imsU]+)\)/.exec(src);
  if (lead) {
    for (const f of lead[1]!) {
      if (f === "U") throw new RegexpError(`the (?U) flag is not supported in ${JSON.stringify(pattern)}`);
      if (!flags.includes(f)) flags += f;
    }
    src = src.slice(lead[0].length);
  }
  src = src
    .replace(/\(\?P</g, "(?<")
    .replace(/\[:(\^?)([a-z]+):\]/g, (_all, neg: string, name: string) => {
      const cls = POSIX_CLASSES[name];
      if (!cls) throw new RegexpError(`unknown character class [:${name}:] in ${JSON.stringify(pattern)}`);
      if (neg)
        throw new RegexpError(`negated character class [:^${name}:] is not supported in ${JSON.stringify(pattern)}`);
      return cls;
    })
    .replace(/\\A/g, "^")
    .replace(/\\z/g, "$(?![\\s\\S])");
  try {
    return new RegExp(src, flags);
  } catch (e) {
    throw new RegexpError(
      `invalid regular expression ${JSON.stringify(pattern)}: ${(e as Error).message.replace(/^Invalid regular expression: /, "")}`,
    );
  }
}

// Go's regexp.extract: a `$name` / `${name}` reference in a replacement template.
function extractName(s: string): { name: string; num: number; rest: string } | undefined {
  let str = s;
  let brace = false;
  if (str[0] === "{") {
    brace = true;
    str = str.slice(1);
  }
  const m = /^[\p{L}\p{Nd}_]+/u.exec(str);
  if (!m) return undefined;
  const name = m[0];
  let i = name.length;
  if (brace) {
    if (str[i] !== "}") return undefined;
    i++;
  }
  let num = /^\d+$/.test(name) && name.length < 9 ? Number(name) : -1;
  if (name[0] === "0" && name.length > 1) num = -1;
  return { name, num, rest: str.slice(i) };
}

/** Go's Regexp.Expand for one match: `$1`, `${1}`, `$name`, `${name}`, `$$`; unknown groups expand to nothing. */
function expandTemplate(template: string, m: RegExpExecArray, maxLength: number): string {
  let out = "";
  let t = template;
  for (;;) {
    const k = t.indexOf("$");
    if (k === -1) break;
    out += t.slice(0, k);
    t = t.slice(k + 1);
    if (t[0] === "$") {
      out += "$";
      t = t.slice(1);
      continue;
    }
    const ref = extractName(t);
    if (!ref) {
      out += "$";
      continue;
    }
    t = ref.rest;
    if (ref.num >= 0) out += m[ref.num] ?? "";
    else out += m.groups?.[ref.name] ?? "";
    if (out.length > maxLength) throw new RegexpError(`the replacement result is longer than ${maxLength} characters`);
  }
  return out + t;
}

/**
 * Go's Regexp.ReplaceAllString: every non-overlapping match replaced by the
 * expanded template; an empty match right after a previous match is skipped.
 */
export function goReplaceAll(re: RegExp, input: string, template: string, maxLength = MAX_SUBSTITUTED_LENGTH): string {
  const g = re.global ? re : new RegExp(re.source, re.flags + "g");
  g.lastIndex = 0;
  let out = "";
  let last = 0;
  let prevEnd = -1;
  for (;;) {
    const m = g.exec(input);
    if (!m) break;
    const start = m.index;
    const end = start + m[0].length;
    if (m[0].length === 0) {
      g.lastIndex = end + 1;
      if (start === prevEnd) {
        if (g.lastIndex > input.length) break;
        continue;
      }
    }
    out += input.slice(last, start) + expandTemplate(template, m, maxLength);
    if (out.length > maxLength) throw new RegexpError(`the replacement result is longer than ${maxLength} characters`);
    last = end;
    prevEnd = end;
    if (g.lastIndex > input.length) break;
  }
  out += input.slice(last);
  if (out.length > maxLength) throw new RegexpError(`the replacement result is longer than ${maxLength} characters`);
  return out;
}
