// APK format benchmarks (issue: format library): write + index generated
// packages, and read + verify the real Alpine index, each against the floor
// `gzip -6 | sha256sum` over the same bytes.

import { createReadStream, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import {
  buildIndex,
  emptyPackageInfo,
  generateKey,
  indexRecordForPackage,
  Keyring,
  parsePublicKey,
  parseSigningKey,
  readIndex,
  verifyIndex,
  writePackage,
} from "@kiln/apk";
import { best, fmtRate, peakRssMb, shell, time } from "./common.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const shared = process.env.KILN_SHARED_DIR ?? join(here, "../../shared");

function rng(seed) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** Package contents with realistic compressibility: text-like and binary-like files. */
function generate(n) {
  const r = rng(42);
  const words =
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore".split(" ");
  const pkgs = [];
  for (let i = 0; i < n; i++) {
    const files = [];
    const nf = 2 + Math.floor(r() * 6);
    for (let f = 0; f < nf; f++) {
      const size = Math.floor(500 + r() * 12000);
      let body;
      if (f % 2 === 0) {
        const parts = [];
        let len = 0;
        while (len < size) {
          const w = words[Math.floor(r() * words.length)];
          parts.push(w);
          len += w.length + 1;
        }
        body = Buffer.from(parts.join(" "));
      } else {
        body = Buffer.alloc(size);
        for (let k = 0; k < size; k++) body[k] = r() < 0.5 ? 0 : Math.floor(r() * 256);
      }
      files.push({ path: `usr/share/pkg${i}/file${f}`, type: "file", content: body });
    }
    pkgs.push({ name: `pkg${i}`, files });
  }
  return pkgs;
}

export async function apkBenchmarks(log) {
  const results = [];
  const dir = await mkdtemp(join(tmpdir(), "kiln-bench-"));
  try {
    const k = await generateKey(2048);
    const key = parseSigningKey(k.privatePem, "bench.rsa.pub");
    const N = Number(process.env.KILN_BENCH_PACKAGES ?? 2000);
    const pkgs = generate(N);
    const allBytes = pkgs.flatMap((p) => p.files.map((f) => f.content));
    const totalBytes = allBytes.reduce((a, b) => a + b.length, 0);
    log(`write + index ${N} generated packages (${(totalBytes / 1e6).toFixed(1)} MB of content)`);

    const kiln = await time(async () => {
      const records = [];
      for (const p of pkgs) {
        const info = emptyPackageInfo(p.name, "1.0-r0", "x86_64");
        const out = join(dir, `${p.name}-1.0-r0.apk`);
        await writePackage({ info, entries: p.files, signingKeys: [key] }, out);
        records.push(await indexRecordForPackage(out));
      }
      return buildIndex(records, { signingKeys: [key] });
    });
    const floor = await best(3, () => shell("gzip -6 | sha256sum", allBytes));
    results.push({
      name: `write+sign+index ${N} packages`,
      kiln: fmtRate(N, "pkg/s", kiln.ms),
      peer: fmtRate(totalBytes / 1e6, "MB/s", floor.ms),
      ratio: kiln.ms / floor.ms,
      note: `kiln ${fmtRate(totalBytes / 1e6, "MB/s", kiln.ms)}; floor = gzip -6 | sha256sum over the same content; lower ratio is better`,
    });

    const idxFile = join(shared, "testdata/apk-real/alpine-3.16/APKINDEX.tar.gz");
    const ring = new Keyring().add(
      "alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub",
      parsePublicKey(
        readFileSync(join(shared, "testdata/apk-real/alpine-3.16/alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub")),
        "alpine key",
      ),
    );
    const read = await best(5, async () => {
      const idx = await readIndex(createReadStream(idxFile));
      if (verifyIndex(idx, ring).verdict !== "OK") throw new Error("Alpine index did not verify");
      return idx.records.length;
    });
    const raw = gunzipSync(readFileSync(idxFile));
    const floor2 = await best(5, () => shell("gzip -6 | sha256sum", raw));
    results.push({
      name: `read+verify Alpine 3.16 index (${read.value} records)`,
      kiln: fmtRate(read.value, "rec/s", read.ms),
      peer: fmtRate(raw.length / 1e6, "MB/s", floor2.ms),
      ratio: read.ms / floor2.ms,
      note: `floor = gzip -6 | sha256sum over the index's ${(raw.length / 1e6).toFixed(1)} MB of tar`,
    });
    log(`peak RSS so far: ${peakRssMb()} MB`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}
