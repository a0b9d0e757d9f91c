// Images end to end: repositories made with kiln mkpkg/index (and the real
// melange packages re-indexed), built with kiln image build, checked with
// Debian's umoci and skopeo, run under bubblewrap, pushed to docker-registry;
// ownership read back from the layer with GNU tar; data budgets.

import { execFileSync, spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  lstatSync,
  readlinkSync,
} from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildIndex, parseInstalledDb } from "@kiln/apk";
import { kiln, kilnAsync } from "./helpers/cli.js";
import {
  baseLayoutEntries,
  buildHello,
  makeKey,
  makeRepo,
  startRegistry,
  type Registry,
  type TestKey,
} from "./helpers/fixtures.js";
import { APK_REAL, noShared } from "./helpers/paths.js";

let work: string;
let key: TestKey;
let repo: string;
let hello: string;

function config(name: string, body: string): string {
  const f = join(work, `${name}.yaml`);
  writeFileSync(f, body);
  return f;
}

function listTree(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      out.push(relative(root, p));
      if (lstatSync(p).isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

function umociUnpack(layout: string, tag = "latest"): string {
  const bundle = mkdtempSync(join(work, "bundle-"));
  execFileSync("rm", ["-rf", bundle]);
  execFileSync("umoci", ["unpack", "--rootless", "--image", `${layout}:${tag}`, bundle], { stdio: "pipe" });
  return join(bundle, "rootfs");
}

const HELLO_CONFIG = () => `
contents:
  repositories:
    - ${repo}
  keyring:
    - ${key.publicPath}
  packages:
    - hello
    - baselayout
accounts:
  groups:
    - groupname: nonroot
      gid: 65532
  users:
    - username: nonroot
      uid: 65532
      gid: 65532
  run-as: nonroot
work-dir: /home/nonroot
entrypoint:
  command: /usr/bin/hello
cmd: --greeting "two words"
environment:
  GREETING: hi
archs:
  - x86_64
paths:
  - path: /var/data
    type: directory
    uid: 65532
    gid: 65532
    permissions: 0o750
`;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-image-e2e-"));
  key = await makeKey(work);
  repo = join(work, "repo");
  hello = buildHello(work);
  await makeRepo(repo, key.key, [
    { name: "baselayout", entries: baseLayoutEntries() },
    {
      name: "hello",
      version: "2.12-r1",
      entries: [{ path: "usr/bin/hello", type: "file", mode: 0o755, content: { file: hello } }],
      info: { depends: ["baselayout"], license: "GPL-3.0-or-later" },
    },
    {
      name: "hello",
      version: "2.10-r0",
      entries: [{ path: "usr/bin/hello", type: "file", mode: 0o755, content: "old" }],
    },
    { name: "tool-a", entries: [{ path: "etc/tool.conf", type: "file", content: "a" }] },
    { name: "tool-b", entries: [{ path: "etc/tool.conf", type: "file", content: "b" }] },
    { name: "needs-missing", entries: [], info: { depends: ["libmissing>=2"] } },
    { name: "libmissing", version: "1.0-r0", entries: [] },
  ]);
});

/** Every file path the installed database names. */
function dbFiles(db: ReturnType<typeof parseInstalledDb>): string[] {
  return db.flatMap((p) => p.dirs.flatMap((d) => d.files.map((f) => (d.path ? `${d.path}/${f.name}` : f.name))));
}

/** The paths that do not exist under root (a dangling symlink counts as present). */
function missingFrom(root: string, paths: string[]): string[] {
  return paths.filter((p) => {
    try {
      lstatSync(join(root, p));
      return false;
    } catch {
      return true;
    }
  });
}

