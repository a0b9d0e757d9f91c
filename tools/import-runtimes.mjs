#!/usr/bin/env node
// Regenerates the recipes in recipes/ that import Node.js, npm, OpenJDK and
// the libraries they load from Debian 12's binary packages (building them
// from source does not fit a 2-core build budget). Kiln Linux's glibc is
// Debian 12's, so only bookworm, bookworm-updates and bookworm-security
// builds are taken: the newest version a configured Debian mirror serves
// (another apt source, e.g. a vendor's nodejs, is ignored). Pool paths and
// SHA-256 sums come from apt's package lists (`apt-get update` first); URLs
// are written as ${{mirror.debian}}/... so no host name is committed.
//
//   node tools/import-runtimes.mjs            # rewrite the recipes
//   node tools/import-runtimes.mjs --check    # exit 1 if any would change

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { aptMirrors, debVersionToApk } from "@kiln/builder";
import { debFetchSteps, writeRecipes } from "./deb-steps.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const ARCH = "amd64";
const MIRRORS = aptMirrors();
const JVM = "/usr/lib/jvm/java-17-openjdk-amd64";

const sh = (cmd, args) => execFileSync(cmd, args, { encoding: "utf8" });

/** Every record of the configured Debian mirrors' package lists, by package name and by what it provides. */
function readIndexes() {
  const byName = new Map();
  const provides = new Map();
  const targets = sh("apt-get", ["indextargets", "--format", "$(FILENAME) $(REPO_URI)", "Created-By: Packages"]);
  for (const line of targets.split("\n")) {
    const [file, uri] = line.split(" ");
    const mirror = Object.entries(MIRRORS).find(([, base]) => base === uri?.replace(/\/+$/, ""))?.[0];
    if (!mirror || !existsSync(file)) continue;
    const text = execFileSync("/usr/lib/apt/apt-helper", ["cat-file", file], { encoding: "utf8", maxBuffer: 1 << 30 });
    for (const para of text.split("\n\n")) {
      const f = { mirror };
      for (const l of para.split("\n")) {
        const m = /^([A-Za-z0-9-]+): (.*)$/.exec(l);
        if (m) f[m[1]] = m[2];
      }
      if (!f.Package || (f.Architecture !== ARCH && f.Architecture !== "all")) continue;
      byName.set(f.Package, [...(byName.get(f.Package) ?? []), f]);
      for (const p of (f.Provides ?? "").split(",")) {
        const n = p.trim().split(" ")[0];
        if (n) provides.set(n, f.Package);
      }
    }
  }
  return { byName, provides };
}
const INDEX = readIndexes();

const gt = (a, b) => {
  try {
    execFileSync("dpkg", ["--compare-versions", a, "gt", b]);
    return true;
  } catch {
    return false;
  }
};

/** The record of PKG's newest version on a configured Debian mirror (a virtual name: its provider's). */
function show(pkg) {
  const recs = INDEX.byName.get(pkg) ?? INDEX.byName.get(INDEX.provides.get(pkg) ?? "");
  if (!recs) throw new Error(`${pkg}: not on a configured Debian mirror (run apt-get update)`);
  const f = recs.reduce((best, r) => (r.Version !== best.Version && gt(r.Version, best.Version) ? r : best));
  if (!f.Filename || !f.SHA256) throw new Error(`${pkg}: its record has no Filename/SHA256`);
  return f;
}

/** PKG and the node-* / libjs-* packages it needs, recursively (arch-independent JavaScript), minus SKIP. */
function jsClosure(pkg, skip) {
  const seen = new Set();
  const todo = [pkg];
  while (todo.length) {
    const p = todo.pop();
    const real = show(p).Package;
    if (seen.has(real) || skip.has(p) || skip.has(real)) continue;
    seen.add(real);
    for (const alt of (show(real).Depends ?? "").split(",")) {
      const n = alt.split("|")[0].trim().split(" ")[0].split(":")[0];
      if (/^(node|libjs)-/.test(n)) todo.push(n);
    }
  }
  return [pkg, ...[...seen].filter((p) => p !== pkg).sort()];
}

const NODE_DEBS = ["nodejs", ...jsClosure("libnode108", new Set())];
const NPM_DEBS = jsClosure("npm", new Set(NODE_DEBS));

const lib = (name, deb, what, license) => ({ name, debs: [deb], description: what, license });

