import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ApkError } from "./errors.js";
import { newIndexRecord } from "./index-text.js";
import {
  formatInstalledDb,
  formatRepositories,
  formatWorld,
  installedFilePaths,
  parseInstalledDb,
  parseRepositories,
  parseWorld,
  sortInstalled,
  type InstalledPackage,
} from "./installed-db.js";
import { APK_REAL, noShared } from "../../../test/helpers/paths.js";

// The shared reference data (test/helpers/paths.ts says where it is looked for).
const WOLFI_BASE = `${APK_REAL}/installed-db/wolfi-base`;

function byName(pkgs: InstalledPackage[], name: string): InstalledPackage {
  const p = pkgs.find((x) => x.record.name === name);
  if (!p) throw new Error(`no package ${name}`);
  return p;
}

describe.skipIf(noShared())("installed database from a real wolfi-base image", () => {
  const text = noShared() ? "" : readFileSync(WOLFI_BASE, "utf8");
  const pkgs = parseInstalledDb(text, "wolfi-base");

  it("round-trips byte for byte", () => {
    expect(formatInstalledDb(pkgs)).toBe(text);
  });

  it("reads packages in file order with their metadata", () => {
    expect(pkgs.map((p) => p.record.name)).toEqual([
      "wolfi-baselayout",
      "ca-certificates-bundle",
      "glibc-locale-posix",
      "libgcc",
      "glibc",
      "ld-linux",
      "libcrypto3",
      "libssl3",
      "zlib",
      "apk-tools",
      "libxcrypt",
      "libcrypt1",
      "busybox",
      "wolfi-keys",
      "wolfi-base",
    ]);
    const base = byName(pkgs, "wolfi-baselayout").record;
    expect(base.version).toBe("20230201-r23");
    expect(base.arch).toBe("x86_64");
    expect(base.license).toBe("MIT");
    expect(base.url).toBe("");
    expect(base.depends).toEqual(["ca-certificates-bundle"]);
    expect(base.provides).toEqual(["merged-bin", "merged-lib", "merged-sbin", "merged-usrsbin"]);
    expect(base.checksum).toBe("Q15GKR2cusJFuJW5jYQBxRRQK9xTs=");
    expect(base.fileSize).toBe(13282);
    expect(base.installedSize).toBe(123541);
    expect(base.buildDate).toBe(1752789152);

    expect(byName(pkgs, "ca-certificates-bundle").record.depends).toEqual(["merged-usrsbin", "wolfi-baselayout"]);
    expect(byName(pkgs, "wolfi-base").record.depends).toEqual(["apk-tools", "busybox", "wolfi-keys"]);
    expect(byName(pkgs, "apk-tools").record.version).toBe("2.14.10-r6");
    expect(byName(pkgs, "ld-linux").record.providerPriority).toBe(10);
    const glibc = byName(pkgs, "glibc").record;
    expect(glibc.depends[0]).toBe("!musl");
    expect(glibc.provides).toContain("cmd:ldconfig=2.41-r55");

    const xcrypt = byName(pkgs, "libxcrypt");
    expect(xcrypt.record.replaces).toEqual(["libcrypt1<2.38-r15"]);
    expect(xcrypt.record.depends).toEqual([]);
  });

  it("remembers apko's header order, which is not apk's", () => {
    expect(byName(pkgs, "wolfi-baselayout").headerOrder).toEqual([
      "P",
      "V",
      "A",
      "L",
      "T",
      "o",
      "m",
      "U",
      "D",
      "p",
      "c",
      "i",
      "t",
      "S",
      "I",
      "k",
      "C",
    ]);
  });

  it("reads directories, files and their permissions", () => {
    const base = byName(pkgs, "wolfi-baselayout");
    const etc = base.dirs.find((d) => d.path === "etc")!;
    expect(etc.mode).toBeUndefined();
    const mtab = etc.files.find((f) => f.name === "mtab")!;
    expect(mtab).toMatchObject({ uid: 0, gid: 0, mode: 0o777, checksum: "Q1kiljhXXH1LlQroHsEJIkPZg2eiw=" });
    expect(mtab.aclText).toBeUndefined();
    expect(etc.files.find((f) => f.name === "shadow")!.mode).toBe(0o600);
    const group = etc.files.find((f) => f.name === "group")!;
    expect(group.mode).toBeUndefined();
    expect(group.checksum).toBe("Q1w7j6yciTNmNb6T05yAX+BPhSuAA=");

    const paths = installedFilePaths(base);
    expect(paths).toContain("etc/mtab");
    expect(paths).toContain("var/lib/db/sbom/wolfi-baselayout-20230201-r23.spdx.json");
    expect(paths).toHaveLength(20);

    const apk = byName(pkgs, "apk-tools");
    expect(apk.dirs.find((d) => d.path === "usr/bin")!.files[0]).toMatchObject({ name: "apk", mode: 0o755 });
  });

  it("keeps the remembered order when a parsed package is edited", () => {
    const copy = parseInstalledDb(text, "wolfi-base");
    const base = byName(copy, "wolfi-base");
    base.record.version = "1-r8";
    base.record.depends.push("zlib");
    const out = formatInstalledDb([base]);
    expect(out.split("\n").slice(0, 10)).toEqual([
      "P:wolfi-base",
      "V:1-r8",
      "A:x86_64",
      "L:MIT",
      "T:Wolfi base metapackage",
      "o:wolfi-base",
      "m:",
      "U:",
      "D:apk-tools busybox wolfi-keys zlib",
      "p:",
    ]);
  });

  it("sorts by name", () => {
    const names = sortInstalled(pkgs).map((p) => p.record.name);
    expect(names[0]).toBe("apk-tools");
    expect(names[names.length - 1]).toBe("zlib");
    expect(pkgs[0]!.record.name).toBe("wolfi-baselayout"); // input untouched
  });
});

