// Push an OCI layout (directory or oci-archive) to a registry per the OCI
// distribution spec: blobs (HEAD, then POST + monolithic PUT, or PATCH chunks
// for big blobs), then manifests by digest, the top one (index) last by tag.
// Basic and Bearer (token realm) auth; bounded retries with backoff.

import { sleep } from "@kiln/core";
import { OciError, describeError } from "./errors.js";
import { openOciLayout, walkImage, type OciLayout } from "./layout.js";
import type { Descriptor } from "./types.js";
import type { OciWriteResult } from "./write.js";

export interface ImageRef {
  /** host[:port] as written ("docker.io" for Docker Hub). */
  registry: string;
  /** Repository path, e.g. "test/img" ("library/x" on Docker Hub for "x"). */
  repository: string;
  tag?: string;
  digest?: string;
}

export interface PushOptions {
  /** Use plain http instead of https. */
  insecure?: boolean;
  username?: string;
  password?: string;
  /** A bearer token to send from the first request. */
  token?: string;
  /** Which tag of the layout to push (default: the only image, else "latest", or the result's tag). */
  sourceTag?: string;
  /** Retries per request after network errors, 5xx and 429 (default 4; backoff doubles from backoffMs). */
  retries?: number;
  /** First backoff delay in ms (default 250). */
  backoffMs?: number;
  /** Blobs bigger than this go up in PATCH chunks (default 64 MiB). */
  chunkThreshold?: number;
  /** Chunk size for PATCH uploads (default 16 MiB). */
  chunkSize?: number;
  /** Timeout in ms for requests without a streamed body (pings, HEADs, manifests; default 120 000). */
  timeoutMs?: number;
  /** Progress: each blob found, pushed, and each manifest put. */
  onEvent?: (e: PushEvent) => void;
}

export type PushEvent =
  | { kind: "blob-exists"; digest: string; size: number }
  | { kind: "blob-pushed"; digest: string; size: number; chunks: number }
  | { kind: "manifest-pushed"; digest: string; reference: string; mediaType: string };

export interface PushResult {
  /** The canonical reference pushed, registry/repository:tag (or @digest). */
  ref: string;
  /** Digest of the top-level manifest or index. */
  digest: string;
  mediaType: string;
  size: number;
  /** Blobs uploaded by this push. */
  pushedBlobs: string[];
  /** Blobs the registry already had (HEAD 200). */
  existingBlobs: string[];
  /** Manifests put, children first. */
  manifests: string[];
}

