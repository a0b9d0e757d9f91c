// S3 test plumbing: a real S3-protocol server (s3rver, in a child process),
// Debian's awscli pointed at it, a fault-injecting HTTP proxy between kiln and
// the server, and a way to run the CLI as a child that a test may kill -9.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync } from "node:fs";
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { KILN_BIN } from "./paths.js";
import type { Run } from "./cli.js";

const here = dirname(fileURLToPath(import.meta.url));

export const S3_ENV = {
  AWS_ACCESS_KEY_ID: "S3RVER",
  AWS_SECRET_ACCESS_KEY: "S3RVER",
  AWS_DEFAULT_REGION: "us-east-1",
  AWS_REGION: "us-east-1",
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
};

export interface S3Server {
  port: number;
  endpoint: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** s3rver encrypts ListObjectsV2 continuation tokens with DES: OpenSSL 3's legacy provider is needed past 1,000 keys. */
export async function startS3(dir: string): Promise<S3Server> {
  mkdirSync(dir, { recursive: true });
  const proc = spawn(process.execPath, ["--openssl-legacy-provider", join(here, "s3-server.mjs"), dir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  proc.stderr!.on("data", (d) => (stderr += d));
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    proc.stdout!.on("data", (d) => {
      out += d;
      const m = /^(\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once("exit", (c) => reject(new Error(`s3rver exited ${c}: ${stderr}`)));
    setTimeout(() => reject(new Error(`s3rver did not start: ${stderr}`)), 20_000);
  });
  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    proc,
    stop: () =>
      new Promise((r) => {
        if (proc.exitCode !== null) return r();
        proc.once("exit", () => r());
        proc.kill("SIGTERM");
      }),
  };
}

/** Debian's awscli (not whatever `aws` comes first on PATH), pointed at the server. */
export const AWS = "/usr/bin/aws";

export function aws(endpoint: string, args: string[]): string {
  return execFileSync(AWS, ["--endpoint-url", endpoint, "--output", "json", ...args], {
    env: { ...process.env, ...S3_ENV },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

export function awsJson<T = Record<string, unknown>>(endpoint: string, args: string[]): T {
  const out = aws(endpoint, args).trim();
  // awscli v2 prints nothing for an empty listing.
  return (out ? JSON.parse(out) : {}) as T;
}

/** `aws s3api head-object`, or undefined for a missing object. */
export function awsHead(
  endpoint: string,
  bucket: string,
  key: string,
):
  | {
      ContentLength: number;
      CacheControl?: string;
      ContentType?: string;
      Metadata?: Record<string, string>;
      ETag: string;
    }
  | undefined {
  try {
    return awsJson(endpoint, ["s3api", "head-object", "--bucket", bucket, "--key", key]);
  } catch (e) {
    if (/404|Not Found/i.test(String((e as { stderr?: string }).stderr ?? e))) return undefined;
    throw e;
  }
}

export function awsKeys(endpoint: string, bucket: string, prefix: string): string[] {
  const r = awsJson<{ Contents?: Array<{ Key: string }> }>(endpoint, [
    "s3api",
    "list-objects-v2",
    "--bucket",
    bucket,
    "--prefix",
    prefix,
  ]);
  return (r.Contents ?? []).map((c) => c.Key).sort();
}

// --- fault-injecting proxy ---------------------------------------------------

export type FaultAction =
  /** Answer 503 SlowDown without forwarding. */
  | "503"
  /** Close the connection without forwarding. */
  | "drop"
  /** Forward, let the server complete it, then close the connection instead of answering. */
  | "drop-response"
  /** Forward only the first half of the request body to the server, then cut both sides. */
  | "truncate"
  /** Never answer (the client's timeout must fire). */
  | "hang"
  /** Hold matching requests until `times` of them have arrived, then forward them in reverse order of arrival. */
  | "barrier";

export interface FaultRule {
  /** Matched against "METHOD /path?query". */
  match: RegExp;
  action: FaultAction;
  /** How many matching requests to fault (Infinity: all); default 1. */
  times?: number;
  /** Skip this many matching requests first. */
  after?: number;
}

export interface LoggedRequest {
  n: number;
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  status?: number;
  fault?: FaultAction;
}

export interface FaultProxy {
  endpoint: string;
  log: LoggedRequest[];
  rules: FaultRule[];
  /** Called for every request before it is handled (e.g. to kill the client at the Nth). */
  onRequest?: (r: LoggedRequest) => void;
  reset(): void;
  stop(): Promise<void>;
}

export async function startFaultProxy(target: number): Promise<FaultProxy> {
  const seen = new Map<FaultRule, number>();
  const hung = new Set<import("node:net").Socket>();
  const held: Array<() => void> = [];
  const proxy: FaultProxy = {
    endpoint: "",
    log: [],
    rules: [],
    reset() {
      this.log.length = 0;
      this.rules = [];
      this.onRequest = undefined;
      seen.clear();
    },
    stop: () =>
      new Promise((r) => {
        for (const s of hung) s.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const line = `${req.method} ${req.url}`;
    const entry: LoggedRequest = { n: proxy.log.length + 1, method: req.method!, url: req.url!, headers: req.headers };
    proxy.log.push(entry);
    proxy.onRequest?.(entry);
    let action: FaultAction | undefined;
    for (const rule of proxy.rules) {
      if (!rule.match.test(line)) continue;
      const k = (seen.get(rule) ?? 0) + 1;
      seen.set(rule, k);
      if (k <= (rule.after ?? 0) || k > (rule.after ?? 0) + (rule.times ?? 1)) continue;
      action = rule.action;
      break;
    }
    entry.fault = action;
    if (action === "503") {
      req.resume();
      res.writeHead(503, { "content-type": "application/xml" });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`,
      );
      entry.status = 503;
      return;
    }
    if (action === "drop") {
      req.socket.destroy();
      return;
    }
    if (action === "barrier") {
      const rule = proxy.rules.find((r) => r.action === "barrier" && r.match.test(line))!;
      held.push(() => forward(req, res, entry, undefined));
      if (held.length >= (rule.times ?? 1)) {
        const release = held.splice(0).reverse();
        release.forEach((go, i) => setTimeout(go, i * 150));
      }
      return;
    }
    if (action === "hang") {
      req.resume();
      hung.add(req.socket);
      return;
    }
    forward(req, res, entry, action);
  });
  function forward(
    req: IncomingMessage,
    res: ServerResponse,
    entry: LoggedRequest,
    action: FaultAction | undefined,
  ): void {
    const up = httpRequest(
      { host: "127.0.0.1", port: target, method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        entry.status = ur.statusCode;
        if (action === "drop-response") {
          ur.resume();
          ur.on("end", () => req.socket.destroy());
          return;
        }
        res.writeHead(ur.statusCode!, ur.headers);
        ur.pipe(res);
      },
    );
    up.on("error", () => req.socket.destroy());
    if (action === "truncate") {
      const total = Number(req.headers["content-length"] ?? 0);
      let sent = 0;
      req.on("data", (chunk: Buffer) => {
        const room = Math.floor(total / 2) - sent;
        if (room > 0) {
          up.write(chunk.subarray(0, room));
          sent += Math.min(room, chunk.length);
        }
        if (sent >= Math.floor(total / 2)) {
          up.destroy();
          req.socket.destroy();
        }
      });
      return;
    }
    req.pipe(up);
  }
  server.keepAliveTimeout = 1000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const a = server.address();
  proxy.endpoint = `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
  return proxy;
}

// --- the CLI as a killable child -------------------------------------------

const CACHE = mkdtempSync(join(tmpdir(), "kiln-publish-test-cache-"));

export interface Child {
  proc: ChildProcess;
  done: Promise<Run>;
}

export function spawnKiln(args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const proc = spawn(process.execPath, [KILN_BIN, ...args], {
    env: { ...process.env, ...S3_ENV, KILN_CACHE_DIR: CACHE, SOURCE_DATE_EPOCH: "1700000000", ...env },
  });
  let stdout = "",
    stderr = "";
  proc.stdout!.on("data", (d) => (stdout += d));
  proc.stderr!.on("data", (d) => (stderr += d));
  const done = new Promise<Run>((resolve) =>
    proc.on("close", (code, signal) => resolve({ status: code ?? (signal ? 128 + 9 : -1), stdout, stderr })),
  );
  return { proc, done };
}

export function runKiln(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return spawnKiln(args, env).done;
}
