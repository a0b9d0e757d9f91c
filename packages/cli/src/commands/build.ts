// `kiln build` and `kiln test`: recipes to signed packages in a local repository.

import { readFile, stat } from "node:fs/promises";
import { basename } from "node:path";
import { localKeyPath, resolveSigningKey, type ResolvedKey } from "@kiln/apk";
import { buildRecipe, type BuildEvent, type BuildResult } from "@kiln/builder";
import { ARCH_ALIASES, hostApkArch } from "@kiln/core";
import { defaultCacheDir } from "@kiln/repo";
import { opt } from "../options.js";
import { defineCommand, flag, number, parsed, string, type Values } from "../program.js";
import { sourceDateEpoch, UserError, type Io } from "../util.js";

export type LocalKey = ResolvedKey;

/**
 * The signing key of `kiln build` and `kiln test`: --signing-key, else
 * $KILN_SIGNING_KEY, else a local key kept at OUT/../.kiln-keys/kiln-local.rsa
 * (generated on first use, never published as a production key). The choice
 * is @kiln/apk's resolveSigningKey.
 */
export async function obtainSigningKey(
  explicit: string | undefined,
  outDir: string,
  env: NodeJS.ProcessEnv,
): Promise<LocalKey> {
  return (await resolveSigningKey({ path: explicit, env, localKey: localKeyPath(outDir) }))!;
}

/** A byte count with an optional K, M or G suffix (powers of 1024). */
export function byteSize(v: string, option: string): number {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(v.trim());
  if (!m)
    throw new UserError(`${option}: expected a size such as 268435456, 512K, 256M or 1G, got ${JSON.stringify(v)}`, 2);
  const n = Number(m[1]) * 1024 ** " KMG".indexOf((m[2] || " ").toUpperCase());
  if (!Number.isSafeInteger(n) || n < 4096)
    throw new UserError(`${option}: ${JSON.stringify(v)} is too small or too large (at least 4K)`, 2);
  return n;
}

export function progressPrinter(io: Io, json: boolean): (e: BuildEvent) => void {
  if (json) return () => undefined;
  return (e) => {
    switch (e.kind) {
      case "start":
        io.err(`==> ${e.package}`);
        break;
      case "guest":
        io.err(`  ${e.purpose} guest: ${e.packages} packages${e.reused ? " (cached)" : ""}`);
        break;
      case "step":
        io.err(`  [${e.index}/${e.total}] ${e.step}${e.native ? " (kiln)" : ""}`);
        break;
      case "emit":
        io.err(`  wrote ${e.file} (${e.size} bytes)`);
        break;
      case "test":
        io.err(`  test ${e.target}`);
        break;
      case "done":
        io.err(`  done in ${(e.ms / 1000).toFixed(1)} s`);
        break;
      case "cache":
        io.err(
          e.error
            ? `  cache: could not prune: ${e.error}`
            : `  cache: ${(e.total / 2 ** 20).toFixed(0)} MiB${e.evicted ? ` (evicted ${e.evicted}, freed ${(e.freed / 2 ** 20).toFixed(0)} MiB)` : ""}`,
        );
        break;
    }
  };
}

/** Options `kiln build` and `kiln test` share. */
const RECIPE_OPTIONS = {
  arch: opt.arch,
  out: opt.out,
  signingKey: opt.signingKey.describe(
    "sign with this RSA private key (PEM); default $KILN_SIGNING_KEY, else a local key generated on first use",
  ),
  repositoryAppend: opt.repositoryAppend,
  keyringAppend: opt.keyringAppend,
  pipelineDir: opt.pipelineDir,
  sourceDir: opt.sourceDir.describe(
    `copy D into the workspace (default: the directory named after the package
beside the recipe). file:// sources and keyring entries are read only inside
the recipe's own directory and D, after following symlinks; never a file with
other hard links, never a private key.`,
  ),
  cacheDir: opt.cacheDir,
} as const;

/** What `kiln build` and `kiln test` share: arch, output repository, signing key, extra trusted keys. */
async function recipeContext(values: Values<typeof RECIPE_OPTIONS>, io: Io) {
  const arch = values.arch ? ARCH_ALIASES[values.arch] : hostApkArch();
  if (!arch) throw new UserError(`--arch: unknown architecture ${JSON.stringify(values.arch)}`, 2);
  const outDir = values.out ?? "packages";
  const key = await obtainSigningKey(values.signingKey, outDir, io.env);
  const keyringAppend = [];
  for (const k of values.keyringAppend) {
    keyringAppend.push({
      name: basename(k),
      pem: await readFile(k).catch((e: Error) => {
        throw new UserError(`--keyring-append ${k}: ${e.message}`);
      }),
    });
  }
  return { arch, outDir, key, keyringAppend };
}

