// `kiln bump`: set a recipe's version, reset its epoch, and refresh the
// expected checksums of its fetch steps by downloading the new sources. The
// YAML is edited in place (comments and layout kept); nothing is written
// unless every source downloaded and hashed.

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { isMap, isSeq, parseDocument, type Document } from "yaml";
import { isValidVersion } from "@kiln/apk";
import { ConfigError, writeFileAtomic } from "@kiln/core";
import { compileRecipe, parseRecipe } from "./compile.js";
import {
  fetchSource,
  httpGet,
  localFilePath,
  mirrorFileRoots,
  SourceError,
  substituteMirrors,
  type MirrorOptions,
} from "./fetch-source.js";
import { openConfined, type FileRoot } from "./host-files.js";

/** Long lines stay as written (the yaml library folds at 80 columns by default). */
export const KEEP_LAYOUT = { lineWidth: 0 } as const;

export interface BumpResult {
  file: string;
  from: string;
  to: string;
  sources: Array<{ uri: string; sha256: string }>;
}

/** sha256 of a source: http(s) (redirects to http(s) only), or a local file inside `roots`. */
async function sha256Of(url: string, uri: string, roots: readonly FileRoot[]): Promise<string> {
  const h = createHash("sha256");
  if (/^\s*file:/i.test(url)) {
    const f = await openConfined(localFilePath(new URL(url.trim()), uri), roots, uri);
    try {
      for await (const c of f.handle.createReadStream({ start: 0, autoClose: false })) h.update(c as Buffer);
    } finally {
      await f.handle.close();
    }
    return h.digest("hex");
  }
  let res: Response;
  try {
    res = await httpGet(url, uri, AbortSignal.timeout(600_000));
  } catch (e) {
    if (e instanceof SourceError) throw e;
    throw new SourceError("NETWORK", `${url}: ${(e as Error).message}`);
  }
  if (!res.ok || !res.body) throw new SourceError("HTTP", `${url}: HTTP ${res.status}`);
  for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) h.update(c);
  return h.digest("hex");
}

export function fetchSteps(doc: Document): Array<{ path: Array<string | number> }> {
  const out: Array<{ path: Array<string | number> }> = [];
  const walk = (seq: unknown, path: Array<string | number>) => {
    if (!isSeq(seq)) return;
    seq.items.forEach((step, i) => {
      if (!isMap(step)) return;
      if (step.get("uses") === "fetch") out.push({ path: [...path, i] });
      walk(step.get("pipeline", true), [...path, i, "pipeline"]);
    });
  };
  walk(doc.getIn(["pipeline"], true), ["pipeline"]);
  const subs = doc.getIn(["subpackages"], true);
  if (isSeq(subs))
    subs.items.forEach((_, i) => walk(doc.getIn(["subpackages", i, "pipeline"], true), ["subpackages", i, "pipeline"]));
  return out;
}

export async function bumpRecipe(
  file: string,
  version: string,
  opts: MirrorOptions & { cacheDir?: string; arch?: string; sourceDir?: string } = {},
): Promise<BumpResult> {
  if (!isValidVersion(`${version}-r0`))
    throw new ConfigError([
      { file, path: "package.version", message: `${JSON.stringify(version)} is not a valid apk version` },
    ]);
  const text = await readFile(file, "utf8");
  parseRecipe(file, text); // the recipe as it is must be valid (and within the YAML limits) before it is edited
  const doc = parseDocument(text);
  // Local sources are read as for builds: in the recipe's directory or an explicit source directory only.
  const fileRoots: FileRoot[] = [
    { dir: resolve(dirname(file)), what: "the recipe's directory" },
    ...(opts.sourceDir ? [{ dir: resolve(opts.sourceDir), what: "--source-dir" }] : []),
  ];
  const from = String(doc.getIn(["package", "version"]));
  doc.setIn(["package", "version"], version);
  doc.setIn(["package", "epoch"], 0);
  // Compile the bumped recipe to learn each fetch step's URI for the new version.
  const bumped = parseRecipe(file, doc.toString(KEEP_LAYOUT));
  const steps = fetchSteps(doc);
  const uris: string[] = [];
  for (const s of steps) {
    const uri = String(doc.getIn([...s.path, "with", "uri"]) ?? "");
    uris.push(uri);
  }
  const compiled = compileRecipe(bumped, { ...(opts.arch ? { arch: opts.arch } : {}) });
  const fetched = [...compiled.pipeline, ...compiled.subpackages.flatMap((x) => x.pipeline)].filter(
    (s) => s.native === "fetch",
  );
  if (fetched.length !== steps.length)
    throw new ConfigError([
      {
        file,
        path: "pipeline",
        message: `found ${steps.length} fetch steps in the file but ${fetched.length} after compiling (fetch inside an if: or a named pipeline?)`,
      },
    ]);
  const sources: BumpResult["sources"] = [];
  for (const [i, s] of steps.entries()) {
    const uri = fetched[i]!.with!.uri!;
    const url = substituteMirrors(uri, opts);
    const sha = await sha256Of(url, uri, [...fileRoots, ...mirrorFileRoots(uri, opts)]);
    if (opts.cacheDir) await fetchSource({ uri, expectedSha256: sha }, { ...opts, cacheDir: opts.cacheDir, fileRoots });
    doc.setIn([...s.path, "with", "expected-sha256"], sha);
    if (doc.hasIn([...s.path, "with", "expected-sha512"])) doc.deleteIn([...s.path, "with", "expected-sha512"]);
    sources.push({ uri: uris[i]!, sha256: sha });
  }
  await writeFileAtomic(file, doc.toString(KEEP_LAYOUT), { fsync: true });
  return { file, from, to: version, sources };
}
