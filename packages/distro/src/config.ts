// distro.yaml: what the distribution is (name, id, architectures), where its
// recipes, pipelines and images live, how it is signed and published, which
// upstream repositories and mirrors its builds may use, and the default build
// environment. The zod schema is the single source of truth for its shape;
// every problem is reported at file:line with its dotted path.

import { existsSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { ARCH_ALIASES, ConfigError, hostApkArch, isInside, loadYaml, readConfigText, type Problem } from "@kiln/core";
import { imageConfigSchema, type ImageConfigInput } from "@kiln/image";
import { readSize, SIZE_EXPECTED } from "@kiln/builder";
import { parseRepositoryRef } from "@kiln/repo";

const relPath = z.string().min(1, "expected a path");

export const distroSchema = z
  .object({
    /** Human name, e.g. "Kiln Linux" (os-release NAME). */
    name: z.string().min(1),
    /** os-release ID: lowercase letters, digits, `.`, `_`, `-`. */
    id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, "expected an os-release ID (lowercase letters, digits, . _ -)"),
    /** os-release VERSION_ID. */
    version: z.union([z.string(), z.number()]).optional(),
    /** os-release ID_LIKE: the IDs of the distributions this one is closely related to, closest first, space-separated. */
    "id-like": z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]*( [a-z0-9][a-z0-9._-]*)*$/, "expected os-release IDs separated by spaces")
      .optional(),
    /** apk architectures to build for (aliases such as amd64 accepted); default: the host's. */
    architectures: z.array(z.string()).min(1).optional(),
    /** Directory of recipes (NAME.yaml, with NAME/ beside it for patches and local sources). Default `recipes`. */
    recipes: relPath.optional(),
    /** Directory (or directories, earlier first) of the distribution's own named pipelines. */
    pipelines: z.union([relPath, z.array(relPath)]).optional(),
    /**
     * Source archives seeded into the content-addressed source cache before the distribution
     * builds: a directory (its regular files) or file, or a list of them, relative to distro.yaml
     * and inside its directory. A fetch step pinned by a file's sha256 or sha512 then needs no network.
     */
    sources: z.union([relPath, z.array(relPath)]).optional(),
    /** Directory of image configs (apko format plus kiln's test:). Default `images`. */
    images: relPath.optional(),
    /** Directory of security advisories (NAME.yaml per origin package). Default `advisories` (none when missing). */
    advisories: relPath.optional(),
    /** Output: the signed local repository (OUT/ARCH), OUT/images, logs and reports. Default `out`. */
    out: relPath.optional(),
    /** The signing key: a path (relative to distro.yaml), or `env:VAR` naming a variable that holds a path or the PEM itself. */
    "signing-key": z.string().min(1).optional(),
    publish: z
      .object({
        /** `s3://BUCKET/PREFIX` or a directory: where `kiln publish` uploads the repository. */
        target: z.string().min(1).optional(),
        "endpoint-url": z.string().url().optional(),
        region: z.string().optional(),
        "path-style": z.boolean().optional(),
        /** `host[:port]/namespace`: where `kiln images --publish` pushes NAME:latest. */
        registry: z.string().min(1).optional(),
        /** Talk plain HTTP to the registry. */
        insecure: z.boolean().optional(),
      })
      .strict()
      .optional(),
    upstream: z
      .object({
        /** Repositories every build and image may resolve from (URL, path, or `@tag URL`), after the recipe's own. */
        repositories: z.array(z.string().min(1)).optional(),
        /** Public keys trusted for them (paths relative to distro.yaml, or URLs). */
        keyring: z.array(z.string().min(1)).optional(),
      })
      .strict()
      .optional(),
    /** Mirror base URLs by name (`${{mirror.NAME}}` in recipes). Leave unset to use apt's configuration or KILN_NAME_MIRROR: never commit a host name you do not mean everyone to use. */
    mirrors: z
      .record(
        z.string().regex(/^[A-Za-z0-9_-]+$/),
        z.string().regex(/^(https?|file):\/\//, "expected an http://, https:// or file:// URL"),
      )
      .optional(),
    /**
     * The default build environment (an image config fragment), merged into
     * the environment of every recipe whose steps need a guest: its packages
     * come first, its paths, users, groups and variables apply where the
     * recipe does not set the same ones.
     */
    environment: imageConfigSchema.optional(),
    /**
     * Stage-0 recipes and the recipe that replaces each once it is built
     * (`zlib-bootstrap: zlib`): build environments use the replacement, and
     * the stage-0 packages only where the replacement cannot be used (its
     * own build, and the builds it needs first). Planned once, so a fresh
     * build builds every recipe once.
     */
    bootstrap: z
      .record(
        z.string().regex(/^[a-z0-9][a-z0-9._+-]*$/, "expected a recipe name"),
        z.string().regex(/^[a-z0-9][a-z0-9._+-]*$/, "expected a recipe name"),
      )
      .optional(),
    /** The build cache: `max-size` (512M, 4G…) caps it; after each build, guests and fetched packages are evicted least recently used first until it fits. */
    cache: z
      .object({ "max-size": z.union([z.string(), z.number()]).optional() })
      .strict()
      .optional(),
  })
  .strict();