const REPO_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** Parse host[:port]/repo[:tag][@digest]; a first component without "." or ":" (other than localhost) means Docker Hub. */
export function parseImageRef(ref: string): ImageRef {
  const bad = (why: string) =>
    new OciError("INVALID_INPUT", `invalid image reference ${JSON.stringify(ref)}: ${why}`, { subject: ref });
  if (typeof ref !== "string" || ref.trim() !== ref || ref === "") throw bad("empty or padded with spaces");
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad("digest must be sha256:<64 hex>");
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`tag ${JSON.stringify(tag)} is not valid`);
  }
  const first = rest.indexOf("/");
  let registry: string;
  let repository: string;
  const head = first > 0 ? rest.slice(0, first) : "";
  if (head && (/[.:[]/.test(head) || head === "localhost")) {
    registry = head;
    repository = rest.slice(first + 1);
    if (!HOST.test(registry)) throw bad(`registry host ${JSON.stringify(registry)} is not valid`);
  } else {
    registry = "docker.io";
    repository = rest.includes("/") ? rest : `library/${rest}`;
  }
  if (!repository || repository.split("/").some((c) => !REPO_COMPONENT.test(c)))
    throw bad(`repository ${JSON.stringify(repository)} must be lowercase [a-z0-9] components separated by "/"`);
  if (!tag && !digest) tag = "latest";
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

export function formatImageRef(r: ImageRef): string {
  return `${r.registry}/${r.repository}${r.tag ? `:${r.tag}` : ""}${r.digest ? `@${r.digest}` : ""}`;
}

type Body = Uint8Array | AsyncIterable<Uint8Array>;

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parse a WWW-Authenticate header into challenges (scheme + lowercased auth-param names). */
export function parseWwwAuthenticate(h: string): Challenge[] {
  const out: Challenge[] = [];
  const token = /[A-Za-z0-9!#$%&'*+.^_`|~-]+/y;
  let cur: Challenge | undefined;
  let i = 0;
  const skip = (chars: string) => {
    while (i < h.length && chars.includes(h[i]!)) i++;
  };
  while (i < h.length) {
    skip(" \t,");
    token.lastIndex = i;
    const m = token.exec(h);
    if (!m) break;
    i = token.lastIndex;
    skip(" \t");
    if (h[i] === "=" && cur) {
      i++;
      skip(" \t");
      let value = "";
      if (h[i] === '"') {
        i++;
        while (i < h.length && h[i] !== '"') {
          if (h[i] === "\\" && i + 1 < h.length) i++;
          value += h[i++];
        }
        i++;
      } else {
        while (i < h.length && h[i] !== "," && h[i] !== " " && h[i] !== "\t") value += h[i++];
      }
      cur.params[m[0].toLowerCase()] = value;
    } else {
      cur = { scheme: m[0].toLowerCase(), params: {} };
      out.push(cur);
    }
  }
  return out;
}

async function drain(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    /* ignore */
  }
}

async function registryErrorText(res: Response): Promise<string> {
  let text = "";
  try {
    text = await res.text();
  } catch {
    /* ignore */
  }
  try {
    const j = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string; detail?: unknown }> };
    if (Array.isArray(j.errors) && j.errors.length) {
      return j.errors
        .map(
          (e) =>
            [e.code, e.message].filter(Boolean).join(": ") +
            (e.detail && typeof e.detail !== "object" ? ` (${String(e.detail)})` : ""),
        )
        .join("; ");
    }
  } catch {
    /* not JSON */
  }
  return text.trim().slice(0, 300);
}

/** The HTTP side of a registry: auth (Basic, Bearer), bounded retries; also used by image signing (sign/). */
export class RegistryClient {
  private authorization: string | undefined;
  readonly base: string;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly timeoutMs: number;

  constructor(
    readonly ref: ImageRef,
    private readonly opts: PushOptions,
  ) {
    const host = ref.registry === "docker.io" ? "registry-1.docker.io" : ref.registry;
    this.base = `${opts.insecure ? "http" : "https"}://${host}`;
    this.retries = Math.max(0, Math.min(opts.retries ?? 4, 10));
    this.backoffMs = Math.max(0, opts.backoffMs ?? 250);
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    if (opts.token) this.authorization = `Bearer ${opts.token}`;
    if ((opts.username === undefined) !== (opts.password === undefined))
      throw new OciError("INVALID_INPUT", "give both username and password, or neither");
  }

  url(path: string): string {
    return new URL(path, this.base).toString();
  }

  private backoff(attempt: number, res?: Response): number {
    const ra = Number(res?.headers.get("retry-after"));
    if (Number.isFinite(ra) && ra > 0) return Math.min(ra * 1000, 10_000);
    return this.backoffMs * 2 ** attempt;
  }

