// `kiln image …`: build, inspect, lock, draw and push images from apko-format configs.

import { readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import {
  buildImage,
  DEFAULT_ROOT_CAP,
  formatSize,
  loadImageConfig,
  makeLock,
  parseSize,
  pushOciImage,
  readLock,
  resolveImage,
  ROOT_CAP_ENV,
  attestationInputs,
  loadSigningKey,
  signAndAttest,
  type ImageContext,
  type OciOutputFormat,
  type SignAndAttestResult,
} from "@kiln/image";
import { ApkError, parseDependency } from "@kiln/apk";
import { ARCH_ALIASES, ConfigError } from "@kiln/core";
import { cleanStaleTempDirs, DefaultFetcher, makeTempDir, removeTempDir, S3Fetcher } from "@kiln/repo";
import { opt } from "../options.js";
import {
  choice,
  defineCommand,
  defineGroup,
  flag,
  list,
  parsed,
  string,
  type CommandSpec,
  type KilnCommand,
  type OptionTable,
  type Values,
} from "../program.js";
import { sourceDateEpoch, UserError, type Io } from "../util.js";

/** What every image command takes: where packages come from and whom to trust. */
const COMMON = {
  arch: opt.archs.describe("build for A (overrides the config's archs)"),
  keyringAppend: opt.keyringAppend.describe("trust this public key too (path or URL)"),
  package: list(
    "--package <NAME>",
    "install this package too, as if listed in contents.packages (a dependency: NAME,\nNAME=VERSION, NAME>=VERSION …)",
  ),
  includePaths: list(
    "--include-paths <DIR>",
    "look for a config's include: files here too (after the including file's directory\nand the current directory)",
  ),
  repositoryAppend: opt.repositoryAppend,
  allowUntrusted: opt.allowUntrusted,
  cacheDir: opt.cacheDir,
  endpointUrl: opt.endpointUrl.describe(
    "S3-compatible endpoint for s3:// repositories (with --region, --path-style;\ncredentials from the AWS environment variables or profile)",
  ),
  region: opt.region,
  pathStyle: opt.pathStyle,
  json: opt.json,
} as const;

const MAX_SIZE = {
  maxSize: parsed(
    "--max-size <SIZE>",
    `cap on each architecture's installed file content (e.g. 32G, 500M; default
$${ROOT_CAP_ENV} or ${formatSize(DEFAULT_ROOT_CAP)}); each package may also hold at most its
declared installed size (I:) plus max(10%, 1 MiB)`,
    (v) => parseSize(v, "--max-size", "usage"),
  ),
} as const;

const LOCKFILE = {
  lockfile: string("--lockfile <F>", "install exactly the packages of this lock file (kiln image lock)"),
};

/** The config, with --arch applied, and the context every image command resolves in. */
async function setup(configFile: string, v: Values<typeof COMMON> & { maxSize?: number | undefined }, io: Io) {
  const cfg = await loadImageConfig(configFile, { includePaths: v.includePaths });
  if (v.arch.length) {
    cfg.archs = v.arch.map((a) => {
      const m = ARCH_ALIASES[a];
      if (!m) throw new UserError(`--arch: unknown architecture ${JSON.stringify(a)}`, 2);
      return m;
    });
  }
  for (const p of v.package) {
    try {
      parseDependency(p);
    } catch (e) {
      if (!(e instanceof ApkError)) throw e;
      throw new UserError(`--package: ${JSON.stringify(p)} is not a package name or dependency: ${e.message}`, 2);
    }
    if (!cfg.packages.includes(p)) cfg.packages.push(p);
  }
  const extraKeys = [];
  for (const k of v.keyringAppend) {
    const pem = await readFile(k).catch((e) => {
      throw new UserError(`--keyring-append ${k}: ${(e as Error).message}`);
    });
    extraKeys.push({ name: basename(k), pem });
  }
  const ctx: ImageContext = {
    extraKeys,
    extraRepositories: v.repositoryAppend,
    includePaths: v.includePaths,
    onProgress: v.json ? () => undefined : (m) => io.err(`  ${m}`),
  };
  if (v.allowUntrusted) ctx.allowUntrusted = true;
  const s3 = {
    ...(v.endpointUrl ? { endpointUrl: v.endpointUrl } : {}),
    ...(v.region ? { region: v.region } : {}),
    ...(v.pathStyle ? { pathStyle: true } : {}),
  };
  ctx.fetcher = new DefaultFetcher({}, new S3Fetcher(s3));
  if (v.cacheDir) ctx.cacheDir = v.cacheDir;
  if (v.maxSize !== undefined) ctx.maxRootBytes = v.maxSize;
  ctx.raiseHint = `raise it with --max-size SIZE or ${ROOT_CAP_ENV}=SIZE`;
  if (io.env.SOURCE_DATE_EPOCH) ctx.sourceDateEpoch = sourceDateEpoch(io.env);
  return { cfg, ctx };
}

/**
 * An image subcommand: the common options added, and a config error reported
 * as the user error it is (one message, exit 1).
 */
function imageCommand<O extends OptionTable>(
  spec: Omit<CommandSpec<O>, "run"> & {
    run(values: Values<O & typeof COMMON>, args: string[], io: Io): Promise<number>;
  },
): KilnCommand {
  return defineCommand({
    ...spec,
    options: { ...spec.options, ...COMMON } as O & typeof COMMON,
    async run(values, args, io) {
      try {
        return await spec.run(values, args, io);
      } catch (e) {
        if (e instanceof ConfigError) throw new UserError(e.message);
        throw e;
      }
    },
  });
}

const build = imageCommand({
  name: "image build",
  summary: "build an OCI image from an image config",
  args: ["CONFIG", "OUT"],
  details: `Resolves the config's packages from its signed repositories (or installs exactly the ones in
--lockfile, failing if the config no longer matches), checks every package against the index,
installs them into a root (no install scripts run), and writes an OCI layout directory, an
oci-archive tar or a docker-archive tar to OUT, replacing it atomically, plus an SPDX 2.3 SBOM
beside it (OUT.sbom-ARCH.spdx.json). created = SOURCE_DATE_EPOCH, else the newest package build date.`,
  options: {
    format: choice("--format <F>", "oci (a layout directory, default), oci-archive or docker-archive", [
      "oci",
      "oci-archive",
      "docker-archive",
    ] as const satisfies readonly OciOutputFormat[]),
    tag: string("--tag <T>", "the image's tag"),
    ...LOCKFILE,
    ...MAX_SIZE,
  },
  async run(v, [config, outPath], io) {
    const { cfg, ctx } = await setup(config!, v, io);
    const format = v.format ?? "oci";
    const lock = v.lockfile ? await readLock(v.lockfile) : undefined;
    const t0 = Date.now();
    const built = await buildImage(cfg, ctx, {
      out: outPath!,
      format,
      ...(v.tag ? { tag: v.tag } : {}),
      ...(lock ? { lock } : {}),
    });
    const summary = {
      out: built.result.out,
      format,
      digest: built.result.digest,
      archs: built.resolved.map((r) => ({ arch: r.arch, packages: r.resolution.packages.length })),
      layers: built.result.layers.length,
      contentBytes: built.contentBytes,
      created: built.created,
      sboms: built.sboms,
      seconds: (Date.now() - t0) / 1000,
      warnings: built.result.warnings,
    };
    if (v.json) io.out(JSON.stringify(summary, null, 2));
    else {
      io.out(`${summary.out}: ${summary.digest}`);
      io.out(
        `  ${summary.archs.map((a) => `${a.arch}: ${a.packages} packages`).join(", ")}; ${summary.layers} layers; ` +
          `${(summary.contentBytes / 1e6).toFixed(1)} MB of files; created ${summary.created}; ${summary.seconds.toFixed(1)} s`,
      );
      for (const w of summary.warnings) io.out(`  warning: ${w}`);
    }
    return 0;
  },
});

const showPackages = imageCommand({
  name: "image show-packages",
  summary: "print the packages an image config resolves to",
  args: ["CONFIG"],
  details: `One line per package, in install order: ARCH NAME VERSION REPOSITORY.`,
  options: {},
  async run(v, [config], io) {
    const { cfg, ctx } = await setup(config!, v, io);
    const { resolved } = await resolveImage(cfg, ctx);
    if (v.json)
      io.out(
        JSON.stringify(
          resolved.map((r) => ({
            arch: r.arch,
            packages: r.resolution.packages.map((p) => ({
              name: p.record.name,
              version: p.record.version,
              url: p.url,
              checksum: p.record.checksum,
            })),
          })),
          null,
          2,
        ),
      );
    else
      for (const r of resolved)
        for (const p of r.resolution.packages) io.out(`${r.arch} ${p.record.name} ${p.record.version} ${p.repo.url}`);
    return 0;
  },
});

const lock = imageCommand({
  name: "image lock",
  summary: "write a lock file of every resolved package",
  args: ["CONFIG"],
  details: `Records, per arch, each resolved package's name, version, URL, repository and C: checksum.
kiln image build --lockfile FILE then installs exactly those, with no solving.`,
  options: { output: opt.output.describe("the lock file (default: CONFIG with .lock.json instead of .yaml)") },
  async run(v, [config], io) {
    const { cfg, ctx } = await setup(config!, v, io);
    const { resolved } = await resolveImage(cfg, ctx);
    const out = v.output ?? config!.replace(/\.ya?ml$/, "") + ".lock.json";
    await writeFile(out, JSON.stringify(makeLock(cfg, resolved), null, 2) + "\n");
    io.out(`${out}: ${resolved.map((r) => `${r.arch} ${r.resolution.packages.length} packages`).join(", ")}`);
    return 0;
  },
});

const dot = imageCommand({
  name: "image dot",
  summary: "print the resolved dependency graph as Graphviz",
  args: ["CONFIG"],
  details: `Nodes are packages, edges their dependencies (labelled with the constraint); the first architecture's.`,
  options: {},
  async run(v, [config], io) {
    const { cfg, ctx } = await setup(config!, v, io);
    const { resolved } = await resolveImage(cfg, ctx);
    const r = resolved[0]!;
    const pkgs = r.resolution.packages;
    const { packageSatisfies, parseDependency } = await import("@kiln/apk");
    const lines = ["digraph packages {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];'];
    for (const req of cfg.packages) {
      const d = parseDependency(req);
      const target = pkgs.find((p) => packageSatisfies(p.record, d));
      if (target) lines.push(`  "world" -> "${target.record.name}" [label="${req}"];`);
    }
    for (const p of pkgs) {
      lines.push(`  "${p.record.name}" [label="${p.record.name}\\n${p.record.version}"];`);
      for (const dep of p.record.depends) {
        const d = parseDependency(dep);
        if (d.conflict) continue;
        const target = pkgs.find((q) => packageSatisfies(q.record, d));
        if (target)
          lines.push(
            `  "${p.record.name}" -> "${target.record.name}"${dep !== target.record.name ? ` [label="${dep.replace(/"/g, '\\"')}"]` : ""};`,
          );
      }
    }
    lines.push("}");
    io.out(lines.join("\n"));
    return 0;
  },
});

const push = imageCommand({
  name: "image push",
  summary: "build an image and push it to a registry",
  args: ["CONFIG", "REF"],
  details: `Builds the image (as kiln image build) and pushes blobs, manifests and the index to REF
(host[:port]/repository[:tag]) over the OCI distribution API. Blobs the registry has are skipped.
--insecure uses plain HTTP. Credentials: --username/--password, or KILN_REGISTRY_USERNAME /
KILN_REGISTRY_PASSWORD; basic and bearer-token auth are handled.`,
  options: {
    insecure: flag("--insecure", "plain HTTP"),
    username: string("--username <U>", "registry user (default $KILN_REGISTRY_USERNAME)"),
    password: string("--password <P>", "registry password (default $KILN_REGISTRY_PASSWORD)"),
    sign: string("--sign <KEY>", "then sign the image and attach its provenance and SBOMs (ECDSA P-256 key)"),
    ...LOCKFILE,
    ...MAX_SIZE,
  },
  async run(v, [config, ref], io) {
    const { cfg, ctx } = await setup(config!, v, io);
    const key = v.sign ? await loadSigningKey(v.sign) : undefined;
    await cleanStaleTempDirs("kiln-push-").catch(() => undefined);
    const tmp = await makeTempDir("kiln-push-");
    try {
      const lockFile = v.lockfile ? await readLock(v.lockfile) : undefined;
      const built = await buildImage(cfg, ctx, {
        out: join(tmp, "layout"),
        format: "oci",
        sbomDir: tmp,
        ...(lockFile ? { lock: lockFile } : {}),
      });
      const username = v.username ?? io.env.KILN_REGISTRY_USERNAME;
      const password = v.password ?? io.env.KILN_REGISTRY_PASSWORD;
      const r = await pushOciImage(join(tmp, "layout"), ref!, {
        ...(v.insecure ? { insecure: true } : {}),
        ...(username ? { username } : {}),
        ...(password ? { password } : {}),
        sourceTag: built.result.tag,
      });
      const signed = key
        ? await signAndAttest(ref!, key, {
            ...(v.insecure ? { insecure: true } : {}),
            ...(username && password ? { username, password } : {}),
            subject: { mediaType: r.mediaType, digest: r.digest, size: r.size },
            build: await attestationInputs(cfg, built, ctx.distro ?? "kiln"),
          })
        : undefined;
      if (v.json) io.out(JSON.stringify(signed ? { ...r, signed } : r, null, 2));
      else {
        io.out(`${r.ref}: ${r.digest} (${r.pushedBlobs.length} blobs pushed, ${r.existingBlobs.length} already there)`);
        if (signed) printSigned(signed, io);
      }
      return 0;
    } finally {
      await removeTempDir(tmp);
    }
  },
});

export function printSigned(s: SignAndAttestResult, io: Io): void {
  const sig = s.signature;
  io.out(
    `  signed: ${sig.tag}${sig.unchanged ? " (already signed with this key)" : ""}; referrers via ${sig.referrersVia === "api" ? "the referrers API" : "the referrers tag"}`,
  );
  if (s.attestations) io.out(`  attested: ${s.attestations.tag}: ${s.attestations.predicateTypes.join(", ")}`);
}

const sign = defineCommand({
  name: "image sign",
  summary: "sign an image in a registry (cosign-compatible)",
  args: ["REF"],
  details: `Signs the image REF (host[:port]/repository[:tag|@digest]) with an ECDSA P-256 key
(kiln keygen --type ecdsa-p256) as cosign does: a simple-signing payload naming the image's digest,
stored under the tag sha256-<hex>.sig and as an OCI 1.1 referrer of the image (registries without the
referrers API get the referrers tag sha256-<hex>). Verify with
  cosign verify --key KEY.pub --insecure-ignore-tlog=true REF
(add --allow-insecure-registry for plain HTTP). Nothing goes to a transparency log.
Attestations (provenance, SBOMs) need the build: use kiln image push --sign or kiln images --push --sign.`,
  options: {
    key: string("--key <KEY>", "the private key (PKCS#8 PEM, ECDSA P-256)"),
    insecure: flag("--insecure", "plain HTTP"),
    username: string("--username <U>", "registry user (default $KILN_REGISTRY_USERNAME)"),
    password: string("--password <P>", "registry password (default $KILN_REGISTRY_PASSWORD)"),
    json: opt.json,
  },
  async run(v, [ref], io) {
    if (!v.key) throw new UserError("sign: --key KEY is required", 2);
    const key = await loadSigningKey(v.key);
    const username = v.username ?? io.env.KILN_REGISTRY_USERNAME;
    const password = v.password ?? io.env.KILN_REGISTRY_PASSWORD;
    const s = await signAndAttest(ref!, key, {
      ...(v.insecure ? { insecure: true } : {}),
      ...(username && password ? { username, password } : {}),
    });
    if (v.json) io.out(JSON.stringify(s, null, 2));
    else {
      io.out(`${s.image}`);
      printSigned(s, io);
    }
    return 0;
  },
});

export const image = defineGroup("image", "build, inspect, lock and push images (apko-format configs)", [
  build,
  showPackages,
  lock,
  dot,
  push,
  sign,
]);
