// melange's perl/make and perl/cleanup, built for real: a Wolfi-shaped
// recipe of a small pure-Perl module (Makefile.PL, fetched over loopback
// HTTP and checked by hash) built in the bubblewrap sandbox with the perl
// imported from Debian (stage 0), installed into vendor directories,
// without MakeMaker's install records (planted by a step, as Debian's perl
// writes none for vendor installs), and its test run in a fresh guest.
// Wolfi's recipes ask for `perl` and `busybox`: the test first builds
// those two names as metapackages over a Debian perl (the fixture recipes
// in test/fixtures/stage0, made by tools/update-bootstrap.mjs) and the
// stage-0 busybox-links, so the recipe resolves unchanged. And the guest's own
// shell (the stage-0 busybox) parses every language pipeline's script.

import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPackage } from "@kiln/apk";
import { compileRecipe, loadPipelines, parseRecipe } from "@kiln/builder";
import { bootstrapToolchain, upstreamArgs, type Bootstrap } from "./helpers/bootstrap.js";
import { kilnAsync } from "./helpers/cli.js";
import { serveDir, type StaticServer } from "./helpers/http.js";
import { REPO_ROOT } from "./helpers/paths.js";

let work: string;
let boot: Bootstrap;
let server: StaticServer;
let tarballSha256: string;

const META = (name: string, version: string, deps: string[]) => `
package:
  name: ${name}
  version: "${version}"
  epoch: 0
  description: "${name}, as Wolfi names it: ${deps[0]} of the stage-0 toolchain"
  copyright:
    - license: MIT
  dependencies:
    runtime:
${deps.map((d) => `      - ${d}`).join("\n")}
environment:
  contents:
    packages:
      - busybox-links
      - base-layout
pipeline:
  - runs: mkdir -p "\${{targets.destdir}}"
`;

const MODULE = () => `
package:
  name: perl-hello-world
  version: "0.42"
  epoch: 1
  description: Say hello from Perl
  copyright:
    - license: GPL-1.0-or-later OR Artistic-1.0-Perl
  dependencies:
    runtime:
      - perl

environment:
  contents:
    packages:
      - build-base
      - busybox
      - perl

pipeline:
  - uses: fetch
    with:
      uri: ${server.url}/Hello-World-\${{package.version}}.tar.gz
      expected-sha256: ${tarballSha256}

  - uses: perl/make

  - uses: autoconf/make

  - uses: autoconf/make-install

  # Debian's MakeMaker (the stage-0 perl) writes no install records for
  # vendor installs; upstream perl's, as in Wolfi, does. Put them where it
  # would, so perl/cleanup has something to remove.
  - runs: |
      arch="$(perl -MConfig -e 'print $Config{installvendorarch}')"
      mkdir -p "\${{targets.contextdir}}$arch/auto/Hello/World"
      echo /usr/share/perl5/Hello/World.pm > "\${{targets.contextdir}}$arch/auto/Hello/World/.packlist"
      echo "=head2 Hello::World" > "\${{targets.contextdir}}$arch/perllocal.pod"

  - uses: perl/cleanup

  - uses: strip

test:
  environment:
    contents:
      packages:
        - busybox
  pipeline:
    - runs: |
        perl -MHello::World -e 'print Hello::World::greet("kiln"), "\\n"' | grep -x "Hello, kiln, from 0.42"
`;

/** Hello-World-0.42: a MakeMaker distribution with one module and its POD. */
function makeTarball(dir: string): string {
  const src = join(dir, "Hello-World-0.42");
  mkdirSync(join(src, "lib/Hello"), { recursive: true });
  writeFileSync(
    join(src, "Makefile.PL"),
    [
      "use strict;",
      "use warnings;",
      "use ExtUtils::MakeMaker;",
      "WriteMakefile(",
      "  NAME => 'Hello::World',",
      "  VERSION_FROM => 'lib/Hello/World.pm',",
      "  ABSTRACT => 'Say hello',",
      "  LICENSE => 'perl',",
      ");",
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(src, "lib/Hello/World.pm"),
    [
      "package Hello::World;",
      "use strict;",
      "use warnings;",
      "our $VERSION = '0.42';",
      'sub greet { my ($who) = @_; return "Hello, $who, from $VERSION"; }',
      "1;",
      "__END__",
      "",
      "=head1 NAME",
      "",
      "Hello::World - say hello",
      "",
      "=head1 SYNOPSIS",
      "",
      "  print Hello::World::greet('you');",
      "",
      "=cut",
      "",
    ].join("\n"),
  );
  const www = join(dir, "www");
  mkdirSync(www);
  const tarball = join(www, "Hello-World-0.42.tar.gz");
  execFileSync("tar", ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-czf", tarball, "Hello-World-0.42"], {
    cwd: dir,
  });
  return tarball;
}

function build(args: string[]) {
  return kilnAsync(["build", ...args, ...upstreamArgs(boot)]);
}

async function files(apk: string): Promise<string[]> {
  const r = await openPackage(createReadStream(apk));
  const out: string[] = [];
  for await (const e of r.entries()) out.push(e.type === "dir" ? `${e.path}/` : e.path);
  await r.close();
  return out;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-lang-perl-"));
  const tarball = makeTarball(work);
  tarballSha256 = createHash("sha256").update(readFileSync(tarball)).digest("hex");
  server = await serveDir(join(work, "www"));
  boot = await bootstrapToolchain();
}, 900_000);
afterAll(async () => {
  await server?.close();
});

