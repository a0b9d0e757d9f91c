// Image assembly: build an image of ~200 MB of package contents from a local
// repository, against the floor `tar -c ROOT | gzip -6 | sha256sum` over the
// same files; peak memory at two sizes shows it stays bounded (streaming).

import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  buildIndex,
  emptyPackageInfo,
  generateKey,
  indexRecordForPackage,
  parseSigningKey,
  writePackage,
} from "@kiln/apk";
import { best, time } from "./common.mjs";

const here = dirname(fileURLToPath(import.meta.url));

function rng(seed) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

async function makeRepo(dir, totalMb, key, pubPem) {
  const r = rng(7);
  const repo = join(dir, "repo");
  const root = join(dir, "root");
  mkdirSync(join(repo, "x86_64"), { recursive: true });
  const fileSize = 2 * 1024 * 1024;
  const perPkg = 5;
  const nPkgs = Math.ceil((totalMb * 1024 * 1024) / (fileSize * perPkg));
  const records = [];
  const names = [];
  for (let i = 0; i < nPkgs; i++) {
    const entries = [];
    for (let f = 0; f < perPkg; f++) {
      // Half-random bytes: compresses about 2:1, like binaries.
      const b = Buffer.alloc(fileSize);
      for (let k = 0; k < fileSize; k += 4) b.writeUInt32LE(r() < 0.5 ? 0 : Math.floor(r() * 2 ** 32), k);
      const p = `usr/share/p${i}/f${f}`;
      mkdirSync(join(root, dirname(p)), { recursive: true });
      writeFileSync(join(root, p), b);
      entries.push({ path: p, type: "file", content: { file: join(root, p) } });
    }
    const info = emptyPackageInfo(`p${i}`, "1.0-r0", "x86_64");
    const file = join(repo, "x86_64", `p${i}-1.0-r0.apk`);
    await writePackage({ info, entries, signingKeys: [key], gzipLevel: 1 }, file);
    records.push(await indexRecordForPackage(file));
    names.push(`p${i}`);
  }
  writeFileSync(join(repo, "x86_64/APKINDEX.tar.gz"), buildIndex(records, { signingKeys: [key] }));
  writeFileSync(join(dir, "bench.rsa.pub"), pubPem);
  const cfg = join(dir, "image.yaml");
  writeFileSync(
    cfg,
    `contents:\n  repositories: [${repo}]\n  keyring: [${join(dir, "bench.rsa.pub")}]\n  packages: [${names.join(", ")}]\narchs: [x86_64]\n`,
  );
  return { cfg, root, bytes: nPkgs * perPkg * fileSize };
}

// One package of many tiny files (100,000 by default, 100 directories of 1,000):
// per-file overhead, not bytes, is what this measures.
export async function makeTinyRepo(dir, nFiles, key, pubPem) {
  const r = rng(11);
  const repo = join(dir, "repo");
  const root = join(dir, "root");
  mkdirSync(join(repo, "x86_64"), { recursive: true });
  const entries = [];
  let bytes = 0;
  for (let i = 0; i < nFiles; i++) {
    const p = `usr/share/tiny/d${Math.floor(i / 1000)}/f${i}.txt`;
    if (i % 1000 === 0) {
      mkdirSync(join(root, dirname(p)), { recursive: true });
      entries.push({ path: dirname(p), type: "dir" });
    }
    const body = Buffer.from(`${i} ${"x".repeat(Math.floor(r() * 200))} ${r().toString(36)}\n`);
    writeFileSync(join(root, p), body);
    entries.push({ path: p, type: "file", content: body });
    bytes += body.length;
  }
  const info = emptyPackageInfo("tiny", "1.0-r0", "x86_64");
  const file = join(repo, "x86_64", "tiny-1.0-r0.apk");
  await writePackage({ info, entries, signingKeys: [key], gzipLevel: 1 }, file);
  writeFileSync(
    join(repo, "x86_64/APKINDEX.tar.gz"),
    buildIndex([await indexRecordForPackage(file)], { signingKeys: [key] }),
  );
  writeFileSync(join(dir, "bench.rsa.pub"), pubPem);
  const cfg = join(dir, "image.yaml");
  writeFileSync(
    cfg,
    `contents:\n  repositories: [${repo}]\n  keyring: [${join(dir, "bench.rsa.pub")}]\n  packages: [tiny]\narchs: [x86_64]\n`,
  );
  return { cfg, root, bytes };
}

