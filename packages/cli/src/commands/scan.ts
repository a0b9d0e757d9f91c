// kiln scan: the open security advisories of an image, a root or an SBOM,
// matched against advisory feeds (secdb security.json, OSV) by origin package
// and apk version order.

import { loadFeed, matchAdvisories, type FeedRule, type Finding } from "@kiln/repo";
import { defineCommand, flag, list, usageError } from "../program.js";
import { readScanInput, type ScanTarget } from "../scan-input.js";
import { type Io } from "../util.js";

/** Exit status when --fail-on-found is given and an open advisory is found. */
export const EXIT_FOUND = 3;

function osLine(t: ScanTarget): string {
  const o = t.osRelease;
  if (!o) return "no os-release";
  const name = o.PRETTY_NAME ?? o.NAME ?? o.ID ?? "unknown";
  const fields = ["ID", "ID_LIKE", "VERSION_ID"].filter((k) => o[k] !== undefined).map((k) => `${k}=${o[k]}`);
  return `${name} (${fields.join(" ")})`;
}

function table(findings: Finding[]): string[] {
  const rows = [
    ["PACKAGE", "INSTALLED", "ORIGIN", "ADVISORY", "FIXED IN"],
    ...findings.map((f) => [f.package, f.version, f.origin, f.id, f.fixed ?? "no fix"]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd(),
  );
}

export const scan = defineCommand({
  name: "scan",
  summary: "list installed packages with open security advisories",
  args: ["IMAGE|ROOT|SBOM"],
  details: `The input is an OCI image (layout directory or oci-archive: every platform's image is scanned,
its layers checked against their digests), a root directory (ROOT/lib/apk/db/installed), or an
SBOM (SPDX 2.3 or CycloneDX JSON, packages by their pkg:apk purls). Installed packages are
matched by their ORIGIN package (the o: field) and apk version order against every --feed:
  - a secdb security.json (per origin package, secfixes: the version that fixed which ids;
    "0": not affected), as kiln publish writes beside the repository;
  - OSV: one record, a JSON array of records (osv/all.json), or a directory of records;
  - a published repository (a directory or an http(s) URL not ending in .json): its
    security.json and/or osv/all.json;
local files or http(s) URLs (at most 64 MiB each, 60 s). An advisory is open when a feed says
the installed version is affected and no feed says the origin is not affected by it; ids and
their aliases (CVE, GHSA, the feed's own) are one vulnerability. The os-release of the input
is printed with the findings.
Exit status: 0 when the scan ran (findings or not), 3 with --fail-on-found when any advisory
is open, 1 for bad input (an unreadable image, a malformed feed), 2 for usage errors.`,
  options: {
    feed: list(
      "--feed <URL|FILE>",
      "an advisory feed: security.json, OSV, or a published repository (directory or URL)",
    ),
    failOnFound: flag("--fail-on-found", `exit ${EXIT_FOUND} when an advisory is open`),
    json: flag("--json", "machine-readable output"),
  },
  async run(values, positionals, io: Io) {
    if (!values.feed.length) throw usageError("scan", "give at least one --feed URL|FILE");
    const targets = await readScanInput(positionals[0]!);
    const rules: FeedRule[] = [];
    for (const f of values.feed) {
      const r = await loadFeed(f);
      if (!values.json) io.err(`feed ${f}: ${r.length} advisory statement${r.length === 1 ? "" : "s"}`);
      rules.push(...r);
    }
    const results = targets.map((t) => ({ ...t, findings: matchAdvisories(t.packages, rules) }));
    const open = results.reduce((n, r) => n + r.findings.length, 0);
    if (values.json) {
      io.out(
        JSON.stringify(
          {
            feeds: values.feed,
            targets: results.map((r) => ({
              subject: r.subject,
              ...(r.arch ? { arch: r.arch } : {}),
              osRelease: r.osRelease ?? null,
              packages: r.packages.length,
              findings: r.findings,
            })),
            open,
          },
          null,
          2,
        ),
      );
    } else {
      for (const r of results) {
        io.out(`${r.subject}: ${osLine(r)}`);
        if (r.findings.length) for (const l of table(r.findings)) io.out(`  ${l}`);
        const fixable = r.findings.filter((f) => f.fixed !== undefined).length;
        io.out(
          `  ${r.packages.length} packages scanned, ${r.findings.length} open advisor${r.findings.length === 1 ? "y" : "ies"}` +
            (r.findings.length ? ` (${fixable} with a fix)` : ""),
        );
      }
    }
    return values.failOnFound && open > 0 ? EXIT_FOUND : 0;
  },
});
