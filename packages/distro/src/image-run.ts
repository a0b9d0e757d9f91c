// The nightly image job: rebuild the distribution's images from the current
// repository into OUT/images/NAME (OCI layouts), compare digests with the
// last run, smoke-test them from the unpacked image under bubblewrap, and
// push only the images whose digest changed. Builds are reproducible (the
// image timestamp is the newest package's build date unless
// SOURCE_DATE_EPOCH is set), so a night with no package changes changes no
// digest and pushes nothing.

import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { KeyObject } from "node:crypto";
import {
  attestationInputs,
  buildImage,
  hostApkArch,
  pushOciImage,
  signAndAttest,
  type BuiltImage,
  type ImageConfig,
} from "@kiln/image";
import { compareVersions, openPackage, readIndex } from "@kiln/apk";
import { launchBwrap, SandboxError } from "@kiln/builder";
import { joinUnder, writeFileAtomic } from "@kiln/core";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod } from "node:fs/promises";
import type { Distro } from "./config.js";
import { identity } from "./keys.js";
import type { ImageNode } from "./images.js";
import { imageConfigFor } from "./images.js";
import { bootstrapRepoDir, IMAGES_FILE, readImageRecords, type ImageRecord } from "./state.js";

const run = promisify(execFile);

export interface ImageTestResult {
  ok: boolean;
  exitCode: number;
  stdout: string;
  stderr: string;
  detail: string;
}

export interface ImageResult {
  name: string;
  path: string;
  status: "built" | "failed" | "not-selected";
  reasons: string[];
  digest?: string;
  previous?: string;
  changed: boolean;
  pushed?: string;
  test?: ImageTestResult;
  error?: string;
  ms?: number;
}

export interface ImageRunOptions {
  distro: Distro;
  images: ImageNode[];
  /** Images to build: all, or those named here (with the reasons they change). */
  select: "all" | Map<string, string[]>;
  keys: Array<{ name: string; pem: Buffer }>;
  cacheDir?: string;
  sourceDateEpoch?: number;
  /** Where to push; with `sign`, each pushed image is signed and attested (cosign-compatible). */
  push?: { registry: string; insecure?: boolean; username?: string; password?: string; sign?: KeyObject };
  test: boolean;
  onEvent?: (message: string) => void;
}