export type DistroInput = z.infer<typeof distroSchema>;

export type SigningKeyRef = { kind: "path"; path: string } | { kind: "env"; variable: string };

export interface PublishSettings {
  target?: string;
  endpointUrl?: string;
  region?: string;
  pathStyle?: boolean;
  registry?: string;
  insecure?: boolean;
}

/** A validated distro.yaml with every path made absolute. */
export interface Distro {
  file: string;
  /** The directory holding distro.yaml: relative paths start here. */
  root: string;
  name: string;
  id: string;
  /** os-release ID_LIKE. */
  idLike?: string;
  version?: string;
  architectures: string[];
  recipesDir: string;
  pipelineDirs: string[];
  /** `sources:`, absolute: directories or files seeded into the source cache before builds. */
  sources: string[];
  imagesDir: string;
  /** `advisories:`, absolute (undefined: ROOT/advisories). */
  advisoriesDir?: string;
  outDir: string;
  signingKey?: SigningKeyRef;
  publish: PublishSettings;
  upstream: { repositories: string[]; keyring: string[] };
  mirrors: Record<string, string>;
  environment?: ImageConfigInput;
  /** `cache.max-size` in bytes. */
  cacheMaxSize?: number;
  /** `bootstrap:`: stage-0 recipe → the recipe that replaces it. */
  bootstrap?: Record<string, string>;
}

const URL_RE = /^[a-z][a-z0-9+.-]*:\/\//i;

function absolutize(root: string, p: string): string {
  return URL_RE.test(p) || isAbsolute(p) ? p : resolve(root, p);
}

/** Parse and validate distro.yaml text; throws ConfigError listing every problem. */
export function parseDistro(file: string, text: string): Distro {
  const loaded = loadYaml<DistroInput>(file, text, distroSchema);
  const v = loaded.value;
  const root = dirname(resolve(file));
  const problems: Problem[] = [];
  const at = (path: Array<string | number>, message: string) =>
    problems.push({
      file,
      ...loaded.locate(path),
      path: path.map((p, i) => (typeof p === "number" ? `[${p}]` : i ? `.${p}` : p)).join(""),
      message,
    });

  const architectures: string[] = [];
  (v.architectures ?? [hostApkArch()]).forEach((a, i) => {
    const m = a === "host" ? hostApkArch() : ARCH_ALIASES[a];
    if (!m)
      at(
        ["architectures", i],
        `unknown architecture ${JSON.stringify(a)} (expected one of ${Object.keys(ARCH_ALIASES).join(", ")}, host)`,
      );
    else if (!architectures.includes(m)) architectures.push(m);
  });
  const repositories = (v.upstream?.repositories ?? []).map((r, i) => {
    try {
      const ref = parseRepositoryRef(r);
      const url = absolutize(root, ref.url);
      return ref.tag !== undefined ? `@${ref.tag} ${url}` : url;
    } catch (e) {
      at(["upstream", "repositories", i], (e as Error).message);
      return r;
    }
  });
  const keyring = (v.upstream?.keyring ?? []).map((k, i) => {
    const p = absolutize(root, k);
    if (!URL_RE.test(p) && !existsSync(p)) at(["upstream", "keyring", i], `no such file ${p}`);
    return p;
  });
  let signingKey: SigningKeyRef | undefined;
  const sk = v["signing-key"];
  if (sk !== undefined) {
    if (sk.startsWith("env:")) {
      const variable = sk.slice(4);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(variable))
        at(["signing-key"], `env:VAR needs a variable name, got ${JSON.stringify(variable)}`);
      signingKey = { kind: "env", variable };
    } else signingKey = { kind: "path", path: absolutize(root, sk) };
  }
  const target = v.publish?.target;
  if (target !== undefined && URL_RE.test(target) && !target.startsWith("s3://"))
    at(["publish", "target"], `publish to s3://BUCKET/PREFIX or a directory, got ${JSON.stringify(target)}`);
  const sources = sourcePaths(root, v.sources, at);
  const cacheMaxSize = cacheCap(v.cache?.["max-size"], at);
  const bootstrap = bootstrapEntries(v.bootstrap, at);
  if (problems.length) throw new ConfigError(problems);

  const publish = publishSettings(root, v.publish);
  const pipelines = v.pipelines === undefined ? [] : Array.isArray(v.pipelines) ? v.pipelines : [v.pipelines];
  const d: Distro = {
    file: resolve(file),
    root,
    name: v.name,
    id: v.id,
    architectures,
    recipesDir: resolve(root, v.recipes ?? "recipes"),
    pipelineDirs: pipelines.map((p) => resolve(root, p)),
    sources,
    imagesDir: resolve(root, v.images ?? "images"),
    outDir: resolve(root, v.out ?? "out"),
    publish,
    upstream: { repositories, keyring },
    mirrors: { ...(v.mirrors ?? {}) },
    bootstrap: { ...bootstrap },
  };
  if (v.version !== undefined) d.version = String(v.version);
  if (v["id-like"] !== undefined) d.idLike = v["id-like"];
  if (v.advisories !== undefined) d.advisoriesDir = resolve(root, v.advisories);
  if (signingKey) d.signingKey = signingKey;
  if (v.environment) d.environment = v.environment;
  if (cacheMaxSize !== undefined) d.cacheMaxSize = cacheMaxSize;
  return d;
}

