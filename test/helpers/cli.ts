import { spawnSync, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KILN_BIN } from "./paths.js";

// Tests never touch the user's download cache.
const CACHE = mkdtempSync(join(tmpdir(), "kiln-test-cache-"));

export interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** Run the built kiln CLI synchronously. */
export function kiln(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Run {
  const r = spawnSync(process.execPath, [KILN_BIN, ...args], {
    encoding: "utf8",
    env: { ...process.env, KILN_CACHE_DIR: CACHE, SOURCE_DATE_EPOCH: "1700000000", ...opts.env },
    cwd: opts.cwd,
    input: opts.input,
    maxBuffer: 256 * 1024 * 1024,
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Run the built kiln CLI without blocking the event loop (needed when the test also serves HTTP). */
export function kilnAsync(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [KILN_BIN, ...args], {
      env: { ...process.env, KILN_CACHE_DIR: CACHE, SOURCE_DATE_EPOCH: "1700000000", ...opts.env },
      cwd: opts.cwd,
    });
    let stdout = "",
      stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ status: code ?? -1, stdout, stderr }));
  });
}
