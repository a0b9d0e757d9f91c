// kiln publish / withdraw / repo check: argument handling and printing around
// @kiln/repo's publishing and auditing.

import { stat } from "node:fs/promises";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { IndexRecord, SigningKey } from "@kiln/apk";
import {
  checkRepository,
  defaultCacheDir,
  DefaultFetcher,
  discoverArchs,
  LocalDirStore,
  loadIndex,
  parseRepositoryRef,
  parseS3Url,
  publish,
  S3Fetcher,
  S3Store,
  withdraw,
  loadAdvisories,
  writeFeed,
  type ObjectStore,
  type PublishEvent,
  type S3Options,
} from "@kiln/repo";
import { Keyring, resolveSigningKey } from "@kiln/apk";
import { hostApkArch } from "@kiln/core";
import { findDistroFile, loadDistro } from "@kiln/distro";
import { opt, S3_OPTIONS } from "../options.js";
import { defineCommand, defineGroup, flag, string, usageError, type Values } from "../program.js";
import { loadKeyring, sourceDateEpoch, UserError, type Io } from "../util.js";

const S3_HELP = `S3 targets take credentials from the usual AWS environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_PROFILE…); requests are retried (--retries) with exponential backoff on
throttling, 5xx, timeouts and dropped connections.`;

type S3Values = Values<typeof S3_OPTIONS>;

function s3Options(values: S3Values, onEvent?: (e: { kind: string; key: string; detail: string }) => void): S3Options {
  const o: S3Options = {};
  if (values.endpointUrl) o.endpointUrl = values.endpointUrl;
  if (values.region) o.region = values.region;
  if (values.pathStyle) o.pathStyle = true;
  if (values.timeout !== undefined) o.timeoutMs = values.timeout * 1000;
  if (values.retries !== undefined) o.maxAttempts = values.retries;
  if (values.multipartThreshold !== undefined) o.multipartThreshold = values.multipartThreshold;
  if (values.atomicPut) o.atomicPut = true;
  if (onEvent) o.onEvent = onEvent;
  return o;
}

function openStore(target: string, values: S3Values, io: Io): ObjectStore {
  if (target.startsWith("s3://")) {
    return new S3Store(
      parseS3Url(target),
      s3Options(values, (e) => io.err(`${e.key}: ${e.detail}`)),
    );
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target))
    throw new UserError(`${target}: publish to s3://BUCKET/PREFIX or a local directory`, 2);
  return new LocalDirStore(target);
}

/** --signing-key, else $KILN_SIGNING_KEY (resolveSigningKey); no local key: a published index needs a real one. */
async function signingKey(path: string | undefined, io: Io, command: string): Promise<SigningKey> {
  const found = await resolveSigningKey({ path, env: io.env });
  if (!found)
    throw usageError(command, "--signing-key KEY (or KILN_SIGNING_KEY) is required: the index is signed with it");
  return found.key;
}

/** Records of the upstream repositories, per arch, for dependency checks. */
function upstreamLoader(
  values: { upstream: string[]; keysDir: string[] },
  io: Io,
  s3: S3Options,
): ((arch: string) => Promise<IndexRecord[]>) | undefined {
  const urls = values.upstream;
  if (!urls.length) return undefined;
  const dirs = values.keysDir;
  const fetcher = new DefaultFetcher({}, new S3Fetcher(s3));
  return async (arch) => {
    const ring = dirs.length ? await loadKeyring(dirs) : new Keyring();
    const out: IndexRecord[] = [];
    for (const u of urls) {
      const idx = await loadIndex(parseRepositoryRef(u), arch, {
        keyring: ring,
        fetcher,
        allowUntrusted: dirs.length === 0,
        cacheDir: defaultCacheDir(io.env),
      });
      out.push(...idx.index.records);
    }
    return out;
  };
}

function printer(io: Io) {
  return (e: PublishEvent) => io.err(e.kind === "warning" ? `warning: ${e.message}` : e.message);
}

