// Recipe lines that fetch pinned Debian binary packages and unpack them,
// shared by the generators of imported recipes (update-bootstrap.mjs,
// import-runtimes.mjs). `show(name)` gives the package's Filename, SHA256
// and which configured mirror (debian, debian-security) serves it.

import { existsSync, readFileSync, writeFileSync } from "node:fs";

/**
 * fetch + deb/unpack steps for each .deb, unpacked into `into` when given (a
 * subpackage's directory); `exclude[deb]` lists paths of that .deb left out.
 */
export function debFetchSteps(debs, into, show, exclude = {}) {
  const lines = [];
  for (const d of debs) {
    const f = show(d);
    const file = f.Filename.slice(f.Filename.lastIndexOf("/") + 1);
    lines.push(
      `  - uses: fetch`,
      `    with:`,
      `      uri: \${{mirror.${f.mirror}}}/${f.Filename}`,
      `      expected-sha256: ${f.SHA256}`,
      `      extract: false`,
      `  - uses: deb/unpack`,
      `    with:`,
      `      deb: ${file}`,
      ...(into ? [`      directory: ${into}`] : []),
      ...(exclude[d]?.length ? [`      exclude: ${exclude[d].join(" ")}`] : []),
    );
  }
  return lines;
}

/**
 * Write each generated recipe ([file, text]) whose file differs; with --check,
 * write nothing and exit 1 naming the files that are out of date.
 */
export function writeRecipes(recipes, check) {
  const changed = [];
  for (const [file, text] of recipes) {
    const old = existsSync(file) ? readFileSync(file, "utf8") : "";
    if (old === text) continue;
    changed.push(file);
    if (!check) writeFileSync(file, text);
  }
  if (!check) console.log(`${changed.length} recipe(s) written`);
  else if (changed.length) {
    console.error(`out of date: ${changed.join(", ")}`);
    process.exit(1);
  }
}
