// Dependency tokens as they appear in `D:` / `i:` index fields, `depend =` /
// `install_if =` in .PKGINFO and lines of /etc/apk/world, and provide tokens
// (`p:` / `provides =`).
//
// apk itself accepts almost any byte in a name; this parser is deliberately
// narrower (the characters real indexes use) because a token apk cannot parse
// in a `D:` line makes it silently drop the rest of that line, and a writer
// should find out before apk does.

import { ApkError } from "./errors.js";
import { isValidVersion, versionSatisfies } from "./version.js";

export type VersionOp = "=" | "<" | "<=" | ">" | ">=" | "~" | ">~" | "<~";

export const VERSION_OPS: readonly VersionOp[] = ["=", "<", "<=", ">", ">=", "~", ">~", "<~"];

export interface Dependency {
  name: string;
  /** `!name`: the named package (version-constrained or not) must not be installed. */
  conflict: boolean;
  /** `name@tag`: only from repositories tagged so in /etc/apk/repositories. */
  tag?: string;
  op?: VersionOp;
  version?: string;
}

// `/` is for file dependencies (`/bin/sh`, still common in Alpine 3.16) and
// `[` for `cmd:[` (coreutils provides it).
const NAME_RE = /^[A-Za-z0-9+._:/[-]+$/;
const NAME_CHARS = "letters, digits and + - _ . : / [";
const TAG_RE = /^[A-Za-z0-9._-]+$/;
const OP_CHARS = /[<>=~]/;
const OP_RUN = /^[<>=~]+/;
const FORM = "[!]name[@tag][op version]";

function fail(token: string, what: string): never {
  throw new ApkError("INVALID_DEPENDENCY", `invalid dependency ${JSON.stringify(token)}: ${what}; expected ${FORM}`, {
    subject: token,
  });
}

function checkName(token: string, name: string, fieldWhat: string): void {
  if (name === "") fail(token, `empty ${fieldWhat}`);
  if (!NAME_RE.test(name)) {
    const bad = [...name].find((c) => !NAME_RE.test(c)) ?? name;
    fail(token, `${fieldWhat} ${JSON.stringify(name)} contains ${JSON.stringify(bad)} (allowed: ${NAME_CHARS})`);
  }
}

// apk reads an operator as the union of its characters' meanings (< less,
// > greater, = equal, ~ fuzzy and equal), so `==` is `=`, `~=` and `=~` are
// `~`, `=<` is `<=`. Each meaning kiln supports has one canonical spelling.
const LESS = 1;
const GREATER = 2;
const EQUAL = 4;
const FUZZY = 8;
const OP_BY_MASK: ReadonlyMap<number, VersionOp> = new Map([
  [EQUAL, "="],
  [LESS, "<"],
  [LESS | EQUAL, "<="],
  [GREATER, ">"],
  [GREATER | EQUAL, ">="],
  [FUZZY | EQUAL, "~"],
  [GREATER | FUZZY | EQUAL, ">~"],
  [LESS | FUZZY | EQUAL, "<~"],
]);
const OP_BITS: Record<string, number> = { "<": LESS, ">": GREATER, "=": EQUAL, "~": FUZZY | EQUAL };

/** The canonical operator apk reads `raw` as, or undefined (`><` and `<>=` are apk's, not kiln's). */
export function canonicalOp(raw: string): VersionOp | undefined {
  let mask = 0;
  for (const c of raw) mask |= OP_BITS[c] ?? 0;
  return OP_BY_MASK.get(mask);
}

/** Parse one dependency token `[!]name[@tag][op version]`. Throws ApkError INVALID_DEPENDENCY naming the token and what was expected. */
export function parseDependency(s: string): Dependency {
  if (s === "") fail(s, "empty token");
  if (/\s/.test(s)) fail(s, "contains whitespace (dependency lists are split on spaces before parsing)");

  const conflict = s.startsWith("!");
  const body = conflict ? s.slice(1) : s;

  const opAt = body.search(OP_CHARS);
  const nameTag = opAt < 0 ? body : body.slice(0, opAt);
  let op: VersionOp | undefined;
  let version: string | undefined;
  if (opAt >= 0) {
    const rest = body.slice(opAt);
    const rawOp = OP_RUN.exec(rest)![0];
    op = canonicalOp(rawOp);
    if (op === undefined)
      fail(
        s,
        `unknown operator ${JSON.stringify(rawOp)} (expected one of ${VERSION_OPS.join(" ")}, or a spelling apk reads as one, such as ==)`,
      );
    version = rest.slice(rawOp.length);
    if (version === "") fail(s, `missing version after ${JSON.stringify(rawOp)}`);
    if (!isValidVersion(version))
      fail(s, `${JSON.stringify(version)} after ${JSON.stringify(rawOp)} is not a valid apk version`);
  }

  let name = nameTag;
  let tag: string | undefined;
  const atAt = nameTag.indexOf("@");
  if (atAt >= 0) {
    name = nameTag.slice(0, atAt);
    tag = nameTag.slice(atAt + 1);
    if (!TAG_RE.test(tag))
      fail(s, `bad repository tag ${JSON.stringify(tag)} (expected letters, digits, . _ - after "@")`);
  }
  checkName(s, name, "name");

  const dep: Dependency = { name, conflict };
  if (tag !== undefined) dep.tag = tag;
  if (op !== undefined) {
    dep.op = op;
    dep.version = version!;
  }
  return dep;
}

/** The canonical token for a dependency; `formatDependency(parseDependency(s)) === s` for canonical `s`. */
export function formatDependency(d: Dependency): string {
  if ((d.op === undefined) !== (d.version === undefined)) {
    throw new ApkError(
      "INVALID_DEPENDENCY",
      `dependency on ${JSON.stringify(d.name)} has ${d.op === undefined ? "a version but no operator" : "an operator but no version"}`,
      { subject: d.name },
    );
  }
  const s = `${d.conflict ? "!" : ""}${d.name}${d.tag !== undefined ? "@" + d.tag : ""}${d.op !== undefined ? d.op + d.version : ""}`;
  // Re-parsing is the cheapest complete check that the fields cannot be
  // misread (a name holding "@" or ">" would come back different).
  const back = parseDependency(s);
  if (back.name !== d.name || back.tag !== d.tag || back.op !== d.op || back.version !== d.version) {
    throw new ApkError(
      "INVALID_DEPENDENCY",
      `dependency fields do not form a token apk reads back: ${JSON.stringify(s)}`,
      { subject: s },
    );
  }
  return s;
}

/**
 * Parse a provide token: `name` (virtual) or `name=version`. apk reads
 * provides with its dependency parser, so a leading `!` (which Wolfi writes
 * in a few provides) parses too; such a provide is marked `conflict` and kiln's
 * resolver does not count it as providing the name.
 */
export function parseProvide(s: string): { name: string; version?: string; conflict?: true } {
  if (s === "") fail(s, "empty provide");
  if (/\s/.test(s)) fail(s, "provide contains whitespace");
  const conflict = s.startsWith("!");
  const body = conflict ? s.slice(1) : s;
  const opAt = body.search(OP_CHARS);
  if (opAt < 0) {
    checkName(s, body, "provided name");
    return conflict ? { name: body, conflict } : { name: body };
  }
  const name = body.slice(0, opAt);
  const rest = body.slice(opAt);
  const rawOp = OP_RUN.exec(rest)![0];
  if (canonicalOp(rawOp) !== "=")
    fail(s, `a provide takes only "=" (got ${JSON.stringify(rawOp)}); expected name or name=version`);
  checkName(s, name, "provided name");
  const version = rest.slice(rawOp.length);
  if (!isValidVersion(version)) fail(s, `${JSON.stringify(version)} is not a valid apk version`);
  return conflict ? { name, version, conflict } : { name, version };
}

/**
 * Whether the package, by its own name and version or by one of its provides,
 * matches the dependency's name and version constraint. A provide without a
 * version matches only a dependency without a version constraint.
 *
 * For a conflict (`!name...`) this answers the same question — does the
 * package match the named constraint — and the caller decides that a match
 * means the package conflicts. Repository tags are ignored: which
 * repositories a tag admits is the resolver's business.
 */
export function packageSatisfies(
  pkg: { name: string; version: string; provides: readonly string[] },
  dep: Dependency,
): boolean {
  const matches = (version: string | undefined): boolean => {
    if (dep.op === undefined || dep.version === undefined) return true;
    if (version === undefined) return false;
    return versionSatisfies(version, dep.op, dep.version);
  };
  if (pkg.name === dep.name && matches(pkg.version)) return true;
  for (const p of pkg.provides) {
    const prov = parseProvide(p);
    if (!prov.conflict && prov.name === dep.name && matches(prov.version)) return true;
  }
  return false;
}

/**
 * Parse every token, throwing one ApkError that lists all invalid ones. An
 * invalid token in a `D:` line makes apk silently ignore the rest of the line,
 * so anything that writes dependency lists must call this first.
 */
export function validateDependencyList(tokens: readonly string[], where: string): Dependency[] {
  const out: Dependency[] = [];
  const problems: string[] = [];
  for (const t of tokens) {
    try {
      out.push(parseDependency(t));
    } catch (e) {
      if (!(e instanceof ApkError)) throw e;
      problems.push(e.message);
    }
  }
  if (problems.length) {
    // One problem stays on one line; several are listed one per line.
    const text =
      problems.length === 1 ? problems[0]! : `${problems.length} invalid dependencies:\n  ${problems.join("\n  ")}`;
    throw new ApkError("INVALID_DEPENDENCY", `${where}: ${text}`, { subject: where });
  }
  return out;
}

/** Like validateDependencyList, for `provides` (name or name=version only); one error lists every bad token. */
export function validateProvideList(tokens: readonly string[], where: string): void {
  const bad: string[] = [];
  for (const t of tokens) {
    try {
      parseProvide(t);
    } catch (e) {
      bad.push((e as Error).message);
    }
  }
  if (bad.length)
    throw new ApkError(
      "INVALID_DEPENDENCY",
      `${where}: ${bad.length} invalid provide${bad.length > 1 ? "s" : ""}: ${bad.join("; ")}`,
      { subject: where },
    );
}
