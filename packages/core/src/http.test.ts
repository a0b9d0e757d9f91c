// The HTTP client against a real server on 127.0.0.1: retries, their budget,
// statuses that are final, the redirect policy and the byte budget.

import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { backoffDelay, HttpError, httpGet, httpGetWithRetries, readBody, withRetries } from "./http.js";

let server: Server;
let other: Server;
let base: string;
let otherBase: string;
const hits = new Map<string, number>();
const seen = new Map<string, IncomingHttpHeaders>();

function hit(url: string): number {
  const n = (hits.get(url) ?? 0) + 1;
  hits.set(url, n);
  return n;
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = req.url ?? "/";
    const n = hit(url);
    seen.set(url, req.headers);
    if (url === "/flaky") {
      if (n <= 2) res.writeHead(503).end("busy");
      else res.writeHead(200).end("finally");
    } else if (url === "/down") res.writeHead(503).end("always busy");
    else if (url === "/missing") res.writeHead(404).end("no");
    else if (url.startsWith("/loop/")) {
      const k = Number(url.slice("/loop/".length));
      res.writeHead(302, { location: `/loop/${k + 1}` }).end();
    } else if (url.startsWith("/to?")) {
      res.writeHead(301, { location: decodeURIComponent(url.slice(4)) }).end();
    } else if (url === "/big") res.writeHead(200).end(Buffer.alloc(5000, 1));
    else if (url === "/big-declared") res.writeHead(200, { "content-length": "5000" }).end(Buffer.alloc(5000, 1));
    else if (url === "/small") res.writeHead(200).end("tiny");
    else res.writeHead(200).end("ok");
  });
  other = createServer((req, res) => {
    seen.set(`other:${req.url}`, req.headers);
    res.writeHead(200).end("elsewhere");
  });
  await Promise.all([
    new Promise<void>((r) => server.listen(0, "127.0.0.1", r)),
    new Promise<void>((r) => other.listen(0, "127.0.0.1", r)),
  ]);
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  otherBase = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await new Promise((r) => other.close(r));
});

beforeEach(() => hits.clear());

describe("httpGetWithRetries", () => {
  it("retries a 503 and then succeeds", async () => {
    const delays: number[] = [];
    const res = await httpGetWithRetries(`${base}/flaky`, {
      retries: 3,
      backoffMs: 5,
      onRetry: (_a, d) => delays.push(d),
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("finally");
    expect(hits.get("/flaky")).toBe(3);
    expect(delays).toEqual([5, 10]);
  });

  it("gives up when the retries are spent, naming the last status", async () => {
    const e = await httpGetWithRetries(`${base}/down`, { retries: 2, backoffMs: 1 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HttpError);
    expect(e).toMatchObject({ reason: "status", status: 503, message: expect.stringContaining("HTTP 503") });
    expect(hits.get("/down")).toBe(3);
  });

  it("returns a 404 at once, without retrying", async () => {
    const res = await httpGetWithRetries(`${base}/missing`, { retries: 3, backoffMs: 1 });
    expect(res.status).toBe(404);
    await res.body?.cancel();
    expect(hits.get("/missing")).toBe(1);
  });

  it("retries connection failures and reports them as network errors", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    let retried = 0;
    const e = await httpGetWithRetries(`http://127.0.0.1:${port}/`, {
      retries: 1,
      backoffMs: 1,
      onRetry: () => retried++,
    }).catch((x: unknown) => x);
    expect(e).toMatchObject({ reason: "network" });
    expect(retried).toBe(1);
  });
});

describe("httpGet redirects", () => {
  it("follows at most the redirect limit", async () => {
    const ok = await httpGet(`${base}/loop/0`, { maxRedirects: 20 }).catch((x: unknown) => x);
    expect(ok).toMatchObject({ reason: "too-many-redirects", message: expect.stringContaining("more than 20") });
    hits.clear();
    const e = await httpGet(`${base}/loop/0`).catch((x: unknown) => x);
    expect(e).toMatchObject({ reason: "too-many-redirects", message: expect.stringContaining("more than 10") });
    expect([...hits.keys()].filter((k) => k.startsWith("/loop/"))).toHaveLength(11);
  });

  it("follows http redirects and refuses other schemes", async () => {
    const res = await httpGet(`${base}/to?${encodeURIComponent("/small")}`);
    expect(await res.text()).toBe("tiny");
    const e = await httpGet(`${base}/to?${encodeURIComponent("file:///etc/passwd")}`, { subject: "src" }).catch(
      (x: unknown) => x,
    );
    expect(e).toMatchObject({
      reason: "redirect-scheme",
      message: expect.stringMatching(/^fetching src: refusing the redirect .* to a file: URL/),
    });
  });

  it("does not carry credentials to another origin", async () => {
    const headers = { authorization: "Bearer secret", "x-kept": "yes" };
    await (await httpGet(`${base}/to?${encodeURIComponent(`${otherBase}/x`)}`, { headers })).text();
    expect(seen.get("other:/x")).toMatchObject({ "x-kept": "yes" });
    expect(seen.get("other:/x")?.authorization).toBeUndefined();
    await (await httpGet(`${base}/to?${encodeURIComponent("/same")}`, { headers })).text();
    expect(seen.get("/same")?.authorization).toBe("Bearer secret");
  });
});

describe("readBody", () => {
  it("reads a body within the byte budget", async () => {
    expect((await readBody(await httpGet(`${base}/small`), 4)).toString()).toBe("tiny");
  });

  it("refuses a body over the budget, declared or not", async () => {
    await expect(readBody(await httpGet(`${base}/big`), 4096)).rejects.toMatchObject({ reason: "too-large" });
    await expect(readBody(await httpGet(`${base}/big-declared`), 4096)).rejects.toMatchObject({
      reason: "too-large",
      message: expect.stringContaining("5000 bytes"),
    });
  });
});

describe("withRetries", () => {
  it("stops at an error that is not retryable and caps the back-off", async () => {
    let n = 0;
    const e = await withRetries(
      async () => {
        n++;
        throw new Error(n < 2 ? "again" : "final");
      },
      (x) => (x as Error).message === "again",
      { retries: 5, backoffMs: 1 },
    ).catch((x: unknown) => x);
    expect((e as Error).message).toBe("final");
    expect(n).toBe(2);
    expect([1, 2, 3, 4, 5].map((a) => backoffDelay(a, { backoffMs: 500, maxDelayMs: 4000 }))).toEqual([
      500, 1000, 2000, 4000, 4000,
    ]);
  });
});