  /**
   * One HTTP exchange with auth handling and (when `retry`) bounded retries on
   * network errors, 5xx and 429. `body` is called anew for every attempt.
   */
  async send(
    method: string,
    url: string,
    init: { headers?: Record<string, string>; body?: () => Body; retry?: boolean } = {},
  ): Promise<Response> {
    const retry = init.retry ?? true;
    let authTried = false;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { "user-agent": "kiln", ...init.headers };
      if (this.authorization) headers.authorization = this.authorization;
      let res: Response;
      let body: Body | undefined;
      try {
        body = init.body?.();
        const ac = new AbortController();
        // A streamed upload may take long; undici's own inactivity timeouts cover it.
        const streamed = body !== undefined && !(body instanceof Uint8Array);
        const timer = streamed
          ? undefined
          : setTimeout(() => ac.abort(new Error(`no response within ${this.timeoutMs} ms`)), this.timeoutMs);
        try {
          res = await fetch(url, {
            method,
            headers,
            redirect: "follow",
            signal: ac.signal,
            ...(body !== undefined ? { body, duplex: "half" as const } : {}),
          } as RequestInit);
        } finally {
          clearTimeout(timer);
          // A file stream the server did not (fully) read must not keep its descriptor open.
          const d = (body as { destroy?: () => void } | undefined)?.destroy;
          if (typeof d === "function") d.call(body);
        }
      } catch (e) {
        if (e instanceof OciError) throw e;
        if (retry && attempt < this.retries) {
          await sleep(this.backoff(attempt));
          continue;
        }
        throw new OciError(
          "NETWORK",
          `cannot reach registry ${this.ref.registry} (${method} ${url}): ${describeError(e)}${retry && this.retries ? ` (after ${attempt + 1} attempts)` : ""}`,
          {
            subject: url,
            cause: e,
            retryable: true,
          },
        );
      }
      if (res.status === 401) {
        const challenge = res.headers.get("www-authenticate") ?? "";
        await drain(res);
        if (authTried) throw this.authFailure(challenge, true);
        authTried = true;
        await this.authenticate(challenge);
        attempt--;
        continue;
      }
      if (res.status >= 500 || res.status === 429) {
        if (retry && attempt < this.retries) {
          const wait = this.backoff(attempt, res);
          await drain(res);
          await sleep(wait);
          continue;
        }
        const text = await registryErrorText(res);
        throw new OciError(
          "REGISTRY",
          `${method} ${url}: registry answered ${res.status} ${res.statusText}${text ? `: ${text}` : ""}${retry && this.retries ? ` (after ${attempt + 1} attempts)` : ""}`,
          {
            subject: url,
            status: res.status,
            retryable: true,
          },
        );
      }
      return res;
    }
  }

  private authFailure(challenge: string, afterCredentials: boolean): OciError {
    const have = this.opts.username !== undefined || this.opts.token !== undefined;
    const what = challenge ? ` (${challenge})` : "";
    if (!have)
      return new OciError(
        "AUTH",
        `registry ${this.ref.registry} requires authentication${what}; no credentials were given (username/password or token)`,
        { subject: this.ref.registry, status: 401 },
      );
    return new OciError(
      "AUTH",
      `registry ${this.ref.registry} rejected the ${afterCredentials ? "credentials" : "token"}${what}`,
      { subject: this.ref.registry, status: 401 },
    );
  }

  private async authenticate(header: string): Promise<void> {
    const challenges = parseWwwAuthenticate(header);
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const basic = challenges.find((c) => c.scheme === "basic");
    const { username, password } = this.opts;
    if (bearer) {
      this.authorization = `Bearer ${await this.bearerToken(bearer, header)}`;
      return;
    }
    if (basic) {
      if (username === undefined) throw this.authFailure(header, false);
      this.authorization = `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
      return;
    }
    throw new OciError(
      "AUTH",
      `registry ${this.ref.registry} answered 401 with ${header ? `an unsupported challenge: ${header}` : "no WWW-Authenticate challenge"}`,
      { subject: this.ref.registry, status: 401 },
    );
  }

  /** A token from the token service of a Bearer challenge, for pull and push of our repository. */
  private async bearerToken(bearer: Challenge, header: string): Promise<string> {
    const realm = bearer.params.realm;
    if (!realm)
      throw new OciError("AUTH", `registry ${this.ref.registry} sent a Bearer challenge without a realm: ${header}`);
    const u = this.tokenUrl(bearer, realm);
    const { username } = this.opts;
    const res = await this.fetchToken(u, realm);
    if (!res.ok) {
      const text = await registryErrorText(res);
      throw new OciError(
        "AUTH",
        `token service ${u.origin}${u.pathname} refused ${username !== undefined ? `user ${JSON.stringify(username)}` : "anonymous access"}: ${res.status} ${res.statusText}${text ? `: ${text}` : ""}`,
        {
          subject: realm,
          status: res.status,
        },
      );
    }
    let token: string | undefined;
    try {
      const j = (await res.json()) as { token?: string; access_token?: string };
      token = j.token || j.access_token;
    } catch {
      /* handled below */
    }
    if (!token)
      throw new OciError("AUTH", `token service ${u.origin}${u.pathname} answered without a token`, {
        subject: realm,
      });
    return token;
  }

  /** The token request: REALM with the challenge's service and scopes, and ours. */
  private tokenUrl(bearer: Challenge, realm: string): URL {
    const scopes = new Set<string>();
    if (bearer.params.scope) for (const s of bearer.params.scope.split(" ")) if (s) scopes.add(s);
    scopes.add(`repository:${this.ref.repository}:pull,push`);
    let u: URL;
    try {
      u = new URL(realm);
    } catch {
      throw new OciError("AUTH", `registry ${this.ref.registry} sent an invalid token realm ${JSON.stringify(realm)}`);
    }
    if (bearer.params.service) u.searchParams.set("service", bearer.params.service);
    for (const s of scopes) u.searchParams.append("scope", s);
    return u;
  }

  /** GET the token URL (with the credentials, if any), retrying network errors, 5xx and 429. */
  private async fetchToken(u: URL, realm: string): Promise<Response> {
    const { username, password } = this.opts;
    const headers: Record<string, string> = { "user-agent": "kiln" };
    if (username !== undefined)
      headers.authorization = `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
    let res: Response | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        res = await fetch(u, { headers, signal: AbortSignal.timeout(this.timeoutMs) });
      } catch (e) {
        if (attempt < this.retries) {
          await sleep(this.backoff(attempt));
          continue;
        }
        throw new OciError("NETWORK", `cannot reach token service ${u.origin}${u.pathname}: ${describeError(e)}`, {
          subject: realm,
          cause: e,
          retryable: true,
        });
      }
      if ((res.status >= 500 || res.status === 429) && attempt < this.retries) {
        await drain(res);
        await sleep(this.backoff(attempt, res));
        continue;
      }
      return res;
    }
  }

  async fail(res: Response, what: string): Promise<never> {
    const text = await registryErrorText(res);
    const code = res.status === 403 ? "AUTH" : "REGISTRY";
    throw new OciError(code, `${what}: registry answered ${res.status} ${res.statusText}${text ? `: ${text}` : ""}`, {
      subject: res.url,
      status: res.status,
    });
  }
}

