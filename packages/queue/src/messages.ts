// What crosses the queue and the artifact store, and how it is checked. Both
// are untrusted: a job payload or a result another machine wrote names a
// recipe, an architecture, versions and checksums, never a path. Everything
// is parsed with a strict schema and then checked against what this process
// knows (the recipe set, the plan), and names that become file or object
// names are checked as apk names.

import { createHash } from "node:crypto";
import { checkArch, checkPackageName, checkVersion } from "@kiln/apk";
import { KilnError } from "@kiln/core";
import { z } from "zod";

export class QueueError extends KilnError {
  readonly code = "QUEUE";
}

/** The BullMQ queue every coordinator and worker of a distribution shares. */
export const QUEUE_NAME = "kiln-builds";

/** Bytes a payload, result or log excerpt may take. */
export const MAX_RESULT_BYTES = 1024 * 1024;
export const MAX_LOG_TAIL = 64 * 1024;

const name = z.string().min(1).max(128);
const hex = (n: number) => z.string().regex(new RegExp(`^[0-9a-f]{${n}}$`));

export const jobPayloadSchema = z
  .object({
    v: z.literal(1),
    recipe: name,
    arch: z.string().min(1).max(32),
    fullVersion: z.string().min(1).max(128),
    epoch: z.number().int().min(0).max(1_000_000),
    /** The recipe's own hash as the coordinator compiled it: the worker's checkout must agree. */
    own: hex(64),
    /** Public key name of the distribution (the artifact repository is signed with it). */
    keyName: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.pub$/)
      .max(128),
    sourceDateEpoch: z
      .number()
      .int()
      .min(0)
      .max(2 ** 40),
    runTests: z.boolean(),
    /** Package names the build guest must not resolve to (the distribution's bootstrap). */
    guestExclude: z.array(name).max(10_000).optional(),
  })
  .strict();
export type JobPayload = z.infer<typeof jobPayloadSchema>;

const recordSchema = z.object({ name, version: z.string().min(1).max(128), checksum: z.string().min(1).max(128) });

export const attemptResultSchema = z
  .object({
    v: z.literal(1),
    jobId: z.string().min(1).max(256),
    recipe: name,
    arch: z.string().min(1).max(32),
    fullVersion: z.string().min(1).max(128),
    worker: z.string().min(1).max(128),
    /** ms since the epoch. */
    start: z.number().int().nonnegative(),
    end: z.number().int().nonnegative(),
    packages: z.array(recordSchema).min(1).max(1000),
    guest: z.array(recordSchema).max(100_000),
    logTail: z.string().max(MAX_LOG_TAIL).optional(),
  })
  .strict();
export type AttemptResult = z.infer<typeof attemptResultSchema>;

/** What a worker returns to BullMQ: where its committed attempt is. */
export const returnSchema = z
  .object({ attempt: z.string().regex(/^[0-9a-z-]{8,80}$/), worker: z.string().min(1).max(128) })
  .strict();
export type JobReturn = z.infer<typeof returnSchema>;

/** Parse JSON text of at most MAX_RESULT_BYTES against a schema: one clear error naming `what`. */
export function parseMessage<T>(schema: z.ZodType<T>, text: string | Buffer | unknown, what: string): T {
  let value: unknown = text;
  if (typeof text === "string" || Buffer.isBuffer(text)) {
    if (text.length > MAX_RESULT_BYTES) throw new QueueError(`${what}: larger than ${MAX_RESULT_BYTES} bytes`);
    try {
      value = JSON.parse(text.toString());
    } catch (e) {
      throw new QueueError(`${what}: not JSON (${(e as Error).message})`);
    }
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new QueueError(`${what}: ${i.path.join(".") || "(root)"}: ${i.message}`);
  }
  return r.data;
}

/** Names in a payload that become object keys or file names are apk names, checked as apk checks them. */
export function checkPayloadNames(p: Pick<JobPayload, "recipe" | "arch" | "fullVersion">, what: string): void {
  try {
    checkPackageName(p.recipe, what, "recipe");
    checkArch(p.arch, what, "arch");
    checkVersion(p.fullVersion, what, "fullVersion");
  } catch (e) {
    throw new QueueError((e as Error).message);
  }
}

/**
 * The job's id: the same build (recipe, release, architecture, compiled
 * recipe and build environment) always gets the same id, so a restarted
 * coordinator finds the jobs it added before instead of adding them again.
 */
export function jobIdFor(
  p: Pick<JobPayload, "recipe" | "arch" | "fullVersion" | "own">,
  environment: string[],
): string {
  const h = createHash("sha256").update(p.own).update("\n").update(environment.join("\n")).digest("hex");
  return `${p.arch}.${p.recipe}-${p.fullVersion}.${h.slice(0, 16)}`;
}

export interface RedisTarget {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
  tls: boolean;
  /** The URL without its password, for messages. */
  display: string;
}

/** `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` or `rediss://…` (TLS); anything else is refused with what was expected. */
export function parseRedisUrl(raw: string, option = "--queue"): RedisTarget {
  const expected = `expected redis://[USER:PASSWORD@]HOST[:PORT][/DB] or rediss://…`;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new QueueError(`${option}: ${JSON.stringify(raw)} is not a URL; ${expected}`);
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:")
    throw new QueueError(`${option}: unsupported scheme ${JSON.stringify(u.protocol)}; ${expected}`);
  if (!u.hostname) throw new QueueError(`${option}: no host in ${JSON.stringify(raw)}; ${expected}`);
  if (u.search || u.hash) throw new QueueError(`${option}: no query or fragment allowed; ${expected}`);
  const port = u.port ? Number(u.port) : 6379;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new QueueError(`${option}: bad port; ${expected}`);
  const path = u.pathname.replace(/^\//, "");
  if (path && !/^\d{1,2}$/.test(path))
    throw new QueueError(`${option}: database must be a number 0-99, got ${JSON.stringify(path)}; ${expected}`);
  const t: RedisTarget = {
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port,
    db: path ? Number(path) : 0,
    tls: u.protocol === "rediss:",
    display: `${u.protocol}//${u.username ? `${decodeURIComponent(u.username)}@` : ""}${u.host}${path ? `/${path}` : ""}`,
  };
  if (u.username) t.username = decodeURIComponent(u.username);
  if (u.password) t.password = decodeURIComponent(u.password);
  return t;
}

/** ioredis options for a target; BullMQ needs maxRetriesPerRequest null (it retries itself). */
export function redisOptions(t: RedisTarget): Record<string, unknown> {
  return {
    host: t.host,
    port: t.port,
    db: t.db,
    ...(t.username ? { username: t.username } : {}),
    ...(t.password ? { password: t.password } : {}),
    ...(t.tls ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
    // Back off to at most 2 s between reconnects while the server is down.
    retryStrategy: (n: number) => Math.min(200 * n, 2000),
  };
}
