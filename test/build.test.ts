// Building from recipes end to end: a small autoconf C project, fetched over
// HTTP and checked by hash, built in the bubblewrap sandbox by the toolchain
// imported from Debian (stage 0), split into -dev and -doc, installed into a
// fresh image and run. Plus reproducibility, failing tests, sandbox escapes
// and bad recipes.

import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createReadStream } from "node:fs";
import { openPackage } from "@kiln/apk";
import { kilnAsync } from "./helpers/cli.js";
import { bootstrapToolchain, upstreamArgs, type Bootstrap } from "./helpers/bootstrap.js";
import { serveDir, type StaticServer } from "./helpers/http.js";
import { REPO_ROOT } from "./helpers/paths.js";

const TARBALL = join(REPO_ROOT, "test/fixtures/build/greet-1.2.0.tar.gz");
const TARBALL_SHA256 = "b9fc7af5a8e6bba5c9d55c508942061c335152f23581e02980fb5965b0748628";

let work: string;
let boot: Bootstrap;
let server: StaticServer;

function recipe(name: string, body: string): string {
  const f = join(work, `${name}.yaml`);
  writeFileSync(f, body);
  return f;
}

const GREET = (opts: { sha?: string; test?: string } = {}) => `
package:
  name: greet
  version: 1.2.0
  epoch: 0
  description: greetings, a small autoconf project
  url: https://example.invalid/greet
  copyright:
    - license: MIT
  dependencies:
    runtime:
      - base-layout
environment:
  contents:
    packages:
      - build-base
pipeline:
  - uses: fetch
    with:
      uri: ${server.url}/greet-1.2.0.tar.gz
      expected-sha256: ${opts.sha ?? TARBALL_SHA256}
  - uses: autoconf/configure
  - uses: autoconf/make
  - uses: autoconf/make-install
  - uses: strip
subpackages:
  - name: greet-dev
    description: greet headers and libraries
    pipeline:
      - uses: split/dev
    dependencies:
      runtime:
        - greet
  - name: greet-doc
    description: greet manual
    pipeline:
      - uses: split/manpages
test:
  environment:
    contents:
      packages:
        - busybox-links
  pipeline:
    - runs: |
        ${opts.test ?? 'greet | grep "Hello from libgreet 1.2.0"'}
`;

function build(args: string[]) {
  return kilnAsync(["build", ...args, ...upstreamArgs(boot)]);
}

async function pkgInfo(file: string) {
  const r = await openPackage(createReadStream(file));
  const files: string[] = [];
  for await (const e of r.entries()) files.push(e.type === "dir" ? `${e.path}/` : e.path);
  await r.close();
  return { info: r.head.info, files, control: [...r.head.controlFiles.keys()] };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-build-e2e-"));
  const www = join(work, "www");
  mkdirSync(www);
  copyFileSync(TARBALL, join(www, "greet-1.2.0.tar.gz"));
  server = await serveDir(www);
  boot = await bootstrapToolchain();
}, 900_000);
afterAll(async () => {
  await server?.close();
});

