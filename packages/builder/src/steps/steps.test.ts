// The step runner's registry and the Runner layer, without bubblewrap: an
// unknown step kind is refused naming the step; a shell step goes to the
// pod the runner started, with the command, working directory, environment
// and mounts recorded by a fake runner. (The bubblewrap runner itself is
// exercised by the end-to-end build tests.)

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { CompiledStep } from "../compile.js";
import { BuildLog } from "../log-capture.js";
import { BubblewrapRunner, type ExecOptions, type Pod, type PodConfig, type Runner } from "../runner.js";
import { bwrapArgs, GUEST_WORKSPACE, sandboxMounts, type StepResult } from "../sandbox.js";
import { needsGuest, runStep, stepKindNames, stepKindOf, type StepContext } from "./index.js";

const tmp = mkdtempSync(join(tmpdir(), "kiln-steps-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function step(extra: Partial<CompiledStep> = {}): CompiledStep {
  return {
    name: "probe",
    origin: "pipeline[0]",
    runs: "echo hi",
    workingDirectory: GUEST_WORKSPACE,
    environment: {},
    ...extra,
  };
}

/** Records what it was asked to start and run; every command "exits" with `exitCode`. */
class FakeRunner implements Runner {
  readonly name = "fake";
  readonly started: PodConfig[] = [];
  readonly runs: Array<{ argv: readonly string[]; opts: ExecOptions; mounts: Pod["mounts"] }> = [];
  stopped = 0;
  constructor(private readonly exitCode = 0) {}
  start(cfg: PodConfig): Promise<Pod> {
    this.started.push(cfg);
    const mounts = sandboxMounts(cfg);
    const pod: Pod = {
      mounts,
      run: (argv, opts) => {
        this.runs.push({ argv, opts, mounts });
        const r: StepResult = { exitCode: this.exitCode, timedOut: false, tail: ["last line"], durationMs: 1 };
        return Promise.resolve(r);
      },
      stop: () => {
        this.stopped++;
        return Promise.resolve();
      },
    };
    return Promise.resolve(pod);
  }
}

function context(workspace: string, pod?: Pod): StepContext {
  const log = new BuildLog(join(tmp, `log-${Math.random().toString(36).slice(2)}`));
  return {
    file: "r.yaml",
    workspace,
    fileRoots: [],
    cacheDir: join(tmp, "cache"),
    log,
    ...(pod ? { pod } : {}),
    env: { HOME: GUEST_WORKSPACE, A: "base", B: "base" },
    timeoutMs: 5000,
  };
}

describe("step registry", () => {
  it("knows the sandbox, fetch and deb-unpack kinds, by where they run", () => {
    expect(stepKindNames()).toEqual(["deb-unpack", "fetch", "git-am", "git-checkout", "sandbox"]);
    expect(stepKindOf(step(), "r.yaml")).toMatchObject({ name: "sandbox", where: "guest" });
    expect(stepKindOf(step({ native: "fetch", runs: "" }), "r.yaml")).toMatchObject({ name: "fetch", where: "host" });
    expect(stepKindOf(step({ native: "deb-unpack", runs: "" }), "r.yaml")).toMatchObject({
      name: "deb-unpack",
      where: "host",
    });
    expect(needsGuest([step({ native: "fetch" })], "r.yaml")).toBe(false);
    expect(needsGuest([step({ native: "fetch" }), step()], "r.yaml")).toBe(true);
  });

  it("refuses a step of an unknown kind, naming the recipe, the step and the known kinds", async () => {
    const odd = step({ name: "checkout", origin: "pipeline[2]", native: "svn-checkout" as never });
    expect(() => stepKindOf(odd, "r.yaml")).toThrow(
      'r.yaml: pipeline[2]: step "checkout" is of unknown kind "svn-checkout" (known: deb-unpack, fetch, git-am, git-checkout, sandbox)',
    );
    await expect(runStep(odd, context(tmp))).rejects.toThrow(/step "checkout" is of unknown kind "svn-checkout"/);
  });

  it("a shell step without a running guest is an error, not a silent skip", async () => {
    await expect(runStep(step(), context(tmp))).rejects.toThrow(/r\.yaml: pipeline\[0\]: a shell step needs a guest/);
  });
});

describe("runner layer", () => {
  it("a shell step runs in the runner's pod: command, working directory, environment, limit and mounts", async () => {
    const ws = mkdtempSync(join(tmp, "ws-"));
    const runner = new FakeRunner();
    const pod = await runner.start({ guestRoot: "/guests/abc", workspace: ws });
    const out = await runStep(
      step({ runs: "make install", workingDirectory: `${GUEST_WORKSPACE}/src/sub`, environment: { B: "step" } }),
      context(ws, pod),
    );
    expect(out.result?.exitCode).toBe(0);
    expect(runner.runs).toHaveLength(1);
    const [call] = runner.runs;
    expect(call!.argv).toEqual(["/bin/sh", "-c", "set -e\nmake install"]);
    expect(call!.opts.workdir).toBe(`${GUEST_WORKSPACE}/src/sub`);
    expect(call!.opts.env).toEqual({ HOME: GUEST_WORKSPACE, A: "base", B: "step" });
    expect(call!.opts.timeoutMs).toBe(5000);
    expect(call!.mounts).toEqual([
      { source: "/guests/abc", target: "/", readOnly: true },
      { source: ws, target: GUEST_WORKSPACE, readOnly: false },
    ]);
    // The working directory is made inside the workspace before the command runs, as melange does.
    expect(existsSync(join(ws, "src/sub"))).toBe(true);
  });

  it("a failing command is the step's result, for the caller to report", async () => {
    const runner = new FakeRunner(7);
    const pod = await runner.start({ guestRoot: "/g", workspace: tmp });
    const out = await runStep(step(), context(tmp, pod));
    expect(out.result).toMatchObject({ exitCode: 7, tail: ["last line"] });
  });

  it("host steps never reach the runner", async () => {
    const runner = new FakeRunner();
    const pod = await runner.start({ guestRoot: "/g", workspace: tmp });
    await expect(
      runStep(step({ native: "fetch", runs: "", with: { uri: "file:///nowhere", "expected-none": "true" } }), {
        ...context(tmp, pod),
      }),
    ).rejects.toThrow(/expected-none is refused/);
    expect(runner.runs).toHaveLength(0);
  });

  it("the bubblewrap runner's pod mounts what bwrap binds", async () => {
    const pod = await new BubblewrapRunner().start({ guestRoot: "/guests/abc", workspace: "/tmp/ws" });
    expect(pod.mounts).toEqual(sandboxMounts({ guestRoot: "/guests/abc", workspace: "/tmp/ws" }));
    const args = bwrapArgs({ guestRoot: "/guests/abc", workspace: "/tmp/ws", env: {} }, GUEST_WORKSPACE).join(" ");
    expect(args).toContain(`--ro-bind /guests/abc / --bind /tmp/ws ${GUEST_WORKSPACE}`);
    await pod.stop();
  });
});
