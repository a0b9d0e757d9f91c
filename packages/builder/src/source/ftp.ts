// Downloading one file over FTP (RFC 959), for melange recipes that name
// ftp:// sources: a login (anonymous unless the URL names a user), binary
// mode, a passive data connection (EPSV, else PASV), RETR. The data
// connection always goes to the control connection's own address: a server
// cannot point kiln at another host (the "FTP bounce"). Every wait is bounded
// by the idle timeout; a reply line longer than 8 KiB or a reply of more than
// 64 lines is refused.

import { connect, type Socket } from "node:net";

/** A failed transfer: `transient` when another attempt may succeed (a 4xx reply, the network). */
export class FtpError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
  ) {
    super(message);
  }
}

export interface FtpGetOptions {
  /** Abort when nothing arrives for this long. */
  idleMs: number;
  /** Called once the transfer starts, with the size the server announced (if any). */
  onStart?: (total: number | undefined) => void;
}

const MAX_LINE = 8192;
const MAX_LINES = 64;

interface Reply {
  code: number;
  text: string;
}

/** The control connection: commands out, replies (multi-line ones joined) in. */
class Control {
  private buf = "";
  private waiting: ((r: Reply | Error) => void) | undefined;
  private readonly queue: Reply[] = [];
  private lines: string[] = [];
  private failure: Error | undefined;

  constructor(
    private readonly sock: Socket,
    private readonly idleMs: number,
  ) {
    sock.setEncoding("latin1");
    sock.on("data", (d: string) => this.feed(d));
    sock.on("error", (e) => this.fail(new FtpError(`connection error: ${e.message}`, true)));
    sock.on("close", () => this.fail(new FtpError("the server closed the connection", true)));
  }

  private fail(e: Error): void {
    this.failure ??= e;
    const w = this.waiting;
    this.waiting = undefined;
    w?.(this.failure);
  }

  private feed(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, "");
      this.buf = this.buf.slice(nl + 1);
      this.lines.push(line);
      if (this.lines.length > MAX_LINES) return this.fail(new FtpError("a reply of too many lines", false));
      const first = this.lines[0]!;
      const m = /^(\d{3})([ -])/.exec(first);
      if (!m) return this.fail(new FtpError(`not an FTP reply: ${JSON.stringify(first.slice(0, 80))}`, false));
      // A reply ends on the line that repeats its code followed by a space.
      if (m[2] === " " || (line.startsWith(m[1]!) && line[3] === " ")) {
        const reply = { code: Number(m[1]), text: this.lines.join("\n") };
        this.lines = [];
        const w = this.waiting;
        this.waiting = undefined;
        if (w) w(reply);
        else this.queue.push(reply);
      }
    }
    if (this.buf.length > MAX_LINE) this.fail(new FtpError("a reply line over 8 KiB", false));
  }

  /** Wait for the next reply. */
  next(): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const queued = this.queue.shift();
      if (queued) return resolve(queued);
      if (this.failure) return reject(this.failure);
      const timer = setTimeout(() => this.fail(new FtpError(`no reply within ${this.idleMs} ms`, true)), this.idleMs);
      this.waiting = (r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
    });
  }

  /** Send a command and wait for its reply; a reply outside `ok` is an FtpError. */
  async send(cmd: string, ok: (code: number) => boolean, shown = cmd): Promise<Reply> {
    if (/[\r\n]/.test(cmd)) throw new FtpError(`${shown.split(" ")[0]}: a line break in the command`, false);
    this.sock.write(`${cmd}\r\n`, "latin1");
    return expectReply(await this.next(), ok, shown);
  }

  /** The address the control connection reached (data connections go there only). */
  get peer(): string {
    return this.sock.remoteAddress ?? "";
  }

  close(): void {
    this.sock.destroy();
  }
}

function expectReply(r: Reply, ok: (code: number) => boolean, what: string): Reply {
  if (ok(r.code)) return r;
  const text = r.text.split("\n").pop()!.slice(0, 200);
  throw new FtpError(`${what}: ${text}`, r.code >= 400 && r.code < 500);
}

const is2xx = (c: number) => c >= 200 && c < 300;