/** The advisories of --advisories DIR and the distribution id the feed is for. */
async function feedSource(dir: string, given: string | undefined) {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new UserError(`--advisories ${dir}: not a directory`);
  const advisories = await loadAdvisories(dir);
  if (given !== undefined) {
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(given))
      throw usageError("publish", `--distro-id ${JSON.stringify(given)}: expected an os-release ID (a-z 0-9 . _ -)`);
    return { advisories, distroId: given };
  }
  const file = findDistroFile(process.cwd());
  if (!file) throw usageError("publish", "--advisories needs --distro-id ID (no distro.yaml here to take it from)");
  return { advisories, distroId: (await loadDistro(file)).id };
}

export const publishCmd = defineCommand({
  name: "publish",
  summary: "publish a local repository to S3 or a directory: packages first, signed index last",
  details: `OUT is a local repository: OUT/ARCH/APKINDEX.tar.gz and the packages it lists.
For each architecture, in this order:
  1. checks, before anything is written: the published key (TARGET/KEYNAME) and index must be
     the signing key's; a package already published under the same NAME-VERSION must be the
     same package (same C:) — a different one is refused (bump the release); every dependency
     in the resulting index must be satisfiable from the repository or the --upstream
     repositories (signatures checked with --keys-dir when given), else refused unless
     --allow-unsatisfied; names, versions and archs must be plain path segments; every new
     package is read in full (C:, datahash) and re-signed into a temporary directory
     (TMPDIR/kiln-publish-PID-*, removed on SIGINT/SIGTERM, or by the next run if killed);
  2. the public key at TARGET/KEYNAME (KEYNAME = basename of KEY + ".pub");
  3. new packages, re-signed with KEY when signed by another key (S: and C: in the index
     follow the final bytes); Cache-Control immutable;
  4. the signed index (Cache-Control no-cache), merged with what concurrent publishers
     added until it lists every package object present;
  5. TARGET/ARCH/index.html, a browsable list of the packages.
With --advisories DIR (advisories/NAME.yaml files, checked before anything is written), the
advisory feed follows: TARGET/osv/ID.json (OSV 1.6), TARGET/osv/all.json, then
TARGET/security.json (secdb), for scanners (kiln scan --feed TARGET, grype, trivy).
Killed or failing at any point, the published index only names complete packages; run the
same command again to finish. Progress goes to stderr, the summary to stdout (--json: a JSON
object). --dry-run checks and prints what would be done, writing nothing.

${S3_HELP}`,
  options: {
    from: string("--from <OUT>", "the local repository to publish").required(),
    to: string("--to <TARGET>", "where: s3://BUCKET/PREFIX or a directory").required(),
    signingKey: opt.signingKey.describe("sign the index (and re-sign packages) with KEY (default $KILN_SIGNING_KEY)"),
    arch: opt.archs,
    upstream: opt.upstream,
    keysDir: opt.keysDir.describe("check --upstream indexes with the public keys in DIR"),
    allowUnsatisfied: opt.allowUnsatisfied,
    description: opt.description,
    concurrency: opt.concurrency,
    advisories: string("--advisories <DIR>", "also publish the advisory feed made from DIR/NAME.yaml"),
    distroId: string(
      "--distro-id <ID>",
      "the os-release ID the feed is for (OSV ecosystem, purl namespace; default: distro.yaml's id)",
    ),
    feedUrl: string("--feed-url <URL>", "the repository's public URL, security.json's urlprefix (default: TARGET)"),
    dryRun: opt.dryRun,
    json: opt.json,
    ...S3_OPTIONS,
  },
  async run(values, _args, io) {
    const key = await signingKey(values.signingKey, io, "publish");
    const feed = values.advisories !== undefined ? await feedSource(values.advisories, values.distroId) : undefined;
    const fromSt = await stat(values.from).catch(() => undefined);
    if (!fromSt?.isDirectory()) throw new UserError(`--from ${values.from}: not a directory`);
    const store = openStore(values.to, values, io);
    const concurrency = values.concurrency;
    try {
      const upstream = upstreamLoader(values, io, s3Options(values));
      const archs = values.arch;
      const r = await publish(store, values.from, {
        signingKey: key,
        ...(archs.length ? { archs } : {}),
        ...(upstream ? { upstream } : {}),
        ...(values.allowUnsatisfied ? { allowUnsatisfied: true } : {}),
        ...(values.dryRun ? { dryRun: true } : {}),
        ...(values.description !== undefined ? { description: values.description } : {}),
        ...(concurrency ? { concurrency } : {}),
        sourceDateEpoch: sourceDateEpoch(io.env),
        onEvent: printer(io),
      });
      const written =
        feed && !r.dryRun
          ? await writeFeed(store, feed.advisories, {
              distroId: feed.distroId,
              archs: r.archs.map((a) => a.arch),
              urlPrefix: values.feedUrl ?? store.repositoryUrl,
            })
          : undefined;
      if (values.json) {
        const { plan, ...rest } = r;
        io.out(
          JSON.stringify({ ...rest, unsatisfied: plan.unsatisfied, ...(written ? { feed: written } : {}) }, null, 2),
        );
      } else {
        for (const a of r.archs) {
          io.out(
            `${r.dryRun ? "dry run: " : ""}${r.target}/${a.arch}: ` +
              `${a.uploaded.length} ${r.dryRun ? "to upload" : "uploaded"}${a.resigned.length ? ` (${a.resigned.length} re-signed)` : ""}, ` +
              `${a.indexedExisting.length} already uploaded${r.dryRun ? " to index" : " and indexed"}, ` +
              `${a.skipped.length} already published; ` +
              `index ${a.indexPackages} packages${r.dryRun ? " (predicted)" : `, signed by ${r.keyName}`}`,
          );
        }
        if (written)
          io.out(
            `${r.target}: security.json (${written.secdbPackages} packages), osv/ (${written.osvRecords} records); ` +
              `${written.written.length} written, ${written.removed.length} removed`,
          );
      }
      return 0;
    } finally {
      await store.close();
    }
  },
});

