#!/usr/bin/env node
// Regenerates the stage-0 recipes in recipes/ that import pinned Debian 12
// binary packages. Versions, pool paths and SHA-256 sums come from apt's
// package lists on this machine (`apt-get update` first); URLs are written as
// ${{mirror.debian}}/pool/... so no host name is ever committed. Re-run after a
// Debian point release, when the pinned files leave the mirror.
//
//   node tools/update-bootstrap.mjs            # rewrite the recipes
//   node tools/update-bootstrap.mjs --check    # exit 1 if any would change
//   node tools/update-bootstrap.mjs glibc      # only the named recipes

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { aptMirrors, debVersionToApk } from "@kiln/builder";
import { parseDistro } from "@kiln/distro";
import { debFetchSteps, writeRecipes } from "./deb-steps.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const distroFile = join(root, "distro.yaml");
/** The stage-0 recipes: distro.yaml's bootstrap: keys. */
const STAGE0 = new Set(Object.keys(parseDistro(distroFile, readFileSync(distroFile, "utf8")).bootstrap ?? {}));
const ARCH = "amd64";

// Each stage-0 recipe: the Debian binary packages it imports (the first one
// gives the version); dependencies between them come from automatic so:
// detection, not from lists here.
const GROUPS = [
  {
    // Builds recipes/glibc.yaml (distro.yaml's bootstrap: glibc-bootstrap:
    // glibc) and what glibc's own build needs: build-base depends on glibc-dev,
    // every program on libc.so.6, which these provide until glibc is built.
    name: "glibc-bootstrap",
    description: "the GNU C library and dynamic loader for the bootstrap (imported from Debian)",
    license: "LGPL-2.1-or-later",
    debs: ["libc6"],
    runtime: ["base-layout"],
    provides: ["glibc=${{package.full-version}}", "ld-linux=${{package.full-version}}"],
    subpackages: [
      {
        name: "glibc-dev-bootstrap",
        description: "glibc headers, startup files and static libraries for the bootstrap (imported from Debian)",
        runtime: ["glibc-bootstrap", "libxcrypt-dev"],
        provides: ["glibc-dev=${{package.full-version}}"],
        debs: ["libc6-dev"],
      },
    ],
  },
  {
    // glibc's build runs python3 scripts. It asks for this one by name
    // (distro.yaml's bootstrap: python3-bootstrap: python-3.13), so the
    // distribution's python and everything it links are built against the
    // new glibc, and a change to them does not rebuild glibc. Debian's
    // minimal interpreter with the expat and OpenSSL it links (its _ssl and
    // _hashlib are built in): only zlib comes from outside.
    name: "python3-bootstrap",
    description: "a minimal python3 to build glibc with (imported from Debian)",
    license: "PSF-2.0",
    debs: ["python3.11-minimal", "libpython3.11-minimal", "python3-minimal", "libexpat1", "libssl3"],
  },
  {
    // glibc no longer has libcrypt (2.39 removed it): libxcrypt's
    // libcrypt.so.1, until it is built from source (its build needs perl,
    // which links it).
    name: "libxcrypt",
    description: "libxcrypt's password hashing library libcrypt.so.1 (imported from Debian)",
    license: "LGPL-2.1-or-later",
    debs: ["libcrypt1"],
    provides: ["libcrypt1=${{package.full-version}}"],
    subpackages: [
      {
        name: "libxcrypt-dev",
        description: "libxcrypt's crypt.h and libcrypt.so link (imported from Debian)",
        runtime: ["libxcrypt"],
        debs: ["libcrypt-dev"],
      },
    ],
  },
  {
    name: "linux-headers",
    description: "Linux kernel headers for userspace (imported from Debian)",
    license: "GPL-2.0-only",
    debs: ["linux-libc-dev"],
  },
  {
    name: "libgcc",
    description: "GCC support library (imported from Debian)",
    license: "GPL-3.0-or-later WITH GCC-exception-3.1",
    debs: ["libgcc-s1"],
  },
  {
    name: "libstdc++",
    description: "GNU C++ standard library (imported from Debian)",
    license: "GPL-3.0-or-later WITH GCC-exception-3.1",
    debs: ["libstdc++6"],
  },
  {
    name: "gcc",
    description: "GNU C and C++ compilers (imported from Debian)",
    license: "GPL-3.0-or-later WITH GCC-exception-3.1",
    debs: [
      "gcc-12",
      "cpp-12",
      "gcc-12-base",
      "libgcc-12-dev",
      "libcc1-0",
      "libgomp1",
      "libitm1",
      "libatomic1",
      "libasan8",
      "liblsan0",
      "libtsan2",
      "libubsan1",
      "libquadmath0",
      "g++-12",
      "libstdc++-12-dev",
      "gcc",
      "cpp",
      "g++",
    ],
  },
  {
    // Builds recipes/binutils.yaml (distro.yaml's bootstrap: binutils-bootstrap:
    // binutils): build-base depends on `binutils`, which this provides until
    // binutils is built.
    name: "binutils-bootstrap",
    description: "GNU assembler, linker and binary utilities for the bootstrap (imported from Debian)",
    license: "GPL-3.0-or-later",
    provides: ["binutils=${{package.full-version}}"],
    debs: [
      "binutils",
      "binutils-x86-64-linux-gnu",
      "binutils-common",
      "libbinutils",
      "libctf0",
      "libctf-nobfd0",
      "libgprofng0",
    ],
    // gprofng's HTML report is a perl script: the toolchain would need perl.
    exclude: {
      binutils: ["usr/bin/gp-display-html"],
      "binutils-x86-64-linux-gnu": ["usr/bin/x86_64-linux-gnu-gp-display-html"],
    },
  },
  {
    // Only Debian's ld links libjansson (distro.yaml's bootstrap:
    // jansson-bootstrap: binutils): it goes with binutils-bootstrap.
    name: "jansson-bootstrap",
    description: "C library for JSON, for the bootstrap binutils (imported from Debian)",
    license: "MIT",
    debs: ["libjansson4"],
  },
  // gcc's own libraries, for the imported gcc until recipes/gmp.yaml,
  // mpfr.yaml, mpc.yaml and isl.yaml are built from source (distro.yaml's
  // bootstrap: maps each to its successor).
  {
    name: "gmp-bootstrap",
    description: "GNU multiple precision arithmetic library, for the bootstrap gcc (imported from Debian)",
    license: "LGPL-3.0-or-later OR GPL-2.0-or-later",
    debs: ["libgmp10"],
  },
  {
    name: "mpfr-bootstrap",
    description: "multiple-precision floating-point library, for the bootstrap gcc (imported from Debian)",
    license: "LGPL-3.0-or-later",
    debs: ["libmpfr6"],
  },
  {
    name: "mpc-bootstrap",
    description: "multiple-precision complex arithmetic library, for the bootstrap gcc (imported from Debian)",
    license: "LGPL-3.0-or-later",
    debs: ["libmpc3"],
  },
  {
    name: "isl-bootstrap",
    description: "integer set library, for the bootstrap gcc (imported from Debian)",
    license: "MIT",
    debs: ["libisl23"],
  },
  {
    name: "zlib-bootstrap",
    description: "zlib for the bootstrap toolchain (imported from Debian)",
    license: "Zlib",
    debs: ["zlib1g"],
  },
  {
    name: "zstd-bootstrap",
    description: "zstd library for the bootstrap toolchain (imported from Debian)",
    license: "BSD-3-Clause OR GPL-2.0-only",
    debs: ["libzstd1"],
  },
  {
    // Builds recipes/make.yaml (distro.yaml's bootstrap: make-bootstrap: make):
    // build-base depends on `make`, which this provides until make is built.
    name: "make-bootstrap",
    description: "GNU make for the bootstrap (imported from Debian)",
    license: "GPL-3.0-or-later",
    debs: ["make"],
    provides: ["make=${{package.full-version}}"],
    // a perl script: every guest with build-base would need perl
    exclude: { make: ["usr/bin/make-first-existing-target"] },
  },
  {
    name: "busybox-static",
    description: "static busybox for the bootstrap (imported from Debian)",
    license: "GPL-2.0-only",
    debs: ["busybox-static"],
  },
  {
    name: "ca-certificates",
    description: "Mozilla's CA certificates (imported from Debian)",
    license: "MPL-2.0",
    debs: ["ca-certificates"],
  },
  {
    name: "tzdata",
    description: "time zone database (imported from Debian)",
    license: "Public-Domain",
    debs: ["tzdata"],
  },
  // Test fixtures, not part of the distribution (perl is built from source):
  // test/lang-perl.test.ts builds melange's perl pipelines with a Debian perl
  // over the stage-0 toolchain, so it does not wait for perl's own build.
  {
    name: "perl-bootstrap",
    dir: "test/fixtures/stage0",
    description: "Perl 5 for build scripts (imported from Debian)",
    license: "Artistic-1.0-Perl OR GPL-1.0-or-later",
    debs: ["perl-base", "perl", "perl-modules-5.36", "libperl5.36", "libdb5.3", "libgdbm6", "libgdbm-compat4"],
  },
  {
    // libperl links libbz2.
    name: "bzip2-bootstrap",
    dir: "test/fixtures/stage0",
    description: "the bzip2 library for the bootstrap toolchain (imported from Debian)",
    license: "bzip2-1.0.6",
    debs: ["libbz2-1.0"],
  },
];