const GROUPS = [
  lib("libuv", "libuv1", "asynchronous I/O library", "MIT"),
  lib("c-ares", "libc-ares2", "asynchronous DNS resolver library", "MIT"),
  lib("nghttp2", "libnghttp2-14", "HTTP/2 C library", "MIT"),
  lib("icu", "libicu72", "International Components for Unicode libraries and data", "Unicode-DFS-2016"),
  {
    name: "nodejs-18",
    description: "Node.js JavaScript runtime, with the acorn, cjs-module-lexer and undici modules it loads",
    license: "MIT",
    debs: NODE_DEBS,
    provides: ["nodejs=${{package.full-version}}"],
  },
  {
    name: "npm",
    description: "package manager for Node.js (node-gyp without python3 and gyp: no native add-on builds)",
    license: "Artistic-2.0",
    debs: NPM_DEBS,
    runtime: ["nodejs-18"],
  },
  {
    name: "openjdk-17",
    description: "OpenJDK 17 development kit: javac, jar, jshell and the other tools",
    license: "GPL-2.0-only WITH Classpath-exception-2.0",
    debs: ["openjdk-17-jdk-headless"],
    // Its programs load libjli.so from the JRE's own lib directory, which no
    // so: provide names; the JRE is declared instead.
    noDepends: true,
    runtime: ["openjdk-17-jre", "zlib"],
    subpackages: [
      {
        name: "openjdk-17-jre",
        description:
          "OpenJDK 17 Java runtime, headless (AWT fonts, JPEG, colour management, sound and smart cards left out: their libraries are not in the distribution)",
        debs: ["openjdk-17-jre-headless"],
        // lib/security/cacerts links to /etc/ssl/certs/java/cacerts, which
        // Debian makes at install time; java-cacerts ships it.
        runtime: ["java-cacerts"],
        post: [
          `cd \${{targets.subpkgdir}}${JVM}/lib`,
          "$bb rm libfontmanager.so libjavajpeg.so liblcms.so libjsound.so libj2pcsc.so",
        ],
      },
      {
        name: "openjdk-17-default-jvm",
        description: "makes OpenJDK 17 the default JVM: /usr/lib/jvm/default-jvm and /usr/bin/java",
        runtime: ["openjdk-17-jre"],
        post: [
          "$bb mkdir -p ${{targets.subpkgdir}}/usr/lib/jvm ${{targets.subpkgdir}}/usr/bin",
          "$bb ln -s java-17-openjdk-amd64 ${{targets.subpkgdir}}/usr/lib/jvm/default-jvm",
          `for b in java keytool; do $bb ln -s ${JVM}/bin/$b \${{targets.subpkgdir}}/usr/bin/$b; done`,
        ],
      },
    ],
  },
];

function fetchSteps(debs, into) {
  return debFetchSteps(debs, into, show);
}

/** "(imported from Debian's binary package X V)" for the first deb; "and N more" for the rest. */
function label(g) {
  if (!g.debs?.length) return g.description;
  const f = show(g.debs[0]);
  const more = g.debs.length > 1 ? ` and ${g.debs.length - 1} more` : "";
  return `${g.description} (imported from Debian's binary package ${g.debs[0]} ${f.Version}${more})`;
}

function postStep(post) {
  return post ? [`  - runs: |`, `      bb=/usr/bin/busybox`, ...post.map((l) => `      ${l}`)] : [];
}

function deps(g, indent) {
  const out = [];
  if (g.runtime || g.provides) out.push(`${indent}dependencies:`);
  if (g.runtime) out.push(`${indent}  runtime:`, ...g.runtime.map((r) => `${indent}    - ${r}`));
  if (g.provides) out.push(`${indent}  provides:`, ...g.provides.map((r) => `${indent}    - ${r}`));
  if (g.noDepends) out.push(`${indent}options:`, `${indent}  no-depends: true`);
  return out;
}

function recipe(g) {
  const main = show(g.debs[0]);
  const all = [...g.debs, ...(g.subpackages ?? []).flatMap((s) => s.debs ?? [])];
  const needsShell = g.post || g.subpackages?.some((s) => s.post);
  const lines = [
    `# Imports Debian 12's ${all.length > 6 ? `${all.slice(0, 6).join(", ")} and ${all.length - 6} more` : all.join(", ")}.`,
    `# Generated by tools/import-runtimes.mjs from apt's package lists; do not edit by hand.`,
    `package:`,
    `  name: ${g.name}`,
    `  version: "${debVersionToApk(main.Version)}"`,
    `  epoch: 0`,
    `  description: ${JSON.stringify(label(g))}`,
    `  copyright:`,
    `    - license: ${JSON.stringify(g.license)}`,
    `  target-architecture: [x86_64]`,
    ...deps(g, "  "),
    ``,
    // The static stage-0 busybox, by name: a guest without a C library,
    // which a fresh build cannot resolve differently before and after glibc.
    ...(needsShell
      ? [
          `environment:`,
          `  contents:`,
          `    packages:`,
          `      - busybox-static`,
          `      - base-layout`,
          `  paths:`,
          `    - path: /bin/sh`,
          `      type: symlink`,
          `      source: /usr/bin/busybox`,
          ``,
        ]
      : []),
    `pipeline:`,
    ...fetchSteps(g.debs),
    ...postStep(g.post),
  ];
  if (g.subpackages) {
    lines.push(``, `subpackages:`);
    for (const s of g.subpackages) {
      lines.push(`  - name: ${s.name}`, `    description: ${JSON.stringify(label(s))}`, ...deps(s, "    "));
      lines.push(`    pipeline:`);
      const steps = [...(s.debs ? fetchSteps(s.debs, "${{targets.subpkgdir}}") : []), ...postStep(s.post)];
      lines.push(...steps.map((l) => "    " + l));
    }
  }
  return lines.join("\n") + "\n";
}

const recipes = [];
for (const g of GROUPS) {
  const text = recipe(g);
  const file = join(root, "recipes", `${g.name}.yaml`);
  recipes.push([file, text]);
}
writeRecipes(recipes, process.argv.includes("--check"));
