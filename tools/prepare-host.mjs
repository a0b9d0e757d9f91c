#!/usr/bin/env node
// Makes a fresh Debian machine ready for `npm start` / `npm test`: installs
// the npm dependencies if they are missing, and the system tools kiln runs
// (bubblewrap for build sandboxes, umoci for image smoke tests, xz/zstd/bzip2
// for Debian archives, …). As root with apt-get it installs what is missing;
// otherwise it prints the command to run and exits 1. Uses only Node built-ins.

import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const purpose = process.argv[2] === "test" ? "test" : "start";

// command → Debian package
const NEEDS = {
  start: { bwrap: "bubblewrap", umoci: "umoci", xz: "xz-utils", zstd: "zstd", bzip2: "bzip2", git: "git" },
  test: {
    bwrap: "bubblewrap",
    umoci: "umoci",
    skopeo: "skopeo",
    "docker-registry": "docker-registry",
    xz: "xz-utils",
    zstd: "zstd",
    bzip2: "bzip2",
    gcc: "gcc",
    readelf: "binutils",
    python3: "python3",
    openssl: "openssl",
    git: "git",
    dot: "graphviz",
    "/usr/bin/aws": "awscli",
  },
}[purpose];

function have(cmd) {
  if (cmd.startsWith("/")) return existsSync(cmd);
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

const missing = [
  ...new Set(
    Object.entries(NEEDS)
      .filter(([c]) => !have(c))
      .map(([, p]) => p),
  ),
];
if (purpose === "test" && !have("/usr/lib/x86_64-linux-gnu/libc.a") && existsSync("/usr/lib/x86_64-linux-gnu"))
  missing.push("libc6-dev");
if (missing.length) {
  const isRoot = process.getuid?.() === 0;
  if (isRoot && have("apt-get")) {
    console.error(`kiln: installing system packages: ${missing.join(" ")}`);
    execFileSync("apt-get", ["update"], { stdio: "inherit" });
    execFileSync("apt-get", ["install", "-y", "--no-install-recommends", ...missing], {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
  } else {
    console.error(
      `kiln: missing system packages: ${missing.join(" ")}\n  run: sudo apt-get install -y ${missing.join(" ")}`,
    );
    process.exit(1);
  }
}
if (!existsSync(join(root, "node_modules/.bin/turbo"))) {
  console.error("kiln: installing npm dependencies (npm ci)");
  execFileSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
}