describe("a constructed package", () => {
  const record = newIndexRecord();
  Object.assign(record, {
    checksum: "Q1AAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    name: "hello",
    version: "2.12-r0",
    arch: "x86_64",
    fileSize: 1234,
    installedSize: 5678,
    description: "Say hello",
    url: "https://example.org/hello",
    license: "GPL-3.0-or-later",
    origin: "hello",
    maintainer: "kiln",
    buildDate: 1700000000,
    commit: "deadbeef",
    depends: ["so:libc.so.6"],
    provides: ["cmd:hello=2.12-r0"],
    replaces: ["hello-old"],
  });
  const pkg: InstalledPackage = {
    record,
    replacesPriority: 5,
    extra: [["s", "edge"]],
    dirs: [
      { path: "usr", files: [], extra: [] },
      {
        path: "usr/bin",
        extra: [],
        files: [
          { name: "hello", uid: 0, gid: 0, mode: 0o755, checksum: "Q1BBBBBBBBBBBBBBBBBBBBBBBBBBBB=", extra: [] },
          {
            name: "ping",
            uid: 0,
            gid: 0,
            mode: 0o4755,
            xattrChecksum: "Q1CCCCCCCCCCCCCCCCCCCCCCCCCCCC=",
            checksum: "Q1DDDDDDDDDDDDDDDDDDDDDDDDDDDD=",
            extra: [],
          },
        ],
      },
      {
        path: "var/spool/mail",
        uid: 0,
        gid: 12,
        mode: 0o2775,
        extra: [],
        files: [{ name: "README", checksum: "Q1EEEEEEEEEEEEEEEEEEEEEEEEEEEE=", extra: [] }],
      },
    ],
  };
  const expected = [
    "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "P:hello",
    "V:2.12-r0",
    "A:x86_64",
    "S:1234",
    "I:5678",
    "T:Say hello",
    "U:https://example.org/hello",
    "L:GPL-3.0-or-later",
    "o:hello",
    "m:kiln",
    "t:1700000000",
    "c:deadbeef",
    "D:so:libc.so.6",
    "p:cmd:hello=2.12-r0",
    "r:hello-old",
    "q:5",
    "s:edge",
    "F:usr",
    "F:usr/bin",
    "R:hello",
    "a:0:0:0755",
    "Z:Q1BBBBBBBBBBBBBBBBBBBBBBBBBBBB=",
    "R:ping",
    "a:0:0:4755:Q1CCCCCCCCCCCCCCCCCCCCCCCCCCCC=",
    "Z:Q1DDDDDDDDDDDDDDDDDDDDDDDDDDDD=",
    "F:var/spool/mail",
    "M:0:12:2775",
    "R:README",
    "Z:Q1EEEEEEEEEEEEEEEEEEEEEEEEEEEE=",
    "",
    "",
  ].join("\n");

  it("formats in apk's canonical order", () => {
    expect(formatInstalledDb([pkg])).toBe(expected);
  });

  it("parses back equal", () => {
    expect(parseInstalledDb(expected)).toEqual([pkg]);
  });

  it("omits default permissions", () => {
    const p: InstalledPackage = {
      record: Object.assign(newIndexRecord(), { name: "x", version: "1-r0", arch: "noarch" }),
      extra: [],
      dirs: [
        { path: "etc", uid: 0, gid: 0, mode: 0o755, extra: [], files: [{ name: "x.conf", mode: 0o644, extra: [] }] },
      ],
    };
    expect(formatInstalledDb([p])).toBe("P:x\nV:1-r0\nA:noarch\nF:etc\nR:x.conf\n\n");
  });

  it("refuses values that would corrupt the file", () => {
    const bad = structuredClone(pkg);
    bad.record.description = "two\nlines";
    expect(() => formatInstalledDb([bad])).toThrow(ApkError);
    const slash = structuredClone(pkg);
    slash.dirs[1]!.files[0]!.name = "a/b";
    expect(() => formatInstalledDb([slash])).toThrow(ApkError);
    const reserved = structuredClone(pkg);
    reserved.dirs[0]!.extra.push(["R", "sneaky"]);
    expect(() => formatInstalledDb([reserved])).toThrow(ApkError);
  });
});

