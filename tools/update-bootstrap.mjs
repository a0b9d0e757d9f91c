#!/usr/bin/env node
// Regenerates the stage-0 recipes in recipes/ that import pinned Debian 12
// binary packages. Versions, pool paths and SHA-256 sums come from apt's
// package lists on this machine (`apt-get update` first); URLs are written as
// ${{mirror.debian}}/pool/... so no host name is ever committed. Re-run after a
// Debian point release, when the pinned files leave the mirror.
//
//   node tools/update-bootstrap.mjs            # rewrite the recipes
//   node tools/update-bootstrap.mjs --check    # exit 1 if any would change

import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { aptMirrors, debVersionToApk } from "@kiln/builder";

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
    // The loader is reached through base-layout's /lib64 link: without it no
    // program installed by apk would start.
    runtime: ["base-layout"],
    subpackages: [
      {
        name: "glibc-dev",
        description: "glibc headers, startup files and static libraries",
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
  { name: "make", description: "GNU make (imported from Debian)", license: "GPL-3.0-or-later", debs: ["make"] },
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
  {
    name: "perl-bootstrap",
    description: "Perl 5 for build scripts (imported from Debian)",
    license: "Artistic-1.0-Perl OR GPL-1.0-or-later",
    debs: [
      "perl-base",
      "perl",
      "perl-modules-5.36",
      "libperl5.36",
      "libdb5.3",
      "libgdbm6",
      "libgdbm-compat4",
      "libbz2-1.0",
    ],
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

function fetchSteps(debs, into) {
  const lines = [];
  for (const d of debs) {
    const f = aptShow(d);
    const file = f.Filename.slice(f.Filename.lastIndexOf("/") + 1);
    lines.push(
      `  - uses: fetch`,
      `    with:`,
      `      uri: \${{mirror.${f.mirror}}}/${f.Filename}`,
      `      expected-sha256: ${f.SHA256}`,
      `      extract: false`,
      `  - uses: deb/unpack`,
      `    with:`,
      `      deb: ${file}`,
      ...(into ? [`      directory: ${into}`] : []),
    );
  }
  return lines;
}

const changed = [];
for (const g of GROUPS) {
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
    ...(g.runtime ? [`  dependencies:`, `    runtime:`, ...g.runtime.map((r) => `      - ${r}`)] : []),
    ``,
    `pipeline:`,
    ...fetchSteps(g.debs),
  ];
  if (g.subpackages) {
    lines.push(``, `subpackages:`);
    for (const s of g.subpackages) {
      lines.push(`  - name: ${s.name}`, `    description: ${JSON.stringify(s.description)}`, `    pipeline:`);
      lines.push(...fetchSteps(s.debs, "${{targets.subpkgdir}}").map((l) => "    " + l));
    }
  }
  const text = lines.join("\n") + "\n";
  const file = join(root, "recipes", `${g.name}.yaml`);
  const old = existsSync(file) ? readFileSync(file, "utf8") : "";
  if (old !== text) {
    changed.push(file);
    if (!process.argv.includes("--check")) writeFileSync(file, text);
  }
}
if (process.argv.includes("--check")) {
  if (changed.length) {
    console.error(`out of date: ${changed.join(", ")}`);
    process.exit(1);
  }
} else console.log(`${changed.length} recipe(s) written`);