const BUILD_USAGE =
  "kiln build RECIPE... | --all | --changed [--since REV] [--jobs N] [--keep-going] [--distro FILE] [--dry-run] " +
  "[--arch A] [--out DIR] [--signing-key K] [--repository-append R]... [--keyring-append K]... [--pipeline-dir D]... " +
  "[--source-dir D] [--cache-dir D] [--max-log-size N] [--no-test] [--json]";

export const build = defineCommand({
  name: "build",
  summary: "build recipes into signed packages in a local repository",
  args: ["[RECIPE...]"],
  usage: BUILD_USAGE,
  details: `Each recipe (melange format) is compiled, its guest assembled from environment.contents.packages
(resolved from its repositories, --repository-append and the output repository itself), and its
steps run under bubblewrap (no network, workspace at /home/build, build user 1000); fetch and
.deb unpacking run in kiln itself. The main package and subpackages are written to OUT/ARCH
(default OUT=./packages), signed, with automatic so:/cmd:/pc: dependencies; the recipe's tests
run in a fresh guest; only then are OUT/ARCH/*.apk and APKINDEX.tar.gz updated. The index lists each
package's newest build only (a build replaces other versions of its packages and its recipe's
packages it no longer produces).
A local signing key is generated on first use unless --signing-key or $KILN_SIGNING_KEY is set.

The distribution (distro.yaml here or in a parent directory, or --distro FILE): --all or
--changed. Packages go to distro.yaml's out (OUT/ARCH), each build's log to
OUT/logs/ARCH/NAME-VERSION-rN.log (NAME.log links to the newest), the run's report to
OUT/report.html (status, duration and a timeline per package) and OUT/build-report.json.
Superseded package files move to OUT/superseded/ARCH after the run; a so:/cmd: name that two
indexed packages provide without a provider_priority is reported.`,
  options: {
    ...RECIPE_OPTIONS,
    maxLogSize: parsed(
      "--max-log-size <N>",
      `cap each package's log at N bytes (default 256 MiB; suffixes K, M, G); lines
longer than 64 KiB are cut with a marker`,
      (raw) => byteSize(raw, "--max-log-size"),
    ),
    noTest: flag("--no-test", "do not run the recipes' tests"),
    json: opt.json,
    // The distribution (kiln build --all | --changed): see commands/distro.ts.
    all: flag("--all", "build every recipe that is out of date (see kiln plan), in dependency order"),
    changed: flag(
      "--changed",
      `only recipes whose files changed since --since REV (default HEAD, i.e.
uncommitted changes) and their dependents, where out of date`,
    ),
    since: string("--since <REV>", "the git revision --changed compares with (default HEAD)"),
    jobs: opt.jobs,
    keepGoing: flag(
      "--keep-going",
      `after a failure, go on with everything that does not depend on it
(default: start nothing new; dependents of a failure are always skipped)`,
    ),
    distro: opt.distro,
    dryRun: opt.dryRun.describe("print the plan only"),
    // Many machines (kiln build --all --queue): see commands/queue.ts.
    queue: string("--queue <URL>", "hand the builds to workers (kiln worker) through this Redis: redis://HOST:PORT"),
    artifacts: string("--artifacts <S3URL>", "with --queue: the artifact store the workers share, s3://BUCKET/PREFIX"),
    attempts: number("--attempts <N>", "with --queue: tries per build before it counts as failed (default 3)", {
      min: 1,
    }),
    endpointUrl: opt.endpointUrl,
    pathStyle: opt.pathStyle,
  },
  async run(values, positionals, io) {
    if (values.all || values.changed) {
      if (positionals.length)
        throw new UserError(`give recipes or --all/--changed, not both\nusage: ${BUILD_USAGE}`, 2);
      if (values.all && values.changed) throw new UserError(`--all or --changed, not both`, 2);
      if (values.queue !== undefined || values.artifacts !== undefined) {
        const { queueBuild } = await import("./queue.js");
        return queueBuild({ ...values, archs: values.arch !== undefined ? [values.arch] : [] }, io);
      }
      const { distroBuild } = await import("./distro.js");
      return distroBuild({ ...values, archs: values.arch !== undefined ? [values.arch] : [] }, io);
    }
    if (positionals.length === 0) throw new UserError(`usage: ${BUILD_USAGE}`, 2);
    const { arch, outDir, key, keyringAppend } = await recipeContext(values, io);
    const results: BuildResult[] = [];
    for (const r of positionals) {
      if (!(await stat(r).catch(() => undefined))) throw new UserError(`${r}: no such recipe`);
      results.push(
        await buildRecipe(r, {
          arch,
          outDir,
          signingKey: key.key,
          publicKeyPem: key.publicPem,
          repositoryAppend: values.repositoryAppend,
          keyringAppend,
          pipelineDirs: values.pipelineDir,
          ...(values.sourceDir ? { sourceDir: values.sourceDir } : {}),
          ...(values.maxLogSize !== undefined ? { logLimits: { maxBytes: values.maxLogSize } } : {}),
          cacheDir: values.cacheDir ?? defaultCacheDir(io.env),
          sourceDateEpoch: sourceDateEpoch(io.env),
          runTests: !values.noTest,
          onEvent: progressPrinter(io, values.json),
        }),
      );
    }
    if (values.json) io.out(JSON.stringify(results, null, 2));
    else
      for (const r of results)
        io.out(
          r.skipped
            ? `${r.name}: skipped (${r.skipped})`
            : `${r.name}-${r.fullVersion}: ${r.packages.map((p) => basename(p.file)).join(", ")}`,
        );
    return 0;
  },
});

