// `kiln image …`: build, inspect, lock, draw and push images from apko-format configs.

import { readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import {
  buildImage,
  ConfigError,
  DEFAULT_ROOT_CAP,
  formatSize,
  loadImageConfig,
  makeLock,
  parseSize,
  pushOciImage,
  readLock,
  resolveImage,
  ROOT_CAP_ENV,
  type ImageConfig,
  type ImageContext,
  type OciOutputFormat,
} from "@kiln/image";
import { ARCH_ALIASES } from "@kiln/image";
import { cleanStaleTempDirs, DefaultFetcher, makeTempDir, removeTempDir, S3Fetcher } from "@kiln/repo";
import { asArray, help, parse, sourceDateEpoch, UserError, type Command, type Io } from "../util.js";

const COMMON = {
  arch: { type: "string", multiple: true },
  "keyring-append": { type: "string", multiple: true },
  "repository-append": { type: "string", multiple: true },
  "allow-untrusted": { type: "boolean" },
  "cache-dir": { type: "string" },
  "endpoint-url": { type: "string" },
  region: { type: "string" },
  "path-style": { type: "boolean" },
  json: { type: "boolean" },
} as const;

const COMMON_HELP = `--arch A               build for A (repeatable; overrides the config's archs)
--keyring-append KEY   trust this public key too (path or URL)
--repository-append R  resolve from this repository too (URL or path, "@tag URL")
--allow-untrusted      accept indexes whose signature does not verify
--cache-dir DIR        download cache (default $KILN_CACHE_DIR or ~/.cache/kiln)
--endpoint-url URL     S3-compatible endpoint for s3:// repositories (with --region, --path-style;
                       credentials from the AWS environment variables or profile)
--json                 machine-readable output`;

const MAX_SIZE_HELP = `--max-size SIZE        cap on each architecture's installed file content (e.g. 32G, 500M; default
                       $${ROOT_CAP_ENV} or ${formatSize(DEFAULT_ROOT_CAP)}); each package may also hold at most its
                       declared installed size (I:) plus max(10%, 1 MiB)`;

const MAX_SIZE = { "max-size": { type: "string" } } as const;

async function setup(
  argv: string[],
  io: Io,
  cmd: Command,
  extra: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {},
) {
  const parsed = parse(cmd, argv, { ...COMMON, ...extra });
  const v = parsed.values as Record<string, unknown>;
  if (v.help) return { parsed, cfg: undefined as unknown as ImageConfig, ctx: {} as ImageContext, v };
  if (parsed.positionals.length < 1) throw new UserError(`usage: ${cmd.usage}`, 2);
  const cfg = await loadImageConfig(parsed.positionals[0]!);
  const archs = asArray(v.arch);
  if (archs.length) {
    cfg.archs = archs.map((a) => {
      const m = ARCH_ALIASES[a];
      if (!m) throw new UserError(`--arch: unknown architecture ${JSON.stringify(a)}`, 2);
      return m;
    });
  }
  const extraKeys = [];
  for (const k of asArray(v["keyring-append"])) {
    const pem = await readFile(k).catch((e) => {
      throw new UserError(`--keyring-append ${k}: ${(e as Error).message}`);
    });
    extraKeys.push({ name: basename(k), pem });
  }
  const ctx: ImageContext = {
    extraKeys,
    extraRepositories: asArray(v["repository-append"]),
    onProgress: v.json ? () => undefined : (m) => io.err(`  ${m}`),
  };
  if (v["allow-untrusted"]) ctx.allowUntrusted = true;
  const s3 = {
    ...(v["endpoint-url"] ? { endpointUrl: v["endpoint-url"] as string } : {}),
    ...(v.region ? { region: v.region as string } : {}),
    ...(v["path-style"] ? { pathStyle: true } : {}),
  };
  ctx.fetcher = new DefaultFetcher({}, new S3Fetcher(s3));
  if (v["cache-dir"]) ctx.cacheDir = v["cache-dir"] as string;
  if (typeof v["max-size"] === "string") ctx.maxRootBytes = parseSize(v["max-size"], "--max-size", "usage");
  ctx.raiseHint = `raise it with --max-size SIZE or ${ROOT_CAP_ENV}=SIZE`;
  if (io.env.SOURCE_DATE_EPOCH) ctx.sourceDateEpoch = sourceDateEpoch(io.env);
  return { parsed, cfg, ctx, v };
}

const build: Command = {
  name: "image build",
  summary: "build an OCI image from an image config",
  usage:
    "kiln image build CONFIG OUT [--format oci|oci-archive|docker-archive] [--tag T] [--lockfile F] [--max-size SIZE] [--arch A]... [--keyring-append K]... [--repository-append R]...",
  async run(argv, io) {
    const { parsed, cfg, ctx, v } = await setup(argv, io, this, {
      format: { type: "string" },
      tag: { type: "string" },
      lockfile: { type: "string" },
      ...MAX_SIZE,
    });
    if (v.help)
      return help(
        this,
        io,
        `Resolves the config's packages from its signed repositories (or installs exactly the ones in
--lockfile, failing if the config no longer matches), checks every package against the index,
installs them into a root (no install scripts run), and writes an OCI layout directory, an
oci-archive tar or a docker-archive tar to OUT, replacing it atomically, plus an SPDX 2.3 SBOM
beside it (OUT.sbom-ARCH.spdx.json). created = SOURCE_DATE_EPOCH, else the newest package build date.
${COMMON_HELP}
${MAX_SIZE_HELP}`,
      );
    if (parsed.positionals.length !== 2) throw new UserError(`usage: ${this.usage}`, 2);
    const format = (v.format as string | undefined) ?? "oci";
    if (!["oci", "oci-archive", "docker-archive"].includes(format))
      throw new UserError(`--format must be oci, oci-archive or docker-archive`, 2);
    const lock = v.lockfile ? await readLock(v.lockfile as string) : undefined;
    const t0 = Date.now();
    const built = await buildImage(cfg, ctx, {
      out: parsed.positionals[1]!,
      format: format as OciOutputFormat,
      ...(v.tag ? { tag: v.tag as string } : {}),
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
        `  ${summary.archs.map((a) => `${a.arch}: ${a.packages} packages`).join(", ")}; ${summary.layers} layers; ${(summary.contentBytes / 1e6).toFixed(1)} MB of files; created ${summary.created}; ${summary.seconds.toFixed(1)} s`,
      );
      for (const w of summary.warnings) io.out(`  warning: ${w}`);
    }
    return 0;
  },
};

const showPackages: Command = {
  name: "image show-packages",
  summary: "print the packages an image config resolves to",
  usage: "kiln image show-packages CONFIG [--arch A]... [--json]",
  async run(argv, io) {
    const { cfg, ctx, v } = await setup(argv, io, this);
    if (v.help)
      return help(this, io, `One line per package, in install order: NAME VERSION REPOSITORY.\n${COMMON_HELP}`);
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
};

const lock: Command = {
  name: "image lock",
  summary: "write a lock file of every resolved package",
  usage: "kiln image lock CONFIG [-o FILE] [--arch A]...",
  async run(argv, io) {
    const { parsed, cfg, ctx, v } = await setup(argv, io, this, { output: { type: "string", short: "o" } });
    if (v.help)
      return help(
        this,
        io,
        `Records, per arch, each resolved package's name, version, URL, repository and C: checksum.
kiln image build --lockfile FILE then installs exactly those, with no solving.
Default output: CONFIG with .lock.json instead of .yaml.\n${COMMON_HELP}`,
      );
    const { resolved } = await resolveImage(cfg, ctx);
    const out = (v.output as string | undefined) ?? parsed.positionals[0]!.replace(/\.ya?ml$/, "") + ".lock.json";
    await writeFile(out, JSON.stringify(makeLock(cfg, resolved), null, 2) + "\n");
    io.out(`${out}: ${resolved.map((r) => `${r.arch} ${r.resolution.packages.length} packages`).join(", ")}`);
    return 0;
  },
};

const dot: Command = {
  name: "image dot",
  summary: "print the resolved dependency graph as Graphviz",
  usage: "kiln image dot CONFIG [--arch A]",
  async run(argv, io) {
    const { cfg, ctx, v } = await setup(argv, io, this);
    if (v.help)
      return help(
        this,
        io,
        `Nodes are packages, edges their dependencies (labelled with the constraint).\n${COMMON_HELP}`,
      );
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
};

const push: Command = {
  name: "image push",
  summary: "build an image and push it to a registry",
  usage:
    "kiln image push CONFIG REF [--insecure] [--username U] [--password-stdin | --password P] [--lockfile F] [--max-size SIZE] [--arch A]...",
  async run(argv, io) {
    const { parsed, cfg, ctx, v } = await setup(argv, io, this, {
      insecure: { type: "boolean" },
      username: { type: "string" },
      password: { type: "string" },
      lockfile: { type: "string" },
      ...MAX_SIZE,
    });
    if (v.help)
      return help(
        this,
        io,
        `Builds the image (as kiln image build) and pushes blobs, manifests and the index to REF
(host[:port]/repository[:tag]) over the OCI distribution API. Blobs the registry has are skipped.
--insecure uses plain HTTP. Credentials: --username/--password, or KILN_REGISTRY_USERNAME /
KILN_REGISTRY_PASSWORD; basic and bearer-token auth are handled.\n${COMMON_HELP}\n${MAX_SIZE_HELP}`,
      );
    if (parsed.positionals.length !== 2) throw new UserError(`usage: ${this.usage}`, 2);
    await cleanStaleTempDirs("kiln-push-").catch(() => undefined);
    const tmp = await makeTempDir("kiln-push-");
    try {
      const lockFile = v.lockfile ? await readLock(v.lockfile as string) : undefined;
      const built = await buildImage(cfg, ctx, {
        out: join(tmp, "layout"),
        format: "oci",
        sbomDir: tmp,
        ...(lockFile ? { lock: lockFile } : {}),
      });
      const username = (v.username as string | undefined) ?? io.env.KILN_REGISTRY_USERNAME;
      const password = (v.password as string | undefined) ?? io.env.KILN_REGISTRY_PASSWORD;
      const r = await pushOciImage(join(tmp, "layout"), parsed.positionals[1]!, {
        ...(v.insecure ? { insecure: true } : {}),
        ...(username ? { username } : {}),
        ...(password ? { password } : {}),
        sourceTag: built.result.tag,
      });
      if (v.json) io.out(JSON.stringify(r, null, 2));
      else
        io.out(`${r.ref}: ${r.digest} (${r.pushedBlobs.length} blobs pushed, ${r.existingBlobs.length} already there)`);
      return 0;
    } finally {
      await removeTempDir(tmp);
    }
  },
};

const SUB = [build, showPackages, lock, dot, push];

export const image: Command = {
  name: "image",
  summary: "build, inspect, lock and push images (apko-format configs)",
  usage: "kiln image build|show-packages|lock|dot|push CONFIG ...",
  async run(argv, io) {
    const [sub, ...rest] = argv;
    const cmd = SUB.find((c) => c.name === `image ${sub}`);
    if (!cmd) {
      if (sub === undefined || sub === "--help" || sub === "-h") {
        io.out(
          `kiln image — ${this.summary}\n\nsubcommands:\n${SUB.map((c) => `  ${c.name.slice(6).padEnd(14)} ${c.summary}`).join("\n")}`,
        );
        return sub === undefined ? 2 : 0;
      }
      throw new UserError(
        `image: unknown subcommand ${JSON.stringify(sub)}; expected ${SUB.map((c) => c.name.slice(6)).join(", ")}`,
        2,
      );
    }
    try {
      return await cmd.run(rest, io);
    } catch (e) {
      if (e instanceof ConfigError) throw new UserError(e.message);
      throw e;
    }
  },
};
