// Debian versions as apk versions: the upstream part of a Debian version
// (no epoch, no -revision, repack suffixes such as +dfsg dropped), and the
// recipe's `update:` block (melange's keys) applied to it.

import { isValidVersion } from "@kiln/apk";
import type { Recipe } from "../recipe-schema.js";
import { goRegexp, goReplaceAll } from "../substitute.js";

/** The upstream part of a Debian version: no epoch, no Debian revision. */
export function debianUpstream(version: string): string {
  const noEpoch = version.replace(/^\d+:/, "");
  const dash = noEpoch.lastIndexOf("-");
  return dash > 0 ? noEpoch.slice(0, dash) : noEpoch;
}

/**
 * Debian's upstream version as upstream names it, or undefined when it is a
 * pre-release (`~`) or not an apk version: `1.3.1+really1.3` → 1.3,
 * `1.3.dfsg` / `1.3+dfsg1` / `1.3+ds` / `1.3+repack2` → 1.3.
 */
export function upstreamRelease(debianUpstreamVersion: string): string | undefined {
  let v = debianUpstreamVersion;
  const really = /\+really(.+)$/.exec(v);
  if (really) v = really[1]!;
  v = v.replace(/[~+]deb\d+u\d+$/, ""); // a stable update of the same release
  v = v.replace(/[.+~](?:dfsg|ds|repack)\d*(?:[.+~].*)?$/i, "");
  if (v.includes("~") || v.includes("+") || v.includes(":")) return undefined;
  return isValidVersion(`${v}-r0`) ? v : undefined;
}

export type UpdateBlock = NonNullable<Recipe["update"]>;

/** Why the update block refuses an upstream version, or undefined when it is taken. */
export function refusedBy(update: UpdateBlock | undefined, version: string): string | undefined {
  if (!update) return undefined;
  for (const p of update["ignore-regex-patterns"] ?? []) {
    if (goRegexp(p).test(version)) return `update.ignore-regex-patterns ${JSON.stringify(p)}`;
  }
  const rm = update["release-monitor"];
  if (rm?.["version-filter-prefix"] && !version.startsWith(rm["version-filter-prefix"]))
    return `update.release-monitor.version-filter-prefix ${JSON.stringify(rm["version-filter-prefix"])}`;
  if (rm?.["version-filter-contains"] && !version.includes(rm["version-filter-contains"]))
    return `update.release-monitor.version-filter-contains ${JSON.stringify(rm["version-filter-contains"])}`;
  // A tag filter that starts with the stripped prefix is a filter on the version (openssl-3.6. with openssl- stripped: 3.6.).
  for (const m of [update.github, update.git]) {
    const strip = m?.["strip-prefix"] ?? "";
    const tag = m?.["tag-filter-prefix"];
    if (tag && tag.startsWith(strip) && !version.startsWith(tag.slice(strip.length)))
      return `update tag-filter-prefix ${JSON.stringify(tag)}`;
  }
  return undefined;
}

/** The package version for an upstream version: the update block's version-transform rules, in order. */
export function transformVersion(update: UpdateBlock | undefined, version: string): string {
  let v = version;
  for (const t of update?.["version-transform"] ?? []) v = goReplaceAll(goRegexp(t.match), v, t.replace);
  return v;
}