async function writeRecords(outDir: string, records: Map<string, ImageRecord>): Promise<void> {
  const dir = join(outDir, "images");
  await mkdir(dir, { recursive: true });
  const sorted = Object.fromEntries([...records.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
  await writeFileAtomic(join(dir, IMAGES_FILE), JSON.stringify(sorted, null, 2) + "\n", { fsync: true });
}

function userOf(rootfsPasswd: string, group: string, runAs: string | undefined): { uid: number; gid: number } {
  if (!runAs) return { uid: 0, gid: 0 };
  const m = /^(\d+)(?::(\d+))?$/.exec(runAs);
  if (m) return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
  const [name, grp] = runAs.split(":");
  const line = rootfsPasswd.split("\n").find((l) => l.split(":")[0] === name);
  if (!line) throw new Error(`run-as ${runAs}: no such user in the image's /etc/passwd`);
  const f = line.split(":");
  let gid = Number(f[3]);
  if (grp) {
    const g = group.split("\n").find((l) => l.split(":")[0] === grp);
    gid = g ? Number(g.split(":")[2]) : /^\d+$/.test(grp) ? Number(grp) : gid;
  }
  return { uid: Number(f[2]), gid };
}

/**
 * Run the image's smoke test: unpack the layout with `umoci unpack
 * --rootless`, then run `test.command` under bubblewrap as the image would
 * (its user, working directory and environment; no network). It passes when
 * the exit status is `expect-exit` (0) and stdout, trimmed, contains `expect`.
 */
/**
 * A static busybox from the distribution's own repositories (the stage-0
 * `busybox-static` package, in OUT/ARCH or the bootstrap repository), for
 * smoke tests of images that have no tools of their own
 * (`test.with-busybox`). Written to `dir`; undefined if not built.
 */
export async function extractStaticBusybox(outDir: string, arch: string, dir: string): Promise<string | undefined> {
  for (const repo of [outDir, bootstrapRepoDir(outDir)]) {
    const rec = await newestRecord(repo, arch, "busybox-static");
    if (!rec) continue;
    const file = joinUnder(
      repo,
      { value: arch, what: "architecture" },
      { value: `${rec.name}-${rec.version}.apk`, what: "package file" },
    );
    return extractBusybox(file, dir);
  }
  return undefined;
}

async function extractBusybox(file: string, dir: string): Promise<string | undefined> {
  const reader = await openPackage(createReadStream(file));
  try {
    for await (const e of reader.entries()) {
      if (e.path !== "usr/bin/busybox" || e.type !== "file") continue;
      const out = join(dir, "busybox");
      const ws = createWriteStream(out);
      for await (const c of e.content()) ws.write(c);
      await new Promise<void>((r, j) => ws.end((err?: Error | null) => (err ? j(err) : r())));
      await chmod(out, 0o755);
      return out;
    }
  } finally {
    await reader.close();
  }
  return undefined;
}

/** The newest record of package NAME in OUT/ARCH's index, or undefined. */
async function newestRecord(outDir: string, arch: string, name: string) {
  const idxBytes = await readFile(join(outDir, arch, "APKINDEX.tar.gz")).catch(() => undefined);
  if (!idxBytes) return undefined;
  return (await readIndex(idxBytes)).records
    .filter((r) => r.name === name)
    .sort((a, b) => compareVersions(b.version, a.version))[0];
}

/** Byte budget for the packages a smoke test unpacks beside the image (`test.with-packages`). */
const TEST_PACKAGES_BUDGET = 256 * 1024 * 1024;

/**
 * The regular files of the newest build of each package in NAMES, unpacked
 * into `dir` (directories made as needed; symlinks, devices and hard links
 * skipped, so nothing written can lead out of `dir`), for a smoke test's
 * `test.with-packages`. Every path component is checked; a package missing
 * from the repository is one error naming it.
 */
export async function extractTestPackages(
  outDir: string,
  arch: string,
  names: readonly string[],
  dir: string,
): Promise<void> {
  let total = 0;
  for (const name of names) {
    const rec = await newestRecord(outDir, arch, name);
    if (!rec) throw new Error(`test.with-packages: ${name} is not in the repository (${join(outDir, arch)})`);
    const file = joinUnder(
      outDir,
      { value: arch, what: "architecture" },
      { value: `${rec.name}-${rec.version}.apk`, what: "package file" },
    );
    const reader = await openPackage(createReadStream(file));
    try {
      for await (const e of reader.entries()) {
        if (e.type !== "file") continue;
        total += e.size;
        if (total > TEST_PACKAGES_BUDGET)
          throw new Error(`test.with-packages: more than ${TEST_PACKAGES_BUDGET} bytes of files`);
        const parts = e.path.split("/").filter((p) => p !== "");
        const out = joinUnder(dir, ...parts.map((p) => ({ value: p, what: `path in ${name}` })));
        await mkdir(join(out, ".."), { recursive: true });
        const ws = createWriteStream(out, { flags: "wx" });
        for await (const c of e.content()) ws.write(c);
        await new Promise<void>((r, j) => ws.end((err?: Error | null) => (err ? j(err) : r())));
        await chmod(out, e.mode & 0o755);
      }
    } finally {
      await reader.close();
    }
  }
}

/** Run bwrap ARGS with the builder's launcher, keeping all of stdout and stderr. */
async function runImageCommand(
  args: string[],
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  try {
    const exit = await launchBwrap(args, {
      timeoutMs,
      attach: (out, err) => {
        out.on("data", (d) => (stdout += d));
        err.on("data", (d) => (stderr += d));
      },
    });
    return { code: exit.code ?? (exit.signal ? 128 + 9 : -1), stdout, stderr };
  } catch (e) {
    if (e instanceof SandboxError && /not installed/.test(e.message))
      throw new Error("bubblewrap is not installed (apt-get install bubblewrap)");
    throw e;
  }
}

export async function testImage(
  layout: string,
  cfg: ImageConfig,
  opts: { tag?: string; timeoutMs?: number; busybox?: string; packages?: string } = {},
): Promise<ImageTestResult> {
  if (!cfg.test) return { ok: true, exitCode: 0, stdout: "", stderr: "", detail: "no test" };
  const work = await mkdtemp(join(tmpdir(), "kiln-image-test-"));
  try {
    const bundle = join(work, "bundle");
    try {
      await run("umoci", ["unpack", "--rootless", "--image", `${layout}:${opts.tag ?? "latest"}`, bundle], {
        maxBuffer: 64 * 1024 * 1024,
      });
    } catch (e) {
      const err = e as { code?: string; stderr?: string; message: string };
      throw new Error(
        err.code === "ENOENT"
          ? "umoci is not installed (apt-get install umoci)"
          : `umoci unpack: ${(err.stderr || err.message).trim()}`,
      );
    }
    const rootfs = join(bundle, "rootfs");
    const passwd = await readFile(join(rootfs, "etc/passwd"), "utf8").catch(() => "");
    const group = await readFile(join(rootfs, "etc/group"), "utf8").catch(() => "");
    const { uid, gid } = userOf(passwd, group, cfg.runAs);
    const args = [
      "--bind",
      rootfs,
      "/",
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--unshare-all",
      "--unshare-user",
      "--die-with-parent",
      "--uid",
      String(uid),
      "--gid",
      String(gid),
      "--chdir",
      cfg.workDir ?? "/",
      "--clearenv",
    ];
    for (const [k, v] of Object.entries(cfg.environment).sort(([a], [b]) => (a < b ? -1 : 1)))
      args.push("--setenv", k, v);
    if (cfg.test.withBusybox) {
      if (!opts.busybox)
        throw new Error(
          `${cfg.file}: test.with-busybox needs the distribution's busybox-static package, which is not built`,
        );
      args.push("--ro-bind", opts.busybox, "/.kiln-test/busybox");
    }
    if (cfg.test.withPackages?.length) {
      if (!opts.packages) throw new Error(`${cfg.file}: test.with-packages: the packages were not unpacked`);
      args.push("--ro-bind", opts.packages, "/.kiln-test/pkg");
    }
    args.push("--", ...cfg.test.command);
    const r = await runImageCommand(args, opts.timeoutMs ?? 120_000);
    const expectExit = cfg.test.expectExit;
    const want = cfg.test.expect?.trim();
    const okExit = r.code === expectExit;
    const okOut = want === undefined || r.stdout.trim().includes(want);
    const detail = !okExit
      ? `exited with status ${r.code}, expected ${expectExit}${r.stderr.trim() ? `: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}` : ""}`
      : !okOut
        ? `output ${JSON.stringify(r.stdout.trim().slice(0, 400))} does not contain ${JSON.stringify(want)}`
        : `passed: ${JSON.stringify(cfg.test.command.join(" "))}`;
    return { ok: okExit && okOut, exitCode: r.code, stdout: r.stdout, stderr: r.stderr, detail };
  } finally {
    await rm(work, { recursive: true, force: true }).catch(() => undefined);
  }
}

export async function runImages(opts: ImageRunOptions): Promise<ImageResult[]> {
  const { distro } = opts;
  const log = opts.onEvent ?? (() => undefined);
  const records = await readImageRecords(distro.outDir);
  const results: ImageResult[] = [];
  await mkdir(join(distro.outDir, "images"), { recursive: true });
  for (const img of opts.images) {
    const reasons = opts.select === "all" ? [] : opts.select.get(img.name);
    if (!reasons) {
      results.push({
        name: img.name,
        path: img.path,
        status: "not-selected",
        reasons: [],
        changed: false,
        ...(records.get(img.name)?.digest ? { digest: records.get(img.name)!.digest } : {}),
      });
      continue;
    }
    const t0 = Date.now();
    const res: ImageResult = { name: img.name, path: img.path, status: "built", reasons, changed: false };
    results.push(res);
    try {
      await runImage(opts, img, records, res, log);
    } catch (e) {
      res.status = "failed";
      res.error = (e as Error).message;
      log(`  ${img.name}: FAILED: ${res.error}`);
    }
    res.ms = Date.now() - t0;
  }
  return results;
}

/** Build one selected image, smoke-test and push it as asked, and record it if it passed (filling in `res`). */
async function runImage(
  opts: ImageRunOptions,
  img: ImageNode,
  records: Map<string, ImageRecord>,
  res: ImageResult,
  log: (message: string) => void,
): Promise<void> {
  const { distro } = opts;
  const { cfg, hash } = await imageConfigFor(distro, img.file);
  log(`==> image ${img.name}${res.reasons.length ? ` (${res.reasons.join("; ")})` : ""}`);
  const out = join(distro.outDir, "images", img.name);
  const built = await buildImage(
    cfg,
    {
      extraRepositories: [distro.outDir, ...distro.upstream.repositories],
      extraKeys: opts.keys,
      distro: distro.id,
      ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
      ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}),
    },
    { out, format: "oci" },
  );
  const prev = records.get(img.name);
  res.digest = built.result.digest;
  if (prev?.digest) res.previous = prev.digest;
  res.changed = prev?.digest !== built.result.digest;
  const rec = imageRecord(img.name, hash, built, prev);
  log(
    `  ${img.name}: ${built.result.digest}${res.changed ? (prev ? ` (was ${prev.digest})` : " (new)") : " (unchanged)"}`,
  );
  if (opts.test) await smokeTest(distro, out, cfg, res, log);
  if (opts.push && res.status === "built")
    await pushChanged(opts.push, out, rec, { built, cfg, distro: distro.id }, res, log);
  // A failed smoke test leaves the record as it was, so the next run builds and tests the image again.
  if (res.status === "built") {
    records.set(img.name, rec);
    await writeRecords(distro.outDir, records);
  }
}