describe("kiln build: an autoconf project with the imported toolchain", () => {
  let out: string;

  it("builds greet, greet-dev and greet-doc with so:/cmd:/pc: provides and depends", async () => {
    out = join(work, "out1");
    // The shared cache may hold the tarball from an earlier run: drop it so fetch goes over HTTP.
    const { rmSync } = await import("node:fs");
    rmSync(join(boot.cacheDir, "sources", TARBALL_SHA256), { force: true });
    const r = await build([recipe("greet", GREET()), "--out", out]);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(server.log.some((l) => l.path === "/greet-1.2.0.tar.gz" && l.status === 200)).toBe(true);
    const dir = join(out, "x86_64");
    expect(readdirSync(dir).sort()).toEqual([
      "APKINDEX.tar.gz",
      "greet-1.2.0-r0.apk",
      "greet-1.2.0-r0.apk.intoto.json",
      "greet-dev-1.2.0-r0.apk",
      "greet-dev-1.2.0-r0.apk.intoto.json",
      "greet-doc-1.2.0-r0.apk",
      "greet-doc-1.2.0-r0.apk.intoto.json",
    ]);
    const main = await pkgInfo(join(dir, "greet-1.2.0-r0.apk"));
    expect(main.info.provides).toEqual(
      expect.arrayContaining(["so:libgreet.so.1=1", "cmd:greet=1.2.0-r0", "cmd:greet-all=1.2.0-r0"]),
    );
    expect(main.info.depends).toEqual(
      expect.arrayContaining(["so:libc.so.6", "so:ld-linux-x86-64.so.2", "base-layout"]),
    );
    // Its own library is not a dependency; sh scripts add no cmd: dependency.
    expect(main.info.depends).not.toContain("so:libgreet.so.1");
    expect(main.info.depends.some((d) => d.startsWith("cmd:"))).toBe(false);
    expect(main.files).toEqual(
      expect.arrayContaining([
        "usr/bin/greet",
        "usr/lib/libgreet.so.1",
        "usr/lib/libgreet.so.1.0.0",
        "var/lib/db/sbom/greet-1.2.0-r0.spdx.json",
      ]),
    );
    expect(main.files).not.toContain("usr/include/greet.h");
    expect(main.control).toContain(".melange.yaml");
    const dev = await pkgInfo(join(dir, "greet-dev-1.2.0-r0.apk"));
    expect(dev.files).toEqual(
      expect.arrayContaining([
        "usr/include/greet.h",
        "usr/lib/pkgconfig/greet.pc",
        "usr/lib/libgreet.so",
        "usr/lib/libgreet.a",
      ]),
    );
    expect(dev.info.provides).toContain("pc:greet=1.2.0");
    expect(dev.info.depends).toContain("greet");
    const doc = await pkgInfo(join(dir, "greet-doc-1.2.0-r0.apk"));
    expect(doc.files).toContain("usr/share/man/man1/greet.1");
    // The SBOM names the source and its checksum.
    const sbomBuild = mkdtempSync(join(work, "sbom-"));
    execFileSync(
      "tar",
      ["-xzf", join(dir, "greet-1.2.0-r0.apk"), "-C", sbomBuild, "var/lib/db/sbom/greet-1.2.0-r0.spdx.json"],
      { stdio: "pipe" },
    );
    const sbom = JSON.parse(readFileSync(join(sbomBuild, "var/lib/db/sbom/greet-1.2.0-r0.spdx.json"), "utf8"));
    expect(JSON.stringify(sbom)).toContain(TARBALL_SHA256);
    // Log kept per package.
    expect(readFileSync(join(out, "logs/x86_64/greet.log"), "utf8")).toMatch(/checking for gcc/);
  });

  it("the result installs into a fresh image where the binary runs under bubblewrap", async () => {
    const cfg = join(work, "greet-image.yaml");
    writeFileSync(
      cfg,
      `contents:\n  repositories: [${out}, ${boot.repo}]\n  keyring: [${boot.publicKey}]\n  packages: [greet]\narchs: [x86_64]\nentrypoint:\n  command: /usr/bin/greet\n`,
    );
    const r = await kilnAsync(["image", "build", cfg, join(work, "greet-oci"), "--cache-dir", boot.cacheDir]);
    expect(r.status, r.stderr).toBe(0);
    const bundle = join(work, "greet-bundle");
    execFileSync("umoci", ["unpack", "--rootless", "--image", `${join(work, "greet-oci")}:latest`, bundle], {
      stdio: "pipe",
    });
    const run = spawnSync(
      "bwrap",
      [
        "--bind",
        join(bundle, "rootfs"),
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--unshare-all",
        "--clearenv",
        "/usr/bin/greet",
      ],
      { encoding: "utf8" },
    );
    expect(run.stderr).toBe("");
    expect(run.stdout).toBe("Hello from libgreet 1.2.0\n");
  });

  it("building the same recipe twice gives byte-identical packages", async () => {
    const out2 = join(work, "out2");
    const r = await build([join(work, "greet.yaml"), "--out", out2]);
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    for (const f of ["greet-1.2.0-r0.apk", "greet-dev-1.2.0-r0.apk", "greet-doc-1.2.0-r0.apk", "APKINDEX.tar.gz"]) {
      expect(readFileSync(join(out2, "x86_64", f)).equals(readFileSync(join(out, "x86_64", f))), f).toBe(true);
    }
  });

  it("a failing test: fails the build, shows the test's output, publishes nothing", async () => {
    const outF = join(work, "out-failtest");
    const r = await build([
      recipe("greet-failtest", GREET({ test: 'echo "the greeting was: $(greet)"; greet | grep -q Goodbye' })),
      "--out",
      outF,
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/test of greet, step 1 .* failed \(status 1\)/);
    expect(r.stderr).toContain("the greeting was: Hello from libgreet 1.2.0");
    expect(existsSync(join(outF, "x86_64"))).toBe(false);
  });

  it("a checksum mismatch is one clear error and writes no package or index", async () => {
    const outC = join(work, "out-checksum");
    const r = await build([recipe("greet-badsum", GREET({ sha: "0".repeat(64) })), "--out", outC]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/greet-1\.2\.0\.tar\.gz.*expected.*0{64}.*b9fc7af5/s);
    expect(r.stderr).not.toMatch(/internal error| {4}at /);
    expect(existsSync(join(outC, "x86_64"))).toBe(false);
  });
});

describe("the sandbox", () => {
  const probe = (name: string, script: string) => `
package:
  name: ${name}
  version: 1.0
  epoch: 0
  description: sandbox probe
  copyright:
    - license: MIT
environment:
  contents:
    packages:
      - busybox-links
      - base-layout
pipeline:
  - name: probe
    runs: |
${script
  .split("\n")
  .map((l) => `      ${l}`)
  .join("\n")}
`;

  it("a failing step reports recipe, step, exit code and the last lines; the previous index stays", async () => {
    const outS = join(work, "out-sandbox");
    const ok = await build([
      recipe(
        "fine",
        probe(
          "fine",
          "mkdir -p ${{targets.destdir}}/usr/share/fine && echo ok > ${{targets.destdir}}/usr/share/fine/x",
        ),
      ),
      "--out",
      outS,
    ]);
    expect(ok.status, ok.stderr).toBe(0);
    const before = readFileSync(join(outS, "x86_64/APKINDEX.tar.gz"));
    const r = await build([recipe("failing", probe("failing", "echo about to fail\nexit 7")), "--out", outS]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/failing\.yaml: pipeline step 1 "probe" exited with status 7/);
    expect(r.stderr).toContain("about to fail");
    expect(readFileSync(join(outS, "x86_64/APKINDEX.tar.gz")).equals(before)).toBe(true);
    // Nothing of the failed build: no package and no provenance.
    expect(readdirSync(join(outS, "x86_64")).sort()).toEqual([
      "APKINDEX.tar.gz",
      "fine-1.0-r0.apk",
      "fine-1.0-r0.apk.intoto.json",
    ]);
  });

  it("writing outside the workspace, reaching the network and reading host files all fail; the host is untouched", async () => {
    const marker = join(work, "host-secret");
    writeFileSync(marker, "secret");
    const cases: Array<[string, string]> = [
      ["write-root", "touch /etc/escaped"],
      ["write-usr", "echo x > /usr/bin/escaped"],
      [
        "network",
        `printf "GET /greet-1.2.0.tar.gz HTTP/1.0\\r\\n\\r\\n" | nc -w 3 127.0.0.1 ${new URL(server.url).port}`,
      ],
      ["host-file", `cat ${marker}`],
      ["host-root", "ls /root/.ssh /work 2>&1 && test -e /work"],
    ];
    for (const [name, script] of cases) {
      const before = server.log.length;
      const r = await build([
        recipe(`escape-${name}`, probe(`escape-${name}`, script)),
        "--out",
        join(work, `out-${name}`),
      ]);
      expect(r.status, `${name}: ${r.stderr}`).toBe(1);
      expect(r.stderr, name).toMatch(/exited with status [1-9]/);
      if (name === "network") expect(server.log.length).toBe(before);
    }
    // The only interface inside is the sandbox's own loopback.
    const lo = await build([
      recipe("interfaces", probe("interfaces", "ip -o link\ntest -z \"$(ip -o link | grep -v ' lo:')\"")),
      "--out",
      join(work, "out-interfaces"),
    ]);
    expect(lo.status, lo.stderr).toBe(0);
    expect(readFileSync(join(work, "out-network/logs/x86_64/escape-network.log"), "utf8")).toMatch(
      /can't connect|Connection refused|Network is unreachable/,
    );
    expect(existsSync("/etc/escaped")).toBe(false);
    expect(existsSync("/usr/bin/escaped")).toBe(false);
  });
});

describe("kiln test and kiln bump", () => {
  it("kiln test runs the recipe's tests against the built packages", async () => {
    const ok = await kilnAsync([
      "test",
      join(work, "greet.yaml"),
      "--out",
      join(work, "out1"),
      "--signing-key",
      boot.privateKey,
      "--repository-append",
      boot.repo,
      "--keyring-append",
      boot.publicKey,
      "--cache-dir",
      boot.cacheDir,
    ]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/greet\.yaml: 1 test passed/);
    const bad = await kilnAsync([
      "test",
      join(work, "greet-failtest.yaml"),
      "--out",
      join(work, "out1"),
      "--signing-key",
      boot.privateKey,
      "--repository-append",
      boot.repo,
      "--keyring-append",
      boot.publicKey,
      "--cache-dir",
      boot.cacheDir,
    ]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("the greeting was: Hello from libgreet 1.2.0");
  });

  it("kiln bump sets the version, resets the epoch and refreshes expected-sha256 from the new source", async () => {
    const www = join(work, "www");
    const next = Buffer.concat([readFileSync(TARBALL), Buffer.from("different bytes")]);
    writeFileSync(join(www, "greet-1.3.0.tar.gz"), next);
    const f = recipe(
      "greet-bump",
      `# a comment that must survive
package:
  name: greet
  version: 1.2.0
  epoch: 4 # bumped by hand
  description: greetings
pipeline:
  - uses: fetch
    with:
      uri: ${server.url}/greet-\${{package.version}}.tar.gz
      expected-sha256: ${TARBALL_SHA256}
  - runs: true
`,
    );
    const r = await kilnAsync(["bump", f, "1.3.0", "--cache-dir", mkdtempSync(join(work, "bc-"))]);
    expect(r.status, r.stderr).toBe(0);
    const text = readFileSync(f, "utf8");
    const { createHash } = await import("node:crypto");
    expect(text).toContain(`expected-sha256: ${createHash("sha256").update(next).digest("hex")}`);
    expect(text).toMatch(/version: 1\.3\.0/);
    expect(text).toMatch(/epoch: 0/);
    expect(text).toContain("# a comment that must survive");
    const missing = await kilnAsync(["bump", f, "9.9.9", "--cache-dir", mkdtempSync(join(work, "bc-"))]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/greet-9\.9\.9\.tar\.gz: HTTP 404/);
    expect(readFileSync(f, "utf8")).toBe(text);
  });
});

describe("bad recipes", () => {
  it("each gets one clear error with file:line and nothing is written", async () => {
    const bad = recipe(
      "bad",
      `package:\n  name: bad\n  version: 1.2aa\n  epoch: 0\npipeline:\n  - uses: no/such-pipeline\n  - runs: echo \${{vars.nope}}\n`,
    );
    const outB = join(work, "out-bad");
    const r = await build([bad, "--out", outB]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/bad\.yaml:3:\d+: package\.version/);
    expect(r.stderr).toMatch(/bad\.yaml:6:\d+: .*no\/such-pipeline/);
    expect(r.stderr).toMatch(/bad\.yaml:7:\d+: .*vars\.nope/);
    expect(existsSync(join(outB, "x86_64"))).toBe(false);
  });
});
