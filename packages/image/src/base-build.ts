// Building on contents.baseimage, as apko does: the base's installed packages
// join the world at their versions (resolved from the base's APKINDEX), and
// only the packages the base does not have (by name) are installed; the image
// is the base's layers, unchanged, then kiln's layer. The image config keeps
// the base's process settings (entrypoint, cmd, user, working directory, stop
// signal, volumes, exposed ports) — the config may not set them beside a base
// image — and, as apko, its environment is the config's (with apko's default
// PATH and SSL_CERT_FILE), not the base's.

import { resolve, type RepoPackage, type Resolution } from "@kiln/repo";
import type { ImageConfig } from "./config.js";
import { rootCapFromEnv } from "./budget.js";
import { loadBaseImage, type BaseImage } from "./baseimage.js";
import type { ArchImage } from "./oci/write.js";
import { assertTreePath, type ImageRoot } from "./root.js";
import type { ImageContext } from "./build.js";

/** The label of the base's packages in a resolution (they are never fetched). */
const BASE_REPO = { url: "contents.baseimage" };

/** The verified base image of contents.baseimage for ARCH. */
export async function loadBase(cfg: ImageConfig, arch: string, ctx: ImageContext): Promise<BaseImage> {
  return loadBaseImage(cfg, arch, {
    ...(ctx.cwd ? { cwd: ctx.cwd } : {}),
    ...(ctx.includePaths ? { includePaths: ctx.includePaths } : {}),
    maxBytes: ctx.maxRootBytes ?? rootCapFromEnv(),
  });
}

/** The packages to install on BASE: the world with the base's packages pinned, less those the base has. */
export function resolveOnBase(cfg: ImageConfig, arch: string, base: BaseImage, available: RepoPackage[]): Resolution {
  const inBase = new Set(base.installed.map((p) => p.record.name));
  const pool: RepoPackage[] = [
    ...base.installed.map((p) => ({ record: { ...p.record, arch: p.record.arch ?? arch }, repo: BASE_REPO, url: "" })),
    ...available,
  ];
  const world = [...cfg.packages, ...base.installed.map((p) => `${p.record.name}=${p.record.version}`)];
  const r = resolve(world, pool, { arch });
  return { packages: r.packages.filter((p) => !inBase.has(p.record.name)), world: cfg.packages };
}

/** Put the base's layers under IMG's and take its process settings. */
export function baseArchImage(img: ArchImage, base: BaseImage): void {
  const c = base.config.config ?? {};
  img.base = {
    layers: base.layers,
    history: (Array.isArray(base.config.history) ? base.config.history : []).map((h) => ({
      created: typeof h?.created === "string" ? h.created : undefined,
      created_by: typeof h?.created_by === "string" ? h.created_by : undefined,
      comment: typeof h?.comment === "string" ? h.comment : undefined,
      empty_layer: h?.empty_layer === true ? true : undefined,
    })),
  };
  const strings = (v: unknown) => (Array.isArray(v) && v.every((x) => typeof x === "string") ? v : undefined);
  const entrypoint = strings(c.Entrypoint);
  const cmd = strings(c.Cmd);
  if (entrypoint && !img.entrypoint) img.entrypoint = entrypoint;
  if (cmd && !img.cmd) img.cmd = cmd;
  if (typeof c.WorkingDir === "string" && c.WorkingDir && !img.workingDir) img.workingDir = c.WorkingDir;
  if (typeof c.User === "string" && c.User && !img.user) img.user = c.User;
  if (typeof c.StopSignal === "string" && c.StopSignal && !img.stopSignal) img.stopSignal = c.StopSignal;
  const volumes = c.Volumes && typeof c.Volumes === "object" ? Object.keys(c.Volumes) : [];
  if (volumes.length && !img.volumes) img.volumes = volumes.sort();
  const ports = c.ExposedPorts && typeof c.ExposedPorts === "object" ? Object.keys(c.ExposedPorts) : [];
  if (ports.length && !img.exposedPorts) img.exposedPorts = ports.sort();
}

/** Most of the base's directory links carried into the new root. */
export const MAX_BASE_LINKS = 10_000;

/**
 * Give ROOT the base's directory links before anything is installed, so that
 * files a package puts under /lib land in usr/lib of a merged-usr base and the
 * new layer does not turn the base's link into a directory.
 */
export function seedBaseLinks(root: ImageRoot, base: BaseImage): void {
  let n = 0;
  for (const [path, l] of [...base.dirLinks].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (++n > MAX_BASE_LINKS) break;
    try {
      assertTreePath(path);
    } catch {
      continue;
    }
    root.nodes.set(path, { path, type: "symlink", mode: 0o777, uid: l.uid, gid: l.gid, linkTarget: l.target });
  }
}
