#!/usr/bin/env node
// `npm start`'s build step: runs `turbo run build` only when something it
// builds from changed. Turbo's own check of a built tree costs about a second
// (starting it, hashing every package), most of a no-op `npm start`; this one
// hashes the same inputs turbo.json names (each package's src/, tsconfig.json
// and package.json, plus the root's tsconfig.base.json, turbo.json and
// package-lock.json) and lists what the packages' dist/ hold, in a few tens of
// milliseconds. Both are kept in node_modules/.cache/kiln-build.json after a
// build that succeeded; when either differs, or the stamp is missing or
// unreadable, turbo runs as before and decides. Uses only Node built-ins.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stampFile = join(root, "node_modules/.cache/kiln-build.json");

/** Regular files under `dir`, sorted by path (symlinks and other types are named, not followed). */
function walk(dir, out = []) {
  let names;
  try {
    names = readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if (e.code === "ENOENT") return out;
    throw e;
  }
  for (const d of names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const p = join(dir, d.name);
    if (d.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

function packageDirs() {
  const base = join(root, "packages");
  return readdirSync(base, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(base, d.name, "package.json")))
    .map((d) => join(base, d.name))
    .sort();
}

/** SHA-256 over the build's inputs: each file's path and bytes. */
function inputsKey() {
  const h = createHash("sha256");
  const files = ["tsconfig.base.json", "turbo.json", "package-lock.json"].map((f) => join(root, f));
  for (const dir of packageDirs())
    files.push(...walk(join(dir, "src")), join(dir, "tsconfig.json"), join(dir, "package.json"));
  for (const f of files) {
    h.update(relative(root, f)).update("\0");
    try {
      h.update(readFileSync(f));
    } catch (e) {
      if (e.code !== "ENOENT") throw e;
      h.update("(missing)");
    }
    h.update("\0");
  }
  return h.digest("hex");
}

/** What the packages' dist/ hold: path, size and modification time of every file. */
function outputsState() {
  const h = createHash("sha256");
  let count = 0;
  for (const dir of packageDirs()) {
    for (const f of walk(join(dir, "dist"))) {
      const st = statSync(f);
      h.update(`${relative(root, f)}\0${st.size}\0${st.mtimeMs}\n`);
      count++;
    }
  }
  return { count, digest: h.digest("hex") };
}

function readStamp() {
  try {
    return JSON.parse(readFileSync(stampFile, "utf8"));
  } catch {
    return undefined;
  }
}

const key = inputsKey();
const stamp = readStamp();
const before = outputsState();
if (stamp?.inputs === key && stamp?.outputs === before.digest && before.count > 0) process.exit(0);

const turbo = spawnSync(join(root, "node_modules/.bin/turbo"), ["run", "build", "--output-logs=errors-only"], {
  cwd: root,
  stdio: "inherit",
});
if (turbo.status !== 0) process.exit(turbo.status ?? 1);
// Written only after a build that succeeded, from the inputs as they were when it started.
mkdirSync(dirname(stampFile), { recursive: true });
const tmp = `${stampFile}.${process.pid}.tmp`;
writeFileSync(tmp, JSON.stringify({ inputs: key, outputs: outputsState().digest }) + "\n");
renameSync(tmp, stampFile);