export async function tinyFiles(log, key, pubPem) {
  const n = Number(process.env.KILN_BENCH_TINY_FILES ?? 100000);
  const dir = await mkdtemp(join(tmpdir(), "kiln-bench-tiny-"));
  try {
    log(`image of ${n} tiny files: generating the package`);
    const { cfg, root } = await makeTinyRepo(dir, n, key, pubPem);
    const cache = join(dir, "cache");
    const run = buildOnce(cfg, join(dir, "out"), cache);
    const floor = await best(2, () =>
      time(() => execFileSync("bash", ["-c", `tar -C ${root} -c . | gzip -6 | sha256sum`])),
    );
    log(`  kiln ${run.ms.toFixed(0)} ms, peak RSS ${run.maxRssMb.toFixed(0)} MB; floor ${floor.ms.toFixed(0)} ms`);
    return {
      name: `assemble image, one package of ${n} tiny files`,
      kiln: `${run.ms.toFixed(0)} ms`,
      peer: `${floor.ms.toFixed(0)} ms`,
      ratio: run.ms / floor.ms,
      note: `floor = tar -c ROOT | gzip -6 | sha256sum; kiln peak RSS ${run.maxRssMb.toFixed(0)} MB`,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function buildOnce(cfg, out, cache) {
  const r = spawnSync(process.execPath, [join(here, "image-child.mjs"), cfg, out, cache], {
    encoding: "utf8",
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

export async function imageBenchmarks(log) {
  const results = [];
  const k = await generateKey(2048);
  const key = parseSigningKey(k.privatePem, "bench.rsa.pub");
  const sizes = [Number(process.env.KILN_BENCH_IMAGE_MB ?? 200) / 2, Number(process.env.KILN_BENCH_IMAGE_MB ?? 200)];
  const rss = [];
  for (const mb of sizes) {
    const dir = await mkdtemp(join(tmpdir(), "kiln-bench-img-"));
    try {
      log(`image of ~${mb} MB: generating packages`);
      const { cfg, root, bytes } = await makeRepo(dir, mb, key, k.publicPem);
      const cache = join(dir, "cache");
      buildOnce(cfg, join(dir, "warm"), cache); // fill the download cache: measure assembly, not copying
      const runs = [];
      for (let i = 0; i < 2; i++) runs.push(buildOnce(cfg, join(dir, `out${i}`), cache));
      const kilnRun = runs.sort((a, b) => a.ms - b.ms)[0];
      const floor = await best(2, () =>
        time(() => execFileSync("bash", ["-c", `tar -C ${root} -c . | gzip -6 | sha256sum`])),
      );
      rss.push({ mb, rss: Math.max(...runs.map((r) => r.maxRssMb)) });
      log(
        `  kiln ${kilnRun.ms.toFixed(0)} ms, peak RSS ${kilnRun.maxRssMb.toFixed(0)} MB; floor ${floor.ms.toFixed(0)} ms`,
      );
      if (mb === sizes[1]) {
        results.push({
          name: `assemble image, ${(bytes / 1e6).toFixed(0)} MB of package contents`,
          kiln: `${kilnRun.ms.toFixed(0)} ms`,
          peer: `${floor.ms.toFixed(0)} ms`,
          ratio: kilnRun.ms / floor.ms,
          note: "floor = tar -c ROOT | gzip -6 | sha256sum over the same files; kiln resolves, verifies, installs, writes OCI layout",
        });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  results.push({
    name: `peak RSS at ${rss[0].mb} MB vs ${rss[1].mb} MB of contents`,
    kiln: `${rss[0].rss.toFixed(0)} / ${rss[1].rss.toFixed(0)} MB`,
    peer: "-",
    ratio: rss[1].rss / rss[0].rss,
    note: "ratio near 1 = memory does not grow with image size (streaming)",
  });
  results.push(await tinyFiles(log, key, k.publicPem));
  return results;
}