export const withdrawCmd = defineCommand({
  name: "withdraw",
  summary: "remove packages from a published index (objects kept unless --delete)",
  args: ["NAME-VERSION..."],
  details: `Names packages as NAME-VERSION (e.g. hello-2.12-r1). The published repository is --to
(or --from, the same thing). Each package is marked withdrawn, the index is re-signed and
republished without it (merging with concurrent publishers), and index.html follows. The
.apk objects stay, so consumers holding the old index can still download them, unless
--delete, which removes them once the index no longer lists them. Refused when a remaining
package depends on a withdrawn one (unless --allow-unsatisfied).

${S3_HELP}`,
  options: {
    to: string("--to <TARGET>", "the published repository: s3://BUCKET/PREFIX or a directory"),
    from: string("--from <TARGET>", "the same as --to"),
    signingKey: opt.signingKey.describe("re-sign the index with KEY (default $KILN_SIGNING_KEY)"),
    delete: flag("--delete", "also delete the withdrawn packages' objects"),
    arch: opt.archs,
    upstream: opt.upstream,
    keysDir: opt.keysDir.describe("check --upstream indexes with the public keys in DIR"),
    allowUnsatisfied: opt.allowUnsatisfied,
    dryRun: opt.dryRun,
    json: opt.json,
    ...S3_OPTIONS,
  },
  async run(values, positionals, io) {
    const target = values.to ?? values.from;
    if (!target || (values.to && values.from && values.to !== values.from))
      throw usageError("withdraw", "one published repository is required: --to TARGET");
    const key = await signingKey(values.signingKey, io, "withdraw");
    const store = openStore(target, values, io);
    try {
      const upstream = upstreamLoader(values, io, s3Options(values));
      const archs = values.arch;
      const r = await withdraw(store, positionals, {
        signingKey: key,
        ...(archs.length ? { archs } : {}),
        ...(upstream ? { upstream } : {}),
        ...(values.allowUnsatisfied ? { allowUnsatisfied: true } : {}),
        ...(values.dryRun ? { dryRun: true } : {}),
        ...(values.delete ? { delete: true } : {}),
        sourceDateEpoch: sourceDateEpoch(io.env),
        onEvent: printer(io),
      });
      if (values.json) io.out(JSON.stringify(r, null, 2));
      else {
        for (const w of r.withdrawn)
          io.out(
            `${r.dryRun ? "dry run: would withdraw" : "withdrawn"} ${w.arch}/${w.id}${w.deleted ? " (deleted)" : ""}`,
          );
        for (const a of r.archs) io.out(`${r.target}/${a.arch}: index ${a.indexPackages} packages`);
      }
      return 0;
    } finally {
      await store.close();
    }
  },
});

