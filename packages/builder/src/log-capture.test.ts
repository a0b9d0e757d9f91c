// Step output capture: lines cut at the limit with a marker, the log capped
// with a closing note, the tail kept for error messages; and a real sandboxed
// step printing 200 MB without a newline, which must finish in linear time
// with bounded memory (the quadratic capture took minutes and gigabytes).

import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BuildLog, lineCutMarker, OutputCapture, Tail } from "./log-capture.js";
import { runInSandbox } from "./sandbox.js";

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "kiln-log-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function capture(
  chunks: Array<string | Buffer>,
  limits: { maxLineBytes?: number; maxBytes?: number },
  keep = 40,
) {
  const path = join(work, `log-${Math.random().toString(36).slice(2)}`);
  const log = new BuildLog(path, limits);
  const tail = new Tail(keep, 50);
  const c = new OutputCapture(log, tail);
  for (const ch of chunks) if (!c.push(Buffer.from(ch))) await log.drained();
  c.finish();
  await log.close();
  return { text: readFileSync(path, "utf8"), tail: tail.get(), size: statSync(path).size };
}

describe("output capture", () => {
  it("logs short lines as they are, whatever the chunking", async () => {
    const all = "one\ntwo\n\nthree and more\nno newline at the end";
    for (const cut of [1, 2, 5, 7, all.length]) {
      const chunks: string[] = [];
      for (let i = 0; i < all.length; i += cut) chunks.push(all.slice(i, i + cut));
      const r = await capture(chunks, { maxLineBytes: 100 });
      expect(r.text, `chunks of ${cut}`).toBe(all);
      expect(r.tail, `chunks of ${cut}`).toEqual(["one", "two", "", "three and more", "no newline at the end"]);
    }
  });

  it("cuts a long line at the limit with a marker counting what was dropped, across chunks", async () => {
    const long = "x".repeat(1000);
    for (const size of [1, 3, 64, 999, 5000]) {
      const all = `before\n${long}\nafter\n${"y".repeat(30)}`;
      const chunks: string[] = [];
      for (let i = 0; i < all.length; i += size) chunks.push(all.slice(i, i + size));
      const r = await capture(chunks, { maxLineBytes: 16 });
      expect(r.text, `chunks of ${size}`).toBe(
        `before\n${"x".repeat(16)}${lineCutMarker(984)}\nafter\n${"y".repeat(16)}${lineCutMarker(14)}`,
      );
      expect(r.tail, `chunks of ${size}`).toEqual([
        "before",
        `${"x".repeat(16)}${lineCutMarker(984)}`,
        "after",
        `${"y".repeat(16)}${lineCutMarker(14)}`,
      ]);
    }
  });

  it("keeps only the last lines in the tail", async () => {
    const lines = Array.from({ length: 1000 }, (_, i) => `line ${i}`);
    const r = await capture([lines.join("\n") + "\n"], {}, 5);
    expect(r.tail).toEqual(lines.slice(-5));
    const r2 = await capture(
      lines.map((l) => l + "\n"),
      {},
      5,
    );
    expect(r2.tail).toEqual(lines.slice(-5));
  });

  it("caps the log file and notes how much was left out", async () => {
    const line = "0123456789".repeat(10) + "\n";
    const r = await capture(
      Array.from({ length: 30_000 }, () => line),
      { maxBytes: 1 << 20 },
    );
    expect(r.size).toBeLessThanOrEqual(1 << 20);
    expect(r.size).toBeGreaterThan((1 << 20) - 1024);
    const dropped = 30_000 * line.length - (r.text.length - r.text.slice(r.text.lastIndexOf("\n#")).length);
    expect(r.text).toMatch(
      new RegExp(`\\n# \\[output truncated: ${dropped} bytes not logged; the log is capped at ${1 << 20} bytes\\]\\n$`),
    );
    // The tail keeps 50 bytes of a line here, and says how much more there was.
    expect(r.tail.at(-1)).toBe(`${line.slice(0, 50)}${lineCutMarker(50)}`);
  });
});

