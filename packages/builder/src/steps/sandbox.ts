// The shell step: `runs:` under /bin/sh -c with `set -e`, in the pod the
// runner started over the guest, in the step's working directory (made to
// exist inside the workspace, as melange does), with the recipe's
// environment and the step's own variables on top.

import type { CompiledStep } from "../compile.js";
import { ensureDirUnder } from "../host-files.js";
import { GUEST_WORKSPACE, shellCommand } from "../sandbox.js";
import { NativeStepError, workspaceRelative } from "./host.js";
import type { StepContext, StepKind, StepOutcome } from "./index.js";

/** Make the step's working directory (inside the workspace) exist; guest paths outside it are the guest's. */
export async function prepareWorkdir(workspace: string, guestDir: string, what: string): Promise<void> {
  if (guestDir !== GUEST_WORKSPACE && !guestDir.startsWith(`${GUEST_WORKSPACE}/`)) return;
  await ensureDirUnder(workspace, workspaceRelative("", guestDir, what), what);
}

export const sandboxStep: StepKind = {
  name: "sandbox",
  where: "guest",
  async run(step: CompiledStep, ctx: StepContext): Promise<StepOutcome> {
    if (!ctx.pod)
      throw new NativeStepError(`${ctx.file}: ${step.origin}: a shell step needs a guest, and none is running`);
    await prepareWorkdir(ctx.workspace, step.workingDirectory, `${ctx.file}: ${step.origin}: working-directory`);
    const result = await ctx.pod.run(shellCommand(step.runs), {
      workdir: step.workingDirectory,
      env: { ...(ctx.env ?? {}), ...step.environment },
      ...(ctx.timeoutMs !== undefined ? { timeoutMs: ctx.timeoutMs } : {}),
      log: ctx.log,
    });
    return { result };
  },
};
