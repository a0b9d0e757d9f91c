// Putting the pieces together for one architecture: load the recipes and
// images, the repository state, and build the graph. The CLI and the
// benchmarks start here.

import { formatProblem } from "@kiln/image";
import type { PipelineRegistry } from "@kiln/builder";
import type { Fetcher } from "@kiln/repo";
import type { Distro } from "./config.js";
import { attachClosureStore, closureStoreOf, openClosureStore } from "./closures.js";
import { buildGraph, type DistroGraph } from "./graph.js";
import { loadImages, type ImageNode } from "./images.js";
import { FileHashes, loadRecipes, type LoadedRecipes } from "./recipes.js";
import { loadRepoState, type RepoState } from "./state.js";

export interface DistroView {
  distro: Distro;
  arch: string;
  recipes: LoadedRecipes;
  images: ImageNode[];
  state: RepoState;
  graph: DistroGraph;
  /** Invalid recipes and image configs, one line each (file:line: path: message). */
  errors: string[];
}

export interface AnalyzeOptions {
  cacheDir?: string;
  fetcher?: Fetcher;
  /** Do not read upstream repositories. */
  offline?: boolean;
  registry?: PipelineRegistry;
  hashes?: FileHashes;
  /** Images already loaded (they do not depend on the architecture). */
  images?: { images: ImageNode[]; problems: Parameters<typeof formatProblem>[0][] };
}

export async function analyzeDistro(distro: Distro, arch: string, opts: AnalyzeOptions = {}): Promise<DistroView> {
  const [recipes, images] = await Promise.all([
    loadRecipes(distro, arch, {
      ...(opts.registry ? { registry: opts.registry } : {}),
      ...(opts.hashes ? { hashes: opts.hashes } : {}),
      ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
    }),
    opts.images ?? loadImages(distro),
  ]);
  const state = await loadRepoState(distro, arch, recipes.recipes, {
    ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
    ...(opts.fetcher ? { fetcher: opts.fetcher } : {}),
    ...(opts.offline ? { offline: true } : {}),
  });
  // Environment closures remembered under the cache directory, for the graph and the plan over this state.
  if (opts.cacheDir) attachClosureStore(state, await openClosureStore(opts.cacheDir, arch));
  const graph = buildGraph({
    recipes: recipes.recipes,
    images: images.images,
    state,
    ...(distro.bootstrap ? { bootstrap: distro.bootstrap } : {}),
  });
  await saveAnalysisCaches({ state });
  const errors = [...recipes.problems, ...images.problems].map(formatProblem);
  return { distro, arch, recipes, images: images.images, state, graph, errors };
}

/** Write what the graph and the plan over `v.state` remembered (call after planning); failing to write a cache is not an error. */
export async function saveAnalysisCaches(v: Pick<DistroView, "state">): Promise<void> {
  await closureStoreOf(v.state)
    ?.save()
    .catch(() => undefined);
}
