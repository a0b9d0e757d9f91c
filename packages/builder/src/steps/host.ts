// What the steps kiln performs itself on the host (fetch, deb-unpack,
// git-checkout, git-am) share: their context, the error they
// raise, and the rule that every path they touch is inside the workspace.
// The recipe and the workspace (which the guest's steps write) are hostile.

import { KilnError } from "@kiln/core";
import { posix } from "node:path";
import type { CompiledStep } from "../compile.js";
import type { MirrorOptions } from "../fetch-source.js";
import { underGuestDir, type FileRoot } from "../host-files.js";
import type { BuildLog } from "../log-capture.js";
import { WORKSPACE_DIR } from "../substitute.js";
import type { StepKind, StepOutcome } from "./index.js";

export class NativeStepError extends KilnError {
  readonly code = "NATIVE_STEP";
}

export interface NativeContext {
  /** The recipe file, for messages. */
  file: string;
  /** Host directory mounted at /home/build. */
  workspace: string;
  /** Where file:// sources may be read. */
  fileRoots: readonly FileRoot[];
  cacheDir: string;
  mirrors?: MirrorOptions;
  log: BuildLog;
}

/** A source as recorded in the SBOM. */
export interface FetchedSource {
  uri: string;
  sha256?: string;
  sha512?: string;
  /** git sources: the commit checked out (HEAD after the checkout). */
  commit?: string;
}

/**
 * A guest path (absolute, or relative to `baseRel`, itself workspace-relative)
 * as a workspace-relative path; refused when it is not inside the workspace.
 */
export function workspaceRelative(baseRel: string, p: string, what: string): string {
  const abs = posix.isAbsolute(p) ? posix.normalize(p) : posix.join(WORKSPACE_DIR, baseRel, p);
  const rel = underGuestDir(WORKSPACE_DIR, abs);
  if (rel === undefined)
    throw new NativeStepError(
      `${what}: ${p} is outside the workspace ${WORKSPACE_DIR} (kiln performs this step on the host, inside the workspace only)`,
    );
  return rel;
}

/** The body of a host step: its inputs, its working directory (workspace-relative) and `where` for messages. */
export type HostStepBody = (
  w: Record<string, string>,
  wdRel: string,
  where: string,
  ctx: NativeContext,
) => Promise<StepOutcome>;

/** A step kind kiln performs on the host; its errors name the recipe and the step. */
export function hostStep(name: string, body: HostStepBody): StepKind {
  return {
    name,
    where: "host",
    async run(step: CompiledStep, ctx: NativeContext): Promise<StepOutcome> {
      const where = `${ctx.file}: ${step.origin}`;
      try {
        const wdRel = workspaceRelative("", step.workingDirectory, `${where}: working-directory`);
        return await body(step.with ?? {}, wdRel, where, ctx);
      } catch (e) {
        if (!(e instanceof KilnError) || e.message.startsWith(ctx.file)) throw e;
        throw new NativeStepError(`${where}: ${e.message}`, { cause: e, kind: e.kind, explanation: e.explanation });
      }
    },
  };
}
