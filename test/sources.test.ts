// Builds without the upstream host: a Wolfi-shaped recipe whose fetch names
// a URI nobody answers (a closed port on loopback) and pins its archive by
// checksum. Without the archive the build fails naming the URI; once
// `kiln source add` (or distro.yaml's `sources:`) has put the file into the
// content-addressed source cache, the unchanged recipe builds for real in the
// sandbox, from the seeded file. Plus the refusals of hostile input.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, openPackage } from "@kiln/apk";
import { kilnAsync, type Run } from "./helpers/cli.js";
import { makeUpstream, distroYaml, type Upstream } from "./helpers/distro.js";

let work: string;
let up: Upstream;
let tarball: string;
let sha256: string;
let sha512: string;
let closedUrl: string;

/** A loopback port that was free a moment ago and is now closed: connections are refused. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, "127.0.0.1", res));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-sources-"));
  up = await makeUpstream(join(work, "up"));
  const src = join(work, "src/x-1.0");
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, "hello.txt"), "hello from the seeded source\n");
  tarball = join(work, "x-1.0.tar.gz");
  execFileSync("tar", ["-czf", tarball, "-C", join(work, "src"), "x-1.0"]);
  const bytes = readFileSync(tarball);
  sha256 = createHash("sha256").update(bytes).digest("hex");
  sha512 = createHash("sha512").update(bytes).digest("hex");
  closedUrl = `http://127.0.0.1:${await closedPort()}`;
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The recipe as Wolfi writes one: fetch by URI pinned by a checksum, then a build step. */
function recipe(name: string, pin: string): string {
  return `package:
  name: ${name}
  version: "1.0"
  epoch: 0
  description: built from a source its upstream host does not serve
  copyright:
    - license: MIT
environment:
  contents:
    packages:
      - busybox-static
  paths:
    - path: /bin/sh
      type: symlink
      source: /usr/bin/busybox
pipeline:
  - uses: fetch
    with:
      uri: ${closedUrl}/x-\${{package.version}}.tar.gz
      ${pin}
  - runs: |
      mkdir -p \${{targets.destdir}}/usr/share/${name}
      cp hello.txt \${{targets.destdir}}/usr/share/${name}/hello.txt
`;
}

function build(file: string, cache: string, out: string): Promise<Run> {
  return kilnAsync([
    "build",
    file,
    "--out",
    out,
    "--cache-dir",
    cache,
    "--repository-append",
    up.repo,
    "--keyring-append",
    up.publicKey,
    "--no-test",
  ]);
}

/** The files of a built package and the text of one of them. */
async function packageFile(apk: string, path: string): Promise<string | undefined> {
  const r = await openPackage(createReadStream(apk));
  let text: string | undefined;
  for await (const e of r.entries()) {
    if (e.path !== path) continue;
    const chunks: Buffer[] = [];
    for await (const c of e.content()) chunks.push(Buffer.from(c));
    text = Buffer.concat(chunks).toString("utf8");
  }
  await r.close();
  return text;
}