function withDigest(location: string, digest: string): string {
  const u = new URL(location);
  u.searchParams.set("digest", digest);
  return u.toString();
}

async function pushBlob(c: RegistryClient, layout: OciLayout, d: Descriptor, opts: PushOptions): Promise<number> {
  const name = c.ref.repository;
  const threshold = opts.chunkThreshold ?? 64 * 1024 * 1024;
  const chunkSize = Math.max(1, opts.chunkSize ?? 16 * 1024 * 1024);
  const retries = Math.max(0, Math.min(opts.retries ?? 4, 10));
  for (let attempt = 0; ; attempt++) {
    try {
      const start = await c.send("POST", c.url(`/v2/${name}/blobs/uploads/`), { headers: { "content-length": "0" } });
      if (start.status !== 202) await c.fail(start, `starting the upload of ${d.digest}`);
      let location = start.headers.get("location");
      await drain(start);
      if (!location) throw new OciError("REGISTRY", `starting the upload of ${d.digest}: registry gave no Location`);
      location = new URL(location, c.base).toString();
      let chunks = 0;
      if (d.size <= threshold) {
        const res = await c.send("PUT", withDigest(location, d.digest), {
          headers: { "content-type": "application/octet-stream", "content-length": String(d.size) },
          body: () => layout.openBlob(d.digest),
          retry: false,
        });
        if (res.status !== 201) await c.fail(res, `uploading ${d.digest}`);
        await checkDigestHeader(res, d.digest, "blob");
        await drain(res);
        return 1;
      }
      for (let off = 0; off < d.size; off += chunkSize) {
        const end = Math.min(d.size, off + chunkSize);
        const res = await c.send("PATCH", location, {
          headers: {
            "content-type": "application/octet-stream",
            "content-length": String(end - off),
            "content-range": `${off}-${end - 1}`,
          },
          body: () => layout.openBlob(d.digest, { start: off, end }),
          retry: false,
        });
        if (res.status !== 202) await c.fail(res, `uploading bytes ${off}-${end - 1} of ${d.digest}`);
        const next = res.headers.get("location");
        await drain(res);
        if (next) location = new URL(next, c.base).toString();
        chunks++;
      }
      const res = await c.send("PUT", withDigest(location, d.digest), {
        headers: { "content-length": "0" },
        retry: false,
      });
      if (res.status !== 201) await c.fail(res, `completing the upload of ${d.digest}`);
      await checkDigestHeader(res, d.digest, "blob");
      await drain(res);
      return chunks;
    } catch (e) {
      if (e instanceof OciError && e.retryable && attempt < retries) {
        await sleep((opts.backoffMs ?? 250) * 2 ** attempt);
        continue;
      }
      throw e;
    }
  }
}