const MIRRORS = aptMirrors();

/** The candidate version and which configured mirror (debian, debian-security) serves it. */
function candidate(pkg) {
  const policy = execFileSync("apt-cache", ["policy", `${pkg}:${ARCH}`], { encoding: "utf8" });
  const version = /Candidate: (\S+)/.exec(policy)?.[1];
  if (!version || version === "(none)") throw new Error(`${pkg}: no candidate version (run apt-get update)`);
  const madison = execFileSync("apt-cache", ["madison", `${pkg}:${ARCH}`], { encoding: "utf8" });
  for (const line of madison.split("\n")) {
    const [, v, src] = line.split("|").map((x) => x.trim());
    if (v !== version || !src) continue;
    const url = src.split(" ")[0].replace(/\/+$/, "");
    for (const [name, base] of Object.entries(MIRRORS)) if (base === url) return { version, mirror: name };
  }
  throw new Error(`${pkg} ${version}: not served by a configured Debian mirror`);
}

function aptShow(pkg) {
  const c = candidate(pkg);
  const out = execFileSync("apt-cache", ["show", `${pkg}:${ARCH}=${c.version}`], { encoding: "utf8" });
  const f = {};
  for (const line of out.split("\n")) {
    const m = /^([A-Za-z0-9-]+): (.*)$/.exec(line);
    if (m && !(m[1] in f)) f[m[1]] = m[2];
  }
  if (!f.Filename || !f.SHA256 || !f.Version)
    throw new Error(`apt-cache show ${pkg}: missing Filename/SHA256/Version (run apt-get update)`);
  f.mirror = c.mirror;
  return f;
}