/** The data port a passive reply names (EPSV's |||port| or PASV's h1,h2,h3,h4,p1,p2). */
function passivePort(r: Reply): number {
  const e = /\(([^\d\s])\1\1(\d{1,5})\1\)/.exec(r.text);
  const p = /(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})/.exec(r.text);
  const port = e ? Number(e[2]) : p ? Number(p[5]) * 256 + Number(p[6]) : NaN;
  if (!(port > 0 && port < 65536)) throw new FtpError(`no data port in ${JSON.stringify(r.text.slice(0, 80))}`, false);
  return port;
}

function open(host: string, port: number, idleMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new FtpError(`no connection to ${host}:${port} within ${idleMs} ms`, true));
    }, idleMs);
    s.once("connect", () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(timer);
      reject(new FtpError(`cannot connect to ${host}:${port}: ${e.message}`, true));
    });
  });
}

/** Retrieve the file an ftp: URL names, giving each chunk to `consume`. */
export async function ftpGet(
  url: URL,
  consume: (chunk: Uint8Array, total: number | undefined) => Promise<void>,
  opts: FtpGetOptions,
): Promise<void> {
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const path = decodeURIComponent(url.pathname);
  if (!path || path === "/" || path.endsWith("/")) throw new FtpError(`${url.href} names no file`, false);
  const ctl = new Control(await open(host, Number(url.port || 21), opts.idleMs), opts.idleMs);
  let data: Socket | undefined;
  try {
    expectReply(await ctl.next(), is2xx, "greeting");
    const user = url.username ? decodeURIComponent(url.username) : "anonymous";
    const pass = url.password ? decodeURIComponent(url.password) : "anonymous@";
    const u = await ctl.send(`USER ${user}`, (c) => is2xx(c) || c === 331);
    if (u.code === 331) await ctl.send(`PASS ${pass}`, is2xx, "PASS ***");
    await ctl.send("TYPE I", is2xx);
    let port: number;
    try {
      port = passivePort(await ctl.send("EPSV", (c) => c === 229));
    } catch (e) {
      if (!(e instanceof FtpError) || e.transient) throw e;
      port = passivePort(await ctl.send("PASV", (c) => c === 227));
    }
    // Only the control connection's peer: never a host the reply names.
    data = await open(ctl.peer, port, opts.idleMs);
    const start = await ctl.send(`RETR ${path}`, (c) => c === 125 || c === 150, "RETR");
    // Many servers announce the size: "150 Opening BINARY mode data connection for f (1234 bytes)".
    const m = /\((\d+) bytes\)/.exec(start.text);
    const total = m ? Number(m[1]) : undefined;
    opts.onStart?.(total);
    await receive(data, consume, total, opts.idleMs);
    expectReply(await ctl.next(), is2xx, "end of transfer");
    ctl.send("QUIT", () => true).catch(() => undefined);
  } finally {
    data?.destroy();
    setImmediate(() => ctl.close());
  }
}

/** Read the data connection to its end, each chunk to `consume`; a stall is an error. */
function receive(
  sock: Socket,
  consume: (chunk: Uint8Array, total: number | undefined) => Promise<void>,
  total: number | undefined,
  idleMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let timer = setTimeout(stall, idleMs);
    let chain = Promise.resolve();
    let received = 0;
    function stall() {
      sock.destroy();
      reject(new FtpError(`the transfer stalled for ${idleMs} ms`, true));
    }
    sock.on("data", (chunk: Buffer) => {
      clearTimeout(timer);
      timer = setTimeout(stall, idleMs);
      sock.pause();
      received += chunk.length;
      chain = chain.then(() => consume(chunk, total)).then(() => void sock.resume(), fail);
    });
    const fail = (e: unknown) => {
      clearTimeout(timer);
      sock.destroy();
      reject(e instanceof Error ? e : new Error(String(e)));
    };
    sock.on("error", (e) => fail(new FtpError(`data connection: ${e.message}`, true)));
    sock.on("end", () => {
      clearTimeout(timer);
      chain.then(() => {
        if (total !== undefined && received !== total)
          reject(new FtpError(`short transfer: ${received} of ${total} bytes`, true));
        else resolve();
      }, reject);
    });
  });
}
