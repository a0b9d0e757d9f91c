// Running build steps under bubblewrap: the guest as a read-only `/`, the
// workspace at /home/build, no network, a clean environment, the build user,
// a time limit. Output goes to the package's log (capped, long lines cut,
// the step paused while the log catches up); failures carry the tail.

import { KilnError } from "@kiln/core";
import { spawn } from "node:child_process";
import { BuildLog, OutputCapture, Tail, type LogLimits } from "./log-capture.js";

export interface SandboxConfig {
  /** Host directory used as the guest's `/` (read-only). */
  guestRoot: string;
  /** Host directory mounted read-write at /home/build. */
  workspace: string;
  /** Environment inside (nothing else leaks in). */
  env: Record<string, string>;
  /** 1000 (the build user) unless the recipe asks for root. */
  uid?: number;
  gid?: number;
  network?: boolean;
  /** Per-step limit. */
  timeoutMs?: number;
  bwrap?: string;
}

export interface StepResult {
  exitCode: number;
  signal?: string;
  timedOut: boolean;
  /** The last lines of combined output. */
  tail: string[];
  durationMs: number;
}

export class SandboxError extends KilnError {
  constructor(
    message: string,
    readonly code: "SANDBOX_UNAVAILABLE" | "STEP_FAILED" | "TIMEOUT",
    readonly result?: StepResult,
  ) {
    super(message);
    this.name = "SandboxError";
  }
}

export const GUEST_WORKSPACE = "/home/build";

/** bwrap arguments for one command; exported for tests and the benchmark. */
export function bwrapArgs(cfg: SandboxConfig, workdir: string): string[] {
  const args = [
    "--unshare-all",
    ...(cfg.network ? ["--share-net"] : []),
    "--die-with-parent",
    "--new-session",
    "--ro-bind",
    cfg.guestRoot,
    "/",
    "--bind",
    cfg.workspace,
    GUEST_WORKSPACE,
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
    "--tmpfs",
    "/run",
    "--hostname",
    "kiln",
    "--uid",
    String(cfg.uid ?? 1000),
    "--gid",
    String(cfg.gid ?? 1000),
    "--chdir",
    workdir,
    "--clearenv",
  ];
  for (const [k, v] of Object.entries(cfg.env).sort(([a], [b]) => (a < b ? -1 : 1))) args.push("--setenv", k, v);
  return args;
}

/**
 * Run `script` with /bin/sh -c and `set -e` inside the sandbox. Output is
 * appended to `log`; resolves with the result (never rejects for a failing
 * script — the caller decides).
 */
export function runInSandbox(
  cfg: SandboxConfig,
  script: string,
  opts: { workdir?: string; log?: BuildLog; tailLines?: number } = {},
): Promise<StepResult> {
  const workdir = opts.workdir ?? GUEST_WORKSPACE;
  const args = [...bwrapArgs(cfg, workdir), "/bin/sh", "-c", `set -e\n${script}`];
  const t0 = Date.now();
  const tail = new Tail(opts.tailLines ?? 40);
  return new Promise((resolve, reject) => {
    const p = spawn(cfg.bwrap ?? "bwrap", args, { stdio: ["ignore", "pipe", "pipe"] });
    const outputs = [p.stdout, p.stderr];
    // While the log's buffer is full, both streams wait (the step blocks on its pipe): memory stays bounded.
    let waiting = false;
    const backOff = () => {
      if (waiting || !opts.log) return;
      waiting = true;
      for (const s of outputs) s.pause();
      void opts.log.drained().then(() => {
        waiting = false;
        for (const s of outputs) s.resume();
      });
    };
    const captures = outputs.map((s) => {
      const c = new OutputCapture(opts.log, tail);
      s.on("data", (d: Buffer) => {
        if (!c.push(d)) backOff();
      });
      s.on("error", () => undefined); // a broken pipe ends the stream; the exit status tells
      return c;
    });
    let timedOut = false;
    const timer = cfg.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          p.kill("SIGKILL");
        }, cfg.timeoutMs)
      : undefined;
    p.on("error", (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      reject(
        new SandboxError(
          e.code === "ENOENT"
            ? "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
            : `cannot start bwrap: ${e.message}`,
          "SANDBOX_UNAVAILABLE",
        ),
      );
    });
    p.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      for (const c of captures) c.finish();
      const r: StepResult = { exitCode: code ?? 128, timedOut, tail: tail.get(), durationMs: Date.now() - t0 };
      if (signal) r.signal = signal;
      resolve(r);
    });
  });
}

/** The last lines of a step for an error message, indented. */
export function formatTail(tail: readonly string[], lines = 15): string {
  return tail
    .slice(-lines)
    .map((l) => `    ${l}`)
    .join("\n");
}

/** Open a package's log for appending, capped as `limits` say. */
export function openLog(path: string, limits?: LogLimits): BuildLog {
  return new BuildLog(path, limits);
}
