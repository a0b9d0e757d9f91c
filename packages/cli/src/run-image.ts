// `kiln run` and `kiln debug`: an OCI layout unpacked into a private
// directory and run under bubblewrap, and a toolbox started in a running
// image's PID namespace. The run's state (its init's PID and start time) is a
// file in the run's own directory under the state directory; nothing in it
// names a path: the rootfs is always STATE/ID/bundle/rootfs.

import { createHash, randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { hostApkArch, OCI_PLATFORM, writeFileAtomic } from "@kiln/core";
import { openOciLayout, REF_NAME_ANNOTATION, walkImage, type Descriptor, type ImageManifest } from "@kiln/image";
import { UserError } from "./util.js";

const exec = promisify(execFile);

/** A run's id: 12 lower-case hex digits. */
export const RUN_ID = /^[0-9a-f]{12}$/;

export function newRunId(): string {
  return randomBytes(6).toString("hex");
}

/** Where runs keep their state: --state-dir, $KILN_RUN_DIR, $XDG_RUNTIME_DIR/kiln, /run/kiln (root) or TMP/kiln-run-UID. */
export function stateDir(env: NodeJS.ProcessEnv, given?: string): string {
  if (given) return given;
  if (env.KILN_RUN_DIR) return env.KILN_RUN_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "kiln");
  const uid = process.getuid?.() ?? 0;
  return uid === 0 ? "/run/kiln" : join(tmpdir(), `kiln-run-${uid}`);
}

export function runDir(state: string, id: string): string {
  if (!RUN_ID.test(id)) throw new UserError(`${JSON.stringify(id)} is not a run id (12 hex digits)`);
  return join(state, id);
}

export function rootfsOf(state: string, id: string): string {
  return join(runDir(state, id), "bundle", "rootfs");
}

/** What an image's config says to run. */
export interface RunConfig {
  user: string;
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  /** The host architecture's manifest. */
  manifest: Descriptor;
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string"))
    throw new UserError(`${what} is not a list of strings`);
  return v as string[];
}

/**
 * Open the OCI layout DIR, verify every manifest, config and layer blob
 * against its digest, and return the host architecture's image config.
 */
export async function verifiedImage(dir: string, tag?: string): Promise<RunConfig> {
  const layout = await openOciLayout(dir);
  const graph = await walkImage(layout, layout.resolve(tag));
  for (const b of graph.blobs) {
    const h = createHash("sha256");
    for await (const c of layout.openBlob(b.digest)) h.update(c as Buffer);
    const got = `sha256:${h.digest("hex")}`;
    if (got !== b.digest) throw new UserError(`${dir}: blob ${b.digest} is corrupt (its content hashes to ${got})`);
  }
  const want = (OCI_PLATFORM[hostApkArch()] ?? { architecture: hostApkArch() }).architecture;
  for (const m of graph.manifests) {
    const man = JSON.parse(m.bytes.toString("utf8")) as ImageManifest;
    if (!man.config || !Array.isArray(man.layers)) continue;
    const cfg = JSON.parse((await layout.readBlob(man.config.digest)).toString("utf8")) as {
      architecture?: string;
      config?: Record<string, unknown>;
    };
    if (cfg.architecture !== want) continue;
    const c = cfg.config ?? {};
    const what = `${dir}: image config ${man.config.digest}`;
    return {
      user: typeof c.User === "string" ? c.User : "",
      entrypoint: strings(c.Entrypoint, `${what}: Entrypoint`),
      cmd: strings(c.Cmd, `${what}: Cmd`),
      env: strings(c.Env, `${what}: Env`),
      workingDir: typeof c.WorkingDir === "string" && c.WorkingDir ? c.WorkingDir : "/",
      manifest: { mediaType: m.descriptor.mediaType, digest: m.descriptor.digest, size: m.descriptor.size },
    };
  }
  throw new UserError(`${dir}: no image for this host's architecture (${want})`);
}

/**
 * Unpack MANIFEST of the layout DIR into BUNDLE/rootfs with umoci, which
 * confines every layer path to the root. umoci is given a layout beside
 * BUNDLE whose only entry is that manifest (its blobs are DIR's, read in
 * place), so a multi-architecture layout unpacks the host's image.
 */
