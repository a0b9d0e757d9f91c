// The distribution's advisory feed: advisories/NAME.yaml (distro.yaml's
// `advisories:`, default ./advisories) turned into OUT/security.json and
// OUT/osv/ beside the local repository, as `kiln publish --advisories` puts
// them beside the published one. Loaded before anything is built, so a bad
// advisory fails the job at once, with its file:line.

import { resolve } from "node:path";
import { LocalDirStore, loadAdvisories, writeFeed, type Advisory, type WrittenFeed } from "@kiln/repo";
import type { Distro } from "./config.js";

/** Where the distribution keeps its advisories. */
export function advisoriesDir(d: Distro): string {
  return d.advisoriesDir ?? resolve(d.root, "advisories");
}

export async function loadDistroAdvisories(d: Distro): Promise<Advisory[]> {
  return loadAdvisories(advisoriesDir(d));
}

/** Write OUT/security.json and OUT/osv/ for ARCHS (default: distro.yaml's). */
export async function writeDistroFeed(d: Distro, advisories: Advisory[], archs?: string[]): Promise<WrittenFeed> {
  const store = new LocalDirStore(d.outDir);
  try {
    return await writeFeed(store, advisories, {
      distroId: d.id,
      archs: archs ?? d.architectures,
      urlPrefix: d.publish.target ?? d.outDir,
    });
  } finally {
    await store.close();
  }
}