describe("builds from seeded sources", () => {
  it("fails naming the URI without the file, builds after kiln source add (sha256 pin)", async () => {
    const dir = join(work, "by256");
    mkdirSync(dir);
    const cache = join(dir, "cache");
    const out = join(dir, "out");
    const file = join(dir, "x.yaml");
    writeFileSync(file, recipe("x", `expected-sha256: ${sha256}`));

    const before = await build(file, cache, out);
    expect(before.status).toBe(1);
    expect(before.stderr).toContain(`${closedUrl}/x-1.0.tar.gz`);
    expect(before.stderr).toMatch(/failed after \d+ attempts: network error/);
    expect(before.stderr).toContain("the source cache has no file with this checksum either (kiln source add FILE");
    expect(existsSync(join(out, "x86_64/x-1.0-r0.apk"))).toBe(false);

    const add = await kilnAsync(["source", "add", tarball, "--cache-dir", cache]);
    expect(add.status, add.stderr).toBe(0);
    expect(add.stdout).toContain(`sha256 ${sha256}`);
    expect(add.stdout).toContain(`sha512 ${sha512}`);
    expect(add.stdout).toContain(`-> ${join(cache, "sources", sha256)}`);

    const after = await build(file, cache, out);
    expect(after.status, after.stderr).toBe(0);
    expect(await packageFile(join(out, "x86_64/x-1.0-r0.apk"), "usr/share/x/hello.txt")).toBe(
      "hello from the seeded source\n",
    );
  }, 300_000);

  it("finds a file pinned by sha512 only; list and verify see it, verify names a damaged entry", async () => {
    const dir = join(work, "by512");
    mkdirSync(dir);
    const cache = join(dir, "cache");
    const out = join(dir, "out");
    const file = join(dir, "y.yaml");
    writeFileSync(file, recipe("y", `expected-sha512: ${sha512}`));
    const add = await kilnAsync(["source", "add", "--json", tarball, "--cache-dir", cache]);
    expect(add.status, add.stderr).toBe(0);
    expect(JSON.parse(add.stdout)).toEqual([
      expect.objectContaining({ sha256, sha512, path: join(cache, "sources", sha256), existed: false }),
    ]);
    const built = await build(file, cache, out);
    expect(built.status, built.stderr).toBe(0);
    expect(await packageFile(join(out, "x86_64/y-1.0-r0.apk"), "usr/share/y/hello.txt")).toBe(
      "hello from the seeded source\n",
    );

    const list = await kilnAsync(["source", "list", "--cache-dir", cache]);
    expect(list.stdout.trim()).toBe(`${sha256} ${readFileSync(tarball).length} sha512:${sha512}`);
    const ok = await kilnAsync(["source", "verify", "--cache-dir", cache]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain("1 of 1 cached sources verified");
    writeFileSync(join(cache, "sources", sha256), "not the archive\n");
    const bad = await kilnAsync(["source", "verify", "--cache-dir", cache]);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toContain(`${join(cache, "sources", sha256)}: content has sha256 `);
    // Adding the right file again heals the entry.
    const heal = await kilnAsync(["source", "add", tarball, "--cache-dir", cache]);
    expect(heal.stdout).toContain("was cached");
    expect((await kilnAsync(["source", "verify", "--cache-dir", cache])).status).toBe(0);
  }, 300_000);

  it("refuses symlinks, directories, missing and oversized files, adding the others whole", async () => {
    const dir = join(work, "hostile");
    mkdirSync(dir);
    const cache = join(dir, "cache");
    symlinkSync(tarball, join(dir, "link.tar.gz"));
    writeFileSync(join(dir, "big"), Buffer.alloc(8192));
    const r = await kilnAsync([
      "source",
      "add",
      join(dir, "link.tar.gz"),
      dir,
      join(dir, "nope"),
      tarball,
      "--cache-dir",
      cache,
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${join(dir, "link.tar.gz")}: is a symbolic link`);
    expect(r.stderr).toContain(`${dir}: not a regular file`);
    expect(r.stderr).toContain(`${join(dir, "nope")}: no such file`);
    expect(r.stdout).toContain(`sha256 ${sha256}`);
    const big = await kilnAsync(["source", "add", join(dir, "big"), "--max-size", "4K", "--cache-dir", cache]);
    expect(big.status).toBe(1);
    expect(big.stderr).toContain("larger than 4096 bytes");
    // Only the regular file is in the cache, and no temporary is left behind.
    expect(readdirNames(join(cache, "sources"))).toEqual([sha256, "sha512"]);
  });
});

function readdirNames(d: string): string[] {
  return execFileSync("ls", ["-A", d], { encoding: "utf8" }).split("\n").filter(Boolean).sort();
}

describe("distro.yaml sources:", () => {
  async function distro(name: string, sources: string): Promise<string> {
    const dir = join(work, name);
    mkdirSync(join(dir, "keys"), { recursive: true });
    writeFileSync(join(dir, "keys/synth.rsa"), (await generateKey(2048)).privatePem, { mode: 0o600 });
    mkdirSync(join(dir, "recipes"), { recursive: true });
    mkdirSync(join(dir, "pipelines"), { recursive: true });
    writeFileSync(join(dir, "distro.yaml"), distroYaml(up, `sources: ${sources}\n`));
    writeFileSync(join(dir, "recipes/x.yaml"), recipe("x", `expected-sha256: ${sha256}`));
    return dir;
  }

  it("seeds the directory's files before building, so the unchanged recipe builds", async () => {
    const dir = await distro("distro-ok", "seeded");
    mkdirSync(join(dir, "seeded"));
    writeFileSync(join(dir, "seeded/x-1.0.tar.gz"), readFileSync(tarball));
    const cache = join(dir, "cache");
    const r = await kilnAsync(["build", "--all", "--cache-dir", cache], { cwd: dir });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toContain("1 source file seeded into the source cache (0 there already)");
    expect(await packageFile(join(dir, "out/x86_64/x-1.0-r0.apk"), "usr/share/x/hello.txt")).toBe(
      "hello from the seeded source\n",
    );
    // The next round finds the file cached and only reads it.
    writeFileSync(join(dir, "recipes/x.yaml"), recipe("x", `expected-sha256: ${sha256}`) + "      echo again\n");
    const again = await kilnAsync(["build", "--all", "--cache-dir", cache], { cwd: dir });
    expect(again.status, again.stdout + again.stderr).toBe(0);
    expect(again.stderr).toContain("1 source file seeded into the source cache (1 there already)");
  }, 300_000);

  it("refuses sources outside the distribution's directory and symlinks in it, naming the entry", async () => {
    const outside = await distro("distro-outside", "../x-1.0.tar.gz");
    const r1 = await kilnAsync(["plan", "--cache-dir", join(outside, "cache")], { cwd: outside });
    expect(r1.status).toBe(1);
    expect(r1.stderr).toMatch(/distro\.yaml:\d+:\d+: sources: expected a path inside the distribution's directory/);

    const linked = await distro("distro-link", "[seeded]");
    mkdirSync(join(linked, "seeded"));
    symlinkSync(tarball, join(linked, "seeded/x-1.0.tar.gz"));
    const r2 = await kilnAsync(["build", "--all", "--cache-dir", join(linked, "cache")], { cwd: linked });
    expect(r2.status).toBe(1);
    expect(r2.stderr).toContain("sources: seeded: x-1.0.tar.gz is a symbolic link");
    expect(existsSync(join(linked, "cache/sources", sha256))).toBe(false);
  }, 120_000);
});
