// kiln update against a fake archive: a file: mirror directory with crafted
// Sources.xz indexes for two suites (compressed by the host's xz, as the
// archive's are), recipes behind, current and with update disabled, hostile
// index lines, and --apply editing a recipe in place.

import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { applyUpdate, checkUpdates, upstreamRelease } from "../index.js";
import { linesWithVersion } from "./apply.js";

const SHA = (c: string) => `${c}f`.repeat(32);

function para(name: string, version: string, file: string, sha: string, dir = `pool/main/${name[0]}/${name}`): string {
  return [
    `Package: ${name}`,
    `Binary: ${name}`,
    `Version: ${version}`,
    `Maintainer: Someone <someone@example.org>`,
    `Directory: ${dir}`,
    `Files:`,
    ` 0123456789abcdef0123456789abcdef 100 ${file}`,
    `Checksums-Sha256:`,
    ` ${sha} 100 ${file}`,
    ` ${SHA("e")} 10 ${name}_${version.replace(/^\d+:/, "")}.debian.tar.xz`,
    "",
  ].join("\n");
}

function archive(suites: Record<string, string>, pool: string[] = []): string {
  const root = mkdtempSync(join(tmpdir(), "kiln-update-"));
  for (const [suite, text] of Object.entries(suites)) {
    const d = join(root, "dists", suite, "main", "source");
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "Sources.xz"), execFileSync("xz", ["-c"], { input: text }));
  }
  for (const p of pool) {
    mkdirSync(join(root, p, ".."), { recursive: true });
    writeFileSync(join(root, p), "a tarball\n");
  }
  return root;
}

function recipe(dir: string, name: string, version: string, uri: string, extra = ""): string {
  const f = join(dir, `${name}.yaml`);
  writeFileSync(
    f,
    `# ${name}: a test recipe\npackage:\n  name: ${name}\n  version: "${version}" # the upstream release\n  epoch: 3\n  description: test\n  copyright:\n    - license: MIT\n\npipeline:\n  # the archive's orig tarball\n  - uses: fetch\n    with:\n      uri: ${uri}\n      expected-sha256: ${SHA("a")}\n  - runs: echo built\n  - uses: autoconf/configure\n    with:\n      opts: ${LONG}\n${extra}`,
  );
  return f;
}

const LONG = "--disable-static --enable-zlib --enable-xzlib --enable-zstdlib --disable-bzlib --disable-libseccomp";

const STABLE =
  para("foo", "1.0-1", "foo_1.0.orig.tar.gz", SHA("1")) +
  "\n" +
  para("bar", "2.0-1", "bar_2.0.orig.tar.xz", SHA("2")) +
  "\n" +
  para("libqux", "1:1.1-2", "libqux_1.1.orig.tar.gz", SHA("3"), "pool/main/libq/libqux");
const SID =
  para("foo", "1.2+dfsg-1", "foo_1.2+dfsg.orig.tar.gz", SHA("4")) +
  "\n" +
  para("foo", "2.0~rc1-1", "foo_2.0~rc1.orig.tar.gz", SHA("5")) +
  "\n" +
  para("libqux", "1:1.2-1", "libqux_1.2.orig.tar.gz", SHA("6"), "pool/main/libq/libqux") +
  "\n" +
  para("baz", "9.0-1", "baz_9.0.orig.tar.gz", SHA("7")) +
  "\n" +
  // listed, but its tarball is not on the mirror
  para("libqux", "1:1.3-1", "libqux_1.3.orig.tar.gz", SHA("8"), "pool/main/libq/libqux");

function setup() {
  const mirror = archive({ stable: STABLE, sid: SID, "sid-empty": "" }, [
    "pool/main/f/foo/foo_1.2+dfsg.orig.tar.gz",
    "pool/main/libq/libqux/libqux_1.2.orig.tar.gz",
  ]);
  const dir = mkdtempSync(join(tmpdir(), "kiln-update-recipes-"));
  const opts = { mirrors: { debian: pathToFileURL(mirror).href }, suites: ["stable", "sid", "absent"] };
  return { mirror, dir, opts };
}

