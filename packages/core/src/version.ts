// kiln's own version, for the records kiln writes about itself (SBOM
// creators, provenance builder ids): read once from this package's
// package.json, which every workspace shares the version of.

import { readFileSync } from "node:fs";

let cached: string | undefined;

/** kiln's version, e.g. "0.1.0" ("0.0.0" if the package metadata cannot be read). */
export function kilnVersion(): string {
  if (cached === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
        version?: unknown;
      };
      cached = typeof pkg.version === "string" && /^[0-9A-Za-z.+-]{1,64}$/.test(pkg.version) ? pkg.version : "0.0.0";
    } catch {
      cached = "0.0.0";
    }
  }
  return cached;
}
