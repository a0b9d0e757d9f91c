// apk version strings: validation, ordering and constraint matching, following
// apk-tools 2.14 (src/version.c) token for token.
//
// apk does not compare versions as dotted integers. It splits a version into a
// stream of typed tokens and compares them pairwise; where the two streams
// part, the *type* of the next token decides. Two consequences that surprise
// people and that this module reproduces on purpose:
//   - a dot component with a leading zero reads as a fraction, so
//     1.05 < 1.5 and 1.00 < 1.0;
//   - 1.0 and 1.0.0 are different versions (1.0 < 1.0.0), and 1.0 < 1.0-r0.

import type { VersionOp } from "./dependency.js";
import { ApkError } from "./errors.js";

// Token kinds. The numeric order is load-bearing: when two versions agree on
// every token so far but continue with tokens of different kinds, the side
// whose next kind is numerically *larger* is the smaller version (END being
// the largest, a version that stops is older than one that goes on).
const DOT_DIGITS = 0; // a component introduced by "."
const DIGITS = 1; // the first component, digits after a letter, or the rest of a zero-led component
const LETTER = 2;
const SUFFIX = 3;
const SUFFIX_NO = 4;
const REVISION = 5;
const END = 6;

const PRE_SUFFIXES = ["alpha", "beta", "pre", "rc"] as const;
const POST_SUFFIXES = ["cvs", "svn", "git", "hg", "p"] as const;

// apk stores numbers in 64 bits and refuses a digit run of 18 or more
// characters rather than overflow; keep exactly that limit so a version we
// accept is one apk accepts.
const MAX_DIGITS = 17;

interface Token {
  kind: number;
  value: bigint;
}

type Tokenized = { ok: true; tokens: Token[] } | { ok: false; reason: string };

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

function isLower(c: string | undefined): boolean {
  return c !== undefined && c >= "a" && c <= "z";
}

function suffixValue(word: string): number | undefined {
  // Pre-release suffixes are negative so that they sort below "no suffix";
  // the tail rule in compareTokens relies on that sign.
  const pre = (PRE_SUFFIXES as readonly string[]).indexOf(word);
  if (pre >= 0) return pre - PRE_SUFFIXES.length;
  const post = (POST_SUFFIXES as readonly string[]).indexOf(word);
  if (post >= 0) return post;
  return undefined;
}

/*
 * The accepted language is apk 2.14's, minus forms where apk only accepts an
 * empty component by accident of its scanner (the empty string, "1.", "1..2",
 * "1.0_", "1.0-r", a leading letter) and minus a repeated "-rN". Every string
 * accepted here is accepted by apk, and compares the way apk compares it.
 * apk also accepts digits after the letter ("6.8.0p2", "0.99f7"); real Alpine
 * indexes carry such versions, so they are accepted too.
 */
function tokenize(v: string): Tokenized {
  const tokens: Token[] = [];
  const n = v.length;
  let i = 0;
  const fail = (reason: string): Tokenized => ({ ok: false, reason });
  const readDigits = (): string => {
    const start = i;
    while (i < n && isDigit(v[i])) i++;
    return v.slice(start, i);
  };

  const first = readDigits();
  if (first === "") return fail(i < n ? `expected a digit at offset 0, got ${JSON.stringify(v[0])}` : "empty version");
  if (first.length > MAX_DIGITS) return fail(`number ${first} has more than ${MAX_DIGITS} digits`);
  tokens.push({ kind: DIGITS, value: BigInt(first) });

  // What the previous token allows next.
  let after: "digits" | "letter" | "suffix" | "revision" = "digits";
  while (i < n) {
    const c = v[i]!;
    const at = i;
    if (c === ".") {
      if (after !== "digits") return fail(`"." at offset ${at} is not allowed after a ${after}`);
      i++;
      const comp = readDigits();
      if (comp === "") return fail(`expected digits after "." at offset ${at}`);
      const bad = pushDotComponent(tokens, comp);
      if (bad !== undefined) return fail(bad);
      after = "digits";
    } else if (isLower(c)) {
      if (after !== "digits")
        return fail(`letter ${JSON.stringify(c)} at offset ${at} is not allowed after a ${after}`);
      i++;
      tokens.push({ kind: LETTER, value: BigInt(c.charCodeAt(0)) });
      after = "letter";
      if (isDigit(v[i])) {
        const digits = readDigits();
        if (digits.length > MAX_DIGITS) return fail(`number ${digits} has more than ${MAX_DIGITS} digits`);
        tokens.push({ kind: DIGITS, value: BigInt(digits) });
        after = "digits";
      }
    } else if (c === "_") {
      if (after === "revision") return fail(`suffix at offset ${at} is not allowed after the -rN revision`);
      i++;
      const start = i;
      while (i < n && isLower(v[i])) i++;
      const word = v.slice(start, i);
      const sv = suffixValue(word);
      if (sv === undefined) {
        return fail(
          `unknown suffix ${JSON.stringify("_" + word)} at offset ${at} (expected one of ${[...PRE_SUFFIXES, ...POST_SUFFIXES].map((s) => "_" + s).join(" ")})`,
        );
      }
      tokens.push({ kind: SUFFIX, value: BigInt(sv) });
      after = "suffix";
      if (isDigit(v[i])) {
        const digits = readDigits();
        if (digits.length > MAX_DIGITS) return fail(`number ${digits} has more than ${MAX_DIGITS} digits`);
        tokens.push({ kind: SUFFIX_NO, value: BigInt(digits) });
      }
    } else if (c === "-") {
      if (v[i + 1] !== "r") return fail(`"-" at offset ${at} must start a "-rN" revision`);
      if (after === "revision") return fail(`second revision at offset ${at}`);
      i += 2;
      const digits = readDigits();
      if (digits === "") return fail(`expected digits after "-r" at offset ${at}`);
      if (digits.length > MAX_DIGITS) return fail(`number ${digits} has more than ${MAX_DIGITS} digits`);
      tokens.push({ kind: REVISION, value: BigInt(digits) });
      after = "revision";
    } else {
      return fail(`unexpected ${JSON.stringify(c)} at offset ${at}`);
    }
  }
  return { ok: true, tokens };
}

