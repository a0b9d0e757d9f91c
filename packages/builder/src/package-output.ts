// After the steps: emit the main package and its subpackages from the
// workspace's melange-out directories into a staging repository (signed
// index included), and — once the tests passed — move them into the output
// repository and merge its signed index, under a lock per repository.

import { joinUnder, writeFileAtomic } from "@kiln/core";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { stringify as yamlStringify } from "yaml";
import { supersedeRecords } from "@kiln/repo";
import { buildIndex, readIndex, type IndexRecord, type ScriptName } from "@kiln/apk";
import type { CompiledScriptlets } from "./compile.js";
import { SCRIPTLET_KEYS } from "./compile/types.js";
import { packageRepository, type BuildOptions, type RecipeContext } from "./context.js";
import { emitPackage, type EmittedPackage } from "./emit.js";
import { ensureDirUnder } from "./host-files.js";
import { signEnvelope } from "./dsse.js";
import type { FetchedSource } from "./native-steps.js";
import {
  provenancePath,
  provenanceStatement,
  publicSource,
  recipeIdentity,
  sha256File,
  type GuestPackage,
} from "./provenance.js";

const locks = new Map<string, Promise<void>>();
/** Serialise index updates of one repository within this process. */
async function withRepoLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(dir) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  locks.set(
    dir,
    prev.then(() => mine),
  );
  await prev;
  // And across processes: an atomic mkdir lock (in a repository that may not exist yet).
  await mkdir(dir, { recursive: true });
  const lockDir = join(dir, ".kiln-lock");
  for (let i = 0; ; i++) {
    try {
      await mkdir(lockDir);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || i > 600) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
    release();
  }
}

function scripts(s: CompiledScriptlets): { scripts: Partial<Record<ScriptName, string>>; triggers: string[] } {
  const out: Partial<Record<ScriptName, string>> = {};
  for (const k of SCRIPTLET_KEYS) {
    if (s[k]) out[`.${k}` as ScriptName] = s[k];
  }
  if (s.trigger) out[".trigger"] = s.trigger.script;
  return { scripts: out, triggers: s.trigger?.paths ?? [] };
}

/** The packages a recipe makes: the main one and its subpackages, with what each inherits. */
function emitTargets(ctx: RecipeContext) {
  const pkg = ctx.compiled.package;
  return [
    {
      name: pkg.name,
      description: pkg.description,
      url: pkg.url,
      commit: pkg.commit,
      deps: pkg.dependencies,
      options: pkg.options,
      scriptlets: pkg.scriptlets,
    },
    ...ctx.compiled.subpackages.map((s) => ({
      name: s.name,
      description: s.description,
      url: s.url ?? pkg.url,
      commit: s.commit ?? pkg.commit,
      deps: s.dependencies,
      options: s.options,
      scriptlets: s.scriptlets,
    })),
  ];
}

export interface Staged {
  emitted: EmittedPackage[];
  records: IndexRecord[];
  /** The SLSA provenance file beside each emitted package (same order). */
  provenance: string[];
}

/** Where a package will be downloaded from once published, when the build was told (an http(s) base URL). */
function publishedUrl(opts: BuildOptions, file: string): string | undefined {
  const base = opts.packageBaseUrl?.replace(/\/+$/, "");
  return base && /^https?:\/\//i.test(base)
    ? `${base}/${encodeURIComponent(opts.arch)}/${encodeURIComponent(file)}`
    : undefined;
}

/** Write each package's provenance beside it in the staging repository, signed. */
async function writeProvenance(
  ctx: RecipeContext,
  emitted: EmittedPackage[],
  sources: ReturnType<typeof publicSource>[],
  guest: GuestPackage[],
): Promise<string[]> {
  const { opts } = ctx;
  const recipe = await recipeIdentity(ctx.file);
  const out: string[] = [];
  for (const e of emitted) {
    const file = provenancePath(e.path);
    const statement = provenanceStatement({
      file: basename(e.path),
      sha256: await sha256File(e.path),
      package: { name: e.info.name, version: e.info.version, origin: ctx.compiled.package.name },
      arch: opts.arch,
      sourceDateEpoch: opts.sourceDateEpoch,
      distroId: opts.distroId ?? "kiln",
      recipe,
      sources,
      guest,
    });
    // In a DSSE envelope signed with the repository's key (deterministic RSA: the same bytes on a rebuild).
    await writeFileAtomic(file, signEnvelope(statement, opts.signingKey));
    out.push(file);
  }
  return out;
}

