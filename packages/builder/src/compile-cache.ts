// A cache of compiled recipes, keyed by content: what compiling a recipe
// yielded, stored under the cache directory so that planning a distribution
// whose recipes did not change skips YAML parsing and compiling.
//
// The key is the caller's (the recipe's bytes and whatever else the result
// depends on) combined with a fingerprint of kiln's own compiler code, so a
// different kiln never reads another's entries. The store is one JSON file
// per name, read whole and replaced atomically when it gained entries. It is
// input from disk, hence untrusted: the file is size-checked before it is
// read, every entry is checked by the caller's validator before it is used
// (a corrupt or foreign entry is dropped and recomputed, never trusted), and
// the number of entries kept is bounded.

import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeFileAtomic } from "@kiln/core";

/** Bump when the store's layout changes. */
const STORE_FORMAT = "kiln-compile-cache/1";
/** Files larger than this are ignored (and replaced on the next write). */
export const MAX_CACHE_FILE_BYTES = 64 * 1024 * 1024;
/** Entries kept per store: those used by this process first, then the most recent others. */
export const MAX_CACHE_ENTRIES = 20000;

function jsFiles(dir: string, out: string[]): void {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return;
  }
  for (const n of names) {
    const p = join(dir, n);
    if (n.endsWith(".js")) out.push(p);
    else if (!n.includes(".")) jsFiles(p, out);
  }
}

let base: string | undefined;

/**
 * sha256 of the code that compiles recipes and resolves environments: every
 * module of @kiln/core, @kiln/apk, @kiln/repo, @kiln/image and @kiln/builder
 * as installed (read once per process), plus `extra` files (the caller's own
 * modules).
 */
export function compilerFingerprint(extra: readonly string[] = []): string {
  base ??= hashFiles(kilnModules());
  return extra.length ? createHash("sha256").update(base).update(hashFiles(extra)).digest("hex") : base;
}

function kilnModules(): string[] {
  const require = createRequire(import.meta.url);
  const dirs = [dirname(fileURLToPath(import.meta.url))];
  for (const pkg of ["@kiln/core", "@kiln/apk", "@kiln/repo", "@kiln/image"]) {
    try {
      dirs.push(dirname(require.resolve(pkg)));
    } catch {
      dirs.push(pkg);
    }
  }
  const files: string[] = [];
  for (const d of dirs) jsFiles(d, files);
  return files;
}

function hashFiles(files: readonly string[]): string {
  const h = createHash("sha256").update(STORE_FORMAT);
  for (const f of files) {
    h.update(`\0${f}\0`);
    try {
      h.update(readFileSync(f));
    } catch {
      h.update("missing");
    }
  }
  return h.digest("hex");
}

interface StoreFile {
  format: string;
  fingerprint: string;
  entries: Record<string, unknown>;
}

export interface CompileCacheStats {
  hits: number;
  misses: number;
  /** Entries found but refused by the validator. */
  rejected: number;
}

/**
 * One store: `DIR/NAME.json`. `get` returns an entry only after `validate`
 * accepted it; `set` records a new one; `save` writes the store back when it
 * changed.
 */
export class CompileCache<T> {
  private readonly used = new Map<string, unknown>();
  private readonly dropped = new Set<string>();
  private dirty = false;
  readonly stats: CompileCacheStats = { hits: 0, misses: 0, rejected: 0 };

  private constructor(
    readonly file: string,
    private readonly salt: string,
    private readonly old: Record<string, unknown>,
    private readonly validate: (v: unknown) => T | undefined,
  ) {}

  /** Open (or start) the store NAME under DIR; an unreadable, oversized or foreign file is an empty store. */
  static async open<T>(
    dir: string,
    name: string,
    validate: (v: unknown) => T | undefined,
    opts: { extraCode?: readonly string[] } = {},
  ): Promise<CompileCache<T>> {
    if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(name)) throw new Error(`compile cache: bad store name ${name}`);
    const file = join(dir, `${name}.json`);
    const salt = compilerFingerprint(opts.extraCode);
    return new CompileCache(file, salt, await readStore(file, salt), validate);
  }

  /** The key for these parts (each a string), within this kiln's code. */
  key(...parts: string[]): string {
    const h = createHash("sha256").update(this.salt);
    for (const p of parts) h.update(`\0${p.length}\0${p}`);
    return h.digest("hex");
  }

  get(key: string): T | undefined {
    const raw = this.used.get(key) ?? (Object.hasOwn(this.old, key) ? this.old[key] : undefined);
    if (raw === undefined) {
      this.stats.misses++;
      return undefined;
    }
    let v: T | undefined;
    try {
      v = this.validate(raw);
    } catch {
      v = undefined;
    }
    if (v === undefined) {
      this.stats.rejected++;
      this.stats.misses++;
      this.used.delete(key);
      this.dropped.add(key);
      this.dirty = true;
      return undefined;
    }
    this.stats.hits++;
    this.used.set(key, raw);
    return v;
  }

  set(key: string, value: T): void {
    this.dropped.delete(key);
    this.used.set(key, value);
    this.dirty = true;
  }

  /** Write the store if it gained or lost entries: this run's first, then older ones, at most MAX_CACHE_ENTRIES. */
  async save(): Promise<void> {
    if (!this.dirty) return;
    const entries: Record<string, unknown> = {};
    let n = 0;
    for (const [k, v] of this.used) {
      if (n++ >= MAX_CACHE_ENTRIES) break;
      entries[k] = v;
    }
    for (const [k, v] of Object.entries(this.old)) {
      if (n >= MAX_CACHE_ENTRIES) break;
      if (Object.hasOwn(entries, k) || this.dropped.has(k)) continue;
      entries[k] = v;
      n++;
    }
    const text = JSON.stringify({ format: STORE_FORMAT, fingerprint: this.salt, entries } satisfies StoreFile);
    if (Buffer.byteLength(text) > MAX_CACHE_FILE_BYTES) return;
    await mkdir(dirname(this.file), { recursive: true });
    await writeFileAtomic(this.file, text);
    this.dirty = false;
  }
}

async function readStore(file: string, salt: string): Promise<Record<string, unknown>> {
  try {
    const st = await stat(file);
    if (!st.isFile() || st.size > MAX_CACHE_FILE_BYTES) return {};
    const v = JSON.parse(await readFile(file, "utf8")) as Partial<StoreFile> | null;
    if (!v || typeof v !== "object" || v.format !== STORE_FORMAT || v.fingerprint !== salt) return {};
    const entries = v.entries;
    if (!entries || typeof entries !== "object" || Array.isArray(entries)) return {};
    return entries;
  } catch {
    return {};
  }
}
