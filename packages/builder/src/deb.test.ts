// .deb reading and unpacking against a real Debian package fetched through
// the mirror from apt's configuration (no host name is written here), against
// packages built by dpkg-deb in every compression, and against hand-made
// hostile packages; plus Debian → apk version mapping checked against dpkg.

import { execFileSync } from "node:child_process";
import {
  createReadStream,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
  symlinkSync,
  readdirSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareVersions, isValidVersion } from "@kiln/apk";
import { debVersionToApk, excludePath, mergedUsrSymlink, readArMembers, readDeb, unpackDeb } from "./deb.js";
import { detectDependencies, mergeDependencies } from "./detect-deps.js";
import { SourceError, debianMirror, decompress, fetchSource } from "./fetch-source.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
// Downloads persist between runs (content-addressed, so never stale).
const CACHE = join(REPO, "node_modules/.cache/kiln-build-tests");
const SUITE = "bookworm";
const ARCH = "amd64";

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "kiln-deb-"));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// A real package from the Debian archive

interface PoolEntry {
  package: string;
  version: string;
  filename: string;
  sha256: string;
  size: number;
}

async function debianPoolEntry(name: string): Promise<{ mirror: string; entry: PoolEntry }> {
  let mirror: string;
  try {
    mirror = debianMirror();
  } catch (e) {
    throw new Error(
      `the .deb tests need a Debian mirror from apt's configuration or KILN_DEBIAN_MIRROR: ${(e as Error).message}`,
    );
  }
  mkdirSync(CACHE, { recursive: true });
  const metaFile = join(CACHE, `${SUITE}-${ARCH}-${name}.json`);
  if (existsSync(metaFile) && Date.now() - statSync(metaFile).mtimeMs < 24 * 3600_000) {
    return { mirror, entry: JSON.parse(readFileSync(metaFile, "utf8")) as PoolEntry };
  }
  const releaseUrl = `${mirror}/dists/${SUITE}/InRelease`;
  let release: string;
  try {
    const res = await fetch(releaseUrl);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    release = await res.text();
  } catch (e) {
    throw new Error(
      `cannot reach the Debian mirror ${mirror} (${process.env.KILN_DEBIAN_MIRROR ? "from KILN_DEBIAN_MIRROR" : "from apt's configuration"}) for ${releaseUrl}: ${(e as Error).message}${(e as { cause?: Error }).cause ? ` (${(e as { cause?: Error }).cause!.message})` : ""}`,
    );
  }
  const idx = `main/binary-${ARCH}/Packages.xz`;
  const sha = new RegExp(`^SHA256:\\n(?:^ .*\\n)*?^ ([0-9a-f]{64}) +\\d+ ${idx.replace(/[.]/g, "\\.")}$`, "m").exec(
    release,
  );
  if (!sha) throw new Error(`${releaseUrl} lists no SHA256 for ${idx}`);
  // The index itself goes through fetchSource: pinned by the hash InRelease gives.
  const packagesXz = await fetchSource(
    { uri: `\${{mirror.debian}}/dists/${SUITE}/${idx}`, expectedSha256: sha[1]! },
    { cacheDir: CACHE },
  );
  const d = decompress(createReadStream(packagesXz), "xz", packagesXz);
  const parts: Buffer[] = [];
  for await (const c of d.stream) parts.push(c);
  await d.done;
  const text = Buffer.concat(parts).toString("utf8");
  const at = text.indexOf(`\nPackage: ${name}\n`);
  if (at < 0) throw new Error(`${name} is not in ${idx}`);
  const stanza = text.slice(at + 1, text.indexOf("\n\n", at + 1));
  const field = (f: string): string => {
    const m = new RegExp(`^${f}: (.*)$`, "m").exec(stanza);
    if (!m) throw new Error(`${name}: no ${f} in the Packages entry`);
    return m[1]!;
  };
  const entry: PoolEntry = {
    package: name,
    version: field("Version"),
    filename: field("Filename"),
    sha256: field("SHA256"),
    size: Number(field("Size")),
  };
  writeFileSync(metaFile, JSON.stringify(entry));
  return { mirror, entry };
}