/** Push the tokens of the digits `comp` after a "."; returns why they are refused, if they are. */
function pushDotComponent(tokens: Token[], comp: string): string | undefined {
  if (comp[0] === "0") {
    // apk turns all but the last leading zero into one negative token,
    // then reads the remaining digits (last zero included) as a number:
    // "05" -> 0, 5 ; "005" -> -1, 5 ; "00" -> -1, 0.
    let zeros = 0;
    while (comp[zeros] === "0") zeros++;
    const extra = zeros - 1;
    const rest = comp.slice(extra);
    if (rest.length > MAX_DIGITS) return `number ${comp} has more than ${MAX_DIGITS} digits after its leading zeros`;
    tokens.push({ kind: DOT_DIGITS, value: BigInt(-extra) }, { kind: DIGITS, value: BigInt(rest) });
  } else {
    if (comp.length > MAX_DIGITS) return `number ${comp} has more than ${MAX_DIGITS} digits`;
    tokens.push({ kind: DOT_DIGITS, value: BigInt(comp) });
  }
  return undefined;
}

function tokensOf(v: string): Token[] {
  const t = tokenize(v);
  if (!t.ok) throw new ApkError("INVALID_VERSION", `invalid version ${JSON.stringify(v)}: ${t.reason}`, { subject: v });
  return t.tokens;
}

/**
 * The walk shared by exact and fuzzy comparison. With `fuzzy`, `b` running out
 * of tokens while everything so far matched makes the two equal: that is what
 * `~` means ("b is a token prefix of a").
 */
function compareTokens(a: Token[], b: Token[], fuzzy: boolean): -1 | 0 | 1 {
  // Both streams start with a DIGITS token, and the loop only advances while
  // the next kinds agree, so position k always holds tokens of one kind.
  for (let k = 0; ; k++) {
    const av = a[k]!.value;
    const bv = b[k]!.value;
    if (av !== bv) return av < bv ? -1 : 1;
    const na = a[k + 1];
    const nb = b[k + 1];
    const ka = na ? na.kind : END;
    const kb = nb ? nb.kind : END;
    if (ka === kb) {
      if (ka === END) return 0;
      continue;
    }
    if (fuzzy && kb === END) return 0;
    // A pre-release suffix makes the longer version the older one: 1.0_rc1 < 1.0.
    if (ka === SUFFIX && na!.value < 0n) return -1;
    if (kb === SUFFIX && nb!.value < 0n) return 1;
    return ka > kb ? -1 : 1;
  }
}

/** Whether apk-tools 2.14 accepts `v` as a version (see the note on tokenize for the few degenerate forms refused). */
export function isValidVersion(v: string): boolean {
  return tokenize(v).ok;
}

/** apk's ordering: -1 if a < b, 0 if equal, 1 if a > b. Throws ApkError INVALID_VERSION for an invalid input. */
export function compareVersions(a: string, b: string): -1 | 0 | 1 {
  return compareTokens(tokensOf(a), tokensOf(b), false);
}

/** Ascending order as apk sorts; a new array, stable for versions that compare equal (e.g. "1.0-r1" and "1.0-r01"). */
export function sortVersions(vs: readonly string[]): string[] {
  const keyed = vs.map((v) => ({ v, t: tokensOf(v) }));
  keyed.sort((x, y) => compareTokens(x.t, y.t, false));
  return keyed.map((k) => k.v);
}

/**
 * Whether `version` satisfies `op required`, as apk matches a dependency.
 * `~1.6` is a prefix match on tokens: 1.6, 1.6.2, 1.6a, 1.6_rc1, 1.6-r3 match,
 * 1.60 and 1.06 do not. `>~` / `<~` are that fuzzy match or strictly
 * greater / less, so 1.6_rc1 satisfies `>~1.6` but not `>=1.6`.
 *
 * Some apk 2.x sources also call the versions fuzzy-equal when the *installed*
 * version is the shorter one (1 "~" 1.6); that contradicts the documented
 * prefix meaning and apk 3, so only `required` running out counts here.
 */
export function versionSatisfies(version: string, op: VersionOp, required: string): boolean {
  const a = tokensOf(version);
  const b = tokensOf(required);
  switch (op) {
    case "=":
      return compareTokens(a, b, false) === 0;
    case "<":
      return compareTokens(a, b, false) < 0;
    case "<=":
      return compareTokens(a, b, false) <= 0;
    case ">":
      return compareTokens(a, b, false) > 0;
    case ">=":
      return compareTokens(a, b, false) >= 0;
    case "~":
      return compareTokens(a, b, true) === 0;
    case ">~":
      return compareTokens(a, b, true) >= 0;
    case "<~":
      return compareTokens(a, b, true) <= 0;
    default: {
      const never: never = op;
      throw new ApkError("INVALID_DEPENDENCY", `unknown version operator ${JSON.stringify(never)}`);
    }
  }
}