export async function unpackImage(dir: string, manifest: Descriptor, bundle: string): Promise<string> {
  const one = `${bundle}.layout`;
  await mkdir(one, { recursive: true, mode: 0o700 });
  await writeFile(join(one, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const index = { schemaVersion: 2, manifests: [{ ...manifest, annotations: { [REF_NAME_ANNOTATION]: "host" } }] };
  await writeFile(join(one, "index.json"), JSON.stringify(index));
  await symlink(resolve(dir, "blobs"), join(one, "blobs"));
  try {
    // As root, unpack with the layers' own owners: the run drops to the image's
    // uid on the host too, so a 0700 home must really be that user's. Otherwise
    // umoci can only unpack rootless (everything owned by the caller).
    const rootless = process.getuid?.() === 0 ? [] : ["--rootless"];
    await exec("umoci", ["unpack", ...rootless, "--image", `${one}:host`, bundle], {
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (e) {
    const err = e as { code?: string; stderr?: string; message: string };
    throw new UserError(
      err.code === "ENOENT"
        ? "umoci is not installed (apt-get install umoci)"
        : `umoci unpack ${dir}: ${(err.stderr || err.message).trim()}`,
    );
  } finally {
    await rm(one, { recursive: true, force: true });
  }
  const rootfs = join(bundle, "rootfs");
  // Mount points bubblewrap needs; this is the run's private copy, not the image.
  for (const d of ["proc", "dev", "tmp"]) await mkdir(join(rootfs, d), { recursive: true });
  return rootfs;
}

/** The numeric uid and gid of an image's User ("" is root; a name is looked up in the root's /etc/passwd). */
export async function numericUser(user: string, rootfs: string): Promise<{ uid: number; gid: number }> {
  if (!user) return { uid: 0, gid: 0 };
  const m = /^(\d+)(?::(\d+))?$/.exec(user);
  if (m) return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
  const name = user.split(":")[0];
  const passwd = await readFile(join(rootfs, "etc/passwd"), "utf8").catch(() => "");
  const f = passwd
    .split("\n")
    .find((l) => l.split(":")[0] === name)
    ?.split(":");
  if (!f || !/^\d+$/.test(f[2] ?? "") || !/^\d+$/.test(f[3] ?? ""))
    throw new UserError(`the image's User ${JSON.stringify(user)} is not in its /etc/passwd`);
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or undefined if there is no such process. */
export async function startTime(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (!stat) return undefined;
  // The command name is in parentheses and may itself hold spaces or ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return rest[19];
}

/** The first child of process PID (bwrap's child: the init of the run's PID namespace), waiting up to 10 s. */
export async function firstChild(pid: number): Promise<number | undefined> {
  for (let i = 0; i < 200; i++) {
    const kids = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => undefined);
    if (kids === undefined) return undefined;
    const first = kids.trim().split(" ")[0];
    if (first) return Number(first);
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

export interface RunState {
  id: string;
  image: string;
  /** Host PID of the init of the run's PID namespace. */
  pid: number;
  startTime: string;
  /** The kiln process that supervises the run. */
  supervisor: number;
}

export async function writeState(state: string, s: RunState): Promise<void> {
  await writeFileAtomic(join(runDir(state, s.id), "state.json"), JSON.stringify(s, null, 2) + "\n", { mode: 0o600 });
}

/** Read and check a run's state file; null if the run has no state (yet). */
export async function readState(state: string, id: string): Promise<RunState | null> {
  const file = join(runDir(state, id), "state.json");
  const text = await readFile(file, "utf8").catch((e: NodeJS.ErrnoException) =>
    e.code === "ENOENT" ? null : Promise.reject(e),
  );
  if (text === null) return null;
  let s: Partial<RunState>;
  try {
    s = JSON.parse(text) as Partial<RunState>;
  } catch {
    throw new UserError(`${file}: not valid JSON`);
  }
  if (
    s.id !== id ||
    !Number.isSafeInteger(s.pid) ||
    s.pid! <= 1 ||
    typeof s.startTime !== "string" ||
    !/^\d+$/.test(s.startTime) ||
    typeof s.image !== "string" ||
    !Number.isSafeInteger(s.supervisor)
  )
    throw new UserError(`${file}: not a kiln run state (id, pid, startTime, image, supervisor)`);
  return s as RunState;
}

/** The run named by ARG (a run id or its init's PID), checked to be alive and the same process. */
export async function findRun(state: string, arg: string): Promise<RunState> {
  let s: RunState | null = null;
  if (RUN_ID.test(arg)) {
    s = await readState(state, arg);
    if (!s) throw new UserError(`no run ${arg} in ${state} (kiln run --detach prints the id)`);
  } else if (/^[1-9]\d{0,9}$/.test(arg)) {
    const ids = (await readdir(state).catch(() => [] as string[])).filter((n) => RUN_ID.test(n));
    for (const id of ids) {
      const r = await readState(state, id).catch(() => null);
      if (r?.pid === Number(arg)) s = r;
    }
    if (!s) throw new UserError(`process ${arg} is not the init of a kiln run in ${state}`);
  } else {
    throw new UserError(`${JSON.stringify(arg)} is neither a run id (12 hex digits) nor a PID`);
  }
  const now = await startTime(s.pid);
  if (now === undefined) throw new UserError(`run ${s.id}: its process ${s.pid} has ended`);
  if (now !== s.startTime)
    throw new UserError(
      `run ${s.id}: process ${s.pid} is not the run's any more (started at tick ${now}, the run's at ${s.startTime}); the run has ended and its PID was reused`,
    );
  return s;
}

/** Remove a run's directory (its rootfs and state). */
export async function removeRun(state: string, id: string): Promise<void> {
  await rm(runDir(state, id), { recursive: true, force: true });
}

/** bwrap arguments running an unpacked image as its user: read-only root, /tmp tmpfs, own namespaces. */
export function runArgs(
  rootfs: string,
  cfg: RunConfig,
  user: { uid: number; gid: number },
  opts: { network: boolean },
): string[] {
  const args = ["--bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--unshare-all"];
  if (opts.network) args.push("--share-net");
  args.push("--unshare-user", "--die-with-parent", "--uid", String(user.uid), "--gid", String(user.gid));
  args.push("--chdir", cfg.workingDir, "--clearenv");
  for (const kv of cfg.env) {
    const eq = kv.indexOf("=");
    if (eq > 0) args.push("--setenv", kv.slice(0, eq), kv.slice(eq + 1));
  }
  args.push("--remount-ro", "/");
  return args;
}

/** nsenter + unshare + bwrap arguments for a toolbox in the PID namespace of process PID, its root at /target. */
export function debugArgs(pid: number, toolroot: string, argv: string[]): string[] {
  return [
    "--target",
    String(pid),
    "--pid",
    "--",
    // A mount namespace whose /proc is the target's PID namespace: bwrap reads /proc/PID of its own PID.
    "unshare",
    "--mount",
    "--mount-proc",
    "--",
    "bwrap",
    "--bind",
    toolroot,
    "/",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
    "--symlink",
    "/proc/1/root",
    "/target",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--die-with-parent",
    "--chdir",
    "/",
    "--clearenv",
    "--setenv",
    "PATH",
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--setenv",
    "HOME",
    "/root",
    "--",
    ...argv,
  ];
}
