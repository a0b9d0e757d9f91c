// The `fetch` step: download (or read a local file:// source from the
// directories the user vouched for), verify the pinned checksum, then
// extract it into the workspace or copy it there as one file. The source is
// recorded for the SBOM.

import { assertPathComponent } from "@kiln/core";
import { constants as FS } from "node:fs";
import * as fsp from "node:fs/promises";
import { basename, join } from "node:path";
import { extractArchive, fetchSource } from "../fetch-source.js";
import { ensureDirUnder } from "../host-files.js";
import { hostStep, NativeStepError, workspaceRelative } from "./host.js";

export const fetchStep = hostStep("fetch", async (w, wdRel, where, ctx) => {
  if (w["expected-none"])
    throw new NativeStepError(
      `${where}: expected-none is refused: pin the source with expected-sha256 or expected-sha512`,
    );
  const uri = w.uri ?? "";
  const spec = {
    uri,
    ...(w["expected-sha256"] ? { expectedSha256: w["expected-sha256"] } : {}),
    ...(w["expected-sha512"] ? { expectedSha512: w["expected-sha512"] } : {}),
  };
  const destRel = workspaceRelative(wdRel, w.directory || ".", `${where}: directory`);
  const cached = await fetchSource(spec, {
    cacheDir: ctx.cacheDir,
    ...(ctx.mirrors ?? {}),
    retries: attempts(w["retry-limit"], where) - 1,
    fileRoots: ctx.fileRoots,
    onProgress: (e) => e.kind !== "data" && ctx.log.write(`# fetch ${e.kind} ${e.uri}\n`),
  });
  const dest = await ensureDirUnder(ctx.workspace, destRel, `${where}: directory`);
  if (w.extract === "false") await copyFetched(cached, dest, uri, where);
  else await extractArchive(cached, dest, { stripComponents: Number(w["strip-components"] ?? 1) });
  return {
    source: {
      uri,
      ...(spec.expectedSha256 ? { sha256: spec.expectedSha256 } : {}),
      ...(spec.expectedSha512 ? { sha512: spec.expectedSha512 } : {}),
    },
  };
});

/** Most attempts `retry-limit` may ask for: each waits for a stalled server, so the sum is bounded. */
const MAX_ATTEMPTS = 20;

/** `retry-limit` (how many attempts in all, as melange's wget --tries) as a number; 5 when unset. */
function attempts(v: string | undefined, where: string): number {
  if (v === undefined || v === "") return 5;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > MAX_ATTEMPTS)
    throw new NativeStepError(
      `${where}: retry-limit must be a whole number from 1 to ${MAX_ATTEMPTS}, got ${JSON.stringify(v)}`,
    );
  return Number(v);
}

/** `extract: false`: the file itself, named after the URL, in `dest`. */
async function copyFetched(cached: string, dest: string, uri: string, where: string): Promise<void> {
  let name: string;
  try {
    name = assertPathComponent(basename(new URL(uri).pathname), "the fetched file's name");
  } catch (e) {
    throw new NativeStepError(`${where}: cannot name the fetched file after ${uri}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const target = join(dest, name);
  // Whatever is there (a symlink planted by a guest step included) is replaced, never written through.
  const st = await fsp.lstat(target).catch(() => undefined);
  if (st?.isDirectory()) throw new NativeStepError(`${where}: ${name} is a directory in the workspace`);
  if (st) await fsp.unlink(target);
  await fsp.copyFile(cached, target, FS.COPYFILE_EXCL);
}
