// The one bwrap launcher, exercised with /bin/sh standing in for bwrap (so
// no namespaces are needed): exit status, output streams, the time limit,
// and a missing binary reported as SANDBOX_UNAVAILABLE.

import { describe, expect, it } from "vitest";
import { launchBwrap, SandboxError } from "./sandbox.js";

function collect(args: string[], opts: { timeoutMs?: number; bwrap?: string } = {}) {
  let out = "";
  let err = "";
  return launchBwrap(args, {
    bwrap: opts.bwrap ?? "/bin/sh",
    ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    attach: (o, e) => {
      o.on("data", (d) => (out += d));
      e.on("data", (d) => (err += d));
    },
  }).then((exit) => ({ exit, out, err }));
}

describe("launchBwrap", () => {
  it("passes the arguments, hands over both streams and reports the exit status", async () => {
    const r = await collect(["-c", "echo out; echo err >&2; exit 3"]);
    expect(r.exit).toEqual({ code: 3, signal: null, timedOut: false });
    expect(r.out).toBe("out\n");
    expect(r.err).toBe("err\n");
  });

  it("kills the process at the time limit and says so", async () => {
    const t0 = Date.now();
    const r = await collect(["-c", "exec sleep 30"], { timeoutMs: 200 });
    expect(r.exit.timedOut).toBe(true);
    expect(r.exit.signal).toBe("SIGKILL");
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("a missing bwrap is SANDBOX_UNAVAILABLE with the package to install", async () => {
    const e = await collect([], { bwrap: "/nonexistent/bwrap" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SandboxError);
    expect((e as SandboxError).code).toBe("SANDBOX_UNAVAILABLE");
    expect((e as Error).message).toMatch(/apt-get install bubblewrap/);
  });
});