async function checkDigestHeader(res: Response, digest: string, what: string): Promise<void> {
  const got = res.headers.get("docker-content-digest");
  if (got && got !== digest) {
    await drain(res);
    throw new OciError("REGISTRY", `registry stored the ${what} ${digest} as ${got}`, { subject: digest });
  }
}

/**
 * Push an image from an OCI layout directory, an oci-archive file, or the
 * result of writeOciImage (format "oci" or "oci-archive") to `ref`
 * (host[:port]/repository[:tag]). Returns the digest of the top manifest or index.
 */
export async function pushOciImage(
  source: string | OciWriteResult,
  ref: string,
  opts: PushOptions = {},
): Promise<PushResult> {
  const target = parseImageRef(ref);
  let path: string;
  let sourceTag = opts.sourceTag;
  if (typeof source === "string") path = source;
  else {
    if (source.format === "docker-archive")
      throw new OciError(
        "INVALID_INPUT",
        `cannot push a docker-archive (${source.out}); write "oci" or "oci-archive" instead`,
      );
    path = source.out;
    sourceTag ??= source.tag;
  }
  const layout = await openOciLayout(path);
  const top = layout.resolve(sourceTag);
  const graph = await walkImage(layout, top);
  if (target.digest && target.digest !== top.digest) {
    throw new OciError(
      "INVALID_INPUT",
      `reference ${ref} names digest ${target.digest} but the image is ${top.digest}`,
    );
  }
  const c = new RegistryClient(target, opts);
  const name = target.repository;
  // Ping: learn about auth once, before any upload streams a body.
  const ping = await c.send("GET", c.url("/v2/"));
  if (ping.status === 404) await c.fail(ping, `${c.base}/v2/ is not an OCI distribution API`);
  if (!ping.ok) await c.fail(ping, `GET ${c.base}/v2/`);
  await drain(ping);

  const pushedBlobs: string[] = [];
  const existingBlobs: string[] = [];
  for (const b of graph.blobs) {
    const head = await c.send("HEAD", c.url(`/v2/${name}/blobs/${b.digest}`));
    await drain(head);
    if (head.status === 200) {
      existingBlobs.push(b.digest);
      opts.onEvent?.({ kind: "blob-exists", digest: b.digest, size: b.size });
      continue;
    }
    if (head.status !== 404) await c.fail(head, `checking for blob ${b.digest}`);
    const chunks = await pushBlob(c, layout, b, opts);
    pushedBlobs.push(b.digest);
    opts.onEvent?.({ kind: "blob-pushed", digest: b.digest, size: b.size, chunks });
  }

  const manifests: string[] = [];
  for (const m of graph.manifests) {
    const isTop = m.descriptor.digest === top.digest;
    const reference = isTop && target.tag ? target.tag : m.descriptor.digest;
    const res = await c.send("PUT", c.url(`/v2/${name}/manifests/${reference}`), {
      headers: { "content-type": m.descriptor.mediaType, "content-length": String(m.bytes.length) },
      body: () => m.bytes,
    });
    if (res.status !== 201 && res.status !== 200)
      await c.fail(res, `putting manifest ${m.descriptor.digest} as ${reference}`);
    await checkDigestHeader(res, m.descriptor.digest, "manifest");
    await drain(res);
    manifests.push(m.descriptor.digest);
    opts.onEvent?.({
      kind: "manifest-pushed",
      digest: m.descriptor.digest,
      reference,
      mediaType: m.descriptor.mediaType,
    });
  }
  return {
    ref: formatImageRef(target),
    digest: top.digest,
    mediaType: top.mediaType,
    size: top.size,
    pushedBlobs,
    existingBlobs,
    manifests,
  };
}