/** Emit every package into STAGING/ARCH with a signed index there. */
export async function emitPackages(
  ctx: RecipeContext,
  workspace: string,
  staging: string,
  fetched: FetchedSource[],
  guest: GuestPackage[],
): Promise<Staged> {
  const { opts, file } = ctx;
  const sources = fetched.map((s) => publicSource(s, opts.mirrors));
  const pkg = ctx.compiled.package;
  const stagingArch = joinUnder(staging, { value: opts.arch, what: "architecture" });
  await mkdir(stagingArch, { recursive: true });
  const melangeYaml = yamlStringify(ctx.loaded.recipe);
  const emitted: EmittedPackage[] = [];
  for (const t of emitTargets(ctx)) {
    const { scripts: sc, triggers } = scripts(t.scriptlets);
    const out = joinUnder(stagingArch, { value: `${t.name}-${pkg.fullVersion}.apk`, what: "package file" });
    // The guest's steps wrote here: the package's directory must still be a directory of the workspace, not a symlink out of it.
    const destdir = await ensureDirUnder(workspace, join("melange-out", t.name), `${file}: ${t.name}`);
    const e = await emitPackage(
      {
        name: t.name,
        version: pkg.fullVersion,
        arch: opts.arch,
        origin: pkg.name,
        ...(t.description ? { description: t.description } : {}),
        ...(t.url ? { url: t.url } : {}),
        ...(pkg.license ? { license: pkg.license } : {}),
        ...(t.commit ? { commit: t.commit } : {}),
        runtime: t.deps.runtime,
        provides: t.deps.provides,
        replaces: t.deps.replaces,
        ...(t.deps.providerPriority !== undefined ? { providerPriority: t.deps.providerPriority } : {}),
        ...(t.deps.replacesPriority !== undefined ? { replacesPriority: t.deps.replacesPriority } : {}),
        options: t.options,
        scripts: sc,
        triggers,
        controlFiles: { ".melange.yaml": melangeYaml },
        sources,
        distroId: opts.distroId ?? "kiln",
        ...(publishedUrl(opts, basename(out)) ? { downloadLocation: publishedUrl(opts, basename(out))! } : {}),
      },
      destdir,
      out,
      { signingKeys: [opts.signingKey], sourceDateEpoch: opts.sourceDateEpoch },
    );
    emitted.push(e);
    ctx.emit({ kind: "emit", package: ctx.label, file: basename(out), size: e.size });
  }
  const records: IndexRecord[] = [];
  for (const e of emitted) records.push(e.record);
  await writeFile(
    join(stagingArch, "APKINDEX.tar.gz"),
    buildIndex(records, { signingKeys: [opts.signingKey], sourceDateEpoch: opts.sourceDateEpoch }),
  );
  return { emitted, records, provenance: await writeProvenance(ctx, emitted, sources, guest) };
}

/** Publish into the output repository: packages first, then the merged index, then the public key beside it. */
export async function publishPackages(opts: BuildOptions, staged: Staged): Promise<void> {
  const repo = packageRepository(opts);
  await withRepoLock(repo, async () => {
    const dir = joinUnder(repo, { value: opts.arch, what: "architecture" });
    await mkdir(dir, { recursive: true });
    // Each package is complete in the staging repository: a rename moves it in whole.
    // Its provenance goes first: once a package is in place, so is the record of how it was built (a rebuild replaces both).
    for (const p of staged.provenance) await rename(p, join(dir, basename(p)));
    for (const e of staged.emitted) await rename(e.path, join(dir, basename(e.path)));
    const indexFile = join(dir, "APKINDEX.tar.gz");
    let existing: IndexRecord[] = [];
    const old = await readFile(indexFile).catch(() => undefined);
    if (old) existing = (await readIndex(old, { subject: indexFile })).records;
    // The index lists each package's newest build only (superseded files stay beside it until the distribution moves them).
    const merged = supersedeRecords(existing, staged.records).records;
    await writeFileAtomic(
      indexFile,
      buildIndex(merged, { signingKeys: [opts.signingKey], sourceDateEpoch: opts.sourceDateEpoch }),
    );
    // Consumers fetch the key beside the architectures (REPO/KEYNAME.rsa.pub).
    await writeFile(join(repo, opts.signingKey.name), opts.publicKeyPem);
  });
}