function fetchSteps(debs, into, exclude) {
  return debFetchSteps(debs, into, aptShow, exclude);
}

const only = process.argv.slice(2).filter((a) => !a.startsWith("--"));
for (const n of only) if (!GROUPS.some((g) => g.name === n)) throw new Error(`${n}: not a stage-0 recipe`);
const recipes = [];
for (const g of GROUPS.filter((x) => !only.length || only.includes(x.name))) {
  const main = aptShow(g.debs[0]);
  const version = debVersionToApk(main.Version);
  const lines = [
    `# Stage 0: imports Debian 12's ${g.debs.join(", ")} (${main.Version}).`,
    `# Generated by tools/update-bootstrap.mjs from apt's package lists; do not edit by hand.`,
    `package:`,
    `  name: ${g.name}`,
    `  version: "${version}"`,
    `  epoch: 0`,
    `  description: ${JSON.stringify(g.description)}`,
    `  copyright:`,
    `    - license: ${JSON.stringify(g.license)}`,
    `  target-architecture: [x86_64]`,
    ...(g.runtime || g.provides ? [`  dependencies:`] : []),
    ...(g.runtime ? [`    runtime:`, ...g.runtime.map((r) => `      - ${r}`)] : []),
    ...(g.provides ? [`    provides:`, ...g.provides.map((r) => `      - ${r}`)] : []),
    // Stage 0 stays on Debian 12 by design: kiln update leaves these alone
    // (this script regenerates them).
    ...(STAGE0.has(g.name)
      ? [
          ``,
          `update:`,
          `  enabled: false`,
          `  # stage 0: pinned to Debian 12; node tools/update-bootstrap.mjs regenerates it`,
        ]
      : []),
    ``,
    `pipeline:`,
    ...fetchSteps(g.debs, undefined, g.exclude),
  ];
  if (g.subpackages) {
    lines.push(``, `subpackages:`);
    for (const s of g.subpackages) {
      lines.push(`  - name: ${s.name}`, `    description: ${JSON.stringify(s.description)}`);
      if (s.runtime || s.provides) lines.push(`    dependencies:`);
      if (s.runtime) lines.push(`      runtime:`, ...s.runtime.map((r) => `        - ${r}`));
      if (s.provides) lines.push(`      provides:`, ...s.provides.map((r) => `        - ${r}`));
      lines.push(`    pipeline:`);
      lines.push(...fetchSteps(s.debs, "${{targets.subpkgdir}}").map((l) => "    " + l));
    }
  }
  const text = lines.join("\n") + "\n";
  const file = join(root, g.dir ?? "recipes", `${g.name}.yaml`);
  recipes.push([file, text]);
}
writeRecipes(recipes, process.argv.includes("--check"));