/** A tiny guest made of the host's own sh, head, tr and yes (with their libraries), enough to print. */
function miniGuest(root: string): boolean {
  const tools = ["sh", "head", "tr", "yes"];
  const paths = tools.map((t) => ["/usr/bin", "/bin"].map((d) => join(d, t)).find((p) => existsSync(p)));
  if (paths.some((p) => p === undefined)) return false;
  for (const d of ["home/build", "proc", "dev", "tmp", "run", "usr/bin"]) mkdirSync(join(root, d), { recursive: true });
  symlinkSync("usr/bin", join(root, "bin"));
  for (const [i, p] of paths.entries()) {
    const real = realpathSync(p!);
    copyFileSync(real, join(root, "usr/bin", tools[i]!));
    const libs = execFileSync("ldd", [real], { encoding: "utf8" }).match(/\/[^\s)]+/g) ?? [];
    for (const l of libs) {
      const dest = join(root, l);
      mkdirSync(dirname(dest), { recursive: true });
      if (!existsSync(dest)) copyFileSync(realpathSync(l), dest);
    }
  }
  return true;
}

function haveBwrap(): boolean {
  try {
    execFileSync("bwrap", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!haveBwrap())("a sandboxed step printing 200 MB without a newline", () => {
  let guest: string;
  let ws: string;
  beforeAll(() => {
    guest = join(work, "guest");
    ws = join(work, "ws");
    mkdirSync(ws);
    if (!miniGuest(guest)) guest = "";
  });

  it("finishes promptly in bounded memory, the log within its cap, the line cut with a marker", async (ctx) => {
    if (!guest) ctx.skip();
    const logPath = join(work, "big.log");
    const log = new BuildLog(logPath, { maxBytes: 8 << 20 });
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const t0 = Date.now();
    const r = await runInSandbox(
      { guestRoot: guest, workspace: ws, env: { PATH: "/usr/bin" } },
      "head -c 200000000 /dev/zero | tr '\\0' x\necho\necho the last line",
      { log },
    );
    const ms = Date.now() - t0;
    clearInterval(sampler);
    await log.close();
    peak = Math.max(peak, process.memoryUsage().rss);
    expect(r.exitCode).toBe(0);
    // Linear: a few seconds on a slow machine (the quadratic capture needed 25 s for 50 MB, and minutes here).
    expect(ms).toBeLessThan(30_000);
    expect(peak - before).toBeLessThan(150 << 20);
    const text = readFileSync(logPath, "utf8");
    expect(statSync(logPath).size).toBeLessThanOrEqual(8 << 20);
    expect(text).toContain(`${"x".repeat(64 << 10)}${lineCutMarker(200_000_000 - (64 << 10))}\n`);
    expect(text.endsWith("\nthe last line\n")).toBe(true);
    expect(r.tail.at(-1)).toBe("the last line");
    expect(r.tail.at(-2)).toMatch(/^x{4096} … \[line cut: \d+ bytes\]$/);
    console.log(`200 MB without a newline: ${ms} ms, RSS +${Math.round((peak - before) / 1e6)} MB`);
  }, 60_000);

  it("many short lines past the cap: the file stays within it and says so", async (ctx) => {
    if (!guest) ctx.skip();
    const logPath = join(work, "lines.log");
    const log = new BuildLog(logPath, { maxBytes: 1 << 20 });
    const r = await runInSandbox(
      { guestRoot: guest, workspace: ws, env: { PATH: "/usr/bin" } },
      "yes 'a line of output' | head -n 200000\necho done",
      { log },
    );
    await log.close();
    expect(r.exitCode).toBe(0);
    expect(statSync(logPath).size).toBeLessThanOrEqual(1 << 20);
    expect(readFileSync(logPath, "utf8")).toMatch(
      /\n# \[output truncated: \d+ bytes not logged; the log is capped at 1048576 bytes\]\n$/,
    );
    expect(r.tail.slice(-2)).toEqual(["a line of output", "done"]);
  }, 60_000);
});
