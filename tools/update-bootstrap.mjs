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
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { aptMirrors, debVersionToApk } from "@kiln/builder";
import { debFetchSteps, writeRecipes } from "./deb-steps.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const ARCH = "amd64";

// Each stage-0 recipe: the Debian binary packages it imports (the first one
// gives the version); dependencies between them come from automatic so:
// detection, not from lists here.
const GROUPS = [
  {
    name: "glibc",
    description: "the GNU C library and dynamic loader (imported from Debian)",
    license: "LGPL-2.1-or-later",
    debs: ["libc6", "libcrypt1"],
    // Unpacked into the workspace only: the subpackages below take a few of
    // its files (the iconv tools, the C.UTF-8 locale); the rest is not shipped.
    scratch: ["libc-bin"],
    // The loader is reached through base-layout's /lib64 link: without it no
    // program installed by apk would start. glibc-locale-posix gives every
    // image C.UTF-8, as Wolfi's glibc does.
    runtime: ["base-layout", "ld-linux", "glibc-locale-posix"],
    // The splits below move files with the static busybox in a guest.
    environment: ["busybox-static"],
    // In a guest of the split packages: a legacy character set converts only
    // with glibc-iconv's modules, C.UTF-8 is a locale glibc finds.
    test: {
      packages: ["busybox-static", "glibc-iconv", "glibc"],
      runs: [
        `bb=/usr/bin/busybox`,
        `test "$(printf '\\351' | iconv -f ISO-8859-1 -t UTF-8 | $bb od -An -tx1 | $bb tr -d ' ')" = c3a9`,
        `test "$(printf 'caf\\303\\251' | iconv -f UTF-8 -t UTF-16LE | $bb wc -c)" = 8`,
        `test -f /usr/lib/locale/C.utf8/LC_CTYPE`,
        `test -x /usr/lib64/ld-linux-x86-64.so.2`,
        `/usr/lib64/ld-linux-x86-64.so.2 --list /usr/bin/iconv | $bb grep -q 'libc.so.6 =>'`,
      ],
    },
    // Wolfi's names and splits, for the files Debian's packages hold.
    subpackages: [
      {
        name: "ld-linux",
        description: "the glibc ELF interpreter, the dynamic loader (imported from Debian)",
        move: { destdir: ["usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "usr/lib64"] },
      },
      {
        name: "libcrypt1",
        description: "libxcrypt's password hashing library libcrypt.so.1 (imported from Debian)",
        move: {
          destdir: [
            "usr/lib/x86_64-linux-gnu/libcrypt.so.1",
            "usr/lib/x86_64-linux-gnu/libcrypt.so.1.1.0",
            "usr/share/doc/libcrypt1",
          ],
        },
      },
      {
        // 8 MB: the character sets beyond the ones built into libc (UTF-8,
        // UTF-16/32, UCS-2/4, ASCII), for iconv_open() and the iconv tool.
        name: "glibc-iconv",
        description: "glibc's gconv character set modules, iconv and iconvconfig (imported from Debian)",
        move: {
          destdir: ["usr/lib/x86_64-linux-gnu/gconv"],
          "libc-bin": ["usr/bin/iconv", "usr/sbin/iconvconfig"],
        },
      },
      {
        name: "glibc-locale-posix",
        description: "the C.UTF-8 locale for glibc (imported from Debian)",
        move: { "libc-bin": ["usr/lib/locale/C.utf8"] },
      },
      {
        name: "glibc-dev",
        description: "glibc headers, startup files and static libraries",
        // libcrypt.so leads to libcrypt1's library: -lcrypt links only with it.
        runtime: ["libcrypt1"],
        debs: ["libc6-dev", "libcrypt-dev"],
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
    name: "binutils",
    description: "GNU assembler, linker and binary utilities (imported from Debian)",
    license: "GPL-3.0-or-later",
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
  { name: "jansson", description: "C library for JSON (imported from Debian)", license: "MIT", debs: ["libjansson4"] },
  {
    name: "gmp",
    description: "GNU multiple precision arithmetic library (imported from Debian)",
    license: "LGPL-3.0-or-later OR GPL-2.0-or-later",
    debs: ["libgmp10"],
  },
  {
    name: "mpfr",
    description: "multiple-precision floating-point library (imported from Debian)",
    license: "LGPL-3.0-or-later",
    debs: ["libmpfr6"],
  },
  {
    name: "mpc",
    description: "multiple-precision complex arithmetic library (imported from Debian)",
    license: "LGPL-3.0-or-later",
    debs: ["libmpc3"],
  },
  { name: "isl", description: "integer set library (imported from Debian)", license: "MIT", debs: ["libisl23"] },
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

/**
 * A subpackage's split: each path, relative to the package's destdir or to a
 * scratch deb's directory in the workspace, moved into the subpackage.
 */
function moveSteps(move) {
  const lines = [`  - runs: |`, `      bb=/usr/bin/busybox`];
  const made = new Set();
  for (const [from, paths] of Object.entries(move)) {
    const base = from === "destdir" ? "${{targets.destdir}}" : from;
    for (const p of paths) {
      const parent = p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : ".";
      if (!made.has(parent)) lines.push(`      $bb mkdir -p "\${{targets.subpkgdir}}/${parent}"`);
      made.add(parent);
      lines.push(`      $bb mv "${base}/${p}" "\${{targets.subpkgdir}}/${parent}/"`);
    }
  }
  return lines;
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
    ...(g.scratch ? [`# Of ${g.scratch.join(", ")} only the files its subpackages move are kept.`] : []),
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
    ...(g.environment
      ? [
          ``,
          `environment:`,
          `  contents:`,
          `    packages:`,
          ...g.environment.map((p) => `      - ${p}`),
          `  paths:`,
          `    - path: /bin/sh`,
          `      type: symlink`,
          `      source: /usr/bin/busybox`,
        ]
      : []),
    ``,
    `pipeline:`,
    ...fetchSteps(g.debs, undefined, g.exclude),
    ...(g.scratch ?? []).flatMap((d) => fetchSteps([d], d)),
  ];
  if (g.subpackages) {
    lines.push(``, `subpackages:`);
    for (const s of g.subpackages) {
      lines.push(`  - name: ${s.name}`, `    description: ${JSON.stringify(s.description)}`);
      if (s.runtime) lines.push(`    dependencies:`, `      runtime:`, ...s.runtime.map((r) => `        - ${r}`));
      lines.push(`    pipeline:`);
      const steps = s.move ? moveSteps(s.move) : fetchSteps(s.debs, "${{targets.subpkgdir}}");
      lines.push(...steps.map((l) => "    " + l));
    }
  }
  if (g.test) {
    lines.push(``, `test:`, `  environment:`, `    contents:`, `      packages:`);
    lines.push(...g.test.packages.map((p) => `        - ${p}`));
    lines.push(`    paths:`, `      - path: /bin/sh`, `        type: symlink`, `        source: /usr/bin/busybox`);
    lines.push(`  pipeline:`, `    - runs: |`, ...g.test.runs.map((r) => `        ${r}`));
  }
  const text = lines.join("\n") + "\n";
  const file = join(root, g.dir ?? "recipes", `${g.name}.yaml`);
  recipes.push([file, text]);
}
writeRecipes(recipes, process.argv.includes("--check"));
