#!/usr/bin/env node
// kiln benchmarks: every figure is a ratio against a named peer or floor,
// measured side by side in this run (absolute times on shared machines mean
// little). Run with `npm run bench`; `--only NAME` runs one group.

import { parseArgs } from "node:util";
import { apkBenchmarks } from "./apk.mjs";
import { imageBenchmarks } from "./image.mjs";
import { resolverBenchmarks } from "./resolver.mjs";
import { buildBenchmarks } from "./build.mjs";
import { publishBenchmarks } from "./publish.mjs";
import { distroBenchmarks } from "./distro.mjs";

const { values } = parseArgs({ options: { only: { type: "string" }, json: { type: "boolean" } } });
const groups = {
  apk: apkBenchmarks,
  resolver: resolverBenchmarks,
  image: imageBenchmarks,
  build: buildBenchmarks,
  publish: publishBenchmarks,
  distro: distroBenchmarks,
};
const results = [];
for (const [name, fn] of Object.entries(groups)) {
  if (values.only && values.only !== name) continue;
  process.stderr.write(`== ${name}\n`);
  for (const r of await fn((line) => process.stderr.write(`   ${line}\n`))) results.push({ group: name, ...r });
}
if (values.json) console.log(JSON.stringify(results, null, 2));
else {
  console.log("\nbenchmark".padEnd(58) + "kiln".padStart(16) + "peer/floor".padStart(16) + "ratio".padStart(9));
  for (const r of results) {
    console.log(
      `${r.name.padEnd(57)}${r.kiln.padStart(16)}${r.peer.padStart(16)}${r.ratio.toFixed(2).padStart(8)}x  (${r.note})`,
    );
  }
}
