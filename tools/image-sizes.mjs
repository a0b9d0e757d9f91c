#!/usr/bin/env node
// Prints each built image's size: compressed (the sum of its layer blobs, what
// a registry stores and a pull downloads) and uncompressed (the sum of the
// layers' tar streams, about what it takes unpacked). Reads the OCI layouts
// `kiln distro-build` / `kiln images` write under OUT/images/NAME.
//
//   node tools/image-sizes.mjs                 # out/images, a table
//   node tools/image-sizes.mjs DIR --json      # another images directory, JSON
//
// Only the host's architecture (or the only one) is measured per image.

import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createGunzip } from "node:zlib";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const json = args.includes("--json");
const dir = args.find((a) => !a.startsWith("--")) ?? join(root, "out/images");
const ARCH = { x64: "amd64", arm64: "arm64" }[process.arch] ?? process.arch;
// Bounds for hostile layouts: index and manifest files are small; a layer
// inflates to at most this much.
const MAX_JSON = 4 * 1024 * 1024;
const MAX_UNCOMPRESSED = 16 * 1024 * 1024 * 1024;

function fail(message) {
  console.error(`image-sizes: ${message}`);
  process.exit(1);
}

function blobPath(layout, digest) {
  const m = /^sha256:([0-9a-f]{64})$/.exec(String(digest));
  if (!m) throw new Error(`${layout}: not a sha256 digest: ${JSON.stringify(digest)}`);
  return join(layout, "blobs", "sha256", m[1]);
}

function readJson(file) {
  const st = statSync(file);
  if (st.size > MAX_JSON) throw new Error(`${file}: larger than ${MAX_JSON} bytes`);
  return JSON.parse(readFileSync(file, "utf8"));
}

/** The image manifest for this host's architecture (or the only one) in an OCI layout. */
function manifestOf(layout) {
  let node = readJson(join(layout, "index.json"));
  for (let depth = 0; depth < 4; depth++) {
    const ms = node.manifests;
    if (!Array.isArray(ms)) return node;
    const pick = ms.find((m) => m.platform?.architecture === ARCH) ?? (ms.length === 1 ? ms[0] : undefined);
    if (!pick) throw new Error(`${layout}: no ${ARCH} manifest among ${ms.length}`);
    node = readJson(blobPath(layout, pick.digest));
  }
  throw new Error(`${layout}: indexes nested too deep`);
}

async function inflatedSize(file) {
  let n = 0;
  const gunzip = createGunzip();
  createReadStream(file).pipe(gunzip);
  for await (const chunk of gunzip) {
    n += chunk.length;
    if (n > MAX_UNCOMPRESSED) throw new Error(`${file}: inflates past ${MAX_UNCOMPRESSED} bytes`);
  }
  return n;
}

async function measure(name, layout) {
  const manifest = manifestOf(layout);
  if (!Array.isArray(manifest.layers)) throw new Error(`${layout}: manifest has no layers`);
  let compressed = 0;
  let uncompressed = 0;
  for (const l of manifest.layers) {
    const file = blobPath(layout, l.digest);
    compressed += statSync(file).size;
    uncompressed += /gzip/.test(String(l.mediaType)) ? await inflatedSize(file) : statSync(file).size;
  }
  return { name, layers: manifest.layers.length, compressed, uncompressed };
}

const mib = (n) => (n / 1024 / 1024).toFixed(2);

if (!existsSync(dir)) fail(`${dir}: no such directory (build the images first: kiln images or npm start)`);
const rows = [];
for (const name of readdirSync(dir).sort()) {
  const layout = join(dir, name);
  if (!existsSync(join(layout, "index.json"))) continue;
  try {
    rows.push(await measure(name, layout));
  } catch (e) {
    fail(e.message);
  }
}
if (json) console.log(JSON.stringify(rows, null, 2));
else {
  const w = Math.max(5, ...rows.map((r) => r.name.length));
  console.log(`${"image".padEnd(w)}  ${"compressed MiB".padStart(14)}  ${"uncompressed MiB".padStart(16)}  layers`);
  for (const r of rows)
    console.log(
      `${r.name.padEnd(w)}  ${mib(r.compressed).padStart(14)}  ${mib(r.uncompressed).padStart(16)}  ${String(r.layers).padStart(6)}`,
    );
  console.log(`${rows.length} image(s) in ${dir}`);
}
