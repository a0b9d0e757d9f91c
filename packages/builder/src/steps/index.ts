// The step runner's registry: every compiled step is of one kind — a shell
// step run in the guest (`sandbox`) or a step kiln performs on the host
// (`fetch`, `deb-unpack`, `git-checkout`, `git-am`). Each kind is one module
// here behind the StepKind interface; a new kind (a language pipeline's
// native helper) is a new module, an entry in KINDS and a NativeKind in
// pipelines.ts.

import type { CompiledStep } from "../compile.js";
import type { Pod } from "../runner.js";
import type { StepResult } from "../sandbox.js";
import { debUnpackStep } from "./deb-unpack.js";
import { fetchStep } from "./fetch.js";
import { gitAmStep } from "./git-am.js";
import { gitCheckoutStep } from "./git-checkout.js";
import { NativeStepError, type FetchedSource, type NativeContext } from "./host.js";
import { sandboxStep } from "./sandbox.js";

/** What a step needs: the host side (workspace, caches, log) and, for guest steps, the pod. */
export interface StepContext extends NativeContext {
  /** The pod guest steps run in (none when the pipeline has no guest step). */
  pod?: Pod;
  /** The environment guest steps start from (the step's own variables go on top). */
  env?: Record<string, string>;
  /** Per-step limit for guest steps. */
  timeoutMs?: number;
}

/** What running a step produced: a guest command's result, a source for the SBOM. */
export interface StepOutcome {
  result?: StepResult;
  source?: FetchedSource;
}

export interface StepKind {
  /** `sandbox`, or the native kind (`fetch`, `deb-unpack`). */
  readonly name: string;
  /** In the guest (needs a pod) or on the host. */
  readonly where: "guest" | "host";
  run(step: CompiledStep, ctx: StepContext): Promise<StepOutcome>;
}

const KINDS: ReadonlyMap<string, StepKind> = new Map(
  [sandboxStep, fetchStep, debUnpackStep, gitCheckoutStep, gitAmStep].map((k) => [k.name, k] as const),
);

/** The names of the step kinds the runner knows. */
export function stepKindNames(): string[] {
  return [...KINDS.keys()].sort();
}

/** The kind of a compiled step; an unknown kind is an error naming the recipe and the step. */
export function stepKindOf(step: CompiledStep, file: string): StepKind {
  const name = step.native ?? "sandbox";
  const kind = KINDS.get(name);
  if (!kind)
    throw new NativeStepError(
      `${file}: ${step.origin}: step "${step.name}" is of unknown kind ${JSON.stringify(name)} (known: ${stepKindNames().join(", ")})`,
    );
  return kind;
}

/** Whether any of these steps runs in the guest. */
export function needsGuest(steps: readonly CompiledStep[], file: string): boolean {
  return steps.some((s) => stepKindOf(s, file).where === "guest");
}

/** Run one step by its kind. */
export async function runStep(step: CompiledStep, ctx: StepContext): Promise<StepOutcome> {
  return stepKindOf(step, ctx.file).run(step, ctx);
}

export { NativeStepError, workspaceRelative, type FetchedSource, type NativeContext } from "./host.js";