describe("apk-tools' own spelling", () => {
  // apk-tools writes octal modes without padding and the header in index order.
  const text = [
    "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "P:tmpfiles",
    "V:1-r0",
    "A:x86_64",
    "D:",
    "F:tmp",
    "M:0:0:1777",
    "R:link",
    "a:0:0:777",
    "Z:Q1BBBBBBBBBBBBBBBBBBBBBBBBBBBB=",
    "R:plain",
    "a:0:0:0644",
    "",
    "",
  ].join("\n");

  it("round-trips exactly and reads the values", () => {
    const [p] = parseInstalledDb(text);
    expect(formatInstalledDb([p!])).toBe(text);
    expect(p!.headerOrder).toEqual(["C", "P", "V", "A", "D"]);
    expect(p!.dirs[0]).toMatchObject({ path: "tmp", mode: 0o1777 });
    expect(p!.dirs[0]!.files.map((f) => f.mode)).toEqual([0o777, 0o644]);
  });

  it("writes the canonical spelling once a value changes", () => {
    const [p] = parseInstalledDb(text);
    p!.dirs[0]!.files[0]!.mode = 0o755;
    p!.dirs[0]!.files[1]!.mode = 0o600;
    expect(formatInstalledDb([p!])).toContain("R:link\na:0:0:0755\nZ:");
    expect(formatInstalledDb([p!])).toContain("R:plain\na:0:0:0600\n");
  });
});