describe("kiln update --check", () => {
  it("reports behind, current, disabled and ignored recipes, the newest suite winning", async () => {
    const { dir, opts } = setup();
    const foo = recipe(dir, "foo", "1.0", "${{mirror.debian}}/pool/main/f/foo/foo_${{package.version}}.orig.tar.gz");
    const bar = recipe(dir, "bar", "2.0", "${{mirror.debian}}/pool/main/b/bar/bar_2.0.orig.tar.xz");
    const baz = recipe(
      dir,
      "baz",
      "1.0",
      "${{mirror.debian}}/pool/main/b/baz/baz_1.0.orig.tar.gz",
      "update:\n  enabled: false\n  exclude-reason: pinned\n",
    );
    const qux = recipe(
      dir,
      "libqux",
      "1.1",
      "${{mirror.debian}}/pool/main/libq/libqux/libqux_1.1.orig.tar.gz",
      "update:\n  enabled: true\n  ignore-regex-patterns:\n    - ^1\\.2$\n",
    );
    const progress: string[] = [];
    const { reports, suites } = await checkUpdates([foo, bar, baz, qux], {
      ...opts,
      onProgress: (m) => progress.push(m),
    });
    expect(suites).toEqual(["stable", "sid"]);
    expect(progress).toContain("absent: not on this mirror, skipped");
    const [f, b, z, q] = reports;
    expect(f).toMatchObject({ status: "outdated", current: "1.0", source: "foo", kind: "orig" });
    // +dfsg dropped, the ~rc1 pre-release ignored; the index's file and checksum.
    expect(f!.newest).toEqual({
      version: "1.2",
      debianVersion: "1.2+dfsg-1",
      suites: ["sid"],
      uri: "${{mirror.debian}}/pool/main/f/foo/foo_1.2+dfsg.orig.tar.gz",
      file: "foo_1.2+dfsg.orig.tar.gz",
      sha256: SHA("4"),
      size: 100,
    });
    expect(b).toMatchObject({ status: "current", newest: { version: "2.0", suites: ["stable"] } });
    expect(z).toMatchObject({ status: "disabled", note: "update.enabled is false: pinned" });
    expect(q).toMatchObject({ status: "current", newest: { version: "1.1", debianVersion: "1:1.1-2" } });
    expect(q!.note).toContain("ignore-regex-patterns");
    expect(q!.note).toContain("1.3 is listed but libqux_1.3.orig.tar.gz is not on the mirror");
  });

  it("maps Debian's upstream versions to upstream's", () => {
    expect(upstreamRelease("1.3.dfsg+really1.3.2")).toBe("1.3.2");
    expect(upstreamRelease("1.2.13.dfsg")).toBe("1.2.13");
    expect(upstreamRelease("6.3.0+dfsg")).toBe("6.3.0");
    expect(upstreamRelease("20250419~deb12u2")).toBe("20250419");
    expect(upstreamRelease("3.6.0~beta1")).toBeUndefined();
  });

  const hostile: Array<[string, string, RegExp]> = [
    [
      "a bad Package name",
      para("../evil", "1.0-1", "x.tar.gz", SHA("1")),
      /Sources\.xz:1: Package "\.\.\/evil" is not a Debian source name/,
    ],
    [
      "a path-like file name",
      para("foo", "1.0-1", "../../../etc/passwd", SHA("1")),
      /Sources\.xz:1: source foo: "\.\.\/\.\.\/\.\.\/etc\/passwd" is not a plain file name/,
    ],
    [
      "a Directory outside the source's pool directory",
      para("foo", "1.0-1", "foo_1.0.orig.tar.gz", SHA("1"), "pool/main/f/../../../tmp"),
      /Directory "pool\/main\/f\/\.\.\/\.\.\/\.\.\/tmp" is not pool\/main\/f\/foo/,
    ],
    [
      "a huge field",
      `Package: foo\nBinary: ${"x".repeat(300 * 1024)}\n`,
      /Sources\.xz:2: a line of more than 262144 bytes/,
    ],
  ];
  for (const [what, text, message] of hostile)
    it(`refuses an index with ${what}, with one error naming the index and line`, async () => {
      const mirror = archive({ sid: text });
      const dir = mkdtempSync(join(tmpdir(), "kiln-update-recipes-"));
      const foo = recipe(dir, "foo", "1.0", "${{mirror.debian}}/pool/main/f/foo/foo_1.0.orig.tar.gz");
      await expect(
        checkUpdates([foo], { mirrors: { debian: pathToFileURL(mirror).href }, suites: ["sid"] }),
      ).rejects.toThrow(message);
    });
});