describe("kiln image build", () => {
  let layout: string;
  let digest: string;

  it("builds an OCI layout that umoci unpacks to exactly the installed tree", () => {
    layout = join(work, "hello-oci");
    const r = kiln(["image", "build", config("hello", HELLO_CONFIG()), layout, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    digest = summary.digest;
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(summary.archs).toEqual([{ arch: "x86_64", packages: 2 }]);
    const rootfs = umociUnpack(layout);
    const tree = listTree(rootfs);
    for (const p of [
      "usr/bin/hello",
      "bin",
      "etc/passwd",
      "etc/group",
      "home/nonroot",
      "var/data",
      "etc/apk/world",
      "etc/apk/keys/test.rsa.pub",
      "usr/lib/apk/db/installed",
      "etc/apk/repositories",
      "etc/apk/arch",
    ]) {
      expect(tree, p).toContain(p);
    }
    expect(readlinkSync(join(rootfs, "bin"))).toBe("usr/bin");
    expect(readFileSync(join(rootfs, "etc/passwd"), "utf8")).toContain(
      "nonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh",
    );
    expect(readFileSync(join(rootfs, "usr/bin/hello")).equals(readFileSync(hello))).toBe(true);
    // The installed database names every file of every package.
    const db = parseInstalledDb(readFileSync(join(rootfs, "usr/lib/apk/db/installed"), "utf8"));
    expect(db.map((p) => `${p.record.name}-${p.record.version}`)).toEqual(["baselayout-1.0-r0", "hello-2.12-r1"]);
    const listed = dbFiles(db);
    expect(listed.length).toBeGreaterThan(0);
    expect(missingFrom(rootfs, listed)).toEqual([]);
    // Nothing in the rootfs that neither a package nor the config put there.
    const fromPkgs = new Set(
      db.flatMap((p) => [
        ...p.dirs.map((d) => d.path),
        ...p.dirs.flatMap((d) => d.files.map((f) => (d.path ? `${d.path}/${f.name}` : f.name))),
      ]),
    );
    const generated =
      /^(etc\/(passwd|group|shadow|apk(\/.*)?)|home(\/nonroot)?|var(\/data|\/cache(\/apk)?)?|usr\/lib\/apk(\/db(\/.*)?)?|lib)$/;
    for (const p of tree) expect(fromPkgs.has(p) || generated.test(p), `unexpected ${p}`).toBe(true);
    expect(readFileSync(join(rootfs, "etc/apk/world"), "utf8")).toBe("baselayout\nhello\n");
  });

  it("skopeo reads the layout and reports the digest kiln printed; the config carries entrypoint, user, workdir, env", () => {
    const raw = execFileSync("skopeo", ["inspect", "--raw", `oci:${layout}:latest`]);
    expect("sha256:" + createHash("sha256").update(raw).digest("hex")).toBe(digest);
    const cfg = JSON.parse(
      execFileSync("skopeo", ["inspect", "--config", `oci:${layout}:latest`], { encoding: "utf8" }),
    );
    expect(cfg.config.Entrypoint).toEqual(["/usr/bin/hello"]);
    expect(cfg.config.Cmd).toEqual(["--greeting", "two words"]);
    // run-as: nonroot, resolved to its uid in the image's /etc/passwd, as apko does.
    expect(cfg.config.User).toBe("65532");
    expect(cfg.config.WorkingDir).toBe("/home/nonroot");
    expect(cfg.config.Env).toContain("GREETING=hi");
    expect(cfg.config.Env).toContain("PATH=/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin");
    expect(cfg.created).toBe("2023-11-14T22:13:20Z");
    expect(cfg.architecture).toBe("amd64");
  });

  it("the packaged binary runs from the unpacked root under bubblewrap with the image's entrypoint, user and working directory", () => {
    const rootfs = umociUnpack(layout);
    const cfg = JSON.parse(
      execFileSync("skopeo", ["inspect", "--config", `oci:${layout}:latest`], { encoding: "utf8" }),
    );
    const passwd = readFileSync(join(rootfs, "etc/passwd"), "utf8")
      .split("\n")
      .map((l) => l.split(":"));
    const user = passwd.find((p) => p[2] === cfg.config.User)!;
    const r = spawnSync(
      "bwrap",
      [
        "--bind",
        rootfs,
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--unshare-all",
        "--unshare-user",
        "--uid",
        user[2]!,
        "--gid",
        user[3]!,
        "--chdir",
        cfg.config.WorkingDir,
        "--clearenv",
        ...cfg.config.Env.flatMap((e: string) => ["--setenv", e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]),
        ...cfg.config.Entrypoint,
        ...cfg.config.Cmd,
      ],
      { encoding: "utf8" },
    );
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe(`hello from kiln uid=65532 cwd=/home/nonroot arg=--greeting arg=two words`);
  });

  it("same config and repository give the identical digest; oci-archive and docker-archive are written too", () => {
    const again = join(work, "hello-oci-2");
    const r = kiln(["image", "build", join(work, "hello.yaml"), again, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).digest).toBe(digest);
    const a1 = join(work, "a1.tar"),
      a2 = join(work, "a2.tar");
    expect(kiln(["image", "build", join(work, "hello.yaml"), a1, "--format", "oci-archive"]).status).toBe(0);
    expect(kiln(["image", "build", join(work, "hello.yaml"), a2, "--format", "oci-archive"]).status).toBe(0);
    expect(readFileSync(a1).equals(readFileSync(a2))).toBe(true);
    const inspect = JSON.parse(execFileSync("skopeo", ["inspect", `oci-archive:${a1}:latest`], { encoding: "utf8" }));
    expect(inspect.Digest).toBe(digest);
    const d = join(work, "docker.tar");
    expect(
      kiln(["image", "build", join(work, "hello.yaml"), d, "--format", "docker-archive", "--tag", "hello:1"]).status,
    ).toBe(0);
    const dins = JSON.parse(execFileSync("skopeo", ["inspect", `docker-archive:${d}`], { encoding: "utf8" }));
    expect(dins.Layers.length).toBeGreaterThan(0);
    expect(existsSync(`${layout}.sbom-x86_64.spdx.json`)).toBe(true);
  });

  it("the SBOM lists every installed package with purl, license and checksum", () => {
    const sbom = JSON.parse(readFileSync(`${layout}.sbom-x86_64.spdx.json`, "utf8"));
    expect(sbom.spdxVersion).toBe("SPDX-2.3");
    const pkgs = sbom.packages.filter((p: { SPDXID: string }) => p.SPDXID !== "SPDXRef-Image");
    expect(pkgs.map((p: { name: string }) => p.name).sort()).toEqual(["baselayout", "hello"]);
    const h = pkgs.find((p: { name: string }) => p.name === "hello");
    expect(h.versionInfo).toBe("2.12-r1");
    expect(h.licenseDeclared).toBe("GPL-3.0-or-later");
    expect(h.externalRefs[0].referenceLocator).toBe("pkg:apk/kiln/hello@2.12-r1?arch=x86_64&origin=hello");
    // The SHA-256 of the .apk file itself, not the C: control hash.
    expect(h.checksums).toEqual([{ algorithm: "SHA256", checksumValue: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
    expect(JSON.stringify(sbom)).not.toContain(work);
  });

  it("lock then build --lockfile installs exactly the locked set, and fails once the config changes", () => {
    const cfgFile = join(work, "hello.yaml");
    const r = kiln(["image", "lock", cfgFile, "-o", join(work, "hello.lock.json")]);
    expect(r.status, r.stderr).toBe(0);
    const lock = JSON.parse(readFileSync(join(work, "hello.lock.json"), "utf8"));
    expect(lock.contents.x86_64.map((e: { name: string; version: string }) => `${e.name}-${e.version}`)).toEqual([
      "baselayout-1.0-r0",
      "hello-2.12-r1",
    ]);
    const b = kiln([
      "image",
      "build",
      cfgFile,
      join(work, "locked"),
      "--lockfile",
      join(work, "hello.lock.json"),
      "--json",
    ]);
    expect(b.status, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout).digest).toBe(digest);
    const changed = config(
      "hello-changed",
      HELLO_CONFIG().replace("    - baselayout\n", "    - baselayout\n    - tool-a\n"),
    );
    const c = kiln(["image", "build", changed, join(work, "locked2"), "--lockfile", join(work, "hello.lock.json")]);
    expect(c.status).toBe(1);
    expect(c.stderr).toContain("no longer matches the lock file (+tool-a)");
    expect(existsSync(join(work, "locked2"))).toBe(false);
  });

  it("show-packages and dot describe the resolution", () => {
    const s = kiln(["image", "show-packages", join(work, "hello.yaml")]);
    expect(s.stdout.trim().split("\n")).toEqual([`x86_64 baselayout 1.0-r0 ${repo}`, `x86_64 hello 2.12-r1 ${repo}`]);
    const d = kiln(["image", "dot", join(work, "hello.yaml")]);
    expect(d.stdout).toContain('"hello" -> "baselayout"');
    expect(d.stdout).toContain('"world" -> "hello"');
  });

  it("--package adds a package from the command line, as one more line in contents.packages would", () => {
    const s = kiln(["image", "show-packages", join(work, "hello.yaml"), "--package", "tool-a"]);
    expect(s.status, s.stderr).toBe(0);
    expect(s.stdout.trim().split("\n")).toEqual([
      `x86_64 baselayout 1.0-r0 ${repo}`,
      `x86_64 hello 2.12-r1 ${repo}`,
      `x86_64 tool-a 1.0-r0 ${repo}`,
    ]);
    // The same image as the config with the line added: same digest.
    const byFlag = kiln([
      "image",
      "build",
      join(work, "hello.yaml"),
      join(work, "plus-flag"),
      "--package",
      "tool-a",
      "--json",
    ]);
    expect(byFlag.status, byFlag.stderr).toBe(0);
    const withLine = config(
      "hello-plus",
      HELLO_CONFIG().replace("    - baselayout\n", "    - baselayout\n    - tool-a\n"),
    );
    const byLine = kiln(["image", "build", withLine, join(work, "plus-line"), "--json"]);
    expect(byLine.status, byLine.stderr).toBe(0);
    expect(JSON.parse(byFlag.stdout).digest).toBe(JSON.parse(byLine.stdout).digest);
    expect(JSON.parse(byFlag.stdout).digest).not.toBe(digest);
    expect(readFileSync(join(umociUnpack(join(work, "plus-flag")), "etc/tool.conf"), "utf8")).toBe("a");
    // A package nobody has, and a malformed name: exit 1 naming it, exit 2 naming the option; no output.
    const missing = kiln(["image", "build", join(work, "hello.yaml"), join(work, "plus-missing"), "--package", "nope"]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain("nope");
    const bad = kiln(["image", "build", join(work, "hello.yaml"), join(work, "plus-bad"), "--package", "a b"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^kiln image: --package: "a b" is not a package name or dependency/);
    expect(existsSync(join(work, "plus-missing"))).toBe(false);
    expect(existsSync(join(work, "plus-bad"))).toBe(false);
  });

  it("layering by origin splits packages into layers", () => {
    const f = config("layered", HELLO_CONFIG() + "layering:\n  strategy: origin\n  budget: 3\n");
    const out = join(work, "layered");
    const r = kiln(["image", "build", f, out, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).layers).toBe(3);
    const rootfs = umociUnpack(out);
    expect(readFileSync(join(rootfs, "usr/bin/hello")).equals(readFileSync(hello))).toBe(true);
  });
});

describe("multi-arch", () => {
  it("two archs give an image index with both platforms; skopeo reads the arm64 config", async () => {
    const multi = join(work, "multi-repo");
    for (const arch of ["x86_64", "aarch64"]) {
      await makeRepo(
        multi,
        key.key,
        [
          { name: "baselayout", entries: baseLayoutEntries() },
          { name: "data", entries: [{ path: "usr/share/data/arch", type: "file", content: `built for ${arch}\n` }] },
        ],
        arch,
      );
    }
    const f = config(
      "multi",
      `contents:\n  repositories: [${multi}]\n  keyring: [${key.publicPath}]\n  packages: [baselayout, data]\narchs: [x86_64, arm64]\n`,
    );
    const out = join(work, "multi-oci");
    const r = kiln(["image", "build", f, out, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const idx = JSON.parse(execFileSync("skopeo", ["inspect", "--raw", `oci:${out}:latest`], { encoding: "utf8" }));
    expect(idx.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    expect(idx.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture).sort()).toEqual([
      "amd64",
      "arm64",
    ]);
    const arm = JSON.parse(
      execFileSync("skopeo", ["inspect", "--override-arch", "arm64", "--config", `oci:${out}:latest`], {
        encoding: "utf8",
      }),
    );
    expect(arm.architecture).toBe("arm64");
    // Each platform's layer holds its own package's contents.
    const layoutIndex = JSON.parse(readFileSync(join(out, "index.json"), "utf8"));
    expect(layoutIndex.manifests).toHaveLength(1);
    expect(JSON.parse(r.stdout).archs.map((a: { arch: string }) => a.arch)).toEqual(["x86_64", "aarch64"]);
  });
});

describe.skipIf(noShared())("images from real melange packages, re-indexed with a test key", () => {
  it("builds and unpacks", () => {
    const r2 = join(work, "melange-repo", "x86_64");
    mkdirSync(r2, { recursive: true });
    const apks = ["custom-ca-certs-1", "pretend-baselayout", "replayout"].map((n) => `${n}-1.0.0-r0.apk`);
    for (const a of apks) copyFileSync(join(APK_REAL, "melange-repo", a), join(r2, a));
    const ix = kiln([
      "index",
      "--signing-key",
      key.privatePath,
      "-o",
      join(r2, "APKINDEX.tar.gz"),
      ...apks.map((a) => join(r2, a)),
    ]);
    expect(ix.status, ix.stderr).toBe(0);
    const f = config(
      "melange",
      `contents:\n  repositories: [${join(work, "melange-repo")}]\n  keyring: [${key.publicPath}]\n  packages: [replayout, custom-ca-certs-1]\narchs: [x86_64]\n`,
    );
    const out = join(work, "melange-img");
    const r = kiln(["image", "build", f, out, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const rootfs = umociUnpack(out);
    const db = parseInstalledDb(readFileSync(join(rootfs, "lib/apk/db/installed"), "utf8"));
    expect(db.map((p) => p.record.name).sort()).toEqual(["custom-ca-certs-1", "pretend-baselayout", "replayout"]);
    const listed = dbFiles(db);
    expect(listed.length).toBeGreaterThan(0);
    expect(missingFrom(rootfs, listed)).toEqual([]);
  });
});

describe("bad inputs: one clear error, nothing left behind", () => {
  function fails(cfgText: string, expected: RegExp, name: string) {
    const f = config(name, cfgText);
    const out = join(work, `out-${name}`);
    // A fresh download cache: the shared one already holds the good packages.
    const r = kiln(["image", "build", f, out, "--cache-dir", mkdtempSync(join(work, "cache-"))]);
    expect(r.status, r.stdout).toBe(1);
    expect(r.stderr).toMatch(expected);
    expect(r.stderr).not.toMatch(/internal error| {4}at /);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((x) => x.startsWith(`out-${name}`))).toEqual([]);
    return r;
  }
  const base = () => `contents:\n  repositories: [${repo}]\n  keyring: [${key.publicPath}]\n`;

  it("unknown config keys, with file:line:column and the dotted path", () => {
    const r = fails(
      base() + "  packagez: [hello]\nentrypoint:\n  comand: x\n",
      /unknown key "packagez"/,
      "unknown-key",
    );
    expect(r.stderr).toMatch(/unknown-key\.yaml:4:3: contents\.packagez: unknown key "packagez"/);
    expect(r.stderr).toMatch(/unknown-key\.yaml:6:3: entrypoint\.comand: unknown key "comand"/);
  });
  it("malformed YAML", () => {
    fails("contents: [unclosed\n", /malformed-yaml\.yaml:\d+:\d+: YAML syntax/, "malformed-yaml");
  });
  it("uid 0 in users", () => {
    fails(
      base() + "  packages: [hello]\naccounts:\n  users:\n    - {username: toor, uid: 0}\n",
      /accounts\.users\[0\]\.uid: uid 0 is refused/,
      "uid0",
    );
  });
  it("a missing package, explained", () => {
    fails(base() + "  packages: [nosuchpkg]\n", /nosuchpkg/, "missing");
  });
  it("an unsatisfiable dependency, with the chain", () => {
    const r = fails(base() + "  packages: [needs-missing]\n", /libmissing/, "unsat");
    expect(r.stderr).toMatch(/needs-missing.*libmissing>=2.*libmissing-1\.0-r0/s);
  });
  it("a file conflict names both packages", () => {
    fails(base() + "  packages: [tool-a, tool-b]\n", /\/etc\/tool\.conf is in both tool-a and tool-b/, "conflict");
  });
  it("an untrusted index (no key) and a tampered index", async () => {
    fails(`contents:\n  repositories: [${repo}]\n  packages: [hello]\n`, /UNTRUSTED/, "untrusted");
    const bad = join(work, "tampered-repo");
    execFileSync("cp", ["-r", repo, bad]);
    const idx = join(bad, "x86_64/APKINDEX.tar.gz");
    // Keep the signature, change a record: the body no longer matches it.
    const { readIndex, buildIndexBody } = await import("@kiln/apk");
    const orig = await readIndex(readFileSync(idx));
    const records = orig.records.map((r) => (r.name === "hello" ? { ...r, description: "tampered" } : r));
    writeFileSync(idx, Buffer.concat([orig.signatureMember!, buildIndexBody(records)]));
    fails(
      `contents:\n  repositories: [${bad}]\n  keyring: [${key.publicPath}]\n  packages: [hello]\n`,
      /repository .*tampered-repo.*BAD signature/,
      "tampered",
    );
  });
  it("a package whose bytes differ from the index", async () => {
    const bad = join(work, "swapped-repo");
    execFileSync("cp", ["-r", repo, bad]);
    // Put the old hello's bytes under the new hello's name.
    copyFileSync(join(bad, "x86_64/hello-2.10-r0.apk"), join(bad, "x86_64/hello-2.12-r1.apk"));
    fails(
      `contents:\n  repositories: [${bad}]\n  keyring: [${key.publicPath}]\n  packages: [hello]\n`,
      /hello-2\.12-r1\.apk: .*(index|C:)/,
      "swapped",
    );
  });
  it("a symlink-escape package stays inside the root; a path-traversal package is refused", async () => {
    const evilRepo = join(work, "evil-repo");
    await makeRepo(evilRepo, key.key, [
      { name: "evil-link", entries: [{ path: "etc", type: "symlink", linkTarget: "/" }] },
      {
        name: "evil-file",
        entries: [{ path: "etc/passwd", type: "file", content: "owned" }],
        info: { depends: ["evil-link"] },
      },
    ]);
    const f = config(
      "evil",
      `contents:\n  repositories: [${evilRepo}]\n  keyring: [${key.publicPath}]\n  packages: [evil-file]\narchs: [x86_64]\n`,
    );
    const out = join(work, "evil-out");
    const r = kiln(["image", "build", f, out]);
    expect(r.status, r.stderr).toBe(0);
    const rootfs = umociUnpack(out);
    expect(readFileSync(join(rootfs, "passwd"), "utf8")).toBe("owned");
    expect(readFileSync("/etc/passwd", "utf8")).not.toContain("owned");

    // A hand-made package with ../ in an entry name, listed in a correctly signed index.
    const { gzipMember, encodeHeader, buildSignatureMember, identityOf, formatPkgInfo, emptyPackageInfo } =
      await import("@kiln/apk");

    const tarEntry = (path: string, content: string, type: "file" | "dir" = "file") => {
      const b = Buffer.from(content);
      return [
        encodeHeader({
          path,
          type,
          mode: type === "dir" ? 0o755 : 0o644,
          uid: 0,
          gid: 0,
          size: b.length,
          mtime: 0,
          ...(type === "file"
            ? { pax: { "APK-TOOLS.checksum.SHA1": createHash("sha1").update(b).digest("hex") } }
            : {}),
        }),
        b,
        Buffer.alloc((512 - (b.length % 512)) % 512),
      ];
    };
    const data = gzipMember(
      Buffer.concat([
        ...tarEntry("usr/", "", "dir"),
        ...tarEntry("usr/../../../tmp/kiln-escape", "x"),
        Buffer.alloc(1024),
      ]),
    );
    const info = {
      ...emptyPackageInfo("traversal", "1.0-r0", "x86_64"),
      dataHash: createHash("sha256").update(data).digest("hex"),
    };
    const control = gzipMember(Buffer.concat(tarEntry(".PKGINFO", formatPkgInfo(info))));
    const apk = Buffer.concat([buildSignatureMember(control, [key.key]), control, data]);
    const tdir = join(work, "trav-repo", "x86_64");
    mkdirSync(tdir, { recursive: true });
    writeFileSync(join(tdir, "traversal-1.0-r0.apk"), apk);
    writeFileSync(
      join(tdir, "APKINDEX.tar.gz"),
      buildIndex([{ ...info, checksum: identityOf(control), fileSize: apk.length, unknownFields: [], extra: [] }], {
        signingKeys: [key.key],
      }),
    );
    fails(
      `contents:\n  repositories: [${join(work, "trav-repo")}]\n  keyring: [${key.publicPath}]\n  packages: [traversal]\narchs: [x86_64]\n`,
      /traversal.*("\.\."|contains "\.\.")/,
      "traversal",
    );
    expect(existsSync("/tmp/kiln-escape")).toBe(false);
  });
});

describe("ownership in the layer", () => {
  it("a nonroot image's layer carries the accounts' home, the config's paths and the package's files with their uid/gid", async () => {
    const owned = join(work, "owned-repo");
    await makeRepo(owned, key.key, [
      { name: "baselayout", entries: baseLayoutEntries() },
      {
        name: "app",
        entries: [
          { path: "srv/app", type: "dir", uid: 1234, gid: 5678, mode: 0o750 },
          { path: "srv/app/data", type: "file", uid: 1234, gid: 5678, content: "owned by 1234:5678\n" },
          { path: "usr/bin/app", type: "file", mode: 0o755, content: "#!/bin/sh\n" },
        ],
      },
    ]);
    const f = config(
      "owned",
      `contents:\n  repositories: [${owned}]\n  keyring: [${key.publicPath}]\n  packages: [baselayout, app]\naccounts:\n  groups:\n    - {groupname: nonroot, gid: 65532}\n  users:\n    - {username: nonroot, uid: 65532, gid: 65532}\n  run-as: nonroot\npaths:\n  - {path: /var/lib/app, type: directory, uid: 65532, gid: 65532, permissions: 0o700}\narchs: [x86_64]\n`,
    );
    const out = join(work, "owned-oci");
    const r = kiln(["image", "build", f, out]);
    expect(r.status, r.stderr).toBe(0);
    // Read the layer tar itself with GNU tar: numeric owner of every entry.
    const manifestDigest = JSON.parse(readFileSync(join(out, "index.json"), "utf8")).manifests[0].digest.slice(7);
    const manifest = JSON.parse(readFileSync(join(out, "blobs/sha256", manifestDigest), "utf8"));
    expect(manifest.layers).toHaveLength(1);
    const listingText = execFileSync(
      "tar",
      ["--numeric-owner", "-tvzf", join(out, "blobs/sha256", manifest.layers[0].digest.slice(7))],
      { encoding: "utf8" },
    );
    const owner = new Map(
      listingText
        .trim()
        .split("\n")
        .map((l) => {
          const f = l.split(/\s+/);
          return [f[5]!.replace(/\/$/, ""), f[1]!] as const;
        }),
    );
    expect(owner.get("home/nonroot")).toBe("65532/65532");
    expect(owner.get("var/lib/app")).toBe("65532/65532");
    expect(owner.get("srv/app")).toBe("1234/5678");
    expect(owner.get("srv/app/data")).toBe("1234/5678");
    expect(owner.get("usr/bin/app")).toBe("0/0");
    expect(owner.get("etc/passwd")).toBe("0/0");
    // apk's database records the package's ownership too (a:uid:gid:mode / M:uid:gid:mode).
    const rootfs = umociUnpack(out);
    const db = parseInstalledDb(readFileSync(join(rootfs, "usr/lib/apk/db/installed"), "utf8"));
    const app = db.find((p) => p.record.name === "app")!;
    const srv = app.dirs.find((d) => d.path === "srv/app")!;
    expect([srv.uid, srv.gid]).toEqual([1234, 5678]);
    expect(srv.files.map((x) => [x.name, x.uid, x.gid])).toEqual([["data", 1234, 5678]]);
  });
});

describe("data budgets", () => {
  /** A private TMPDIR per run, to prove nothing is left in it. */
  function tmpEnv(name: string): { dir: string; env: NodeJS.ProcessEnv } {
    const dir = join(work, "tmpdirs", name);
    mkdirSync(dir, { recursive: true });
    return { dir, env: { TMPDIR: dir } };
  }

  it("a package whose content exceeds its declared installed size (I:) is refused, naming it; nothing half-written is left", async () => {
    const bombRepo = join(work, "bomb-repo");
    // 32 MiB of zeros (a few tens of KiB compressed) declared as 100 bytes installed.
    await makeRepo(bombRepo, key.key, [
      {
        name: "bomb",
        entries: [{ path: "usr/share/bomb/zeros", type: "file", content: Buffer.alloc(32 * 1024 * 1024) }],
        info: { installedSize: 100 },
      },
    ]);
    expect(
      readdirSync(join(bombRepo, "x86_64")).map((n) => [n, lstatSync(join(bombRepo, "x86_64", n)).size < 1024 * 1024]),
    ).toContainEqual(["bomb-1.0-r0.apk", true]);
    const f = config(
      "bomb",
      `contents:\n  repositories: [${bombRepo}]\n  keyring: [${key.publicPath}]\n  packages: [bomb]\narchs: [x86_64]\n`,
    );
    const out = join(work, "bomb-out");
    const tmp = tmpEnv("bomb");
    const r = kiln(["image", "build", f, out, "--cache-dir", mkdtempSync(join(work, "cache-"))], { env: tmp.env });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim().split("\n").pop()).toBe(
      `kiln image: bomb-1.0-r0: its files hold more than ${100 + 1024 * 1024} bytes, but it declares 100 bytes installed (I:), and at most max(10%, 1 MiB) more is accepted; refusing it`,
    );
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((n) => n.startsWith("bomb-out"))).toEqual([]);
    expect(readdirSync(tmp.dir)).toEqual([]);
  });

  it("the total cap refuses an image, naming the cap and how to raise it; raised, the same image builds", () => {
    const out = join(work, "capped-out");
    const tmp = tmpEnv("capped");
    const cfg = config("capped", HELLO_CONFIG());
    const r = kiln(["image", "build", cfg, out, "--max-size", "100K"], { env: tmp.env });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim().split("\n").pop()).toMatch(
      /^kiln image: 2 packages declaring [\d.]+ KiB installed \(I:\): the image root would exceed its cap of 100 KiB of file content; raise it with --max-size SIZE or KILN_MAX_ROOT_SIZE=SIZE$/,
    );
    expect(existsSync(out)).toBe(false);
    const env = kiln(["image", "build", cfg, out], { env: { ...tmp.env, KILN_MAX_ROOT_SIZE: "100K" } });
    expect(env.status).toBe(1);
    expect(env.stderr).toContain("cap of 100 KiB");
    expect(readdirSync(tmp.dir)).toEqual([]);
    const bad = kiln(["image", "build", cfg, out, "--max-size", "lots"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim()).toBe(
      'kiln image: --max-size: expected a size such as 16G, 500M or a number of bytes, got "lots"',
    );
    const ok = kiln(["image", "build", cfg, out, "--max-size", "64M", "--json"], { env: tmp.env });
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).contentBytes).toBeGreaterThan(100 * 1024);
    expect(readdirSync(tmp.dir)).toEqual([]);
  });
});

describe("kiln image push", () => {
  let reg: Registry;
  beforeAll(async () => {
    reg = await startRegistry(mkdtempSync(join(tmpdir(), "kiln-reg-")));
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("pushes to docker-registry; skopeo sees the same digest; a second push uploads no blobs", async () => {
    const cfgFile = join(work, "hello.yaml");
    const r = await kilnAsync(["image", "push", cfgFile, `${reg.host}/kiln/hello:1.0`, "--insecure", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    const built = JSON.parse(kiln(["image", "build", cfgFile, join(work, "push-ref"), "--json"]).stdout);
    expect(res.digest).toBe(built.digest);
    const ins = JSON.parse(
      execFileSync("skopeo", ["inspect", "--tls-verify=false", `docker://${reg.host}/kiln/hello:1.0`], {
        encoding: "utf8",
      }),
    );
    expect(ins.Digest).toBe(built.digest);
    const again = JSON.parse(
      (await kilnAsync(["image", "push", cfgFile, `${reg.host}/kiln/hello:1.0`, "--insecure", "--json"])).stdout,
    );
    expect(again.pushedBlobs).toEqual([]);
    expect(again.existingBlobs.length).toBeGreaterThan(0);
  });
});
