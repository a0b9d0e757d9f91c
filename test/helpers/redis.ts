// A real Redis (Debian's redis-server) for the queue tests: started on a free
// loopback port in a temporary directory, never the system service. With
// `persist`, it keeps an append-only file so a restart on the same directory
// finds the queue as it was.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";

export interface RedisServer {
  port: number;
  url: string;
  proc: ChildProcess;
  /** SIGKILL (persist: the append-only file survives). */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function startRedis(dir: string, opts: { port?: number; persist?: boolean } = {}): Promise<RedisServer> {
  mkdirSync(dir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir, "--daemonize", "no"];
  args.push("--appendonly", opts.persist ? "yes" : "no");
  if (opts.persist) args.push("--appendfsync", "always");
  const proc = spawn("/usr/bin/redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`redis-server did not start:\n${out}`)), 20_000);
    proc.stdout!.on("data", (d) => {
      out += d;
      if (/Ready to accept connections/.test(out)) {
        clearTimeout(t);
        resolve();
      }
    });
    proc.stderr!.on("data", (d) => (out += d));
    proc.once("exit", (c) => {
      clearTimeout(t);
      reject(new Error(`redis-server exited ${c}:\n${out}`));
    });
  });
  proc.stdout!.resume();
  const end = (sig: NodeJS.Signals) =>
    new Promise<void>((r) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return r();
      proc.once("exit", () => r());
      proc.kill(sig);
    });
  return { port, url: `redis://127.0.0.1:${port}`, proc, kill: () => end("SIGKILL"), stop: () => end("SIGTERM") };
}