describe("kiln update --apply", () => {
  it("bumps in place with the index's URI and sha256, keeping comments", async () => {
    const { dir, opts } = setup();
    const literal = recipe(dir, "foo", "1.0", "${{mirror.debian}}/pool/main/f/foo/foo_1.0.orig.tar.gz");
    const [r] = (await checkUpdates([literal], opts)).reports;
    const a = await applyUpdate(r!);
    expect(a).toMatchObject({ from: "1.0", to: "1.2", sha256: SHA("4"), uriRewritten: true });
    const text = readFileSync(literal, "utf8");
    expect(text).toContain('version: "1.2" # the upstream release');
    expect(text).toContain("epoch: 0");
    expect(text).toContain("# foo: a test recipe");
    expect(text).toContain("  # the archive's orig tarball\n");
    expect(text).toContain(`      opts: ${LONG}\n`); // a long line is not folded
    expect(text).toContain("uri: ${{mirror.debian}}/pool/main/f/foo/foo_1.2+dfsg.orig.tar.gz");
    expect(text).toContain(`expected-sha256: ${SHA("4")}`);
    // Checked again: now current.
    expect((await checkUpdates([literal], opts)).reports[0]!.status).toBe("current");
  });

  it("keeps a URI that follows ${{package.version}} to the index's file", async () => {
    const { dir, opts } = setup();
    const f = recipe(
      dir,
      "libqux",
      "1.1",
      "${{mirror.debian}}/pool/main/libq/libqux/libqux_${{package.version}}.orig.tar.gz",
    );
    const [r] = (await checkUpdates([f], opts)).reports;
    // 1.3 is newer but not downloadable: the newest the mirror serves is taken.
    expect(r).toMatchObject({ status: "outdated", newest: { version: "1.2", sha256: SHA("6") } });
    const a = await applyUpdate(r!);
    expect(a.uriRewritten).toBe(false);
    const text = readFileSync(f, "utf8");
    expect(text).toContain("uri: ${{mirror.debian}}/pool/main/libq/libqux/libqux_${{package.version}}.orig.tar.gz");
    expect(text).toContain(`expected-sha256: ${SHA("6")}`);
  });

  it("names the lines that still spell out the old version (a test's expected output), and no others", async () => {
    const { dir, opts } = setup();
    const test = `\ntest:\n  pipeline:\n    - runs: |\n        foo -V | grep 'v1\\.1'\n        foo --version | grep -x 'foo 1.1'\n        test "$(foo --api)" = 11.1.10\n        foo --version | grep -F '\${{package.version}}'\n`;
    const f = recipe(
      dir,
      "libqux",
      "1.1",
      "${{mirror.debian}}/pool/main/libq/libqux/libqux_${{package.version}}.orig.tar.gz",
      test,
    );
    const [r] = (await checkUpdates([f], opts)).reports;
    const a = await applyUpdate(r!);
    const lines = readFileSync(f, "utf8").split("\n");
    expect(a.staleVersion.map((l) => l.text)).toEqual(["foo -V | grep 'v1\\.1'", "foo --version | grep -x 'foo 1.1'"]);
    for (const l of a.staleVersion) expect(lines[l.line - 1]!.trim()).toBe(l.text);
    expect(linesWithVersion("a 1.5.40 b 21.5.4 c 1.5.4.1", "1.5.4")).toEqual([]);
    expect(linesWithVersion("x\nv1.5.4)\n", "1.5.4")).toEqual([{ line: 2, text: "v1.5.4)" }]);
  });

  it("refuses to apply to a recipe that is current, writing nothing", async () => {
    const { dir, opts } = setup();
    const bar = recipe(dir, "bar", "2.0", "${{mirror.debian}}/pool/main/b/bar/bar_2.0.orig.tar.xz");
    const before = readFileSync(bar, "utf8");
    const [r] = (await checkUpdates([bar], opts)).reports;
    await expect(applyUpdate(r!)).rejects.toThrow(/not behind the archive/);
    expect(readFileSync(bar, "utf8")).toBe(before);
  });
});
