// Remembered environment closures. Resolving every recipe's build
// environment is most of the graph's and the plan's work, and between two
// runs over an unchanged repository the answers do not change: a closure is
// a function of the package pool (every record, in order), the architecture,
// the requests and kiln's resolver code. So each answer is kept under the
// cache directory keyed by exactly those (the store's key includes kiln's
// code, see @kiln/builder's CompileCache), as indices into the pool. An entry
// read back is checked (indices in range and distinct, strings) and a miss
// is resolved as before: the results are the resolver's, only not computed
// twice.

import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CompileCache } from "@kiln/builder";
import { Resolver, type RepoPackage } from "@kiln/repo";
import { closure } from "./graph.js";

export interface ClosureEntry {
  packages: number[];
  unresolved: string[];
}

export type ClosureStore = CompileCache<ClosureEntry>;

export type Closures = (requests: readonly string[]) => { packages: RepoPackage[]; unresolved: string[] };

function validEntry(v: unknown): ClosureEntry | undefined {
  if (!v || typeof v !== "object" || Array.isArray(v)) return undefined;
  const e = v as Record<string, unknown>;
  const ok =
    Object.keys(e).length === 2 &&
    Array.isArray(e.packages) &&
    e.packages.every((i) => Number.isSafeInteger(i) && (i as number) >= 0) &&
    new Set(e.packages).size === e.packages.length &&
    Array.isArray(e.unresolved) &&
    e.unresolved.every((u) => typeof u === "string");
  return ok ? (v as ClosureEntry) : undefined;
}

/** The closure store for `arch` under CACHE/compiled. */
export function openClosureStore(cacheDir: string, arch: string): Promise<ClosureStore> {
  return CompileCache.open(
    join(cacheDir, "compiled"),
    `closures-${arch.toLowerCase().replace(/[^a-z0-9_-]/g, "_")}`,
    validEntry,
    {
      extraCode: [fileURLToPath(import.meta.url), fileURLToPath(new URL("./graph.js", import.meta.url))],
    },
  );
}

/** sha256 over everything the resolver sees of the pool: each record in full, its repository (and tag), in order. */
function poolHash(pool: readonly RepoPackage[], arch: string): string {
  const h = createHash("sha256").update(`${arch}\n`);
  for (const p of pool) h.update(JSON.stringify([p.repo.url, p.repo.tag ?? null, p.url, p.record])).update("\n");
  return h.digest("hex");
}

/** Stores opened for a repository state by analyzeDistro, so the plan over that state uses them too. */
const stores = new WeakMap<object, ClosureStore>();

export function attachClosureStore(state: object, store: ClosureStore): void {
  stores.set(state, store);
}

export function closureStoreOf(state: object): ClosureStore | undefined {
  return stores.get(state);
}

/**
 * closure() over `pool` (the resolver made only when an answer is not
 * remembered), remembering answers in `store` when there is one.
 */
export function poolClosures(pool: readonly RepoPackage[], arch: string, store?: ClosureStore): Closures {
  let resolver: Resolver | undefined;
  const resolve = (requests: readonly string[]) => closure((resolver ??= new Resolver([...pool], { arch })), requests);
  if (!store) return resolve;
  let poolKey: string | undefined;
  let index: Map<RepoPackage, number> | undefined;
  return (requests) => {
    if (!requests.length) return { packages: [], unresolved: [] };
    poolKey ??= poolHash(pool, arch);
    const key = store.key("closure", poolKey, requests.join("\n"));
    const hit = store.get(key);
    if (hit && hit.packages.every((i) => i < pool.length))
      return { packages: hit.packages.map((i) => pool[i]!), unresolved: [...hit.unresolved] };
    const c = resolve(requests);
    index ??= new Map(pool.map((p, i) => [p, i]));
    const at = c.packages.map((p) => index!.get(p));
    if (at.every((i) => i !== undefined)) store.set(key, { packages: at, unresolved: [...c.unresolved] });
    return c;
  };
}