function bootstrapEntries(
  raw: Record<string, string> | undefined,
  at: (path: string[], message: string) => void,
): Record<string, string> {
  const bootstrap = raw ?? {};
  for (const [stage0, replacement] of Object.entries(bootstrap)) {
    if (stage0 === replacement) at(["bootstrap", stage0], `a recipe cannot replace itself`);
    else if (replacement in bootstrap)
      at(["bootstrap", stage0], `${replacement} is itself a stage-0 recipe here; name the recipe that replaces it`);
  }
  return bootstrap;
}

function cacheCap(raw: string | number | undefined, at: (path: string[], message: string) => void) {
  const n = raw === undefined ? undefined : readSize(String(raw));
  if (raw !== undefined && n === undefined) at(["cache", "max-size"], `${SIZE_EXPECTED}, got ${JSON.stringify(raw)}`);
  return n;
}

function publishSettings(root: string, p: DistroInput["publish"]): PublishSettings {
  const publish: PublishSettings = {};
  if (p?.target !== undefined) publish.target = absolutize(root, p.target);
  if (p?.["endpoint-url"]) publish.endpointUrl = p["endpoint-url"];
  if (p?.region) publish.region = p.region;
  if (p?.["path-style"] !== undefined) publish.pathStyle = p["path-style"];
  if (p?.registry) publish.registry = p.registry.replace(/\/+$/, "");
  if (p?.insecure !== undefined) publish.insecure = p.insecure;
  return publish;
}

/** `sources:` as absolute paths: each relative, inside distro.yaml's directory, existing. */
function sourcePaths(
  root: string,
  v: string | string[] | undefined,
  at: (path: Array<string | number>, message: string) => void,
): string[] {
  const list = v === undefined ? [] : Array.isArray(v) ? v : [v];
  return list.map((p, i) => {
    const where = Array.isArray(v) ? ["sources", i] : ["sources"];
    const abs = resolve(root, p);
    if (isAbsolute(p) || URL_RE.test(p) || !isInside(root, abs))
      at(
        where,
        `expected a path inside the distribution's directory, relative to distro.yaml, got ${JSON.stringify(p)}`,
      );
    else if (!existsSync(abs)) at(where, `no such file or directory ${abs}`);
    return abs;
  });
}

export async function loadDistro(file: string): Promise<Distro> {
  return parseDistro(file, await readConfigText(file));
}

/** distro.yaml in `dir` or the nearest parent directory that has one. */
export function findDistroFile(dir: string): string | undefined {
  let d = resolve(dir);
  for (;;) {
    const f = resolve(d, "distro.yaml");
    if (existsSync(f)) return f;
    const up = dirname(d);
    if (up === d) return undefined;
    d = up;
  }
}

function mergeByKey<T>(def: T[] | undefined, own: T[] | undefined, key: (t: T) => unknown): T[] | undefined {
  if (!def?.length) return own;
  const ownKeys = new Set((own ?? []).map(key));
  return [...def.filter((t) => !ownKeys.has(key(t))), ...(own ?? [])];
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

/**
 * The distribution's default build environment merged into a recipe's:
 * packages, repositories and keyring are the default's followed by the
 * recipe's; paths, users and groups the recipe does not set come from the
 * default; variables are the default's overridden by the recipe's; any other
 * key the recipe sets wins.
 */
export function mergeEnvironment(def: ImageConfigInput, own: ImageConfigInput | undefined): ImageConfigInput {
  const o = own ?? {};
  const out: ImageConfigInput = { ...structuredClone(def), ...structuredClone(o) };
  const dc = def.contents ?? {};
  const oc = o.contents ?? {};
  const contents: NonNullable<ImageConfigInput["contents"]> = { ...dc, ...oc };
  for (const k of ["packages", "repositories", "keyring", "build_repositories", "runtime_repositories"] as const) {
    const merged = unique([...(dc[k] ?? []), ...(oc[k] ?? [])]);
    if (merged.length) contents[k] = merged;
  }
  if (Object.keys(contents).length) out.contents = contents;
  const paths = mergeByKey(def.paths, o.paths, (p) => p.path);
  if (paths) out.paths = paths;
  if (def.accounts || o.accounts) {
    const users = mergeByKey(def.accounts?.users, o.accounts?.users, (u) => u.username);
    const groups = mergeByKey(def.accounts?.groups, o.accounts?.groups, (g) => g.groupname);
    const runAs = o.accounts?.["run-as"] ?? def.accounts?.["run-as"];
    out.accounts = {
      ...(users ? { users } : {}),
      ...(groups ? { groups } : {}),
      ...(runAs !== undefined ? { "run-as": runAs } : {}),
    };
  }
  if (def.environment || o.environment) out.environment = { ...(def.environment ?? {}), ...(o.environment ?? {}) };
  return out;
}
