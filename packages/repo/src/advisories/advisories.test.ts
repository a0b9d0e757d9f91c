import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError } from "@kiln/core";
import { LocalDirStore } from "../store/local.js";
import { loadAdvisories, parseAdvisoryFile, type Advisory } from "./schema.js";
import { feedFiles, osvRecords, secdbDocument, writeFeed } from "./feeds.js";
import { feedRules, FeedError, loadFeed, matchAdvisories } from "./match.js";

const HELLO = `package: hello
advisories:
  - id: CVE-2024-0001
    aliases: [GHSA-2222-3333-4444]
    summary: overflow in greeting
    events:
      - date: 2024-01-02
        state: affected
      - date: 2024-02-03
        state: fixed
        version: 2.12-r1
  - id: CVE-2024-0002
    events:
      - date: 2024-03-01
        state: not-affected
        justification: vulnerable_code_not_present
        note: the affected module is not built
  - id: CVE-2024-0003
    events:
      - date: 2024-04-01T10:00:00Z
        state: affected
`;

function problemsOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("advisory files", () => {
  it("reads ids, aliases, events and the current state", () => {
    const a = parseAdvisoryFile("advisories/hello.yaml", HELLO);
    expect(a.map((x) => [x.id, x.current.state])).toEqual([
      ["CVE-2024-0001", "fixed"],
      ["CVE-2024-0002", "not-affected"],
      ["CVE-2024-0003", "affected"],
    ]);
    expect(a[0]!.aliases).toEqual(["GHSA-2222-3333-4444"]);
    expect(a[0]!.source).toBe("advisories/hello.yaml:3");
  });

  it("refuses a bad fixed version at its line", () => {
    const msg = problemsOf(() =>
      parseAdvisoryFile("a/hello.yaml", HELLO.replace("version: 2.12-r1", "version: 2.12-rX")),
    );
    expect(msg).toMatch(/^a\/hello\.yaml:11:\d+: advisories\[0\]\.events\[1\]\.version: expected an apk version/);
  });

  it("refuses a bad id, an unknown justification and an unknown key", () => {
    const bad = HELLO.replace("id: CVE-2024-0003", "id: CVE-24-3")
      .replace("vulnerable_code_not_present", "because")
      .replace("summary: overflow", "sumary: overflow");
    const msg = problemsOf(() => parseAdvisoryFile("hello.yaml", bad));
    expect(msg).toContain("advisories[2].id: expected a CVE id (CVE-2024-12345) or a GHSA id");
    expect(msg).toContain('advisories[1].events[0].justification: expected one of "component_not_present"');
    expect(msg).toContain('advisories[0].sumary: unknown key "sumary"');
  });

  it("refuses a package name that does not match the file, or a path-like one", () => {
    expect(problemsOf(() => parseAdvisoryFile("adv/other.yaml", HELLO))).toContain(
      'package: expected "other": an advisories file is named after its package',
    );
    expect(
      problemsOf(() => parseAdvisoryFile("adv/hello.yaml", HELLO.replace("package: hello", "package: ../etc"))),
    ).toContain("package: expected a package name");
  });

  it("refuses events out of date order and a vulnerability recorded twice", () => {
    const twice = HELLO.replace("id: CVE-2024-0003", "id: CVE-2024-0001").replace("2024-02-03", "2023-12-31");
    const msg = problemsOf(() => parseAdvisoryFile("hello.yaml", twice));
    expect(msg).toContain("events must be in date order: 2023-12-31 is before 2024-01-02");
    expect(msg).toContain("CVE-2024-0001 is already recorded by advisories[0]");
  });

  describe("a directory", () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), "kiln-adv-"));
    });
    afterEach(() => rm(dir, { recursive: true, force: true }));

    it("loads NAME.yaml files in name order; a missing directory is none", async () => {
      await writeFile(join(dir, "hello.yaml"), HELLO);
      await writeFile(join(dir, "abc.yaml"), "package: abc\nadvisories: []\n");
      await writeFile(join(dir, "README.md"), "how to write one\n");
      expect((await loadAdvisories(dir)).map((a) => a.id)).toEqual(["CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0003"]);
      expect(await loadAdvisories(join(dir, "none"))).toEqual([]);
    });

    it("refuses other entries, naming them", async () => {
      await writeFile(join(dir, "notes.txt"), "x");
      await mkdir(join(dir, "sub.yaml"));
      await expect(loadAdvisories(dir)).rejects.toThrow(/notes\.txt: expected NAME\.yaml/);
    });
  });
});

