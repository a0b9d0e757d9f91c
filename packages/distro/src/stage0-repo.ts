// The bootstrap repository. The packages of the stage-0 recipes (the keys
// of distro.yaml's `bootstrap:`) are built into OUT/bootstrap/ARCH, a signed
// repository of its own that build guests resolve from and nothing else
// reads: `kiln publish` publishes OUT/ARCH, images install from OUT/ARCH, so
// no consumer ever sees two packages providing so:libz.so.1 or
// cmd:busybox. The state reads both repositories, so where a package lies
// never decides whether it is up to date; placeStage0Packages moves packages
// a distro.yaml change (or an OUT from before this split) left on the wrong
// side, before a round builds.

import { link, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buildIndex, type IndexRecord, type SigningKey } from "@kiln/apk";
import { joinUnder, writeFileAtomic } from "@kiln/core";
import { supersedeRecords } from "@kiln/repo";
import type { BootstrapMap } from "./bootstrap.js";
import type { RecipeNode } from "./recipes.js";
import { bootstrapRepoDir, readLocalIndex, type RepoState } from "./state.js";

/** Names of the packages that belong in the bootstrap repository: every output of a stage-0 recipe. */
export function stage0PackageNames(recipes: readonly RecipeNode[], bs: BootstrapMap): Set<string> {
  const out = new Set<string>();
  for (const r of recipes) if (bs.replacementOf.has(r.name)) for (const o of r.outputs) out.add(o.name);
  return out;
}

export interface Stage0Placement {
  arch: string;
  /** Package files moved from OUT/ARCH into OUT/bootstrap/ARCH. */
  toBootstrap: string[];
  /** Package files moved back into OUT/ARCH (their recipe is no longer a stage-0 one). */
  toMain: string[];
}

/** Whether `state` holds a package on the wrong side of the split. */
export function placementNeeded(state: Pick<RepoState, "local" | "stage0">, names: ReadonlySet<string>): boolean {
  return state.local.some((r) => names.has(r.name)) || (state.stage0 ?? []).some((r) => !names.has(r.name));
}

async function linkInto(from: string, to: string, file: string): Promise<boolean> {
  const made = async (name: string) => {
    await rm(join(to, name), { force: true });
    await link(join(from, name), join(to, name));
  };
  try {
    await made(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false; // listed but gone: nothing to move
    throw e;
  }
  await made(`${file}.intoto.json`).catch(() => undefined);
  return true;
}

/**
 * Move every package of OUT/ARCH named in `names` into OUT/bootstrap/ARCH
 * and every package there not named back, rewriting both indexes, and
 * update `state` to match. Files are linked into place and both indexes
 * written before the old files go, so an interrupted move leaves each
 * package listed where its file is. Runs between rounds, when no build
 * writes either repository.
 */
export async function placeStage0Packages(
  state: RepoState,
  names: ReadonlySet<string>,
  index: { signingKey: SigningKey; publicKeyPem: Buffer; sourceDateEpoch: number },
): Promise<Stage0Placement> {
  const arch = state.arch;
  const result: Stage0Placement = { arch, toBootstrap: [], toMain: [] };
  const mainDir = joinUnder(state.outDir, { value: arch, what: "architecture" });
  const bsRoot = bootstrapRepoDir(state.outDir);
  const bsDir = joinUnder(bsRoot, { value: arch, what: "architecture" });
  const [main, boot] = await Promise.all([readLocalIndex(state.outDir, arch), readLocalIndex(bsRoot, arch)]);
  const down = main.filter((r) => names.has(r.name));
  const up = boot.filter((r) => !names.has(r.name));
  if (!down.length && !up.length) return result;
  await mkdir(bsDir, { recursive: true });
  const movedDown = [];
  for (const r of down) if (await linkInto(mainDir, bsDir, `${r.name}-${r.version}.apk`)) movedDown.push(r);
  const movedUp = [];
  for (const r of up) if (await linkInto(bsDir, mainDir, `${r.name}-${r.version}.apk`)) movedUp.push(r);
  const write = (dir: string, recs: IndexRecord[]) =>
    writeFileAtomic(
      join(dir, "APKINDEX.tar.gz"),
      buildIndex(recs, { signingKeys: [index.signingKey], sourceDateEpoch: index.sourceDateEpoch }),
    );
  const downIds = new Set(down.map((r) => `${r.name}-${r.version}`));
  const upIds = new Set(up.map((r) => `${r.name}-${r.version}`));
  const newBoot = supersedeRecords(
    boot.filter((r) => !upIds.has(`${r.name}-${r.version}`)),
    movedDown,
  ).records;
  const newMain = supersedeRecords(
    main.filter((r) => !downIds.has(`${r.name}-${r.version}`)),
    movedUp,
  ).records;
  await write(bsDir, newBoot);
  await writeFile(join(bsRoot, index.signingKey.name), index.publicKeyPem);
  await write(mainDir, newMain);
  for (const r of down) await removePackage(mainDir, `${r.name}-${r.version}.apk`);
  for (const r of up) await removePackage(bsDir, `${r.name}-${r.version}.apk`);
  result.toBootstrap = movedDown.map((r) => `${r.name}-${r.version}.apk`).sort();
  result.toMain = movedUp.map((r) => `${r.name}-${r.version}.apk`).sort();
  state.local = newMain;
  state.stage0 = newBoot;
  return result;
}

async function removePackage(dir: string, file: string): Promise<void> {
  await rm(join(dir, file), { force: true });
  await rm(join(dir, `${file}.intoto.json`), { force: true });
}
