// A static HTTP server over a directory, with ETag revalidation, a request
// log, and failure injection — to test kiln's fetching against real HTTP.

import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join, normalize } from "node:path";

export interface ServedRequest {
  method: string;
  path: string;
  status: number;
  conditional: boolean;
}

export interface StaticServer {
  url: string;
  log: ServedRequest[];
  /** Answer the next `n` requests whose path matches with this status. */
  failNext(match: RegExp, n: number, status?: number): void;
  close(): Promise<void>;
}

export async function serveDir(root: string): Promise<StaticServer> {
  const log: ServedRequest[] = [];
  const failures: Array<{ match: RegExp; left: number; status: number }> = [];
  const server: Server = createServer(async (req, res) => {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0]!);
    const conditional = req.headers["if-none-match"] !== undefined;
    const fail = failures.find((f) => f.left > 0 && f.match.test(path));
    if (fail) {
      fail.left--;
      log.push({ method: req.method ?? "GET", path, status: fail.status, conditional });
      res.writeHead(fail.status).end("injected failure");
      return;
    }
    const file = join(root, normalize(path).replace(/^(\.\.[/\\])+/, ""));
    try {
      const st = await stat(file);
      if (!st.isFile()) throw new Error("not a file");
      const body = await readFile(file);
      const etag = `"${createHash("sha256").update(body).digest("hex").slice(0, 16)}"`;
      if (req.headers["if-none-match"] === etag) {
        log.push({ method: req.method ?? "GET", path, status: 304, conditional });
        res.writeHead(304, { etag }).end();
        return;
      }
      log.push({ method: req.method ?? "GET", path, status: 200, conditional });
      res.writeHead(200, { etag, "content-length": body.length, "content-type": "application/octet-stream" }).end(body);
    } catch {
      log.push({ method: req.method ?? "GET", path, status: 404, conditional });
      res.writeHead(404).end("not found");
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    failNext(match, n, status = 503) {
      failures.push({ match, left: n, status });
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
}
