// The distribution's images as graph nodes: IMAGES/*.yaml (apko format plus
// kiln's test:), each with the packages it requests and a hash of its file.

import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { ConfigError, loadImageConfig, type ImageConfig, type Problem } from "@kiln/image";
import type { Distro } from "./config.js";
import { displayPath } from "./recipes.js";

export interface ImageNode {
  /** The file name without .yaml: the image's name (OUT/images/NAME, REGISTRY/NAME). */
  name: string;
  file: string;
  path: string;
  requests: string[];
  /** Architectures the config names itself (else the distribution's). */
  archs?: string[];
  /** sha256 of the file's text (and of the files it includes: DistroImageConfig.hash). */
  config: string;
  hasTest: boolean;
}

export async function listImageFiles(distro: Distro): Promise<string[]> {
  const names = await readdir(distro.imagesDir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return [] as string[];
    throw e;
  });
  return names
    .filter((n) => /\.ya?ml$/.test(n) && !n.endsWith(".lock.json"))
    .sort()
    .map((n) => join(distro.imagesDir, n));
}

export function imageName(file: string): string {
  return basename(file).replace(/\.ya?ml$/, "");
}

/** An image config of the distribution as read: merged with its includes, and what identifies its text. */
export interface DistroImageConfig {
  cfg: ImageConfig;
  /** sha256 of the file's text, followed (when it includes others) by each included file's path and text. */
  hash: string;
  /** Whether the file or one it includes names `archs` itself. */
  ownArchs: boolean;
}

/**
 * Read one image config with its `include`s merged (apko's rules, confined as
 * kiln image build confines them), with the architectures the distribution
 * builds for unless one of its files names its own.
 */
export async function imageConfigFor(distro: Distro, file: string): Promise<DistroImageConfig> {
  const cfg = await loadImageConfig(file);
  const h = createHash("sha256");
  let ownArchs = false;
  for (const [i, f] of [file, ...(cfg.includes ?? [])].entries()) {
    const text = await readFile(f, "utf8");
    if (i > 0) h.update(`\0${displayPath(distro, f)}\0`);
    h.update(text);
    const raw = parseYaml(text) as { archs?: unknown } | null;
    if (raw && typeof raw === "object" && raw.archs !== undefined) ownArchs = true;
  }
  if (!ownArchs) cfg.archs = [...distro.architectures];
  return { cfg, hash: h.digest("hex"), ownArchs };
}

export async function loadImages(distro: Distro): Promise<{ images: ImageNode[]; problems: Problem[] }> {
  const images: ImageNode[] = [];
  const problems: Problem[] = [];
  for (const file of await listImageFiles(distro)) {
    try {
      const { cfg, hash, ownArchs } = await imageConfigFor(distro, file);
      const node: ImageNode = {
        name: imageName(file),
        file,
        path: displayPath(distro, file),
        requests: cfg.packages,
        config: hash,
        hasTest: !!cfg.test,
      };
      if (ownArchs) node.archs = cfg.archs;
      images.push(node);
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems);
      else throw e;
    }
  }
  return { images, problems };
}
