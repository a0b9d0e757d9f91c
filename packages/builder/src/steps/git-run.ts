// Host git, run for a hostile recipe against a hostile repository: no hooks,
// no system or user configuration, no credential helper or prompt, only the
// transports of the policy (https, http, git; file only when the user opts
// in with KILN_GIT_ALLOW_FILE=1), a time budget per step (the process group
// is killed when it is spent) and a size budget on what the clone holds.

import { spawn } from "node:child_process";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { NativeStepError } from "./host.js";

/** The transports a repository URL (and a submodule's) may use. */
export function allowedProtocols(env: NodeJS.ProcessEnv = process.env): string[] {
  return ["https", "http", "git", ...(env.KILN_GIT_ALLOW_FILE === "1" ? ["file"] : [])];
}

/**
 * Why `url` is refused by the transport policy, or undefined when it is
 * allowed. Relative submodule URLs (`./x`, `../x`) resolve against an
 * allowed parent and are allowed.
 */
export function urlRefusal(url: string, protocols: readonly string[], relativeOk = false): string | undefined {
  if ([...url].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) return "it holds a control character";
  if (url === "") return "it is empty";
  if (url.startsWith("-")) return "it starts with '-'";
  if (relativeOk && (url.startsWith("./") || url.startsWith("../"))) return undefined;
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  const allowed = protocols.map((p) => `${p}://`).join(", ");
  if (!m) {
    if (url.includes("::"))
      return `transport helpers (${url.slice(0, url.indexOf("::") + 2)}) are refused (allowed: ${allowed})`;
    if (/^[^/]*:/.test(url)) return `scp-style ssh addresses are refused (allowed: ${allowed})`;
    return protocols.includes("file")
      ? undefined
      : `local paths are refused unless KILN_GIT_ALLOW_FILE=1 (allowed: ${allowed})`;
  }
  const scheme = m[1]!.toLowerCase();
  if (!protocols.includes(scheme))
    return scheme === "file"
      ? `file:// repositories are refused unless KILN_GIT_ALLOW_FILE=1 (allowed: ${allowed})`
      : `the ${scheme}:// transport is refused (allowed: ${allowed})`;
  return undefined;
}

export interface GitBudget {
  /** When the step's time is up (Date.now() ms). */
  deadline: number;
  /** Bytes the clone directory may hold. */
  maxBytes: number;
  /** For messages: "KILN_GIT_TIMEOUT=1800 s". */
  timeoutText: string;
}

function positiveEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0)
    throw new NativeStepError(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}

/** The budget of one git step: KILN_GIT_TIMEOUT seconds (default 1800), KILN_GIT_MAX_BYTES (default 8 GiB). */
export function gitBudget(env: NodeJS.ProcessEnv = process.env): GitBudget {
  const seconds = positiveEnv(env, "KILN_GIT_TIMEOUT", 1800);
  return {
    deadline: Date.now() + seconds * 1000,
    maxBytes: positiveEnv(env, "KILN_GIT_MAX_BYTES", 8 * 1024 ** 3),
    timeoutText: `${seconds} s (KILN_GIT_TIMEOUT)`,
  };
}

/** A fixed identity: commits kiln makes (cherry-picks, git-am) are the same on every machine. */
export const KILN_GIT_NAME = "kiln build";
export const KILN_GIT_EMAIL = "kiln-build@localhost";

/** The environment host git runs in: nothing from the user's git setup, only PATH, proxies and CA settings. */
export function gitEnv(
  home: string,
  protocols: readonly string[],
  extra: Record<string, string> = {},
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of [
    "PATH",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
  ])
    if (process.env[k] !== undefined) env[k] = process.env[k];
  return {
    ...env,
    HOME: home,
    XDG_CONFIG_HOME: join(home, ".config"),
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_ALLOW_PROTOCOL: protocols.join(":"),
    GIT_PROTOCOL_FROM_USER: "0",
    LC_ALL: "C",
    TZ: "UTC",
    GIT_COMMITTER_NAME: KILN_GIT_NAME,
    GIT_COMMITTER_EMAIL: KILN_GIT_EMAIL,
    ...extra,
  };
}

