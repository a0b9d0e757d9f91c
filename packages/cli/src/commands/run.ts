// `kiln run IMAGE` and `kiln debug ID`: run an image's layout under
// bubblewrap, and debug it the ephemeral-container way (a toolbox in its PID
// namespace, its root at /target), without changing the image or its root.

import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { launchBwrap, SandboxError } from "@kiln/builder";
import { defineCommand, flag, string } from "../program.js";
import { UserError, type Io } from "../util.js";
import {
  debugArgs,
  findRun,
  firstChild,
  newRunId,
  numericUser,
  removeRun,
  rootfsOf,
  runArgs,
  runDir,
  RUN_ID,
  readState,
  startTime,
  stateDir,
  unpackImage,
  verifiedImage,
  writeState,
} from "../run-image.js";
import { kubernetesDebug } from "./run-kube.js";

const STATE_OPT = string(
  "--state-dir <DIR>",
  "where runs keep their state (default $KILN_RUN_DIR, $XDG_RUNTIME_DIR/kiln or /run/kiln)",
);

async function layoutDir(dir: string, what: string): Promise<string> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory())
    throw new UserError(`${what} ${dir} is not a directory (an OCI layout as kiln image build writes it)`);
  return dir;
}

/** Start the detached copy of this command and wait for its state file. */
async function detach(
  image: string,
  state: string,
  values: { network: boolean; tag?: string },
  cmd: string[],
  io: Io,
): Promise<number> {
  await verifiedImage(image, values.tag); // a bad image is one clear error here, not a line in a log
  const id = newRunId();
  await mkdir(runDir(state, id), { recursive: true, mode: 0o700 });
  const log = join(runDir(state, id), "log");
  const fd = openSync(log, "a", 0o600);
  const args = [process.argv[1]!, "run", image, "--state-dir", state, "--run-id", id];
  if (values.network) args.push("--network");
  if (values.tag) args.push("--tag", values.tag);
  const child = spawn(process.execPath, [...args, "--", ...cmd], { detached: true, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  let exited: number | null = null;
  child.on("exit", (code) => (exited = code ?? 1));
  child.unref();
  for (let i = 0; i < 1200 && exited === null; i++) {
    const s = await readState(state, id);
    if (s) {
      io.out(`kiln run: ${id} (pid ${s.pid}); debug it with: kiln debug ${id}`);
      return 0;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (exited === null) throw new UserError(`the run did not start within 120 s (see ${log})`);
  const last = (await readFile(log, "utf8").catch(() => "")).trim().split("\n").pop();
  await removeRun(state, id);
  throw new UserError(`the run did not start: it exited with status ${exited}${last ? `: ${last}` : ""}`);
}

/** Run the unpacked image in the foreground, keeping its state while it runs; remove its directory after. */
async function runForeground(
  image: string,
  state: string,
  id: string,
  values: { network: boolean; tag?: string },
  cmd: string[],
  io: Io,
): Promise<number> {
  const cfg = await verifiedImage(image, values.tag);
  const argv = cmd.length ? cmd : [...cfg.entrypoint, ...cfg.cmd];
  if (!argv.length) throw new UserError(`${image}: the image has no Entrypoint or Cmd; give one after --`);
  await mkdir(runDir(state, id), { recursive: true, mode: 0o700 });
  let bwrapPid: number | undefined;
  let init: number | undefined;
  let recording: Promise<void> = Promise.resolve();
  // The run's init first, so bwrap reaps it and ends; bwrap itself if the init is not known yet.
  const stop = () => {
    const pid = init ?? bwrapPid;
    if (pid) process.kill(pid, "SIGKILL");
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  try {
    const rootfs = await unpackImage(image, cfg.manifest, join(runDir(state, id), "bundle"));
    if (rootfs !== rootfsOf(state, id)) throw new Error("rootfs path mismatch");
    const user = await numericUser(cfg.user, rootfs);
    // bwrap itself runs as the image's user (setpriv), so the process is that uid on the host too;
    // it must be able to reach its root: the run's directories are traversable, not listable.
    for (const d of [state, runDir(state, id), join(runDir(state, id), "bundle")]) await chmod(d, 0o711);
    const args = [
      ...["--reuid", String(user.uid), "--regid", String(user.gid), "--clear-groups", "bwrap"],
      ...runArgs(rootfs, cfg, user, { network: values.network }),
      "--",
      ...argv,
    ];
    const exit = await launchBwrap(args, {
      bwrap: "setpriv",
      attach: (out, err) => {
        out.pipe(process.stdout);
        err.pipe(process.stderr);
      },
      onSpawn: (pid) => {
        bwrapPid = pid;
        recording = (async () => {
          const child = await firstChild(pid);
          const t = child ? await startTime(child) : undefined;
          if (!child || !t) return;
          init = child;
          await writeState(state, { id, image, pid: child, startTime: t, supervisor: process.pid });
          io.err(`kiln run: ${id} (pid ${child}); debug it with: kiln debug ${id}`);
        })().catch((e: Error) => io.err(`kiln run: cannot record the run: ${e.message}`));
      },
    });
    return exit.code ?? 128 + 9;
  } catch (e) {
    if (e instanceof SandboxError) throw new UserError(e.message);
    throw e;
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await recording;
    await removeRun(state, id);
  }
}

export const runCmd = defineCommand({
  name: "run",
  summary: "run an OCI image layout under bubblewrap as its user (then kiln debug ID)",
  args: ["IMAGE", "[CMD...]"],
  details: `IMAGE is an OCI layout directory as kiln image build writes it (e.g. OUT/images/NAME). Every
manifest, config and layer is verified against its digest, the host architecture's image is
unpacked with umoci into a private directory STATE/ID/bundle/rootfs, and its Entrypoint and Cmd
(or CMD after --) run under bubblewrap as the image's User with its Env and WorkingDir: read-only
root, /tmp a tmpfs, its own PID, IPC, UTS, mount and user namespaces, and no network unless
--network shares the host's. It prints the run's id (kiln debug ID starts a toolbox beside it)
and keeps STATE/ID/state.json (the PID and start time of the run's init) while it runs; the
directory is removed when the command ends, also on SIGINT and SIGTERM. --detach starts it in the
background, prints the id and returns; the run's output goes to STATE/ID/log. bwrap itself runs
as the image's user, so the state directory's parents must be searchable (x) by that user.`,
  options: {
    detach: flag("--detach", "start in the background and print the run's id"),
    network: flag("--network", "share the host's network (default: none)"),
    tag: string("--tag <TAG>", "the layout's tag to run (default: its only image, else latest)"),
    stateDir: STATE_OPT,
    runId: string("--run-id <ID>", "internal: the id --detach chose"),
  },
  async run(values, args, io) {
    const [image, ...cmd] = args;
    await layoutDir(image!, "IMAGE");
    const state = stateDir(io.env, values.stateDir);
    await mkdir(state, { recursive: true, mode: 0o700 });
    if (values.detach) return detach(image!, state, values, cmd, io);
    if (values.runId !== undefined && !RUN_ID.test(values.runId))
      throw new UserError(`--run-id ${JSON.stringify(values.runId)}: expected 12 hex digits`);
    return runForeground(image!, state, values.runId ?? newRunId(), values, cmd, io);
  },
});

/** The toolbox layout: --image, else OUT/images/busybox of the distribution in the current directory. */
async function toolboxDir(given: string | undefined): Promise<string> {
  if (given) return layoutDir(given, "--image");
  const dflt = join("out", "images", "busybox");
  if (existsSync(join(dflt, "index.json"))) return dflt;
  throw new UserError(
    "no toolbox image: give --image DIR (a busybox-based OCI layout), or build the distribution's busybox image (out/images/busybox)",
  );
}

async function debugLocal(
  target: string,
  cmd: string[],
  values: { image?: string; stateDir?: string },
  io: Io,
): Promise<number> {
  const state = stateDir(io.env, values.stateDir);
  const run = await findRun(state, target);
  const toolbox = await toolboxDir(values.image);
  const tool = await verifiedImage(toolbox);
  const work = await mkdtemp(join(state, "debug-"));
  try {
    const toolroot = await unpackImage(toolbox, tool.manifest, join(work, "bundle"));
    const exit = await launchBwrap(debugArgs(run.pid, toolroot, cmd.length ? cmd : ["/bin/sh"]), {
      bwrap: "nsenter",
      stdin: "inherit",
      attach: (out, err) => {
        out.pipe(process.stdout);
        err.pipe(process.stderr);
      },
    });
    return exit.code ?? 128 + 9;
  } catch (e) {
    if (e instanceof SandboxError) throw new UserError(e.message.replace("bubblewrap (bwrap)", "nsenter"));
    throw e;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export const debugCmd = defineCommand({
  name: "debug",
  summary: "start a toolbox in a running image's PID namespace, its root at /target",
  args: ["[TARGET]", "[CMD...]"],
  details: `TARGET is a run's id (as kiln run prints it) or the PID of its init. The run must be alive and
its init the same process (its start time is checked, so a reused PID is refused). The toolbox
(--image DIR, default out/images/busybox) is verified, unpacked into a private directory and
started with nsenter in the target's PID namespace under bubblewrap: the target's processes are
in /proc, its root is /target (/proc/1/root), and CMD (default /bin/sh) runs as root. Neither
the target's image nor its root is changed.

With --kubernetes POD --target CONTAINER --image REF it prints the kubectl debug command that
starts REF as an ephemeral container in POD sharing CONTAINER's process namespace; with --patch,
the ephemeralContainers patch instead (kubectl patch pod POD --subresource ephemeralcontainers
--type strategic --patch-file FILE). No cluster is contacted.`,
  options: {
    image: string("--image <DIR|REF>", "the toolbox: an OCI layout (locally) or an image reference (--kubernetes)"),
    kubernetes: string("--kubernetes <POD>", "print the kubectl debug command for POD instead of running anything"),
    target: string("--target <CONTAINER>", "with --kubernetes: the container whose processes to share"),
    namespace: string("--namespace <NS>", "with --kubernetes: the pod's namespace"),
    patch: flag("--patch", "with --kubernetes: print the ephemeralContainers patch instead of the command"),
    stateDir: STATE_OPT,
  },
  async run(values, args, io) {
    if (values.kubernetes !== undefined) {
      io.out(kubernetesDebug({ pod: values.kubernetes, ...values, cmd: args }));
      return 0;
    }
    const [target, ...cmd] = args;
    if (!target) throw new UserError("give the run's id or PID (kiln run --detach prints it), or --kubernetes POD");
    return debugLocal(target, cmd, values, io);
  },
});