/** The record of a built image: its config's hash, the packages of each architecture, its digest, and the pushes so far. */
function imageRecord(
  name: string,
  configHash: string,
  built: Awaited<ReturnType<typeof buildImage>>,
  prev: ImageRecord | undefined,
): ImageRecord {
  return {
    name,
    config: configHash,
    packages: Object.fromEntries(
      built.resolved.map((r) => [
        r.arch,
        r.resolution.packages
          .map((p) => identity({ name: p.record.name, version: p.record.version, checksum: p.record.checksum }))
          .sort(),
      ]),
    ),
    digest: built.result.digest,
    pushed: { ...(prev?.pushed ?? {}) },
  };
}

/** Run the image's smoke test if it has one and can run here (`res.test`); a failed test fails the image. */
async function smokeTest(
  distro: Distro,
  out: string,
  cfg: ImageConfig,
  res: ImageResult,
  log: (message: string) => void,
): Promise<void> {
  if (!cfg.test) {
    res.test = { ok: true, exitCode: 0, stdout: "", stderr: "", detail: "no test" };
    return;
  }
  if (!cfg.archs.includes(hostApkArch())) {
    res.test = {
      ok: true,
      exitCode: 0,
      stdout: "",
      stderr: "",
      detail: `not run: the image has no ${hostApkArch()} build`,
    };
    return;
  }
  let busybox: string | undefined;
  const bbDir = cfg.test.withBusybox ? await mkdtemp(join(tmpdir(), "kiln-bb-")) : undefined;
  const pkgDir = cfg.test.withPackages?.length ? await mkdtemp(join(tmpdir(), "kiln-test-pkg-")) : undefined;
  try {
    if (bbDir) busybox = await extractStaticBusybox(distro.outDir, hostApkArch(), bbDir);
    if (pkgDir) await extractTestPackages(distro.outDir, hostApkArch(), cfg.test.withPackages ?? [], pkgDir);
    res.test = await testImage(out, cfg, { ...(busybox ? { busybox } : {}), ...(pkgDir ? { packages: pkgDir } : {}) });
  } catch (e) {
    res.test = { ok: false, exitCode: -1, stdout: "", stderr: "", detail: (e as Error).message };
  } finally {
    if (bbDir) await rm(bbDir, { recursive: true, force: true });
    if (pkgDir) await rm(pkgDir, { recursive: true, force: true });
  }
  log(`  test ${res.name}: ${res.test.ok ? "ok" : "FAILED"} — ${res.test.detail}`);
  if (!res.test.ok) res.status = "failed";
}

