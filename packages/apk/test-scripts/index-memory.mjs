// Child process for index-memory.test.ts: builds a realistic APKINDEX of about
// TEXT_MB megabytes (records shaped like Alpine's: subpackages sharing origin,
// commit, url and license; common dependencies; so:/cmd: provides), reads it
// with readIndex from the given build of @kiln/apk, and prints how much memory
// the result keeps relative to the text size.
//
//   node --expose-gc index-memory.mjs path/to/apk/dist/index.js TEXT_MB

import { createHash } from "node:crypto";

const [, , dist, mb = "20"] = process.argv;
const apk = await import(dist);

const LICENSES = [
  "MIT",
  "GPL-2.0-only",
  "GPL-2.0-or-later",
  "LGPL-2.1-or-later",
  "Apache-2.0",
  "BSD-3-Clause",
  "BSD-2-Clause",
  "ISC",
  "Zlib",
  "MPL-2.0",
  "GPL-3.0-or-later",
  "Artistic-1.0-Perl OR GPL-1.0-or-later",
  "custom",
  "OpenSSL",
  "PSF-2.0",
];
const MAINTAINERS = Array.from({ length: 60 }, (_, i) => `Maintainer Number${i} <maintainer${i}@example.org>`);
const COMMON = [
  "so:libc.musl-x86_64.so.1",
  "so:libz.so.1",
  "so:libcrypto.so.3",
  "so:libssl.so.3",
  "so:libncursesw.so.6",
  "/bin/sh",
  "so:libgcc_s.so.1",
  "so:libstdc++.so.6",
  "python3",
  "perl",
  "so:libintl.so.8",
  "so:libffi.so.8",
  "so:libexpat.so.1",
  "so:libxml2.so.2",
  "so:libglib-2.0.so.0",
];
const SUBS = [
  ["", ""],
  ["-dev", " (development files)"],
  ["-doc", " (documentation)"],
  ["-libs", " (libraries)"],
  ["-openrc", " (OpenRC init scripts)"],
];

const sha1 = (s, enc) => createHash("sha1").update(s).digest(enc);

/** One origin's records: 1 to 5 subpackages. */
function origin(g) {
  const name = `pkg${g}-${sha1(String(g), "hex").slice(0, 6)}`;
  const version = `${1 + (g % 9)}.${g % 23}.${g % 7}-r${g % 4}`;
  const commit = sha1(`commit ${g}`, "hex");
  const url = `https://project${g % 5000}.example.org/${name}`;
  const license = LICENSES[g % LICENSES.length];
  const maint = MAINTAINERS[g % MAINTAINERS.length];
  const desc = `Tool number ${g} that does ${["networking", "compression", "parsing", "graphics", "audio"][g % 5]} things`;
  const out = [];
  const n = 1 + (g % 5);
  for (let i = 0; i < n; i++) {
    const [suffix, what] = SUBS[i];
    const p = name + suffix;
    const lines = [
      `C:Q1${sha1(p, "base64")}`,
      `P:${p}`,
      `V:${version}`,
      "A:x86_64",
      `S:${1000 + ((g * 7919 + i * 31) % 900000)}`,
      `I:${4096 * (1 + ((g * 13 + i) % 400))}`,
      `T:${desc}${what}`,
      `U:${url}`,
      `L:${license}`,
      `o:${name}`,
      `m:${maint}`,
      `t:${1650000000 + g * 37}`,
      `c:${commit}`,
    ];
    const deps = [];
    for (let d = 0; d < 1 + ((g + i) % 4); d++) deps.push(COMMON[(g * 3 + d * 5 + i) % COMMON.length]);
    if (suffix === "-dev") deps.push(`${name}=${version}`, `pc:dep${g % 300}`);
    lines.push(`D:${[...new Set(deps)].join(" ")}`);
    if (suffix === "" || suffix === "-libs")
      lines.push(`p:so:lib${name}.so.${g % 3}=${g % 3}.${g % 10}.0 cmd:${name}=${version}`);
    if (suffix === "-dev") lines.push(`p:pc:${name}=${version}`);
    if (suffix === "-doc") lines.push(`i:docs ${name}=${version}`);
    out.push(lines.join("\n") + "\n\n");
  }
  return out;
}

const target = Number(mb) * 1e6;
const parts = [];
let size = 0;
for (let g = 0; size < target; g++)
  for (const r of origin(g)) {
    parts.push(r);
    size += r.length;
  }
const text = parts.join("");
parts.length = 0;
const textBytes = Buffer.byteLength(text);
const tar = [
  apk.encodeHeader({ path: "DESCRIPTION", type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 }),
  apk.encodeHeader({ path: "APKINDEX", type: "file", mode: 0o644, uid: 0, gid: 0, size: textBytes, mtime: 0 }),
  Buffer.from(text),
  Buffer.alloc(((512 - (textBytes % 512)) % 512) + 1024),
];
const bytes = apk.gzipMember(Buffer.concat(tar), 6);
tar.length = 0;

/** Full collection, including the backing stores of dead buffers (freed after a sweep). */
/* global gc */
async function settle() {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 30));
  }
}

await settle();
const m0 = process.memoryUsage();
const t0 = performance.now();
const idx = await apk.readIndex(bytes, { subject: "synthetic" });
const ms = performance.now() - t0;
const peakRss = process.resourceUsage().maxRSS * 1024;
await settle();
const m1 = process.memoryUsage();
const heap = m1.heapUsed - m0.heapUsed;
const external = m1.external - m0.external;
const roundTrip = apk.formatIndexText(idx.records) === text;
console.log(
  JSON.stringify({
    records: idx.records.length,
    textBytes,
    ms: Math.round(ms),
    heapRatio: heap / textBytes,
    retainedRatio: (heap + external) / textBytes,
    peakRssDeltaRatio: (peakRss - m0.rss) / textBytes,
    roundTrip,
  }),
);
