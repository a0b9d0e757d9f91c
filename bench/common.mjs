// Helpers for side-by-side measurements.
import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";

export async function time(fn) {
  const t0 = performance.now();
  const v = await fn();
  return { ms: performance.now() - t0, value: v };
}

/** Best of n runs: the least disturbed measurement on a noisy machine. */
export async function best(n, fn) {
  let min = Infinity,
    value;
  for (let i = 0; i < n; i++) {
    const r = await time(fn);
    if (r.ms < min) {
      min = r.ms;
      value = r.value;
    }
  }
  return { ms: min, value };
}

/** Run a shell pipeline feeding `input` (Buffer or array of Buffers) on stdin. */
export function shell(cmd, input) {
  return new Promise((resolve, reject) => {
    const p = spawn("bash", ["-c", cmd], { stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}`))));
    const parts = Array.isArray(input) ? input : [input];
    (async () => {
      for (const b of parts) if (!p.stdin.write(b)) await new Promise((r) => p.stdin.once("drain", r));
      p.stdin.end();
    })().catch(reject);
  });
}

export function fmtRate(n, unit, ms) {
  const v = n / (ms / 1000);
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${unit}`;
}

export function peakRssMb() {
  return (process.resourceUsage().maxRSS / 1024).toFixed(0);
}