/** Push the image as NAME:latest unless the registry already has this digest (by the record); note the push in `rec`. */
async function pushChanged(
  push: NonNullable<ImageRunOptions["push"]>,
  out: string,
  rec: ImageRecord,
  image: { built: BuiltImage; cfg: ImageConfig; distro: string },
  res: ImageResult,
  log: (message: string) => void,
): Promise<void> {
  const ref = `${push.registry.replace(/\/+$/, "")}/${res.name}:latest`;
  const digest = image.built.result.digest;
  const auth = {
    ...(push.insecure ? { insecure: true } : {}),
    ...(push.username ? { username: push.username } : {}),
    ...(push.password ? { password: push.password } : {}),
  };
  if (rec.pushed[ref] !== digest) {
    const p = await pushOciImage(out, ref, auth);
    rec.pushed[ref] = p.digest;
    res.pushed = ref;
    log(`  pushed ${ref} (${p.digest})`);
  }
  if (!push.sign) return;
  // Signed even when the push was skipped (signing was asked for later); attested when the signature is new.
  const s = await signAndAttest(`${ref.replace(/:latest$/, "")}@${digest}`, push.sign, {
    ...auth,
    build: await attestationInputs(image.cfg, image.built, image.distro),
    onlyIfUnsigned: true,
  });
  log(
    `  ${s.signature.unchanged ? "already signed" : `signed ${s.signature.tag}`}${s.attestations ? `; attested ${s.attestations.predicateTypes.join(", ")}` : ""}`,
  );
}