export const testCmd = defineCommand({
  name: "test",
  summary: "run a recipe's tests against its built packages",
  args: ["RECIPE..."],
  usage:
    "kiln test RECIPE... [--arch A] [--out DIR] [--repository-append R]... [--keyring-append K]... [--pipeline-dir D]... [--source-dir D] [--cache-dir D]",
  details: `Runs each recipe's test: pipelines (main package and subpackages) in fresh guests holding the
packages as built in OUT (default ./packages) and the other repositories. Exit 1 if any fails.`,
  options: RECIPE_OPTIONS,
  async run(values, positionals, io) {
    const { arch, outDir, key, keyringAppend } = await recipeContext(values, io);
    const { testRecipe } = await import("@kiln/builder");
    for (const r of positionals) {
      const res = await testRecipe(r, {
        arch,
        outDir,
        signingKey: key.key,
        publicKeyPem: key.publicPem,
        repositoryAppend: values.repositoryAppend,
        keyringAppend,
        pipelineDirs: values.pipelineDir,
        ...(values.sourceDir ? { sourceDir: values.sourceDir } : {}),
        cacheDir: values.cacheDir ?? defaultCacheDir(io.env),
        sourceDateEpoch: sourceDateEpoch(io.env),
        onEvent: progressPrinter(io, false),
      });
      io.out(`${r}: ${res.tests} test${res.tests === 1 ? "" : "s"} passed (${(res.ms / 1000).toFixed(1)} s)`);
    }
    return 0;
  },
});

export const bump = defineCommand({
  name: "bump",
  summary: "set a recipe's version, reset its epoch, refresh source checksums",
  args: ["RECIPE", "VERSION"],
  usage: "kiln bump RECIPE VERSION [--cache-dir D] [--source-dir D]",
  details: `Edits RECIPE in place (comments and layout kept): package.version = VERSION, epoch = 0, and each
fetch step's expected-sha256 recomputed by downloading the new source (mirrors resolved as for builds).
Nothing is written unless every source was downloaded.`,
  options: {
    cacheDir: opt.cacheDir,
    sourceDir: opt.sourceDir.describe("the recipe's source directory (file:// sources are read only inside it)"),
  },
  async run(values, positionals, io) {
    const { bumpRecipe } = await import("@kiln/builder");
    const r = await bumpRecipe(positionals[0]!, positionals[1]!, {
      cacheDir: values.cacheDir ?? defaultCacheDir(io.env),
      ...(values.sourceDir ? { sourceDir: values.sourceDir } : {}),
    });
    io.out(`${r.file}: ${r.from} → ${r.to}`);
    for (const s of r.sources) io.out(`  ${s.uri}: sha256 ${s.sha256}`);
    return 0;
  },
});