describe("a real Debian package (zlib1g from the archive)", () => {
  // Fetched inside each test (once per package), so an unreachable mirror
  // fails the tests with the reason rather than skipping them.
  const fetched = new Map<string, Promise<{ deb: string; entry: PoolEntry }>>();
  const realDeb = (name: string): Promise<{ deb: string; entry: PoolEntry }> => {
    let p = fetched.get(name);
    if (!p) {
      p = (async () => {
        const got = await debianPoolEntry(name);
        try {
          const deb = await fetchSource(
            { uri: `mirror://debian/${got.entry.filename}`, expectedSha256: got.entry.sha256 },
            { cacheDir: CACHE, retries: 2, retryDelayMs: 200 },
          );
          return { deb, entry: got.entry };
        } catch (e) {
          throw new Error(
            `cannot download ${got.entry.filename} from the Debian mirror ${got.mirror}: ${(e as Error).message}`,
          );
        }
      })();
      fetched.set(name, p);
    }
    return p;
  };
  const real = (): Promise<{ deb: string; entry: PoolEntry }> => realDeb("zlib1g");

  it("reads the control fields and member formats", async () => {
    const { deb, entry } = await real();
    const info = await readDeb(deb);
    expect(info.control.Package).toBe("zlib1g");
    expect(info.control.Version).toBe(entry.version);
    expect(info.control.Architecture).toBe("amd64");
    expect(info.control.Depends).toMatch(/libc6 \(>= [0-9.]+\)/);
    expect(info.control.Provides).toBe("libz1");
    expect(info.control.Description!.split("\n")[0]).toBe("compression library - runtime");
    expect(info.formatVersion).toBe("2.0");
    expect(["tar.xz", "tar.zst", "tar.gz"]).toContain(info.dataFormat);
    expect(Object.keys(info.controlFiles)).toContain("md5sums");
    // The same fields as dpkg-deb reads them.
    const dpkg = execFileSync("dpkg-deb", ["-f", deb, "Package", "Version", "Depends"], { encoding: "utf8" });
    expect(dpkg).toContain(`Version: ${info.control.Version}`);
    expect(dpkg).toContain(`Depends: ${info.control.Depends}`);
    expect(isValidVersion(debVersionToApk(info.control.Version!))).toBe(true);
  });

  it("unpacks into merged-usr: /lib moves under /usr, the soname link still resolves, file contents match dpkg's", async () => {
    const { deb, entry } = await real();
    const dest = join(work, "zlib-merged");
    const r = await unpackDeb(deb, dest, { mergedUsr: true });
    expect(r.control.Package).toBe("zlib1g");
    expect(existsSync(join(dest, "lib"))).toBe(false);
    const libdir = join(dest, "usr/lib/x86_64-linux-gnu");
    const libfile = readdirSync(libdir).find((n) => /^libz\.so\.1\.\d/.test(n));
    expect(libfile).toBeDefined();
    expect(lstatSync(join(libdir, libfile!)).isFile()).toBe(true);
    expect(readlinkSync(join(libdir, "libz.so.1"))).toBe(libfile);
    expect(realpathSync(join(libdir, "libz.so.1"))).toBe(realpathSync(join(libdir, libfile!)));
    expect(existsSync(join(dest, "usr/share/doc/zlib1g/copyright"))).toBe(true);
    expect(statSync(join(libdir, libfile!)).mode & 0o777).toBe(0o644);
    // dpkg-deb's own extraction (into a scratch dir) as the reference for content.
    const ref = join(work, "zlib-dpkg");
    execFileSync("dpkg-deb", ["-x", deb, ref]);
    const refLib = readdirSync(ref).includes("lib")
      ? join(ref, "lib/x86_64-linux-gnu")
      : join(ref, "usr/lib/x86_64-linux-gnu");
    expect(readFileSync(join(libdir, libfile!)).equals(readFileSync(join(refLib, libfile!)))).toBe(true);
    expect(r.paths).toContain(`usr/lib/x86_64-linux-gnu/${libfile}`);

    // The relocated library is found by dependency detection.
    const deps = await detectDependencies(dest, { version: `${debVersionToApk(entry.version)}-r0` });
    expect(deps.provides).toContain("so:libz.so.1=1");
    expect(deps.depends).toContain("so:libc.so.6");
  });

  it("leaves out excluded paths (as installed under merged /usr) with what is under them, and nothing else", async () => {
    const { deb } = await real();
    const all = join(work, "zlib-all");
    const some = join(work, "zlib-excluded");
    await unpackDeb(deb, all, { mergedUsr: true });
    const libdir = "usr/lib/x86_64-linux-gnu";
    const lib = readdirSync(join(all, libdir)).find((n) => /^libz\.so\.1\.\d/.test(n))!;
    // the library is under /lib in the .deb: excluded by its merged path; the docs as a directory
    const r = await unpackDeb(deb, some, { mergedUsr: true, exclude: [`${libdir}/${lib}`, "usr/share/doc"] });
    expect(existsSync(join(some, libdir, lib))).toBe(false);
    expect(existsSync(join(some, "usr/share/doc"))).toBe(false);
    expect(lstatSync(join(some, libdir, "libz.so.1")).isSymbolicLink()).toBe(true);
    expect(r.paths).not.toContain(`${libdir}/${lib}`);
    const list = (root: string) =>
      execFileSync("find", [".", "-printf", "%p\\n"], { cwd: root, encoding: "utf8" }).split("\n").sort();
    const expected = list(all).filter((p) => p !== `./${libdir}/${lib}` && !p.startsWith("./usr/share/doc"));
    expect(list(some)).toEqual(expected);
    expect(excludePath("/usr/bin/x/")).toBe("usr/bin/x");
    for (const bad of ["", "/", "../etc", "usr/../etc", "usr//bin", "./usr"]) expect(excludePath(bad)).toBeUndefined();
  });

  it("unpacks without relocation when mergedUsr is off", async () => {
    const { deb } = await real();
    const dest = join(work, "zlib-plain");
    await unpackDeb(deb, dest, { mergedUsr: false });
    const ref = join(work, "zlib-dpkg2");
    execFileSync("dpkg-deb", ["-x", deb, ref]);
    const list = (root: string): string[] =>
      execFileSync("find", [".", "-printf", "%y %m %p %l\\n"], { cwd: root, encoding: "utf8" }).split("\n").sort();
    expect(list(dest)).toEqual(list(ref));
  });

  it("imports libc6: the loader link in /lib64 is rewritten into /usr, and its so: needs are all its own", async () => {
    const { deb, entry } = await realDeb("libc6");
    const dest = join(work, "libc6");
    const r = await unpackDeb(deb, dest, { mergedUsr: true });
    expect(r.control.Package).toBe("libc6");
    expect(readlinkSync(join(dest, "usr/lib64/ld-linux-x86-64.so.2"))).toBe(
      "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    );
    expect(lstatSync(join(dest, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")).isFile()).toBe(true);
    for (const top of ["lib", "lib64"]) expect(existsSync(join(dest, top))).toBe(false);
    const deps = await detectDependencies(dest, { version: `${debVersionToApk(entry.version)}-r0` });
    expect(deps.provides).toEqual(
      expect.arrayContaining(["so:libc.so.6=6", "so:ld-linux-x86-64.so.2=2", "so:libm.so.6=6"]),
    );
    expect(deps.depends).toContain("so:ld-linux-x86-64.so.2");
    expect(deps.details.warnings).toEqual([]);
    const merged = mergeDependencies({ declared: {}, detected: deps });
    expect(merged.depends).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// Packages built with dpkg-deb

function buildDeb(
  name: string,
  compression: "gzip" | "xz" | "zstd" | "none",
  files: (root: string) => void,
  extraControl = "",
): string {
  const root = join(work, `src-${name}-${compression}`);
  mkdirSync(join(root, "DEBIAN"), { recursive: true });
  writeFileSync(
    join(root, "DEBIAN/control"),
    `Package: ${name}\nVersion: 1:2.36-9+deb12u4\nArchitecture: amd64\nMaintainer: Kiln Tests <tests@localhost>\nDepends: libc6 (>= 2.34),\n libgcc-s1\nDescription: a test package\n First line.\n .\n Second paragraph.\n${extraControl}`,
  );
  files(root);
  const out = join(work, `${name}-${compression}.deb`);
  execFileSync("dpkg-deb", ["--root-owner-group", `-Z${compression}`, "--build", root, out], { stdio: "pipe" });
  return out;
}

function usrLayout(root: string): void {
  const mk = (p: string, body: string, mode = 0o644): void => {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), body, { mode });
  };
  mk("bin/tool", "#!/bin/sh\necho tool\n", 0o755);
  mk("sbin/admin", "#!/bin/sh\necho admin\n", 0o4755);
  mk("lib/x86_64-linux-gnu/libfoo.so.1.0", "not really a library\n");
  symlinkSync("libfoo.so.1.0", join(root, "lib/x86_64-linux-gnu/libfoo.so.1"));
  mk("lib/x86_64-linux-gnu/ld-fake.so.2", "loader\n", 0o755);
  mkdirSync(join(root, "lib64"));
  symlinkSync("/lib/x86_64-linux-gnu/ld-fake.so.2", join(root, "lib64/ld-fake.so.2"));
  mk("usr/bin/other", "#!/bin/sh\n", 0o755);
  symlinkSync("../../bin/tool", join(root, "usr/bin/tool-alias"));
  symlinkSync("../usr/bin/other", join(root, "bin/other-alias"));
  symlinkSync("../../../usr/share/foo/data", join(root, "lib/x86_64-linux-gnu/data-link"));
  mk("usr/share/foo/data", "data\n");
  mk("usr/share/doc/foo/copyright", "(c)\n");
  execFileSync("ln", [join(root, "usr/share/foo/data"), join(root, "usr/share/foo/data-hardlink")]);
}

describe("packages built by dpkg-deb", () => {
  for (const comp of ["xz", "zstd", "gzip", "none"] as const) {
    it(`reads and unpacks a ${comp} .deb into merged-usr with correct links`, async () => {
      const deb = buildDeb("layout", comp, usrLayout);
      const info = await readDeb(deb);
      expect(info.control.Package).toBe("layout");
      expect(info.control.Version).toBe("1:2.36-9+deb12u4");
      expect(info.control.Depends).toBe("libc6 (>= 2.34),\nlibgcc-s1");
      expect(info.control.Description).toBe("a test package\nFirst line.\n.\nSecond paragraph.");
      expect(info.dataFormat).toBe({ xz: "tar.xz", zstd: "tar.zst", gzip: "tar.gz", none: "tar" }[comp]);

      const dest = join(work, `layout-${comp}`);
      await unpackDeb(deb, dest, { mergedUsr: true });
      for (const top of ["bin", "sbin", "lib", "lib64"]) expect(existsSync(join(dest, top))).toBe(false);
      expect(readFileSync(join(dest, "usr/bin/tool"), "utf8")).toBe("#!/bin/sh\necho tool\n");
      expect(statSync(join(dest, "usr/bin/tool")).mode & 0o7777).toBe(0o755);
      expect(statSync(join(dest, "usr/sbin/admin")).mode & 0o7777).toBe(0o4755);
      const link = (p: string): string => readlinkSync(join(dest, p));
      // Relative links whose ends did not move are untouched.
      expect(link("usr/lib/x86_64-linux-gnu/libfoo.so.1")).toBe("libfoo.so.1.0");
      // Absolute targets into merged directories are rewritten.
      expect(link("usr/lib64/ld-fake.so.2")).toBe("/usr/lib/x86_64-linux-gnu/ld-fake.so.2");
      // Relative links are recomputed when an end moved, and resolve inside the tree.
      expect(link("usr/bin/tool-alias")).toBe("tool");
      expect(link("usr/bin/other-alias")).toBe("other");
      expect(link("usr/lib/x86_64-linux-gnu/data-link")).toBe("../../share/foo/data");
      for (const p of [
        "usr/bin/tool-alias",
        "usr/bin/other-alias",
        "usr/lib/x86_64-linux-gnu/data-link",
        "usr/lib/x86_64-linux-gnu/libfoo.so.1",
      ]) {
        expect(realpathSync(join(dest, p)).startsWith(realpathSync(dest) + "/")).toBe(true);
      }
      expect(statSync(join(dest, "usr/share/foo/data-hardlink")).ino).toBe(
        statSync(join(dest, "usr/share/foo/data")).ino,
      );
    });
  }

  it("refuses a package that ships the same file in /lib and /usr/lib when merging", async () => {
    const deb = buildDeb("clash", "xz", (root) => {
      mkdirSync(join(root, "lib"), { recursive: true });
      mkdirSync(join(root, "usr/lib"), { recursive: true });
      writeFileSync(join(root, "lib/libc.so"), "a");
      writeFileSync(join(root, "usr/lib/libc.so"), "b");
    });
    await expect(unpackDeb(deb, join(work, "clash"), { mergedUsr: true })).rejects.toThrow(
      /two entries write usr\/lib\/libc\.so/,
    );
    await unpackDeb(deb, join(work, "clash-plain"), { mergedUsr: false });
  });

  it("maps symlinks the way merged-usr needs", () => {
    expect(mergedUsrSymlink("/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/foo", "lib/foo")).toBe(
      "/usr/lib/x86_64-linux-gnu/libc.so.6",
    );
    expect(mergedUsrSymlink("/usr/share/zoneinfo/UTC", "etc/localtime", "etc/localtime")).toBe(
      "/usr/share/zoneinfo/UTC",
    );
    expect(mergedUsrSymlink("/bin/bash", "usr/bin/rbash", "bin/rbash")).toBe("/usr/bin/bash");
    expect(mergedUsrSymlink("bash", "usr/bin/rbash", "bin/rbash")).toBe("bash");
    expect(mergedUsrSymlink("../lib/x/y", "usr/sbin/z", "sbin/z")).toBe("../lib/x/y");
    expect(mergedUsrSymlink("../../lib/x/y", "usr/bin/z", "usr/bin/z")).toBe("../lib/x/y");
  });
});

// ---------------------------------------------------------------------------
// Hostile packages (hand-made ar + tar)

function octal(b: Buffer, off: number, len: number, v: number): void {
  b.write(v.toString(8).padStart(len - 1, "0") + "\0", off, len, "latin1");
}

function tar(entries: Array<{ name: string; type?: string; data?: string; linkname?: string; mode?: number }>): Buffer {
  const out: Buffer[] = [];
  for (const e of entries) {
    const data = Buffer.from(e.data ?? "");
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, "utf8");
    octal(h, 100, 8, e.mode ?? 0o644);
    octal(h, 108, 8, 0);
    octal(h, 116, 8, 0);
    octal(h, 124, 12, data.length);
    octal(h, 136, 12, 1_700_000_000);
    h.write("        ", 148, 8, "latin1");
    h.write(e.type ?? "0", 156, 1, "latin1");
    h.write(e.linkname ?? "", 157, 100, "utf8");
    h.write("ustar\u000000", 257, 8, "latin1");
    let sum = 0;
    for (const c of h) sum += c;
    h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
    out.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

function ar(members: Array<[string, Buffer]>): Buffer {
  const out: Buffer[] = [Buffer.from("!<arch>\n")];
  for (const [name, data] of members) {
    const h = `${name.padEnd(16)}${"0".padEnd(12)}${"0".padEnd(6)}${"0".padEnd(6)}${"100644".padEnd(8)}${String(data.length).padEnd(10)}\`\n`;
    out.push(Buffer.from(h, "latin1"), data);
    if (data.length % 2) out.push(Buffer.from("\n"));
  }
  return Buffer.concat(out);
}

function hostileDeb(name: string, data: Buffer): string {
  const control = tar([
    {
      name: "./control",
      data: "Package: evil\nVersion: 1.0\nArchitecture: amd64\nMaintainer: Kiln Tests <tests@localhost>\nDescription: hostile\n",
    },
  ]);
  const f = join(work, `${name}.deb`);
  writeFileSync(
    f,
    ar([
      ["debian-binary", Buffer.from("2.0\n")],
      ["control.tar", control],
      ["data.tar", data],
    ]),
  );
  return f;
}

describe("hostile packages", () => {
  it("the hand-made package format is a valid .deb (dpkg-deb reads it)", async () => {
    const f = hostileDeb(
      "benign",
      tar([
        { name: "./usr/", type: "5", mode: 0o755 },
        { name: "./usr/hello", data: "hi\n" },
      ]),
    );
    expect(execFileSync("dpkg-deb", ["-f", f, "Package"], { encoding: "utf8" }).trim()).toBe("evil");
    expect((await readArMembers(f)).map((m) => m.name)).toEqual(["debian-binary", "control.tar", "data.tar"]);
    await unpackDeb(f, join(work, "benign"), { mergedUsr: true });
    expect(readFileSync(join(work, "benign/usr/hello"), "utf8")).toBe("hi\n");
  });

  it("refuses ../, absolute names and writes through a symlink, leaving nothing outside", async () => {
    const box = mkdtempSync(join(work, "box-"));
    const outside = join(box, "outside");
    mkdirSync(outside);
    const cases: Array<[string, Buffer, RegExp]> = [
      [
        "dotdot",
        tar([
          { name: "./ok", data: "ok" },
          { name: "../evil", data: "x" },
        ]),
        /"\.\."/,
      ],
      ["absolute", tar([{ name: join(outside, "abs-evil"), data: "x" }]), /absolute/],
      [
        "symlink",
        tar([
          { name: "./a", type: "2", linkname: outside },
          { name: "./a/passwd", data: "root::0:0::/:/bin/sh\n" },
        ]),
        /through the symlink a\b/,
      ],
      // Relocation must not open a way round the check: lib -> outside becomes usr/lib -> outside.
      [
        "lib-symlink",
        tar([
          { name: "./lib", type: "2", linkname: outside },
          { name: "./lib/passwd", data: "x" },
        ]),
        /through the symlink (usr\/)?lib\b/,
      ],
      ["hardlink-out", tar([{ name: "./h", type: "1", linkname: "../outside/x" }]), /"\.\."/],
    ];
    for (const [name, data, re] of cases) {
      for (const mergedUsr of [false, true]) {
        const dest = join(box, `dest-${name}-${mergedUsr}`);
        const err = await unpackDeb(hostileDeb(name, data), dest, { mergedUsr }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, `${name} mergedUsr=${mergedUsr}`).toBeInstanceOf(SourceError);
        expect((err as SourceError).code).toBe("UNSAFE_PATH");
        expect((err as Error).message).toMatch(re);
      }
    }
    expect(readdirSync(outside)).toEqual([]);
    expect(readdirSync(box).filter((n) => !n.startsWith("dest-") && n !== "outside")).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// Versions

describe("debVersionToApk", () => {
  it("maps typical Debian versions", () => {
    const cases: Array<[string, string]> = [
      ["2.36-9+deb12u4", "2.36_p9_p12_p4"],
      ["1:1.2.13.dfsg-1", "1.2.13_p1"],
      ["2.10-3", "2.10_p3"],
      ["12.2.0-14", "12.2.0_p14"],
      ["1:9.2p1-2+deb12u3", "9.2p1_p2_p12_p3"],
      ["6.4+20230625-2", "6.4_p20230625_p2"],
      ["1.0~rc1-2", "1.0_rc1_p2"],
      ["3.0.15-1~deb12u1", "3.0.15_p1_pre12_p1"],
      ["20230311", "20230311"],
      ["2024a-0+deb12u1", "2024a_p0_p12_p1"],
      ["5.4.1-0.2", "5.4.1_p0_p2"],
      ["1.5.4+dfsg-2", "1.5.4_p2"],
      ["2.9.14+dfsg-1.3~deb12u1", "2.9.14_p1_p3_pre12_p1"],
      ["0.6.2+git20220101.abcdef0-1", "0.6.2_git20220101_p1"],
      ["1.2.3~beta1", "1.2.3_beta1"],
      ["2:1.02.185-2", "1.02.185_p2"],
      ["1.0+really0.9-1", "0.9_p1"],
      ["4.3-4.1", "4.3_p4_p1"],
    ];
    for (const [deb, apk] of cases) {
      expect(debVersionToApk(deb), deb).toBe(apk);
      expect(isValidVersion(apk)).toBe(true);
    }
    expect(() => debVersionToApk("abc-1")).toThrow(/does not start with a digit/);
  });

  it("orders like dpkg for typical version sequences", () => {
    const chains = [
      ["2.36-9", "2.36-9+deb12u1", "2.36-9+deb12u4", "2.36-9+deb12u10", "2.36-10", "2.37-1"],
      ["1.0~rc1-1", "1.0-1", "1.0-1+b1", "1.0-2", "1.0.1-1"],
      ["1.0-1~bpo12+1", "1.0-1"],
      ["3.0.15-1~deb12u1", "3.0.15-1", "3.0.16-1"],
      ["6.4-4", "6.4+20230625-1", "6.4+20230625-2", "6.4+20240113-1"],
      ["2024a-0+deb12u1", "2024a-1", "2024b-0+deb12u1"],
      ["9.2p1-2", "9.2p1-2+deb12u3", "9.3p1-1"],
      ["1:1.2.13.dfsg-1", "1:1.2.13.dfsg-3", "1:1.3.dfsg-1"],
      ["1.2.3~alpha1", "1.2.3~beta1", "1.2.3~rc1", "1.2.3", "1.2.3.1"],
      ["5.2.15-2", "5.2.15-2+b1", "5.2.15-2+b7", "5.2.21-2"],
      ["0.6.2+git20220101.abcdef0-1", "0.6.2+git20230101.1234abc-1", "0.6.3-1"],
    ];
    for (const chain of chains) {
      for (let i = 0; i + 1 < chain.length; i++) {
        const [a, b] = [chain[i]!, chain[i + 1]!];
        // dpkg is the reference for the Debian side.
        execFileSync("dpkg", ["--compare-versions", a, "lt", b]);
        expect(compareVersions(debVersionToApk(a), debVersionToApk(b)), `${a} < ${b}`).toBe(-1);
      }
    }
  });
});
