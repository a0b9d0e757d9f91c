import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { ApkError } from "./errors.js";
import { parseIndexText } from "./index-text.js";
import { compareVersions, isValidVersion, sortVersions, versionSatisfies } from "./version.js";
import type { VersionOp } from "./dependency.js";
import { APK_REAL, noShared } from "../../../test/helpers/paths.js";

/** The APKINDEX text of an APKINDEX.tar.gz: gunzip every member, walk the tar headers. */
function readIndexText(rel: string): string {
  const tar = gunzipSync(readFileSync(`${APK_REAL}/${rel}`));
  for (let off = 0; off + 512 <= tar.length;) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const nul = header.subarray(0, 100).indexOf(0);
    const name = header.subarray(0, nul < 0 ? 100 : nul).toString("latin1");
    const size = parseInt(
      header
        .subarray(124, 136)
        .toString("latin1")
        .replace(/[\0 ]+$/, ""),
      8,
    );
    const body = off + 512;
    if (name === "APKINDEX") return tar.subarray(body, body + size).toString("utf8");
    off = body + Math.ceil(size / 512) * 512;
  }
  throw new Error(`no APKINDEX entry in ${rel}`);
}

/** Deterministic PRNG (mulberry32) so a failure reproduces. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function expectChain(chain: string[]) {
  for (let i = 0; i < chain.length; i++) {
    for (let j = 0; j < chain.length; j++) {
      const want = i < j ? -1 : i > j ? 1 : 0;
      expect(compareVersions(chain[i]!, chain[j]!), `${chain[i]} vs ${chain[j]}`).toBe(want);
    }
  }
}

describe("apk-format.md §5 examples", () => {
  it("pre-release suffixes < release < post-release suffixes", () => {
    expectChain([
      "1.0_alpha",
      "1.0_beta",
      "1.0_pre",
      "1.0_rc",
      "1.0",
      "1.0_cvs",
      "1.0_svn",
      "1.0_git",
      "1.0_hg",
      "1.0_p",
    ]);
    expectChain([
      "2.3_alpha1",
      "2.3_beta1",
      "2.3_pre1",
      "2.3_rc1",
      "2.3",
      "2.3_cvs1",
      "2.3_svn1",
      "2.3_git1",
      "2.3_hg1",
      "2.3_p1",
    ]);
  });

  it("-rN comes last", () => {
    expectChain(["1.0", "1.0-r0", "1.0-r1", "1.0-r2", "1.0-r10"]);
    expectChain(["1.0_p1-r9", "1.0_p2-r0"]);
    expectChain(["1.0_rc1-r5", "1.0-r0"]);
  });

  it("leading-zero components compare as decimal fractions", () => {
    expect(compareVersions("1.05", "1.5")).toBe(-1);
    expect(compareVersions("1.001", "1.01")).toBe(-1);
    expect(compareVersions("1.00", "1.0")).toBe(-1);
  });

  it("when one side runs out of tokens", () => {
    expect(compareVersions("1.0_rc1", "1.0")).toBe(-1);
    expect(compareVersions("1.0a", "1.0.1")).toBe(-1);
    expect(compareVersions("1.0-r1", "1.0.1")).toBe(-1);
    expect(compareVersions("1.0-r1", "1.0_p1")).toBe(-1);
    expect(compareVersions("1.0", "1.0-r0")).toBe(-1);
  });

  it("rejects the invalid examples and the empty string", () => {
    for (const v of ["1.2aa", "1.2a.3", "1.0_foo", "1.0-r1.2", ""]) {
      expect(isValidVersion(v), v).toBe(false);
    }
  });

  it("numbers up to 17 digits, compared without precision loss", () => {
    expect(isValidVersion("12345678901234567")).toBe(true);
    expect(isValidVersion("123456789012345678")).toBe(false);
    expect(isValidVersion("1.12345678901234567")).toBe(true);
    expect(isValidVersion("1.123456789012345678")).toBe(false);
    // apk counts the last leading zero of a dot component into the number it reads
    expect(isValidVersion("1.01234567890123456")).toBe(true);
    expect(isValidVersion("1.012345678901234567")).toBe(false);
    expect(isValidVersion("1.0000000000000000000000001")).toBe(true);
    expect(isValidVersion("1_p12345678901234567")).toBe(true);
    expect(isValidVersion("1_p123456789012345678")).toBe(false);
    expect(isValidVersion("1-r12345678901234567")).toBe(true);
    expect(isValidVersion("1-r123456789012345678")).toBe(false);
    // 2^53 + 1 and 2^53 are the same JS number; apk's 64-bit integers tell them apart.
    expect(compareVersions("9007199254740993", "9007199254740992")).toBe(1);
    expect(compareVersions("1.9007199254740993", "1.9007199254740992")).toBe(1);
    expect(compareVersions("1.0_pre20191002222144-r0", "1.0_pre20210530193627-r0")).toBe(-1);
    expect(compareVersions("1-r99999999999999999", "1-r99999999999999998")).toBe(1);
    expect(compareVersions("99999999999999999", "10000000000000000")).toBe(1);
  });
});

describe("isValidVersion", () => {
  const valid = [
    "0",
    "1",
    "006",
    "1.2.3",
    "1.2.3a",
    "1.0_alpha",
    "1.0_alpha1_beta2_p3",
    "0.1.0_alpha_pre2",
    "2.9.11_pre20051101-r2",
    "1.0-r0",
    "1.0-r123",
    "20220101",
    "1.2.3z-r4",
    // apk reads digits after the letter; real Alpine 3.16 versions use it
    "0.99f7-r0",
    "6.8.0p2-r4",
    "1.2a3.4",
    "1.2a3b4",
    "1.0a_rc1",
    "1.0_rc1-r0",
    "1.0-r01",
  ];
  const invalid = [
    "",
    "a",
    "a1",
    "1.",
    ".1",
    "1..2",
    "1.0_",
    "1.0-",
    "1.0-r",
    "1.0-rc1",
    "1.0-1",
    "1.0-r1-r2",
    "1.0-r1a",
    "1.0-r1_p1",
    "1.0_rc1.2",
    "1.0_rc1a",
    "1.0_rca",
    "1.0_RC1",
    "1.0_alphabeta",
    "1.0_pp",
    "1.0_pa",
    "1.0A",
    "1.0~abc",
    "v1.0",
    " 1.0",
    "1.0 ",
    "1,0",
    "1.0+git",
    "1.2aa",
    "1.2a.3",
    "1.0_foo",
    "1.0-r1.2",
    "1.0\n",
  ];
  it.each(valid)("accepts %j", (v) => expect(isValidVersion(v)).toBe(true));
  it.each(invalid)("rejects %j", (v) => expect(isValidVersion(v)).toBe(false));

  it("compareVersions throws ApkError INVALID_VERSION naming the version", () => {
    for (const bad of invalid) {
      let err: unknown;
      try {
        compareVersions("1.0", bad);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(ApkError);
      expect((err as ApkError).code).toBe("INVALID_VERSION");
      expect((err as ApkError).message).toContain(JSON.stringify(bad));
      expect(() => compareVersions(bad, "1.0")).toThrow(ApkError);
      expect(() => sortVersions(["1.0", bad])).toThrow(ApkError);
      expect(() => versionSatisfies(bad, ">=", "1.0")).toThrow(ApkError);
    }
  });
});

describe("compareVersions: cases derived from apk's token rules", () => {
  // [a, b, sign of compare(a, b)]
  const cases: Array<[string, string, -1 | 0 | 1]> = [
    ["1.0", "1.0", 0],
    ["1", "1.0", -1], // another component makes a version larger
    ["1.0", "1.0.0", -1],
    ["1.9", "1.10", -1],
    ["1.2.3", "1.2.10", -1],
    ["10", "9", 1],
    // the first component has no leading-zero rule
    ["006", "6", 0],
    ["06.1", "6.1", 0],
    ["1.06-r6", "006", -1],
    ["021109-r3", "3.0.0-r2", 1],
    // leading zeros after a dot: all but the last zero become a negative token
    ["1.0", "1.00", 1],
    ["1.00", "1.000", 1],
    ["1.0", "1.05", -1],
    ["1.05", "1.06", -1],
    ["1.005", "1.05", -1],
    ["1.0.05", "1.0.4", -1],
    ["1.0.010", "1.0.9", -1],
    ["1.05", "1.0", 1],
    ["4.01", "4.20", -1],
    ["4.09-r1", "4.5.14", -1],
    ["1.2.07.8", "1.2.12.04", -1],
    ["1.2.12.04", "1.2.12.05", -1],
    ["1.07-r1", "1.07.5", -1],
    ["1.07", "1.07.5", -1],
    ["0.98", "1.00", -1],
    ["2.01.01_alpha10", "0.94", 1],
    ["0.20070118", "0.20070207_rc1", -1],
    // letters
    ["1.0", "1.0a", -1],
    ["1.0a", "1.0b", -1],
    ["1.0z", "1.1", -1],
    ["1.7", "1.7b", -1],
    ["2.5.1-r8", "2.5.1a-r1", -1],
    ["1.0a", "1.0-r0", 1], // a letter is an earlier kind of token than a revision
    ["1.0a", "1.0_p1", 1],
    ["1.0a", "1.0_rc1", 1],
    ["1.0a_rc1", "1.0a", -1],
    ["1.6d", "1.2.07.8", 1],
    // digits after the letter
    ["6.8.0p1-r0", "6.8.0p2-r0", -1],
    ["6.8.0p2", "6.8.0p10", -1],
    ["0.99f7", "0.99f", 1],
    ["0.99f7", "0.99g", -1],
    ["1.0a01", "1.0a1", 0], // post-letter digits are a plain number
    ["1.2a3.4", "1.2a3", 1],
    // suffixes
    ["1.0_alpha", "1.0_alpha0", -1],
    ["1.0_alpha0", "1.0_alpha1", -1],
    ["1.0_alpha9", "1.0_alpha10", -1],
    ["1.0_alpha10", "1.0_beta", -1],
    ["1.0_rc99", "1.0", -1],
    ["1.0_p", "1.0_p0", -1],
    ["1.0", "1.0_p", -1],
    ["1.0_cvs", "1.0_p", -1],
    ["1.0_git20220101", "1.0_hg1", -1],
    ["1.0_pre", "1.0_p", -1],
    ["1.3_pre1-r1", "1.3.2", -1],
    ["0.1.0_alpha_pre2", "0.1.0_alpha", -1], // a pre-release suffix on the longer side
    ["0.1.0_alpha_p1", "0.1.0_alpha", 1],
    ["1.0_rc1_p2", "1.0_rc1", 1],
    ["1.0_rc1_p2", "1.0_rc2", -1],
    ["1.0_p1_rc1", "1.0_p1", -1],
    ["1.0_rc01", "1.0_rc1", 0],
    ["2.9.11_pre20051101-r3", "2.9.11_pre20051101", 1],
    ["0.10.0", "0.10.1_rc1", -1],
    ["1.8.5", "1.8.5_p2", -1],
    // revisions
    ["1.0-r9", "1.0-r10", -1],
    ["1.0-r01", "1.0-r1", 0],
    ["1.0-r00", "1.0-r0", 0],
    ["1.0-r100", "1.0.1", -1],
    ["1.0-r0", "1.0_p0", -1],
    ["1.0_rc1-r9", "1.0", -1],
    ["1.0-r0", "1.0a", -1],
    ["4.5_p1-r1", "4.5_p1", 1],
    ["3.1_p16", "3.1_p17", -1],
    ["2.12r-r4", "2.12r-r5", -1],
    ["20040406-r1", "2.12r-r4", 1],
    // kinds, when one side runs out: "." > letter > suffix (post) > suffix number > revision > end > pre-release
    ["1.0.1", "1.0a", 1],
    ["1.0a", "1.0_cvs", 1],
    ["1.0_p", "1.0_p1", -1],
    ["1.0_p1", "1.0_p-r1", 1],
    ["1.0_p-r1", "1.0_p", 1],
    ["1.0_p1", "1.0_p1-r0", -1],
  ];

  it.each(cases)("%s vs %s = %i (and the reverse)", (a, b, want) => {
    expect(compareVersions(a, b)).toBe(want);
    expect(compareVersions(b, a)).toBe(-want || 0);
  });
});

describe("sortVersions", () => {
  it("sorts ascending into a new array", () => {
    const input = ["1.0-r1", "1.0", "1.0_rc1", "1.0.1", "0.9", "1.0_p1", "1.0a"];
    const copy = [...input];
    const out = sortVersions(input);
    expect(out).toEqual(["0.9", "1.0_rc1", "1.0", "1.0-r1", "1.0_p1", "1.0a", "1.0.1"]);
    expect(input).toEqual(copy);
    expect(out).not.toBe(input);
  });

  it("is stable for versions that compare equal", () => {
    const equalGroups = [
      ["1.0-r1", "1.0-r01", "1.0-r001"],
      ["6", "06", "006"],
      ["1.2_rc1", "1.2_rc01"],
      ["0.99f7", "0.99f07"],
    ];
    const rand = prng(7);
    const all = equalGroups.flat();
    for (let round = 0; round < 50; round++) {
      const shuffled = [...all];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const sorted = sortVersions(shuffled);
      for (const group of equalGroups) {
        const inInput = shuffled.filter((v) => group.includes(v));
        const inOutput = sorted.filter((v) => group.includes(v));
        expect(inOutput).toEqual(inInput);
        // and they sit together
        const first = sorted.indexOf(inOutput[0]!);
        expect(sorted.slice(first, first + group.length)).toEqual(inOutput);
      }
    }
  });
});

describe("versionSatisfies", () => {
  const table: Array<[string, VersionOp, string, boolean]> = [
    ["1.2", "=", "1.2", true],
    ["1.2-r0", "=", "1.2", false],
    ["1.2-r01", "=", "1.2-r1", true],
    ["1.2", "<", "1.3", true],
    ["1.3", "<", "1.3", false],
    ["1.3_rc1", "<", "1.3", true],
    ["1.3", "<=", "1.3", true],
    ["1.3-r0", "<=", "1.3", false],
    ["1.4", ">", "1.3", true],
    ["1.3", ">", "1.3", false],
    ["1.3-r0", ">", "1.3", true],
    ["1.3", ">=", "1.3", true],
    ["1.3_rc9", ">=", "1.3", false],
    ["1.2.9", ">=", "1.3", false],
    // ~ is a token prefix match
    ["1.6", "~", "1.6", true],
    ["1.6.0", "~", "1.6", true],
    ["1.6.12", "~", "1.6", true],
    ["1.6-r3", "~", "1.6", true],
    ["1.6a", "~", "1.6", true],
    ["1.6_rc1", "~", "1.6", true],
    ["1.6_p2-r1", "~", "1.6", true],
    ["1.60", "~", "1.6", false],
    ["1.06", "~", "1.6", false],
    ["1.5.9", "~", "1.6", false],
    ["1.7", "~", "1.6", false],
    ["1", "~", "1.6", false],
    ["1.6", "~", "1.6.0", false],
    ["2.0", "~", "2", true],
    ["20", "~", "2", false],
    ["1.0.5", "~", "1.0", true],
    ["1.05", "~", "1.0", false],
    ["1.6.2-r1", "~", "1.6.2-r1", true],
    ["1.6.2-r10", "~", "1.6.2-r1", false],
    ["1.6.2-r1", "~", "1.6.2-r10", false],
    // >~ and <~: the fuzzy match, or strictly greater / less
    ["1.6_rc1", ">~", "1.6", true],
    ["1.6_rc1", ">=", "1.6", false],
    ["1.6.3", ">~", "1.6", true],
    ["1.7", ">~", "1.6", true],
    ["1.5.9", ">~", "1.6", false],
    ["1.6.3", "<~", "1.6", true],
    ["1.6.3", "<=", "1.6", false],
    ["1.5", "<~", "1.6", true],
    ["1.7", "<~", "1.6", false],
    ["1.60", "<~", "1.6", false],
  ];

  it.each(table)("%s %s %s is %s", (version, op, required, want) => {
    expect(versionSatisfies(version, op, required)).toBe(want);
  });

  it("every op agrees with compareVersions on non-fuzzy questions", () => {
    const vs = ["1.0", "1.0-r0", "1.0_rc1", "1.0.1", "1.1", "0.9", "1.00"];
    for (const a of vs) {
      for (const b of vs) {
        const c = compareVersions(a, b);
        expect(versionSatisfies(a, "=", b)).toBe(c === 0);
        expect(versionSatisfies(a, "<", b)).toBe(c < 0);
        expect(versionSatisfies(a, "<=", b)).toBe(c <= 0);
        expect(versionSatisfies(a, ">", b)).toBe(c > 0);
        expect(versionSatisfies(a, ">=", b)).toBe(c >= 0);
        // the fuzzy forms only ever widen the plain ones
        if (versionSatisfies(a, "=", b)) expect(versionSatisfies(a, "~", b)).toBe(true);
        if (versionSatisfies(a, ">=", b)) expect(versionSatisfies(a, ">~", b)).toBe(true);
        if (versionSatisfies(a, "<=", b)) expect(versionSatisfies(a, "<~", b)).toBe(true);
      }
    }
  });
});

describe.skipIf(noShared())("real Alpine 3.16 index", () => {
  const records = noShared() ? [] : parseIndexText(readIndexText("alpine-3.16/APKINDEX.tar.gz"));
  const versions = records.map((r) => r.version);

  it("has thousands of records", () => {
    expect(records.length).toBeGreaterThan(4000);
  });

  it("every V: validates", () => {
    const invalid = versions.filter((v) => !isValidVersion(v));
    expect(invalid).toEqual([]);
  });

  it("sorts all versions consistently", () => {
    const sorted = sortVersions(versions);
    expect(sorted).toHaveLength(versions.length);
    for (let i = 1; i < sorted.length; i++) {
      expect(compareVersions(sorted[i - 1]!, sorted[i]!)).toBeLessThanOrEqual(0);
    }
  });
});

describe("total order", () => {
  const alpine = [
    ...new Set((noShared() ? [] : parseIndexText(readIndexText("alpine-3.16/APKINDEX.tar.gz"))).map((r) => r.version)),
  ];

  // Versions built from a small alphabet so that shared prefixes, and thus
  // the tail rules, come up constantly.
  function tricky(rand: () => number): string {
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    let v = pick(["0", "1", "01", "2", "10", "9007199254740993", "9007199254740992"]);
    const dots = Math.floor(rand() * 4);
    for (let i = 0; i < dots; i++) v += pick([".0", ".00", ".000", ".05", ".5", ".50", ".1", ".01", ".001", ".10"]);
    v += pick(["", "", "", "a", "b", "z", "a1", "p2", "a01"]);
    const suffixes = Math.floor(rand() * 3);
    for (let i = 0; i < suffixes; i++) {
      v +=
        pick(["_alpha", "_beta", "_pre", "_rc", "_cvs", "_svn", "_git", "_hg", "_p"]) +
        pick(["", "0", "1", "01", "10"]);
    }
    v += pick(["", "", "-r0", "-r1", "-r01", "-r10"]);
    return v;
  }

  const rand = prng(20240516);
  const generated = Array.from({ length: 600 }, () => tricky(rand));
  const pool = [...alpine, ...generated];
  const draw = () => pool[Math.floor(rand() * pool.length)]!;
  const drawTricky = () => generated[Math.floor(rand() * generated.length)]!;

  it("generated versions are valid", () => {
    expect(generated.filter((v) => !isValidVersion(v))).toEqual([]);
  });

  it("is reflexive and antisymmetric on 4000 pairs", () => {
    for (let i = 0; i < 4000; i++) {
      const a = i % 2 ? draw() : drawTricky();
      const b = i % 3 ? draw() : drawTricky();
      expect(compareVersions(a, a)).toBe(0);
      expect(compareVersions(a, b), `${a} vs ${b}`).toBe(-compareVersions(b, a) || 0);
    }
  });

  it("is transitive on 4000 triples", () => {
    for (let i = 0; i < 4000; i++) {
      const [a, b, c] = i % 2 ? [drawTricky(), drawTricky(), drawTricky()] : [draw(), draw(), draw()];
      const ab = compareVersions(a, b);
      const bc = compareVersions(b, c);
      const ac = compareVersions(a, c);
      const msg = `${a} ${b} ${c}: ${ab} ${bc} ${ac}`;
      if (ab === 0 && bc === 0) expect(ac, msg).toBe(0);
      if (ab <= 0 && bc <= 0) expect(ac, msg).toBe(ab < 0 || bc < 0 ? -1 : 0);
      if (ab >= 0 && bc >= 0) expect(ac, msg).toBe(ab > 0 || bc > 0 ? 1 : 0);
    }
  });

  it("a sorted sample is ordered pairwise, not just between neighbours", () => {
    const sample = Array.from({ length: 300 }, (_, i) => (i % 2 ? draw() : drawTricky()));
    const sorted = sortVersions(sample);
    for (let i = 0; i < sorted.length; i++) {
      for (let j = i + 1; j < sorted.length; j++) {
        if (compareVersions(sorted[i]!, sorted[j]!) > 0) {
          expect.fail(`${sorted[i]} sorted before ${sorted[j]} but compares greater`);
        }
      }
    }
    // the order does not depend on the input order
    expect(
      sortVersions([...sample].reverse()).map((v) => sorted.findIndex((s) => compareVersions(s, v) === 0)),
    ).toEqual(sorted.map((v) => sorted.findIndex((s) => compareVersions(s, v) === 0)));
  });
});
