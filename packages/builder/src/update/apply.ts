// `kiln update --apply`: bump a recipe to the archive's newest release, with
// the orig tarball's URI and sha256 from the index. The YAML is edited in
// place (comments, quoting and layout kept); nothing is written unless the
// edited recipe compiles to exactly the index's tarball.

import { readFile } from "node:fs/promises";
import { isScalar, parseDocument, type Document } from "yaml";
import { ConfigError, writeFileAtomic } from "@kiln/core";
import { fetchSteps, KEEP_LAYOUT } from "../bump.js";
import { compileRecipe, parseRecipe } from "../compile.js";
import type { UpdateReport } from "./check.js";

function setKeepingStyle(doc: Document, path: Array<string | number>, value: string | number): void {
  const node = doc.getIn(path, true);
  if (isScalar(node)) node.value = value;
  else doc.setIn(path, value);
}

/** A fetch URI in one form whichever way the mirror is named (the compiler writes mirror://NAME). */
function norm(uri: string): string {
  return uri.replace(/^\$\{\{\s*mirror\.([A-Za-z0-9_-]+)\s*\}\}\//, "mirror://$1/");
}

function compiledFetchUris(file: string, text: string): string[] {
  const c = compileRecipe(parseRecipe(file, text));
  return [...c.pipeline, ...c.subpackages.flatMap((x) => x.pipeline)]
    .filter((s) => s.native === "fetch")
    .map((s) => norm(String(s.with?.uri ?? "").trim()));
}

export interface ApplyResult {
  file: string;
  from: string;
  to: string;
  uri: string;
  sha256: string;
  /** Whether the fetch URI was rewritten (it did not follow the version through ${{package.version}}). */
  uriRewritten: boolean;
  /** Lines of the bumped recipe that still spell out the old version (a test's expected output, say), 1-based. */
  staleVersion: Array<{ line: number; text: string }>;
}

/**
 * The lines of `text` that still hold `version` as written or regex-escaped
 * (1.5.4, 1\.5\.4), not as part of a longer version (1.5.40, 21.5.4).
 */
export function linesWithVersion(text: string, version: string): Array<{ line: number; text: string }> {
  const dots = version.split(".").map((p) => p.replace(/[\\^$*+?()[\]{}|-]/g, "\\$&"));
  const re = new RegExp(`(?<![0-9.\\\\])${dots.join("\\\\?\\.")}(?![0-9]|\\\\?\\.[0-9])`);
  const out: Array<{ line: number; text: string }> = [];
  for (const [i, l] of text.split("\n").entries()) if (re.test(l)) out.push({ line: i + 1, text: l.trim() });
  return out;
}

/** Bump the recipe of an `outdated` report (kind orig) to its newest candidate. */
export async function applyUpdate(report: UpdateReport): Promise<ApplyResult> {
  const { file, newest } = report;
  const fail = (message: string): never => {
    throw new ConfigError([{ file, path: "package.version", message }]);
  };
  if (report.status !== "outdated" || !newest) return fail("is not behind the archive: nothing to apply");
  if (report.kind !== "orig") return fail(`imports Debian binaries (.deb): bump it by hand or with its generator`);
  if (!newest.uri || !newest.sha256)
    return fail(`the archive lists no orig tarball for ${report.source} ${newest.debianVersion}`);
  const text = await readFile(file, "utf8");
  const before = compiledFetchUris(file, text);
  const doc = parseDocument(text);
  const steps = fetchSteps(doc);
  if (steps.length !== before.length) fail("fetch steps inside if: or named pipelines cannot be bumped automatically");
  const want = norm(newest.uri);
  const sourceDir = want.slice(0, want.lastIndexOf("/") + 1);
  const which = before.flatMap((u, i) => (u.startsWith(sourceDir) && /\.orig\.tar\.|\.tar\./.test(u) ? [i] : []));
  if (which.length !== 1)
    fail(
      `${which.length} fetch steps read ${report.source}'s tarballs: only a recipe with one can be bumped automatically`,
    );
  const i = which[0]!;
  setKeepingStyle(doc, ["package", "version"], newest.version);
  if (doc.hasIn(["package", "epoch"])) setKeepingStyle(doc, ["package", "epoch"], 0);
  let after = compiledFetchUris(file, doc.toString(KEEP_LAYOUT));
  const rewritten = after[i] !== want;
  if (rewritten) {
    setKeepingStyle(doc, [...steps[i]!.path, "with", "uri"], newest.uri);
    after = compiledFetchUris(file, doc.toString(KEEP_LAYOUT));
    if (after[i] !== want) fail(`the fetch URI does not compile to ${newest.uri} after the edit`);
  }
  setKeepingStyle(doc, [...steps[i]!.path, "with", "expected-sha256"], newest.sha256);
  if (doc.hasIn([...steps[i]!.path, "with", "expected-sha512"]))
    doc.deleteIn([...steps[i]!.path, "with", "expected-sha512"]);
  const out = doc.toString(KEEP_LAYOUT);
  parseRecipe(file, out); // the edited recipe must still be valid
  await writeFileAtomic(file, out, { fsync: true });
  return {
    file,
    from: report.current,
    to: newest.version,
    uri: newest.uri,
    sha256: newest.sha256,
    uriRewritten: rewritten,
    staleVersion: linesWithVersion(out, report.current),
  };
}
