// Running build steps under bubblewrap: the guest as a read-only `/`, the
// workspace at /home/build, no network, a clean environment, the build user,
// a time limit. Output goes to the package's log; failures carry the tail.

import { KilnError } from "@kiln/core";
import { spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";

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
    "--ro-bind", cfg.guestRoot, "/",
    "--bind", cfg.workspace, GUEST_WORKSPACE,
    "--proc", "/proc",
    "--dev", "/dev",
    "--tmpfs", "/tmp",
    "--tmpfs", "/run",
    "--hostname", "kiln",
    "--uid", String(cfg.uid ?? 1000),
    "--gid", String(cfg.gid ?? 1000),
    "--chdir", workdir,
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
export function runInSandbox(cfg: SandboxConfig, script: string, opts: { workdir?: string; log?: WriteStream; tailLines?: number } = {}): Promise<StepResult> {
  const workdir = opts.workdir ?? GUEST_WORKSPACE;
  const args = [...bwrapArgs(cfg, workdir), "/bin/sh", "-c", `set -e\n${script}`];
  const t0 = Date.now();
  const keep = opts.tailLines ?? 40;
  return new Promise((resolve, reject) => {
    const p = spawn(cfg.bwrap ?? "bwrap", args, { stdio: ["ignore", "pipe", "pipe"] });
    const tail: string[] = [];
    let partial = "";
    const onData = (d: Buffer) => {
      opts.log?.write(d);
      const text = partial + d.toString("utf8");
      const lines = text.split("\n");
      partial = lines.pop()!;
      for (const l of lines) {
        tail.push(l);
        if (tail.length > keep) tail.shift();
      }
    };
    p.stdout.on("data", onData);
    p.stderr.on("data", onData);
    let timedOut = false;
    const timer = cfg.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          p.kill("SIGKILL");
        }, cfg.timeoutMs)
      : undefined;
    p.on("error", (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      reject(new SandboxError(e.code === "ENOENT" ? "bubblewrap (bwrap) is not installed: apt-get install bubblewrap" : `cannot start bwrap: ${e.message}`, "SANDBOX_UNAVAILABLE"));
    });
    p.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      if (partial) {
        tail.push(partial);
        if (tail.length > keep) tail.shift();
      }
      const r: StepResult = { exitCode: code ?? 128, timedOut, tail, durationMs: Date.now() - t0 };
      if (signal) r.signal = signal;
      resolve(r);
    });
  });
}

export function openLog(path: string): WriteStream {
  return createWriteStream(path, { flags: "a" });
}
