// Resolver benchmarks (issue: dependency resolver): resolve realistic requests
// against the real Alpine 3.16 main index (4,929 packages), each against the
// floor of just parsing that index with readIndex — the work any resolution
// from a fetched index has to do first. ratio = resolve time / parse time.

import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { readIndex } from "@kiln/apk";
import { resolve, Resolver } from "../packages/repo/dist/resolver.js";
import { best, peakRssMb } from "./common.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const shared = process.env.KILN_SHARED_DIR ?? join(here, "../../shared");

const REQUESTS = [["alpine-base"], ["build-base"], ["python3"], ["git"], ["nginx"], ["curl", "bash", "jq"]];

const ms = (x) => `${x < 10 ? x.toFixed(2) : x.toFixed(1)} ms`;

export async function resolverBenchmarks(log) {
  const results = [];
  const bytes = readFileSync(join(shared, "testdata/apk-real/alpine-3.16/APKINDEX.tar.gz"));
  const parse = await best(5, async () => (await readIndex(bytes)).records);
  const records = parse.value;
  const repo = { url: "alpine" };
  const available = records.map((record) => ({
    record,
    repo,
    url: `alpine/${record.arch}/${record.name}-${record.version}.apk`,
  }));
  log(`Alpine 3.16 index: ${records.length} records, readIndex ${ms(parse.ms)} (best of 5)`);

  // Warm the JIT once so the first row does not carry it alone.
  for (const req of REQUESTS) resolve(req, available, { arch: "x86_64" });

  let total = 0;
  for (const req of REQUESTS) {
    const r = await best(7, () => resolve(req, available, { arch: "x86_64" }));
    total += r.ms;
    results.push({
      name: `resolve ${req.join(" ")} (Alpine 3.16, ${r.value.packages.length} pkgs)`,
      kiln: ms(r.ms),
      peer: ms(parse.ms),
      ratio: r.ms / parse.ms,
      note: `one resolve() call incl. indexing ${records.length} records; floor = readIndex of the same index; lower is better`,
    });
  }

  const build = await best(7, () => new Resolver(available, { arch: "x86_64" }));
  const warm = await best(7, () => {
    let n = 0;
    for (const req of REQUESTS) n += build.value.resolve(req).packages.length;
    return n;
  });
  results.push({
    name: `resolve all ${REQUESTS.length} requests on one Resolver`,
    kiln: ms(warm.ms),
    peer: ms(parse.ms),
    ratio: warm.ms / parse.ms,
    note: `index built once (${ms(build.ms)}), then ${REQUESTS.length} resolutions (${warm.value} pkgs); separate resolve() calls total ${ms(total)}`,
  });
  log(`peak RSS so far: ${peakRssMb()} MB`);
  return results;
}