/** `-c` settings for every git command: they reach the commands git starts (submodule clones) too. */
export function gitConfigArgs(protocols: readonly string[]): string[] {
  const cfg = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.askPass=",
    "credential.helper=",
    "protocol.allow=never",
    ...["https", "http", "git", "file", "ssh", "ext"].map(
      (p) => `protocol.${p}.allow=${protocols.includes(p) ? "always" : "never"}`,
    ),
    "submodule.recurse=false",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
    "gc.auto=0",
    // No reflogs: they record the time of each update, so two clones would differ.
    "core.logAllRefUpdates=false",
    "maintenance.auto=false",
    "http.lowSpeedLimit=1",
    "http.lowSpeedTime=120",
    `user.name=${KILN_GIT_NAME}`,
    `user.email=${KILN_GIT_EMAIL}`,
  ];
  return cfg.flatMap((c) => ["-c", c]);
}

/** The bytes under `dir` (files and links, not following links); stops counting past `limit`. */
export async function treeBytes(dir: string, limit = Infinity): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    const entries = await fsp.readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (total > limit) return;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else total += (await fsp.lstat(p).catch(() => undefined))?.size ?? 0;
    }
  };
  await walk(dir);
  return total;
}

export interface GitRun {
  stdout: string;
  stderr: string;
  code: number;
}

export interface GitOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** The transport policy (also given to git as -c settings). */
  protocols: readonly string[];
  budget: GitBudget;
  /** Watch this directory's size while git runs. */
  watch?: string;
  /** Written to the build log. */
  log?: (line: string) => void;
  input?: string;
  /** A failure is returned, not thrown. */
  allowFail?: boolean;
}

// ls-tree of a large repository (150,000 files) is about 15 MB.
const OUTPUT_LIMIT = 64 << 20;

/** Run `git ARGS`; a failure (unless allowed), the time budget or the size budget is a NativeStepError. */
export function runGit(args: readonly string[], o: GitOptions, what: string): Promise<GitRun> {
  const left = o.budget.deadline - Date.now();
  if (left <= 0)
    return Promise.reject(new NativeStepError(`${what}: the git time budget of ${o.budget.timeoutText} is spent`));
  o.log?.(`# git ${args.join(" ")}\n`);
  return new Promise((resolve, reject) => {
    const p = spawn("git", [...gitConfigArgs(o.protocols), ...args], {
      cwd: o.cwd,
      env: o.env,
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let killed: string | undefined;
    const kill = (why: string) => {
      if (killed) return;
      killed = why;
      try {
        process.kill(-p.pid!, "SIGKILL");
      } catch {
        /* gone already */
      }
    };
    const timer = setTimeout(() => kill(`timed out after ${o.budget.timeoutText}`), left);
    let watching = false;
    const watcher = o.watch
      ? setInterval(() => {
          if (watching) return;
          watching = true;
          void treeBytes(o.watch!, o.budget.maxBytes).then((n) => {
            watching = false;
            if (n > o.budget.maxBytes) kill(`the clone grew past ${o.budget.maxBytes} bytes (KILN_GIT_MAX_BYTES)`);
          });
        }, 1000)
      : undefined;
    p.stdout.on("data", (d: Buffer) => {
      if (stdout.length < OUTPUT_LIMIT) stdout += d.toString();
    });
    p.stderr.on("data", (d: Buffer) => {
      if (stderr.length < OUTPUT_LIMIT) stderr += d.toString();
      o.log?.(d.toString());
    });
    p.stdin.on("error", () => undefined);
    p.stdin.end(o.input ?? "");
    p.on("error", (e) => {
      clearTimeout(timer);
      if (watcher) clearInterval(watcher);
      reject(new NativeStepError(`${what}: cannot run host git: ${e.message} (kiln needs git installed on the host)`));
    });
    p.on("close", (code) => {
      clearTimeout(timer);
      if (watcher) clearInterval(watcher);
      if (killed) return reject(new NativeStepError(`${what}: git ${args[0] ?? ""} ${killed}`));
      const r = { stdout, stderr, code: code ?? -1 };
      if (r.code !== 0 && !o.allowFail) {
        const last = stderr.trim().split("\n").slice(-3).join(" / ");
        return reject(new NativeStepError(`${what}: ${last || `git exited with status ${r.code}`}`));
      }
      resolve(r);
    });
  });
}