describe("perl/make and perl/cleanup in the sandbox", () => {
  it("builds a Makefile.PL module into vendor directories, without install records, and its test passes", async () => {
    const out = join(work, "out");
    writeFileSync(join(work, "perl.yaml"), META("perl", "5.36.0", ["perl-bootstrap"]));
    writeFileSync(join(work, "busybox.yaml"), META("busybox", "1.35.0", ["busybox-links", "base-layout"]));
    const stage0 = ["bzip2-bootstrap", "perl-bootstrap"].map((n) =>
      join(REPO_ROOT, "test/fixtures/stage0", `${n}.yaml`),
    );
    const meta = await build([...stage0, join(work, "perl.yaml"), join(work, "busybox.yaml"), "--out", out]);
    expect(meta.status, meta.stderr.slice(-3000)).toBe(0);

    writeFileSync(join(work, "perl-hello-world.yaml"), MODULE());
    // The tarball is reproducible, so the shared cache may hold it: drop it so fetch goes over HTTP.
    rmSync(join(boot.cacheDir, "sources", tarballSha256), { force: true });
    const r = await build([join(work, "perl-hello-world.yaml"), "--out", out]);
    expect(r.status, r.stderr.slice(-4000)).toBe(0);
    expect(server.log.some((l) => l.path === "/Hello-World-0.42.tar.gz" && l.status === 200)).toBe(true);

    const log = readFileSync(join(out, "logs/x86_64/perl-hello-world.log"), "utf8");
    // perl/make ran Makefile.PL, autoconf/make-install installed, perl/cleanup removed the records.
    expect(log).toMatch(/Writing Makefile for Hello::World/);
    expect(log).toMatch(/Installing \/home\/build\/melange-out\/perl-hello-world\/usr\/share\/perl5\/Hello\/World\.pm/);
    expect(log).toMatch(
      /^\/home\/build\/melange-out\/perl-hello-world\/usr\/lib\/.*\/auto\/Hello\/World\/\.packlist$/m,
    );
    expect(log).toMatch(/^\/home\/build\/melange-out\/perl-hello-world\/usr\/lib\/.*\/perllocal\.pod$/m);

    const pkg = await files(join(out, "x86_64/perl-hello-world-0.42-r1.apk"));
    expect(pkg).toContain("usr/share/perl5/Hello/World.pm");
    expect(pkg.some((f) => f.startsWith("usr/share/man/man3/Hello::World.3"))).toBe(true);
    expect(pkg.filter((f) => /(^|\/)(perllocal\.pod|\.packlist)$/.test(f))).toEqual([]);
    // Nothing under the site directories: INSTALLDIRS=vendor.
    expect(pkg.filter((f) => f.startsWith("usr/local/"))).toEqual([]);
  }, 600_000);
});

describe("the guest's shell", () => {
  it("busybox sh, as in the build guest, parses every language pipeline's expanded script", () => {
    // The stage-0 busybox, taken from its package in the bootstrap repository.
    const dir = join(boot.repo, "x86_64");
    const apk = readdirSync(dir).find((f) => f.startsWith("busybox-static-"))!;
    const bb = mkdtempSync(join(work, "busybox-"));
    execFileSync("tar", ["-xzf", join(dir, apk), "-C", bb, "usr/bin/busybox"], { stdio: "pipe" });
    const busybox = join(bb, "usr/bin/busybox");
    const registry = loadPipelines();
    const names = registry.names().filter((n) => /^(go|cargo|python|ruby|perl|R|pecl|npm|maven|xcover|llvm)\//.test(n));
    expect(names.length).toBe(28);
    for (const name of names) {
      // Every required input set to a word; the rest defaulted.
      const required = Object.entries(registry.get(name)!.inputs).filter(([, i]) => i.required);
      const withBlock = required.length ? `\n    with:\n${required.map(([k]) => `      ${k}: x`).join("\n")}` : "";
      const text = `package: {name: p, version: 1.0.0, epoch: 0}\npipeline:\n  - uses: ${name}${withBlock}\n`;
      const c = compileRecipe(parseRecipe("recipe.yaml", text), { arch: "x86_64", pipelines: registry });
      for (const [i, step] of c.pipeline.entries()) {
        const r = spawnSync(busybox, ["sh", "-n", "-c", `set -e\n${step.runs}`], { encoding: "utf8" });
        expect(r.status, `${name} step ${i}: ${r.stderr}`).toBe(0);
      }
    }
    // busybox sh also runs python/import's statement loop (heredocs inside command substitution).
    const stub = join(bb, "python3");
    const called = join(bb, "called");
    writeFileSync(stub, `#!/bin/sh\nprintf '%s\\n' "$2" >> ${called}\n`, { mode: 0o755 });
    const imports = `package: {name: p, version: 1.0.0, epoch: 0}\npipeline:\n  - uses: python/import\n    with:\n      python: ${stub}\n      imports: |\n        import a  # one\n        from b import  c\n`;
    const c = compileRecipe(parseRecipe("recipe.yaml", imports), { arch: "x86_64", pipelines: registry });
    const r = spawnSync(busybox, ["sh", "-c", `set -e\n${c.pipeline[0]!.runs}`], {
      encoding: "utf8",
      env: { PATH: "/usr/bin:/bin" },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(called, "utf8")).toBe("import a\nfrom b import c\n");
  });
});