const OPTS = { distroId: "kiln", archs: ["x86_64", "aarch64"], urlPrefix: "https://repo.example.invalid/kiln/" };

describe("feeds", () => {
  const advisories: Advisory[] = [
    ...parseAdvisoryFile("adv/hello.yaml", HELLO),
    ...parseAdvisoryFile(
      "adv/zlib.yaml",
      "package: zlib\nadvisories:\n  - id: CVE-2024-0001\n    events:\n      - {date: 2024-05-05, state: fixed, version: 1.3-r0}\n",
    ),
  ];

  it("secdb: fixed versions in apk order, not affected under 0, open ones left out", () => {
    expect(secdbDocument(advisories, OPTS)).toEqual({
      apkurl: "{{urlprefix}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
      archs: ["aarch64", "x86_64"],
      reponame: "kiln",
      urlprefix: "https://repo.example.invalid/kiln",
      packages: [
        { pkg: { name: "hello", secfixes: { "0": ["CVE-2024-0002"], "2.12-r1": ["CVE-2024-0001"] } } },
        { pkg: { name: "zlib", secfixes: { "1.3-r0": ["CVE-2024-0001"] } } },
      ],
    });
  });

  it("OSV: one record per vulnerability, every package it affects, dates from the events", () => {
    const recs = osvRecords(advisories, OPTS);
    expect(recs.map((r) => r.id)).toEqual(["KILN-CVE-2024-0001", "KILN-CVE-2024-0003"]);
    expect(recs[0]).toEqual({
      schema_version: "1.6.0",
      id: "KILN-CVE-2024-0001",
      modified: "2024-05-05T00:00:00Z",
      published: "2024-01-02T00:00:00Z",
      aliases: ["CVE-2024-0001", "GHSA-2222-3333-4444"],
      summary: "overflow in greeting",
      affected: [
        {
          package: { ecosystem: "kiln", name: "hello", purl: "pkg:apk/kiln/hello" },
          ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "0" }, { fixed: "2.12-r1" }] }],
        },
        {
          package: { ecosystem: "kiln", name: "zlib", purl: "pkg:apk/kiln/zlib" },
          ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "0" }, { fixed: "1.3-r0" }] }],
        },
      ],
    });
    expect(recs[1]!.affected[0]!.ranges[0]!.events).toEqual([{ introduced: "0" }]);
  });

  it("the same advisories give the same bytes, whatever their order", () => {
    const a = feedFiles(advisories, OPTS).files;
    const b = feedFiles([...advisories].reverse(), OPTS).files;
    expect(b.map((f) => f.key)).toEqual(a.map((f) => f.key));
    b.forEach((f, i) => expect(f.body.equals(a[i]!.body)).toBe(true));
    expect(a.map((f) => f.key)).toEqual([
      "osv/KILN-CVE-2024-0001.json",
      "osv/KILN-CVE-2024-0003.json",
      "osv/all.json",
      "security.json",
    ]);
  });

  it("writes into a store, removes stale records, rewrites nothing unchanged", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kiln-feed-"));
    try {
      const store = new LocalDirStore(dir);
      const first = await writeFeed(store, advisories, OPTS);
      expect(first.written).toHaveLength(4);
      expect(JSON.parse(await readFile(join(dir, "osv/all.json"), "utf8"))).toHaveLength(2);
      const again = await writeFeed(store, advisories, OPTS);
      expect(again.written).toEqual([]);
      const fewer = await writeFeed(store, advisories.slice(0, 2), OPTS);
      expect(fewer.removed).toEqual(["osv/KILN-CVE-2024-0003.json"]);
      expect((await readdir(join(dir, "osv"))).sort()).toEqual(["KILN-CVE-2024-0001.json", "all.json"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("matching", () => {
  const advisories = parseAdvisoryFile("adv/hello.yaml", HELLO);
  const { secdb, osv } = feedFiles(advisories, OPTS);
  const rules = [...feedRules(secdb, "security.json"), ...feedRules(osv, "all.json")];

  it("finds the open and the not-yet-fixed advisories by origin, not the not-affected one", () => {
    const f = matchAdvisories([{ name: "hello-doc", version: "2.12-r0", origin: "hello" }], rules);
    expect(f.map((x) => [x.package, x.origin, x.id, x.fixed ?? "no fix"])).toEqual([
      ["hello-doc", "hello", "CVE-2024-0001", "2.12-r1"],
      ["hello-doc", "hello", "CVE-2024-0003", "no fix"],
    ]);
    expect(f[0]!.aliases).toEqual(["GHSA-2222-3333-4444", "KILN-CVE-2024-0001"]);
    expect(f[0]!.feeds).toEqual(["all.json", "security.json"]);
  });

  it("a fixed version (or newer, in apk order) clears it; another origin is not matched", () => {
    expect(matchAdvisories([{ name: "hello", version: "2.12-r1" }], rules).map((x) => x.id)).toEqual(["CVE-2024-0003"]);
    expect(matchAdvisories([{ name: "hello", version: "2.12.1-r0" }], rules).map((x) => x.id)).toEqual([
      "CVE-2024-0003",
    ]);
    expect(matchAdvisories([{ name: "hello", version: "2.12_rc1-r9" }], rules).map((x) => x.id)).toContain(
      "CVE-2024-0001",
    );
    expect(matchAdvisories([{ name: "hello", version: "1.0-r0", origin: "other" }], rules)).toEqual([]);
  });

  it("OSV ranges: introduced, last_affected and listed versions", () => {
    const r = feedRules(
      {
        id: "X-1",
        affected: [
          {
            package: { name: "a" },
            ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "2.0" }, { last_affected: "2.4" }] }],
          },
          { package: { name: "b" }, versions: ["1.1-r3"] },
          { package: { name: "c" }, ranges: [{ type: "GIT", events: [{ introduced: "0" }] }] },
        ],
      },
      "x.json",
    );
    const ids = (name: string, version: string) => matchAdvisories([{ name, version }], r).length;
    expect([ids("a", "1.9"), ids("a", "2.0"), ids("a", "2.4-r2"), ids("a", "2.5")]).toEqual([0, 1, 0, 0]);
    expect(ids("a", "2.4")).toBe(1);
    expect([ids("b", "1.1-r3"), ids("b", "1.1-r4"), ids("c", "1")]).toEqual([1, 0, 0]);
  });

  it("hostile feeds: one error naming the feed and the field", () => {
    expect(() => feedRules({ packages: [{ pkg: { name: "../x", secfixes: {} } }] }, "f.json")).toThrow(
      'f.json: packages[0].pkg.name: expected a package name, got "../x"',
    );
    expect(() =>
      feedRules({ packages: [{ pkg: { name: "a", secfixes: { "1.0-rX": ["CVE-1"] } } }] }, "f.json"),
    ).toThrow(/f\.json: packages\[0\]\.pkg\.secfixes\["1\.0-rX"\] \(key\): expected an apk version/);
    expect(() =>
      feedRules(
        [
          {
            id: "A",
            affected: [{ package: { name: "a" }, ranges: [{ type: "ECOSYSTEM", events: [{ fixed: "1" }] }] }],
          },
        ],
        "all.json",
      ),
    ).toThrow(
      "all.json[0]: A: affected[0].ranges[0].events[0]: a fixed or last_affected event needs an introduced event before it",
    );
    expect(() => feedRules({ hello: 1 }, "f.json")).toThrow(FeedError);
  });

  it("loads a directory with security.json and osv/all.json, and refuses an oversized file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kiln-feed-"));
    try {
      await writeFeed(new LocalDirStore(dir), advisories, OPTS);
      const loaded = await loadFeed(dir);
      expect(loaded.filter((r) => r.feed.endsWith("security.json"))).toHaveLength(2);
      expect(loaded.filter((r) => r.feed.endsWith("all.json"))).toHaveLength(2);
      await expect(loadFeed(join(dir, "security.json"), { maxBytes: 10 })).rejects.toThrow(/more than the 10 accepted/);
      await expect(loadFeed("ftp://x/y")).rejects.toThrow(/a feed is an http\(s\) URL, a file or a directory/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
