// `kiln update --check | --apply`: recipes against the newest upstream release
// in the Debian archive's suites. Argument handling and printing only; the
// work is @kiln/builder's update module (checkUpdates, applyUpdate).

import { resolve } from "node:path";
import type { UpdateReport } from "@kiln/builder";
import { findDistroFile, listRecipeFiles, loadDistro } from "@kiln/distro";
import { defaultCacheDir } from "@kiln/repo";
import { opt } from "../options.js";
import { defineCommand, flag, list, number } from "../program.js";
import { UserError, type Io } from "../util.js";

/** Exit status of `--check --fail-on-outdated` when some recipe is behind. */
export const EXIT_OUTDATED = 3;

async function recipeFiles(
  given: string[],
  distroFile: string | undefined,
): Promise<{ files: string[]; mirrors: Record<string, string> }> {
  const f = distroFile ?? findDistroFile(process.cwd());
  const distro = f ? await loadDistro(f) : undefined;
  if (given.length) return { files: given.map((g) => resolve(g)), mirrors: distro?.mirrors ?? {} };
  if (!distro)
    throw new UserError("no RECIPE given and no distro.yaml here or in any parent directory (give --distro FILE)", 2);
  return { files: await listRecipeFiles(distro), mirrors: distro.mirrors };
}

function line(r: UpdateReport): string {
  const n = r.newest;
  const where = n ? `${n.version} in ${n.suites.join(", ")} (Debian ${n.debianVersion})` : "";
  const tag = r.manual ? " [manual]" : "";
  switch (r.status) {
    case "outdated":
      return `${r.name}: ${r.current} -> ${where}${tag}${r.kind === "deb" ? " [.deb import]" : ""}${n?.uri ? `\n    ${n.uri}\n    sha256 ${n.sha256}` : ""}`;
    case "current":
      return r.bumpedFrom
        ? `${r.name}: bumped ${r.bumpedFrom} -> ${r.current} (${where})`
        : `${r.name}: ${r.current} is current (newest ${where})`;
    case "disabled":
      return `${r.name}: ${r.current}, skipped: ${r.note}`;
    default:
      return `${r.name}: ${r.current}, not checked: ${r.note}`;
  }
}

export const update = defineCommand({
  name: "update",
  summary: "report (and apply) recipes behind the newest release in the Debian archive",
  args: ["[RECIPE...]"],
  usage:
    "kiln update --check | --apply [RECIPE...] [--suite S]... [--distro F] [--cache-dir D] [--max-age SEC] [--fail-on-outdated] [--json]",
  details: `For each RECIPE (default: every recipe of the distribution) whose sources are fetched from the
Debian archive's pool (\${{mirror.debian}}/pool/.../SOURCE_VERSION.orig.tar.*, or imported .debs), reads the
archive's source indexes (dists/SUITE/main/source/Sources.xz, cached in CACHE/archive-indexes, one file
per suite, reused for --max-age seconds (default 6 hours) and revalidated after) and reports the current version, the newest upstream release and the suites that hold it,
and the orig tarball's URI and sha256 from the index. Suites (--suite, repeatable): default apt's Debian
suites and bookworm, bookworm-updates, trixie, trixie-updates, forky, sid, each skipped when the mirror
does not serve it; the newest wins. Debian versions are compared by their upstream part (no epoch, no
-revision; +dfsg, +ds, +repack and +really dropped; ~ pre-releases ignored) in apk's version order.
A recipe's update: block is honoured: enabled: false skips it; manual: true reports it but --apply leaves it;
ignore-regex-patterns, release-monitor version-filter-prefix/-contains, a github/git tag-filter-prefix
that starts with strip-prefix, and version-transform apply to the archive's versions.

--apply bumps every outdated recipe (orig tarballs only; .deb imports are listed) in place: version,
epoch 0, the fetch URI (kept when it follows \${{package.version}} to the index's file, rewritten
otherwise) and expected-sha256 from the index; comments and layout are kept.
Exit 0; with --fail-on-outdated, ${EXIT_OUTDATED} when some recipe is still behind; 1 on an error (a hostile index is one).`,
  options: {
    check: flag("--check", "report only (the default)"),
    apply: flag("--apply", "bump the outdated recipes"),
    suite: list("--suite <S>", "read this suite's index (default: see above)"),
    failOnOutdated: flag("--fail-on-outdated", `exit ${EXIT_OUTDATED} when a recipe is behind`),
    maxAge: number("--max-age <SEC>", "reuse a cached index younger than SEC seconds (0: always download)", { min: 0 }),
    distro: opt.distro,
    arch: opt.arch,
    cacheDir: opt.cacheDir,
    json: opt.json,
  },
  async run(values, positionals, io) {
    if (values.check && values.apply) throw new UserError("give --check or --apply, not both", 2);
    const { files, mirrors } = await recipeFiles(positionals, values.distro);
    const { checkUpdates, applyUpdate } = await import("@kiln/builder");
    const progress = values.json ? undefined : (m: string) => io.err(m);
    const { reports, suites } = await checkUpdates(files, {
      mirrors,
      env: io.env,
      suites: values.suite,
      cacheDir: values.cacheDir ?? defaultCacheDir(io.env),
      ...(values.maxAge !== undefined ? { maxAgeSeconds: values.maxAge } : {}),
      ...(values.arch ? { arch: values.arch } : {}),
      ...(progress ? { onProgress: progress } : {}),
    });
    const applied: object[] = [];
    const left: Array<{ name: string; reason: string }> = [];
    if (values.apply)
      for (const r of reports.filter((x) => x.status === "outdated")) {
        if (r.manual) left.push({ name: r.name, reason: "update.manual is true" });
        else if (r.kind !== "orig")
          left.push({ name: r.name, reason: "imports .debs: bump it by hand or with its generator" });
        else {
          const a = await applyUpdate(r);
          applied.push(a);
          r.status = "current";
          r.bumpedFrom = a.from;
          r.current = a.to;
          progress?.(`${r.name}: bumped ${a.from} -> ${a.to}${a.uriRewritten ? " (fetch URI rewritten)" : ""}`);
          for (const l of a.staleVersion)
            io.err(`  ${r.file}:${l.line}: still says ${a.from}: ${l.text} (\${{package.version}} follows bumps)`);
        }
      }
    return finish(io, { reports, suites, applied, left }, values.json, values.failOnOutdated);
  },
});

function finish(
  io: Io,
  res: { reports: UpdateReport[]; suites: string[]; applied: object[]; left: Array<{ name: string; reason: string }> },
  json: boolean | undefined,
  failOnOutdated: boolean | undefined,
): number {
  const count = (s: UpdateReport["status"]) => res.reports.filter((r) => r.status === s).length;
  const outdated = count("outdated");
  if (json) io.out(JSON.stringify(res, null, 2));
  else {
    for (const r of res.reports) io.out(line(r));
    for (const l of res.left) io.out(`${l.name}: left behind: ${l.reason}`);
    io.out(
      `${res.reports.length} recipes, suites ${res.suites.join(", ") || "none"}: ${outdated} behind, ${count("current")} current, ` +
        `${count("disabled")} disabled, ${count("not-from-archive") + count("not-in-archive")} not checked` +
        (res.applied.length ? `; ${res.applied.length} bumped` : ""),
    );
  }
  return failOnOutdated && outdated > 0 ? EXIT_OUTDATED : 0;
}
