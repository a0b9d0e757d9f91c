// The format commands of issue 2, run as a user would: keygen, mkpkg, index
// (and --merge), sign, sign-index, verify, inspect, version.

import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  statSync,
  writeFileSync,
  symlinkSync,
  readdirSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { kiln } from "./helpers/cli.js";

let work: string;
let keyA: string;
let keyB: string;
let keysDir: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "kiln-cli-"));
  keysDir = join(work, "keys");
  mkdirSync(keysDir);
  for (const name of ["alpha", "beta"]) {
    const r = kiln(["keygen", join(work, name), "--bits", "2048"]);
    expect(r.status, r.stderr).toBe(0);
  }
  keyA = join(work, "alpha.rsa");
  keyB = join(work, "beta.rsa");
  writeFileSync(join(keysDir, "alpha.rsa.pub"), readFileSync(`${keyA}.pub`));
  const tree = join(work, "tree");
  mkdirSync(join(tree, "usr/bin"), { recursive: true });
  writeFileSync(join(tree, "usr/bin/tool"), "#!/bin/sh\necho tool\n");
  chmodSync(join(tree, "usr/bin/tool"), 0o755);
  symlinkSync("tool", join(tree, "usr/bin/tool-link"));
});

describe("kiln keygen", () => {
  it("writes a 0600 PKCS#1 private key and a PKIX public key; refuses < 2048 bits and existing files", () => {
    expect(statSync(keyA).mode & 0o777).toBe(0o600);
    expect(readFileSync(keyA, "utf8")).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
    expect(readFileSync(`${keyA}.pub`, "utf8")).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    const bits = execFileSync("openssl", ["rsa", "-in", keyA, "-noout", "-text"], { encoding: "utf8" });
    expect(bits).toMatch(/Private-Key: \(2048 bit/);
    const weak = kiln(["keygen", join(work, "weak"), "--bits", "1024"]);
    expect(weak.status).toBe(1);
    expect(weak.stderr).toMatch(/at least 2048/);
    expect(existsSync(join(work, "weak.rsa"))).toBe(false);
    const again = kiln(["keygen", join(work, "alpha"), "--bits", "2048"]);
    expect(again.status).toBe(1);
  });

  it("defaults to 4096 bits", () => {
    const r = kiln(["keygen", join(work, "big")]);
    expect(r.status, r.stderr).toBe(0);
    expect(
      execFileSync("openssl", ["rsa", "-in", join(work, "big.rsa"), "-noout", "-text"], { encoding: "utf8" }),
    ).toMatch(/Private-Key: \(4096 bit/);
  });
});

describe("mkpkg, index, verify, inspect", () => {
  it("mkpkg makes a signed package that verifies and inspects with its metadata and files", () => {
    const out = join(work, "tool-1.0-r0.apk");
    const r = kiln([
      "mkpkg",
      join(work, "tree"),
      "--name",
      "tool",
      "--version",
      "1.0-r0",
      "--description",
      "a tool",
      "--license",
      "MIT",
      "--depends",
      "so:libc.so.6",
      "--provides",
      "cmd:tool=1.0-r0",
      "--signing-key",
      keyA,
      "-o",
      out,
    ]);
    expect(r.status, r.stderr).toBe(0);
    const v = kiln(["verify", "--keys-dir", keysDir, out]);
    expect(v.stdout).toBe(`${out}: OK (signed by alpha.rsa.pub (RSA256))\n`);
    expect(v.status).toBe(0);
    const i = JSON.parse(kiln(["inspect", out, "--json"]).stdout);
    expect(i.info).toMatchObject({
      name: "tool",
      version: "1.0-r0",
      description: "a tool",
      license: "MIT",
      depends: ["so:libc.so.6"],
      provides: ["cmd:tool=1.0-r0"],
      buildDate: 1700000000,
    });
    expect(i.signatures).toEqual([{ type: "RSA256", keyName: "alpha.rsa.pub" }]);
    expect(i.files.map((f: { path: string }) => f.path)).toEqual([
      "usr",
      "usr/bin",
      "usr/bin/tool",
      "usr/bin/tool-link",
    ]);
    expect(i.files[2]).toMatchObject({ mode: "0755", uid: 0, gid: 0 });
    expect(i.files[3]).toMatchObject({ type: "symlink", target: "tool" });
  });

  it("mkpkg is reproducible and rejects bad names, versions and dependencies with one clear message", () => {
    const a = join(work, "r1.apk"),
      b = join(work, "r2.apk");
    for (const o of [a, b])
      expect(
        kiln(["mkpkg", join(work, "tree"), "--name", "tool", "--version", "1.0-r0", "--signing-key", keyA, "-o", o])
          .status,
      ).toBe(0);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    const cases: Array<[string[], RegExp]> = [
      [["--name", "bad name", "--version", "1.0"], /invalid package name "bad name"/],
      [["--name", "x", "--version", "1.2aa"], /invalid version "1\.2aa"/],
      [["--name", "x", "--version", "1.0", "--depends", "foo>=1.2aa"], /invalid.*foo>=1\.2aa/],
    ];
    for (const [args, msg] of cases) {
      const out = join(work, "bad.apk");
      const r = kiln(["mkpkg", join(work, "tree"), ...args, "-o", out]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(existsSync(out)).toBe(false);
    }
    expect(readdirSync(work).filter((f) => f.includes("kiln-tmp"))).toEqual([]);
  });

  it("index writes C:, S: and fields; --merge keeps other records and replaces the same name+version", () => {
    const repo = join(work, "repo");
    mkdirSync(repo);
    const p1 = join(repo, "one-1.0-r0.apk"),
      p2 = join(repo, "two-2.0-r0.apk");
    expect(
      kiln(["mkpkg", join(work, "tree"), "--name", "one", "--version", "1.0-r0", "--signing-key", keyA, "-o", p1])
        .status,
    ).toBe(0);
    expect(
      kiln(["mkpkg", join(work, "tree"), "--name", "two", "--version", "2.0-r0", "--signing-key", keyA, "-o", p2])
        .status,
    ).toBe(0);
    const idx = join(repo, "APKINDEX.tar.gz");
    expect(kiln(["index", "--signing-key", keyA, "--description", "test repo", "-o", idx, p1]).status).toBe(0);
    expect(kiln(["index", "--merge", "--signing-key", keyA, "-o", idx, p2]).status).toBe(0);
    const doc = JSON.parse(kiln(["inspect", idx, "--json"]).stdout);
    expect(doc.description).toBe("test repo");
    expect(doc.records.map((r: { name: string }) => r.name)).toEqual(["one", "two"]);
    expect(doc.records[1].fileSize).toBe(statSync(p2).size);
    expect(kiln(["verify", "--keys-dir", keysDir, idx]).status).toBe(0);
    // Replace "one" with a different build of the same version.
    writeFileSync(join(work, "tree/usr/bin/extra"), "x");
    expect(
      kiln([
        "mkpkg",
        join(work, "tree"),
        "--name",
        "one",
        "--version",
        "1.0-r0",
        "--description",
        "rebuilt",
        "--signing-key",
        keyA,
        "-o",
        p1,
      ]).status,
    ).toBe(0);
    expect(kiln(["index", "--merge", "--signing-key", keyA, "-o", idx, p1]).status).toBe(0);
    const doc2 = JSON.parse(kiln(["inspect", idx, "--json"]).stdout);
    expect(doc2.records.map((r: { name: string; description?: string }) => [r.name, r.description ?? ""])).toEqual([
      ["one", "rebuilt"],
      ["two", ""],
    ]);
    expect(doc2.records[0].fileSize).toBe(statSync(p1).size);
  });

  it("sign re-signs in place (S: follows after re-indexing); sign-index replaces the index signature", () => {
    const p = join(work, "resign.apk");
    expect(
      kiln(["mkpkg", join(work, "tree"), "--name", "resign", "--version", "1.0-r0", "--signing-key", keyA, "-o", p])
        .status,
    ).toBe(0);
    const bdir = join(work, "keys-b");
    mkdirSync(bdir);
    writeFileSync(join(bdir, "beta.rsa.pub"), readFileSync(`${keyB}.pub`));
    expect(kiln(["verify", "--keys-dir", bdir, p]).stdout).toMatch(/UNTRUSTED/);
    const before = statSync(p).size;
    const r = kiln(["sign", "--signing-key", keyB, p]);
    expect(r.status, r.stderr).toBe(0);
    expect(kiln(["verify", "--keys-dir", bdir, p]).stdout).toMatch(/: OK /);
    expect(kiln(["verify", "--keys-dir", keysDir, p]).stdout).toMatch(/UNTRUSTED/);
    const idx = join(work, "resign-index.tar.gz");
    expect(kiln(["index", "--signing-key", keyA, "-o", idx, p]).status).toBe(0);
    const doc = JSON.parse(kiln(["inspect", idx, "--json"]).stdout);
    expect(doc.records[0].fileSize).toBe(statSync(p).size);
    expect(typeof before).toBe("number");
    expect(kiln(["sign-index", "--signing-key", keyB, idx]).status).toBe(0);
    expect(kiln(["verify", "--keys-dir", bdir, idx]).stdout).toMatch(/: OK /);
    expect(kiln(["verify", "--keys-dir", keysDir, idx]).stdout).toMatch(/UNTRUSTED/);
  });

  it("verify reports every file and exits 1 when any is not OK; --json for machines", () => {
    const ok = join(work, "tool-1.0-r0.apk");
    const broken = join(work, "broken.apk");
    const b = readFileSync(ok);
    writeFileSync(broken, b.subarray(0, b.length - 100));
    const empty = join(work, "empty.apk");
    writeFileSync(empty, "");
    const r = kiln(["verify", "--keys-dir", keysDir, ok, broken, empty, join(work, "missing.apk")]);
    expect(r.status).toBe(1);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/: OK /);
    expect(lines[1]).toMatch(/broken\.apk: BAD archive \(/);
    expect(lines[2]).toMatch(/empty\.apk: BAD archive \(.*empty file/);
    expect(lines[3]).toMatch(/missing\.apk: BAD archive \(/);
    const j = JSON.parse(kiln(["verify", "--keys-dir", keysDir, "--json", ok]).stdout);
    expect(j[0]).toMatchObject({ kind: "package", verdict: "OK" });
  });
});

describe("kiln version", () => {
  it("-t compares as apk version -t", () => {
    const cases: Array<[string, string, string]> = [
      ["1.0", "1.0", "="],
      ["1.0_rc1", "1.0", "<"],
      ["1.05", "1.5", "<"],
      ["1.0-r1", "1.0.1", "<"],
      ["1.0a", "1.0.1", "<"],
      ["2.0_p1", "2.0", ">"],
      ["1.0", "1.0-r0", "<"],
    ];
    for (const [a, b, want] of cases) expect(kiln(["version", "-t", a, b]).stdout.trim(), `${a} ${b}`).toBe(want);
    expect(kiln(["version", "-t", "1.2aa", "1.0"]).status).toBe(1);
  });
  it("-c prints invalid versions and exits non-zero", () => {
    const ok = kiln(["version", "-c", "1.0", "2.3.4_rc1-r2"]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toBe("");
    const bad = kiln(["version", "-c", "1.0", "1.2aa", "1.0_foo"]);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toBe("1.2aa\n1.0_foo\n");
  });
});

describe("kiln --help", () => {
  it("lists commands; each has --help; unknown commands and options are usage errors (exit 2)", () => {
    const h = kiln(["--help"]);
    expect(h.status).toBe(0);
    for (const c of [
      "keygen",
      "mkpkg",
      "index",
      "sign",
      "sign-index",
      "verify",
      "inspect",
      "version",
      "build",
      "image",
    ]) {
      expect(h.stdout).toContain(`  ${c}`);
      if (c !== "image") expect(kiln([c, "--help"]).stdout).toContain(`usage: kiln ${c}`);
    }
    expect(kiln(["frobnicate"]).status).toBe(2);
    expect(kiln(["verify", "--bogus"]).status).toBe(2);
  });
});
