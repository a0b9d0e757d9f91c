// Where build and test steps execute. A Runner starts a pod — a guest root
// with the workspace mounted at /home/build — runs commands in it without a
// terminal, and stops it; melange's pkg/container/runner.go is the model.
// Today's runner is bubblewrap (one bwrap process per command over the
// assembled guest directory); a qemu or remote-worker runner implements the
// same three calls.

import type { BuildLog } from "./log-capture.js";
import { execInSandbox, sandboxMounts, type Mount, type SandboxConfig, type StepResult } from "./sandbox.js";

/** A guest to start: its root and the workspace it mounts read-write at /home/build. */
export interface PodConfig {
  /** Host directory holding the guest's root file system. */
  guestRoot: string;
  /** Host directory mounted at /home/build. */
  workspace: string;
  /** 1000 (the build user) unless the recipe asks for root. */
  uid?: number;
  gid?: number;
  network?: boolean;
}

/** One command in a pod: no terminal, a clean environment, a time limit. */
export interface ExecOptions {
  /** Absolute guest path. */
  workdir: string;
  /** The whole environment inside (nothing else leaks in). */
  env: Record<string, string>;
  timeoutMs?: number;
  /** Where the command's output goes (capped). */
  log?: BuildLog;
  tailLines?: number;
}

export interface Pod {
  /** The host directories the guest sees, and where. */
  readonly mounts: readonly Mount[];
  /** Run `argv`; resolves with its result, never rejects for a failing command. */
  run(argv: readonly string[], opts: ExecOptions): Promise<StepResult>;
  stop(): Promise<void>;
}

export interface Runner {
  readonly name: string;
  start(cfg: PodConfig): Promise<Pod>;
}

/** The bubblewrap runner: each command is a bwrap process over the guest directory. */
export class BubblewrapRunner implements Runner {
  readonly name = "bubblewrap";
  constructor(private readonly bwrap?: string) {}

  start(cfg: PodConfig): Promise<Pod> {
    const bwrap = this.bwrap;
    const pod: Pod = {
      mounts: sandboxMounts(cfg),
      run(argv, opts) {
        const sc: SandboxConfig = { ...cfg, env: opts.env };
        if (opts.timeoutMs !== undefined) sc.timeoutMs = opts.timeoutMs;
        if (bwrap) sc.bwrap = bwrap;
        return execInSandbox(sc, argv, {
          workdir: opts.workdir,
          ...(opts.log ? { log: opts.log } : {}),
          ...(opts.tailLines !== undefined ? { tailLines: opts.tailLines } : {}),
        });
      },
      // Nothing outlives a command: bwrap dies with its command (--die-with-parent).
      stop: () => Promise.resolve(),
    };
    return Promise.resolve(pod);
  }
}

/** The runner builds and tests use unless told otherwise. */
export const defaultRunner: Runner = new BubblewrapRunner();
