// APK format benchmarks (issue: format library): write + index generated
// packages, and read + verify the real Alpine index, each against the floor
// `gzip -6 | sha256sum` over the same bytes.

import { spawn, execFileSync } from "node:child_process";
import { createReadStream, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
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

    const files = [];
    const kiln = await time(async () => {
      const records = [];
      for (const p of pkgs) {
        const info = emptyPackageInfo(p.name, "1.0-r0", "x86_64");
        const out = join(dir, `${p.name}-1.0-r0.apk`);
        await writePackage({ info, entries: p.files, signingKeys: [key] }, out);
        records.push(await indexRecordForPackage(out));
        files.push(out);
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

    const pair = await indexVersusApk(dir, files, k, log);
    if (pair) results.push(pair);
    else log("kiln index vs apk index: skipped (apk-tools could not be built; see above)");

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

const KILN = join(here, "../packages/cli/bin/kiln.js");

/** The apk-tools 2.14 binary (built by shared/tools/apk-tools/build.sh when missing), or undefined. */
function apkTools(log) {
  const script = join(shared, "tools/apk-tools/build.sh");
  if (!existsSync(script)) return (log(`apk-tools: ${script} not found`), undefined);
  try {
    if (!existsSync("/opt/apk-tools/bin/apk")) log("building apk-tools 2.14 (~30 s)");
    return execFileSync("bash", [script], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
  } catch (e) {
    return (log(`apk-tools: cannot build it: ${e.message}`), undefined);
  }
}

/**
 * Run a command to its end; its wall time and peak RSS (MB). The peak is
 * VmHWM from /proc, polled while the process runs (the last value read is a
 * lower bound of the true peak, within one poll of memory growth).
 */
function measured(cmd, args) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    let hwm = 0;
    const poll = () => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.pid}/status`, "utf8"));
        if (m) hwm = Math.max(hwm, Number(m[1]));
      } catch {
        /* exited */
      }
    };
    const timer = setInterval(poll, 5);
    p.stderr.on("data", (d) => (err += d));
    p.on("error", reject);
    p.on("exit", (code) => {
      clearInterval(timer);
      const ms = performance.now() - t0;
      if (code !== 0)
        reject(new Error(`${cmd} ${args.slice(0, 3).join(" ")} ... exited ${code}: ${err.slice(0, 500)}`));
      else resolve({ ms, rssMb: hwm / 1024 });
    });
    poll();
  });
}

/** `kiln index` vs apk-tools' `apk index` over the same signed packages, best of 3 each, interleaved. */
async function indexVersusApk(dir, files, key, log) {
  const apk = apkTools(log);
  if (!apk) return undefined;
  const keysDir = join(dir, "keys");
  const { mkdirSync } = await import("node:fs");
  mkdirSync(keysDir, { recursive: true });
  writeFileSync(join(keysDir, "bench.rsa.pub"), key.publicPem);
  const keyFile = join(dir, "bench.rsa");
  writeFileSync(keyFile, key.privatePem, { mode: 0o600 });
  const total = files.reduce((a, f) => a + statSync(f).size, 0);
  log(`kiln index vs apk index over ${files.length} signed packages (${(total / 1e6).toFixed(1)} MB)`);
  let k = { ms: Infinity, rssMb: 0 };
  let a = { ms: Infinity, rssMb: 0 };
  for (let i = 0; i < 3; i++) {
    const kr = await measured(process.execPath, [
      KILN,
      "index",
      "-o",
      join(dir, "kiln.tar.gz"),
      "--signing-key",
      keyFile,
      ...files,
    ]);
    const ar = await measured(apk, ["index", "--keys-dir", keysDir, "-o", join(dir, "apk.tar.gz"), ...files]);
    if (kr.ms < k.ms) k = kr;
    if (ar.ms < a.ms) a = ar;
  }
  return {
    name: `kiln index ${files.length} signed packages vs apk index`,
    kiln: `${(k.ms / 1000).toFixed(2)} s ${k.rssMb.toFixed(0)} MB`,
    peer: `${(a.ms / 1000).toFixed(2)} s ${a.rssMb.toFixed(0)} MB`,
    ratio: k.ms / a.ms,
    note: `wall time, best of 3 each (interleaved); peak RSS beside it (VmHWM polled); apk-tools 2.14 from shared/tools; lower is better`,
  };
}

// Run alone: node bench/apk.mjs
if (import.meta.url === `file://${process.argv[1]}`) {
  const rs = await apkBenchmarks((l) => process.stderr.write(`   ${l}\n`));
  for (const r of rs)
    console.log(
      `${r.name.padEnd(57)}${r.kiln.padStart(16)}${r.peer.padStart(16)}${r.ratio.toFixed(2).padStart(8)}x  (${r.note})`,
    );
}
