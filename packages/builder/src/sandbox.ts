// Running build steps under bubblewrap: the guest as a read-only `/`, the
// workspace at /home/build, no network, a clean environment, the build user,
// a time limit. Output goes to the package's log (capped, long lines cut,
// the step paused while the log catches up); failures carry the tail.
// `launchBwrap` is the one place a bwrap process is started (the image smoke
// tests of @kiln/distro use it too); runner.ts puts this behind the Runner
// interface.

import { KilnError } from "@kiln/core";
import { spawn } from "node:child_process";
import type { Readable } from "node:stream";
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

/** A host directory bound into the guest. */
export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** What a build guest mounts: its root read-only at `/`, the workspace read-write at /home/build. */
export function sandboxMounts(cfg: Pick<SandboxConfig, "guestRoot" | "workspace">): Mount[] {
  return [
    { source: cfg.guestRoot, target: "/", readOnly: true },
    { source: cfg.workspace, target: GUEST_WORKSPACE, readOnly: false },
  ];
}

/** bwrap arguments for one command; exported for tests and the benchmark. */
export function bwrapArgs(cfg: SandboxConfig, workdir: string): string[] {
  const args = [
    "--unshare-all",
    ...(cfg.network ? ["--share-net"] : []),
    "--die-with-parent",
    "--new-session",
    ...sandboxMounts(cfg).flatMap((m) => [m.readOnly ? "--ro-bind" : "--bind", m.source, m.target]),
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

/** How a bwrap process ended. */
export interface BwrapExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

/**
 * Start `bwrap ARGS`, hand its stdout and stderr to `attach`, kill it after
 * `timeoutMs`. Rejects with SandboxError SANDBOX_UNAVAILABLE when bwrap cannot
 * be started; otherwise resolves once it has exited and its streams closed.
 */
export function launchBwrap(
  args: readonly string[],
  opts: {
    bwrap?: string;
    timeoutMs?: number;
    attach: (stdout: Readable, stderr: Readable) => void;
    /** Give the command this process's stdin (an interactive shell); default none. */
    stdin?: "inherit";
    /** Called with bwrap's process ID once it has started. */
    onSpawn?: (pid: number) => void;
  },
): Promise<BwrapExit> {
  return new Promise((resolve, reject) => {
    const p = spawn(opts.bwrap ?? "bwrap", args, { stdio: [opts.stdin ?? "ignore", "pipe", "pipe"] });
    opts.attach(p.stdout, p.stderr);
    if (p.pid !== undefined) opts.onSpawn?.(p.pid);
    let timedOut = false;
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          p.kill("SIGKILL");
        }, opts.timeoutMs)
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
      resolve({ code, signal, timedOut });
    });
  });
}

/**
 * Run `argv` inside the sandbox. Output is appended to `log`; resolves with
 * the result (never rejects for a failing command — the caller decides).
 */
export async function execInSandbox(
  cfg: SandboxConfig,
  argv: readonly string[],
  opts: { workdir?: string; log?: BuildLog; tailLines?: number } = {},
): Promise<StepResult> {
  const args = [...bwrapArgs(cfg, opts.workdir ?? GUEST_WORKSPACE), ...argv];
  const t0 = Date.now();
  const tail = new Tail(opts.tailLines ?? 40);
  let captures: OutputCapture[] = [];
  const attach = (...outputs: Readable[]) => {
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
    captures = outputs.map((s) => {
      const c = new OutputCapture(opts.log, tail);
      s.on("data", (d: Buffer) => {
        if (!c.push(d)) backOff();
      });
      s.on("error", () => undefined); // a broken pipe ends the stream; the exit status tells
      return c;
    });
  };
  const exit = await launchBwrap(args, {
    ...(cfg.bwrap ? { bwrap: cfg.bwrap } : {}),
    ...(cfg.timeoutMs ? { timeoutMs: cfg.timeoutMs } : {}),
    attach,
  });
  for (const c of captures) c.finish();
  const r: StepResult = {
    exitCode: exit.code ?? 128,
    timedOut: exit.timedOut,
    tail: tail.get(),
    durationMs: Date.now() - t0,
  };
  if (exit.signal) r.signal = exit.signal;
  return r;
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
  return execInSandbox(cfg, shellCommand(script), opts);
}

/** The command a shell step runs: its script under `/bin/sh -c` with `set -e`. */
export function shellCommand(script: string): string[] {
  return ["/bin/sh", "-c", `set -e\n${script}`];
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
