// Recipe lines that fetch pinned Debian binary packages and unpack them,
// shared by the generators of imported recipes (update-bootstrap.mjs,
// import-runtimes.mjs). `show(name)` gives the package's Filename, SHA256
// and which configured mirror (debian, debian-security) serves it.

/** fetch + deb/unpack steps for each .deb, unpacked into `into` when given (a subpackage's directory). */
export function debFetchSteps(debs, into, show) {
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
    );
  }
  return lines;
}
