// The distribution's images as graph nodes: IMAGES/*.yaml (apko format plus
// kiln's test:), each with the packages it requests and a hash of its file.

import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { ConfigError, parseImageConfig, type ImageConfig, type Problem } from "@kiln/image";
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
  /** sha256 of the file. */
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

/** Parse one image config, with the architectures the distribution builds for unless it names its own. */
export function imageConfigFor(distro: Distro, file: string, text: string): ImageConfig {
  const cfg = parseImageConfig(file, text);
  const raw = parseYaml(text) as { archs?: unknown } | null;
  if (!raw || raw.archs === undefined) cfg.archs = [...distro.architectures];
  return cfg;
}

export async function loadImages(distro: Distro): Promise<{ images: ImageNode[]; problems: Problem[] }> {
  const images: ImageNode[] = [];
  const problems: Problem[] = [];
  for (const file of await listImageFiles(distro)) {
    const text = await readFile(file, "utf8");
    try {
      const cfg = imageConfigFor(distro, file, text);
      const raw = parseYaml(text) as { archs?: unknown } | null;
      const node: ImageNode = {
        name: imageName(file),
        file,
        path: displayPath(distro, file),
        requests: cfg.packages,
        config: createHash("sha256").update(text).digest("hex"),
        hasTest: !!cfg.test,
      };
      if (raw?.archs !== undefined) node.archs = cfg.archs;
      images.push(node);
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems);
      else throw e;
    }
  }
  return { images, problems };
}