describe("malformed installed databases", () => {
  const cases: Array<[string, string, number]> = [
    ["R: before any F:", "P:x\nV:1-r0\nR:file\n", 3],
    ["a line without X:", "P:x\nV:1-r0\nhello\n", 3],
    ["a one-character line", "P:x\nV:1-r0\n\nP:y\nx\n", 5],
    ["a bad octal mode in a:", "P:x\nF:etc\nR:f\na:0:0:0789\n", 4],
    ["a bad octal mode in M:", "P:x\nF:etc\nM:0:0:rwx\n", 3],
    ["a mode wider than permission bits", "P:x\nF:etc\nR:f\na:0:0:100644\n", 4],
    ["a: with too few fields", "P:x\nF:etc\nR:f\na:0755\n", 4],
    ["a: before any R:", "P:x\nF:etc\na:0:0:0755\n", 3],
    ["Z: before any R:", "P:x\nF:etc\nR:f\nF:usr\nZ:Q1x\n", 5],
    ["M: before any F:", "P:x\nM:0:0:0755\n", 2],
    ["a non-numeric q:", "P:x\nq:high\n", 2],
    ["a non-numeric index field", "P:x\nI:big\n", 2],
    ["a package without P:", "P:ok\nV:1-r0\n\nV:1-r0\nA:x86_64\nF:etc\n\n", 4],
  ];
  for (const [what, text, line] of cases) {
    it(`rejects ${what}`, () => {
      let err: unknown;
      try {
        parseInstalledDb(text, "installed");
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ApkError);
      expect((err as ApkError).code).toBe("INVALID_FIELD");
      expect((err as ApkError).message).toContain(`installed:${line}:`);
    });
  }

  it("accepts a missing final blank line and extra blank lines", () => {
    const pkgs = parseInstalledDb("\nP:a\nV:1-r0\n\n\nP:b\nV:2-r0");
    expect(pkgs.map((p) => p.record.name)).toEqual(["a", "b"]);
    expect(parseInstalledDb("")).toEqual([]);
  });

  it("keeps unknown lines with what they were written under", () => {
    const text = "P:x\nV:1-r0\ng:future\nf:f\nX:upper\nF:etc\ny:dir-level\nR:f\nw:file-level\n\n";
    const [p] = parseInstalledDb(text);
    expect(p!.record.unknownFields).toEqual([["g", "future"]]);
    expect(p!.extra).toEqual([
      ["f", "f"],
      ["X", "upper"],
    ]);
    expect(p!.dirs[0]!.extra).toEqual([["y", "dir-level"]]);
    expect(p!.dirs[0]!.files[0]!.extra).toEqual([["w", "file-level"]]);
    expect(formatInstalledDb([p!])).toBe(text);
  });

  it("does not invent lines for fields the input lacked", () => {
    const text = "P:bare\nF:etc\n\n";
    const [p] = parseInstalledDb(text);
    expect(p!.headerOrder).toBeUndefined();
    expect(formatInstalledDb([p!])).toBe(text);
    const empties = "P:bare\nV:\nA:\nD:\n\n";
    expect(formatInstalledDb(parseInstalledDb(empties))).toBe(empties);
  });
});

describe("etc/apk/world", () => {
  it("parses one dependency a line, ignoring blank lines", () => {
    expect(parseWorld("wolfi-base\n\nbusybox>=1.36\n\n")).toEqual(["wolfi-base", "busybox>=1.36"]);
    expect(parseWorld("")).toEqual([]);
  });

  it("formats sorted and unique with a trailing newline", () => {
    expect(formatWorld(["wolfi-base", "busybox", "wolfi-base", "apk-tools"])).toBe("apk-tools\nbusybox\nwolfi-base\n");
    expect(formatWorld([])).toBe("");
  });

  it("round-trips", () => {
    const text = "apk-tools\nbusybox\nca-certificates-bundle\nglibc-locale-posix\nwolfi-base\n";
    expect(formatWorld(parseWorld(text))).toBe(text);
  });

  it("refuses a dependency that would split", () => {
    expect(() => formatWorld(["two words"])).toThrow(ApkError);
    expect(() => formatWorld([""])).toThrow(ApkError);
  });
});

describe("etc/apk/repositories", () => {
  const text = [
    "# main",
    "https://packages.wolfi.dev/os",
    "",
    "@local /work/packages",
    "  # indented comment",
    "",
  ].join("\n");

  it("parses URLs, tags and comments", () => {
    expect(parseRepositories(text)).toEqual([
      { url: "https://packages.wolfi.dev/os" },
      { tag: "local", url: "/work/packages" },
    ]);
  });

  it("round-trips", () => {
    const repos = parseRepositories(text);
    const out = formatRepositories(repos);
    expect(out).toBe("https://packages.wolfi.dev/os\n@local /work/packages\n");
    expect(parseRepositories(out)).toEqual(repos);
  });

  it("rejects a tag without a URL", () => {
    expect(() => parseRepositories("https://a\n@edge\n")).toThrow(/repositories:2:/);
    expect(() => formatRepositories([{ tag: "@edge", url: "https://a" }])).toThrow(ApkError);
  });
});