const repoCheck = defineCommand({
  name: "repo check",
  summary: "audit a published repository as a consumer sees it",
  args: ["URL"],
  details: `URL is http(s)://…, s3://BUCKET/PREFIX or a directory. Per architecture: the index signature must
verify with a key in --keys-dir; every listed package must be downloadable with the size (S:),
control identity (C:) and datahash the index gives; every dependency must be satisfiable from
the repository (or --upstream repositories). Prints every problem; exit 1 if there is any.
Architectures: --arch, else those found in a directory or bucket, else (HTTP) ${hostApkArch()}.

${S3_HELP}`,
  options: {
    keysDir: opt.keysDir.required(),
    arch: opt.archs,
    upstream: opt.upstream,
    concurrency: opt.concurrency,
    json: opt.json,
    ...S3_OPTIONS,
  },
  async run(values, positionals, io) {
    const dirs = values.keysDir;
    const url = positionals[0]!.replace(/\/+$/, "");
    const ring = await loadKeyring(dirs);
    const s3 = s3Options(values);
    let archs = [...values.arch];
    if (!archs.length) {
      if (url.startsWith("s3://")) {
        const store = new S3Store(parseS3Url(url), s3);
        try {
          archs = await discoverArchs(store);
        } finally {
          await store.close();
        }
      } else if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
        const names = await readdir(url).catch((e: Error) => {
          throw new UserError(`${url}: ${e.message}`);
        });
        for (const n of names.sort())
          if (await stat(join(url, n, "APKINDEX.tar.gz")).catch(() => undefined)) archs.push(n);
      } else archs = [hostApkArch()];
      if (!archs.length) throw new UserError(`${url}: no ARCH/APKINDEX.tar.gz found`);
    }
    const fetcher = new DefaultFetcher({}, new S3Fetcher(s3));
    const upstream = upstreamLoader(values, io, s3);
    const concurrency = values.concurrency;
    const report = await checkRepository(url, {
      keyring: ring,
      archs,
      fetcher,
      ...(upstream ? { upstream } : {}),
      ...(concurrency ? { concurrency } : {}),
      ...(values.json ? {} : { onProgress: (l: string) => io.err(l) }),
    });
    if (values.json) io.out(JSON.stringify(report, null, 2));
    else {
      for (const a of report.archs) {
        for (const p of a.problems) io.out(`PROBLEM ${p}`);
        io.out(
          `${url}/${a.arch}: ` +
            `${a.problems.length ? `${a.problems.length} problem${a.problems.length === 1 ? "" : "s"}` : "OK"} ` +
            `(${a.checked} of ${a.packages} packages verified)`,
        );
      }
    }
    return report.ok ? 0 : 1;
  },
});

export const repoCmd = defineGroup("repo", "repository audits: kiln repo check URL --keys-dir DIR", [repoCheck]);
