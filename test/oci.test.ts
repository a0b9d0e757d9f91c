// OCI image output and registry push, checked with real tools: umoci unpacks
// the layout, skopeo reads layouts, archives and registries, gzip/sha256sum
// recompute digests independently, bubblewrap runs the unpacked binary, and
// Debian's docker-registry (distribution 2.8) takes pushes with no auth,
// htpasswd Basic auth, and Bearer tokens from a token server run here.
// A missing tool fails the test that needs it; nothing is skipped.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, createPrivateKey, sign, X509Certificate } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeHeader } from "@kiln/apk";
import {
  OciError,
  hostArch,
  openOciLayout,
  parseImageRef,
  parseWwwAuthenticate,
  pushOciImage,
  writeOciImage,
  type ArchImage,
  type LayerSource,
  type OciWriteResult,
  type PushEvent,
} from "../packages/image/src/oci/index.js";

// ---------------------------------------------------------------- helpers

const TOOLS: Record<string, string> = {
  umoci: "umoci",
  skopeo: "skopeo",
  "docker-registry": "docker-registry",
  bwrap: "bubblewrap",
  gcc: "gcc (with libc6-dev for -static)",
  python3: "python3",
  openssl: "openssl",
  tar: "tar",
  gzip: "gzip",
  sha256sum: "coreutils",
};

function need(...tools: string[]): void {
  for (const t of tools) {
    const r = spawnSync("sh", ["-c", `command -v ${t}`]);
    if (r.status !== 0)
      throw new Error(`${t} is not installed; this test needs it (apt-get install -y ${TOOLS[t] ?? t})`);
  }
}

interface RunResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Run a command asynchronously (the token server in this process must keep answering meanwhile). */
function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, {
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout!.on("data", (c: Buffer) => out.push(c));
    p.stderr!.on("data", (c: Buffer) => err.push(c));
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
    if (opts.input !== undefined) {
      p.stdin!.on("error", () => {});
      p.stdin!.end(opts.input);
    }
  });
}

async function ok(cmd: string, args: string[], opts: { input?: string } = {}): Promise<Buffer> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0)
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}:\n${r.stderr}${r.stdout.toString().slice(0, 2000)}`);
  return r.stdout;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- skopeo and umoci JSON, read field by field in each test
async function okJson<T = any>(cmd: string, args: string[]): Promise<T> {
  return JSON.parse((await ok(cmd, args)).toString()) as T;
}

const sha256 = (b: Uint8Array) => "sha256:" + createHash("sha256").update(b).digest("hex");

/** A layer: GNU tar of a directory, streamed from tar's stdout (deterministic flags). */
function tarDir(dir: string): LayerSource {
  return () =>
    (async function* () {
      const p = spawn(
        "tar",
        [
          "--sort=name",
          "--format=gnu",
          "--owner=0",
          "--group=0",
          "--numeric-owner",
          "--mtime=@1700000000",
          "-C",
          dir,
          "-cf",
          "-",
          ".",
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      const done = new Promise<number | null>((r) => p.on("close", r));
      let stderr = "";
      p.stderr.on("data", (c: Buffer) => (stderr += c));
      for await (const c of p.stdout) yield c as Buffer;
      const code = await done;
      if (code !== 0) throw new Error(`tar -C ${dir} failed (${code}): ${stderr}`);
    })();
}

/** The same bytes tarDir streams, collected (for independent hashing). */
async function tarBytes(dir: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of tarDir(dir)()) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

function filesUnder(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(relative(root, p) + (e.isDirectory() ? "/" : ""));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out.sort();
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface Registry {
  port: number;
  host: string;
  proc: ChildProcess;
  log: () => string;
}

async function startRegistry(dir: string, authYaml = ""): Promise<Registry> {
  need("docker-registry");
  const port = await freePort();
  mkdirSync(join(dir, "data"), { recursive: true });
  const cfg = join(dir, "config.yml");
  writeFileSync(
    cfg,
    [
      "version: 0.1",
      "log:",
      "  level: warn",
      "  accesslog:",
      "    disabled: true",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${join(dir, "data")}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: 127.0.0.1:${port}`,
      "  secret: kiln-test-secret",
      authYaml,
    ].join("\n"),
  );
  const proc = spawn("docker-registry", ["serve", cfg], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  proc.stdout!.on("data", (c: Buffer) => (log += c));
  proc.stderr!.on("data", (c: Buffer) => (log += c));
  let exited = false;
  proc.on("exit", () => (exited = true));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) throw new Error(`docker-registry exited at startup:\n${log}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v2/`);
      await r.body?.cancel();
      if (r.status === 200 || r.status === 401) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`docker-registry did not come up on port ${port}:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port, host: `127.0.0.1:${port}`, proc, log: () => log };
}

function stopRegistry(r: Registry | undefined): void {
  if (r && r.proc.exitCode === null) r.proc.kill("SIGTERM");
}

/** A bcrypt htpasswd line (cost 4: the registry checks it on every request): apache2-utils' htpasswd -B if present, else python3's crypt (libxcrypt). */
async function htpasswdLine(user: string, pass: string): Promise<string> {
  if (spawnSync("sh", ["-c", "command -v htpasswd"]).status === 0)
    return (await ok("htpasswd", ["-nbB", "-C", "4", user, pass])).toString().trim();
  need("python3");
  const r = await run("python3", [
    "-W",
    "ignore",
    "-c",
    "import crypt,sys; print(crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))",
    user,
    pass,
  ]);
  const hash = r.stdout.toString().trim();
  if (r.code !== 0 || !hash.startsWith("$2"))
    throw new Error(
      `cannot make a bcrypt hash (install apache2-utils for htpasswd -B, or a python3 with the crypt module): ${r.stderr}`,
    );
  return `${user}:${hash}`;
}

async function expectOciError(p: Promise<unknown>, code: string, message: RegExp): Promise<OciError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, "expected an OciError").toBeInstanceOf(OciError);
  expect((err as OciError).code).toBe(code);
  expect((err as OciError).message).toMatch(message);
  return err as OciError;
}

/**
 * A fault-injecting HTTP proxy in front of a real registry: `fault` decides per
 * request whether to answer 503, drop the connection, or pass it through.
 */
async function faultyProxy(
  target: number,
  fault: (method: string, url: URL) => "503" | "drop" | undefined,
): Promise<{ port: number; server: Server; faults: string[] }> {
  const faults: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const f = fault(req.method ?? "GET", url);
    if (f) {
      faults.push(`${f} ${req.method} ${url.pathname}`);
      if (f === "drop") {
        req.socket.destroy();
        return;
      }
      req.resume();
      req.on("end", () => {
        res.writeHead(503, { "content-type": "application/json" });
        res.end(JSON.stringify({ errors: [{ code: "UNAVAILABLE", message: "injected fault" }] }));
      });
      return;
    }
    const up = httpRequest(
      { host: "127.0.0.1", port: target, method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { port: (server.address() as { port: number }).port, server, faults };
}

// ---------------------------------------------------------------- fixtures

const WORK = mkdtempSync(join(tmpdir(), "kiln-oci-"));
const CREATED = 1700000000; // SOURCE_DATE_EPOCH
const ARCH = hostArch();
const BASE = join(WORK, "base");
const APP = join(WORK, "app");
const EXTRA = join(WORK, "extra");
const EXPECTED_FILES = [
  "app/",
  "dev/",
  "etc/",
  "etc/hello.conf",
  "etc/os-release",
  "proc/",
  "tmp/",
  "usr/",
  "usr/bin/",
  "usr/bin/hello",
];

function image(over: Partial<ArchImage> = {}): ArchImage {
  return {
    arch: ARCH,
    os: "linux",
    created: CREATED,
    layers: [tarDir(BASE), tarDir(APP)],
    entrypoint: ["/usr/bin/hello"],
    cmd: ["--greet"],
    env: ["PATH=/usr/bin", "GREETING=hi"],
    workingDir: "/app",
    user: "1000:1000",
    stopSignal: "SIGTERM",
    volumes: ["/data"],
    labels: { "org.example.b": "2", "org.example.a": "1" },
    annotations: { "org.opencontainers.image.title": "hello" },
    history: [{ createdBy: "kiln base", comment: "base files" }, { createdBy: "kiln app" }],
    ...over,
  };
}

let single: OciWriteResult;
const SINGLE = join(WORK, "single");

beforeAll(async () => {
  need("gcc", "tar");
  mkdirSync(join(BASE, "etc"), { recursive: true });
  for (const d of ["proc", "dev", "tmp", "app"]) mkdirSync(join(BASE, d), { recursive: true });
  writeFileSync(join(BASE, "etc/os-release"), 'ID=kiln\nNAME="kiln test"\n');
  writeFileSync(join(BASE, "etc/hello.conf"), "greeting=hello\n");
  mkdirSync(join(APP, "usr/bin"), { recursive: true });
  writeFileSync(
    join(WORK, "hello.c"),
    `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  char cwd[256];
  if (!getcwd(cwd, sizeof cwd)) return 2;
  const char *g = getenv("GREETING");
  printf("hello from kiln: uid=%d cwd=%s greeting=%s args=%d\\n", (int)getuid(), cwd, g ? g : "-", argc);
  return 0;
}
`,
  );
  const cc = spawnSync("gcc", ["-static", "-O2", "-s", "-o", join(APP, "usr/bin/hello"), join(WORK, "hello.c")], {
    encoding: "utf8",
  });
  if (cc.status !== 0) throw new Error(`gcc -static failed (needs libc6-dev): ${cc.stderr}`);
  mkdirSync(join(EXTRA, "usr/share"), { recursive: true });
  writeFileSync(join(EXTRA, "usr/share/arm64.txt"), "only in the arm64 image\n");
  single = await writeOciImage(
    { images: [image()], tag: "latest", annotations: { "org.opencontainers.image.source": "kiln-test" } },
    SINGLE,
    "oci",
  );
}, 60_000);

afterAll(() => {
  rmSync(WORK, { recursive: true, force: true });
});

// ---------------------------------------------------------------- layout

describe("OCI layout", () => {
  it("is unpacked by umoci into exactly the layer files, and the binary runs under bubblewrap", async () => {
    need("umoci", "bwrap");
    expect(single.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(single.layers).toHaveLength(2);
    const bundle = join(WORK, "bundle");
    await ok("umoci", ["unpack", "--rootless", "--image", `${SINGLE}:latest`, bundle]);
    const rootfs = join(bundle, "rootfs");
    expect(filesUnder(rootfs)).toEqual(EXPECTED_FILES);
    expect(readFileSync(join(rootfs, "etc/os-release"), "utf8")).toBe('ID=kiln\nNAME="kiln test"\n');
    expect(statSync(join(rootfs, "usr/bin/hello")).mode & 0o111).not.toBe(0);

    // umoci turns the image config into the runtime spec: use its args, cwd, user and env.
    const spec = JSON.parse(readFileSync(join(bundle, "config.json"), "utf8"));
    expect(spec.process.args).toEqual(["/usr/bin/hello", "--greet"]);
    expect(spec.process.cwd).toBe("/app");
    expect(spec.process.env).toEqual(expect.arrayContaining(["PATH=/usr/bin", "GREETING=hi"]));
    const { uid, gid } = spec.process.user as { uid: number; gid: number };
    expect([uid, gid]).toEqual([1000, 1000]);
    const envArgs = (spec.process.env as string[]).flatMap((e) => [
      "--setenv",
      e.slice(0, e.indexOf("=")),
      e.slice(e.indexOf("=") + 1),
    ]);
    const out = await ok("bwrap", [
      "--bind",
      rootfs,
      "/",
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--unshare-all",
      "--unshare-user",
      "--uid",
      String(uid),
      "--gid",
      String(gid),
      "--chdir",
      spec.process.cwd,
      "--clearenv",
      ...envArgs,
      ...spec.process.args,
    ]);
    expect(out.toString()).toBe("hello from kiln: uid=1000 cwd=/app greeting=hi args=2\n");
  });

  it("is read by skopeo, which reports the digests computed here", async () => {
    need("skopeo");
    const raw = await ok("skopeo", ["inspect", "--raw", `oci:${SINGLE}:latest`]);
    expect(sha256(raw)).toBe(single.digest);
    const manifest = JSON.parse(raw.toString());
    expect(manifest.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(manifest.schemaVersion).toBe(2);
    expect(manifest.layers.map((l: { digest: string }) => l.digest)).toEqual(single.layers.map((l) => l.digest));
    expect(manifest.layers.map((l: { size: number }) => l.size)).toEqual(single.layers.map((l) => l.size));
    expect(manifest.annotations).toEqual({
      "org.opencontainers.image.source": "kiln-test",
      "org.opencontainers.image.title": "hello",
    });

    const info = await okJson("skopeo", ["inspect", `oci:${SINGLE}:latest`]);
    expect(info.Digest).toBe(single.digest);
    expect(info.Architecture).toBe(ARCH);
    expect(info.Os).toBe("linux");
    expect(info.Layers).toEqual(single.layers.map((l) => l.digest));
    expect(info.Labels).toEqual({ "org.example.a": "1", "org.example.b": "2" });
    expect(info.Env).toEqual(["PATH=/usr/bin", "GREETING=hi"]);
    expect(new Date(info.Created).getTime()).toBe(CREATED * 1000);

    const config = await okJson("skopeo", ["inspect", "--config", `oci:${SINGLE}:latest`]);
    expect(config.rootfs).toEqual({ type: "layers", diff_ids: single.layers.map((l) => l.diffId) });
    expect(config.config).toEqual({
      Entrypoint: ["/usr/bin/hello"],
      Cmd: ["--greet"],
      Env: ["PATH=/usr/bin", "GREETING=hi"],
      WorkingDir: "/app",
      User: "1000:1000",
      StopSignal: "SIGTERM",
      Volumes: { "/data": {} },
      Labels: { "org.example.a": "1", "org.example.b": "2" },
    });
    expect(config.history).toEqual([
      { created: "2023-11-14T22:13:20Z", created_by: "kiln base", comment: "base files" },
      { created: "2023-11-14T22:13:20Z", created_by: "kiln app" },
    ]);
    expect(config.created).toBe("2023-11-14T22:13:20Z");
    const index = JSON.parse(readFileSync(join(SINGLE, "index.json"), "utf8"));
    expect(index.manifests[0].annotations).toEqual({ "org.opencontainers.image.ref.name": "latest" });
    expect(JSON.parse(readFileSync(join(SINGLE, "oci-layout"), "utf8"))).toEqual({ imageLayoutVersion: "1.0.0" });
  });

  it("has diff_ids equal to sha256 of the uncompressed layers (gzip -dc | sha256sum) and blobs named by their sha256", async () => {
    need("gzip", "sha256sum");
    const config = JSON.parse(
      readFileSync(join(SINGLE, "blobs/sha256", single.manifests[0]!.configDigest.slice(7)), "utf8"),
    );
    const dirs = [BASE, APP];
    for (const [i, l] of single.layers.entries()) {
      const blob = join(SINGLE, "blobs/sha256", l.digest.slice(7));
      const unz = (await ok("sh", ["-c", 'gzip -dc "$1" | sha256sum', "sh", blob])).toString().split(" ")[0];
      expect(`sha256:${unz}`).toBe(l.diffId);
      expect(config.rootfs.diff_ids[i]).toBe(l.diffId);
      const z = (await ok("sha256sum", [blob])).toString().split(" ")[0];
      expect(`sha256:${z}`).toBe(l.digest);
      expect(statSync(blob).size).toBe(l.size);
      // and the tar that went in is what comes out
      expect(sha256(await tarBytes(dirs[i]!))).toBe(l.diffId);
      // gzip header: mtime 0, OS 3 (Unix), whatever the zlib build
      const head = readFileSync(blob).subarray(0, 10);
      expect([...head.subarray(0, 3)]).toEqual([0x1f, 0x8b, 8]);
      expect(head.readUInt32LE(4)).toBe(0);
      expect(head[9]).toBe(3);
    }
    // no temporary files left in the layout
    expect(readdirSync(join(SINGLE, "blobs/sha256")).sort()).toEqual(
      [
        ...new Set(
          [...single.layers.map((l) => l.digest), single.manifests[0]!.configDigest, single.digest].map((d) =>
            d.slice(7),
          ),
        ),
      ].sort(),
    );
    expect(readdirSync(SINGLE).sort()).toEqual(["blobs", "index.json", "oci-layout"]);
  });

  it("gives identical digests and a byte-identical oci-archive for the same inputs", async () => {
    need("skopeo", "tar");
    const a = await writeOciImage(
      { images: [image()], annotations: { "org.opencontainers.image.source": "kiln-test" } },
      join(WORK, "a.tar"),
      "oci-archive",
    );
    const b = await writeOciImage(
      // same content, different insertion order of labels and a Date instead of epoch seconds
      {
        images: [image({ labels: { "org.example.a": "1", "org.example.b": "2" }, created: new Date(CREATED * 1000) })],
        annotations: { "org.opencontainers.image.source": "kiln-test" },
      },
      join(WORK, "b.tar"),
      "oci-archive",
    );
    expect(a.digest).toBe(single.digest);
    expect(b.digest).toBe(single.digest);
    expect(b.layers).toEqual(a.layers);
    const ba = readFileSync(join(WORK, "a.tar"));
    expect(Buffer.compare(ba, readFileSync(join(WORK, "b.tar")))).toBe(0);
    // a different created time changes the config, hence the digest
    const c = await writeOciImage({ images: [image({ created: CREATED + 1 })] }, join(WORK, "c.tar"), "oci-archive");
    expect(c.digest).not.toBe(single.digest);
    expect(c.layers.map((l) => l.digest)).toEqual(single.layers.map((l) => l.digest));

    const listing = (await ok("tar", ["--numeric-owner", "-tvf", join(WORK, "a.tar")])).toString().trim().split("\n");
    const names = listing.map((l) => l.split(/\s+/).pop()!);
    expect(names).toEqual([...names].sort());
    expect(names.slice(0, 2)).toEqual(["blobs/", "blobs/sha256/"]);
    expect(names.slice(-2)).toEqual(["index.json", "oci-layout"]);
    for (const l of listing) expect(l).toMatch(/^\S+ 0\/0 .* 2023-11-14 /);

    const info = await okJson("skopeo", ["inspect", `oci-archive:${join(WORK, "a.tar")}:latest`]);
    expect(info.Digest).toBe(single.digest);
    // and the archive can be read in place
    const layout = await openOciLayout(join(WORK, "a.tar"));
    expect(layout.kind).toBe("archive");
    expect(layout.resolve().digest).toBe(single.digest);
    expect(sha256(await layout.readBlob(single.layers[1]!.digest))).toBe(single.layers[1]!.digest);
  });

  it("writes a docker-archive whose manifest.json names the config and the uncompressed layers", async () => {
    need("skopeo", "tar", "sha256sum");
    const file = join(WORK, "docker.tar");
    const r = await writeOciImage(
      { images: [image()], repository: "example.com/kiln/hello", tag: "1.0" },
      file,
      "docker-archive",
    );
    expect(r.warnings).toEqual([]);
    const manifest = JSON.parse((await ok("tar", ["-xOf", file, "manifest.json"])).toString());
    expect(manifest).toEqual([
      {
        Config: `${r.manifests[0]!.configDigest.slice(7)}.json`,
        RepoTags: ["example.com/kiln/hello:1.0"],
        Layers: r.layers.map((l) => `${l.diffId.slice(7)}.tar`),
      },
    ]);
    for (const [i, name] of (manifest[0].Layers as string[]).entries()) {
      const h = (await ok("sh", ["-c", 'tar -xOf "$1" "$2" | sha256sum', "sh", file, name])).toString().split(" ")[0];
      expect(`sha256:${h}`).toBe(r.layers[i]!.diffId);
    }
    const cfg = await ok("tar", ["-xOf", file, manifest[0].Config]);
    expect(sha256(cfg)).toBe(r.manifests[0]!.configDigest);
    const info = await okJson("skopeo", ["inspect", `docker-archive:${file}`]);
    expect(info.Architecture).toBe(ARCH);
    expect(info.Layers).toEqual(r.layers.map((l) => l.diffId));
    expect(info.Env).toEqual(["PATH=/usr/bin", "GREETING=hi"]);

    // several platforms: only one goes into a docker archive, and the result says so
    const multi = await writeOciImage(
      {
        images: [
          image(),
          image({ arch: ARCH === "arm64" ? "amd64" : "arm64", variant: ARCH === "arm64" ? undefined : "v8" }),
        ],
      },
      join(WORK, "docker-multi.tar"),
      "docker-archive",
    );
    expect(multi.dockerArch).toBe(`linux/${ARCH}`);
    expect(multi.warnings.join("\n")).toMatch(/holds one platform: wrote linux\/\S+, left out linux\//);
  });

  it("writes an image index for several platforms, sharing identical layers", async () => {
    need("skopeo", "umoci");
    const dir = join(WORK, "multi");
    const other = ARCH === "arm64" ? { arch: "amd64" } : { arch: "arm64", variant: "v8" };
    const r = await writeOciImage(
      {
        images: [
          image(),
          { ...image(), ...other, layers: [tarDir(BASE), tarDir(EXTRA)], history: undefined, annotations: undefined },
        ],
        tag: "v1",
        annotations: { "org.opencontainers.image.version": "1" },
      },
      dir,
      "oci",
    );
    expect(r.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    const raw = await ok("skopeo", ["inspect", "--raw", `oci:${dir}:v1`]);
    expect(sha256(raw)).toBe(r.digest);
    const index = JSON.parse(raw.toString());
    expect(index.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    expect(index.annotations).toEqual({ "org.opencontainers.image.version": "1" });
    expect(index.manifests.map((m: { platform: unknown }) => m.platform)).toEqual([
      { architecture: ARCH, os: "linux" },
      { os: "linux", ...(other.variant ? { variant: other.variant } : {}), architecture: other.arch },
    ]);
    expect(index.manifests.map((m: { digest: string }) => m.digest)).toEqual(r.manifests.map((m) => m.digest));
    // the host's image is the single-platform image (same config and layers; only the manifest annotations differ)
    expect(r.manifests[0]!.configDigest).toBe(single.manifests[0]!.configDigest);
    expect(r.layers.slice(0, 2)).toEqual(single.layers);
    expect(r.layers[2]!.digest).not.toBe(single.layers[1]!.digest);
    const layout = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
    expect(layout.manifests).toEqual([
      {
        mediaType: "application/vnd.oci.image.index.v1+json",
        digest: r.digest,
        size: r.size,
        annotations: { "org.opencontainers.image.ref.name": "v1" },
      },
    ]);
    // base layer shared: 3 distinct layers + 2 configs + 2 manifests + 1 index
    expect(readdirSync(join(dir, "blobs/sha256"))).toHaveLength(8);
    const otherInfo = await okJson("skopeo", [
      "--override-arch",
      other.arch,
      ...(other.variant ? ["--override-variant", other.variant] : []),
      "inspect",
      `oci:${dir}:v1`,
    ]);
    // skopeo reports the index digest and the chosen platform's layers
    expect(otherInfo.Digest).toBe(r.digest);
    expect(otherInfo.Architecture).toBe(other.arch);
    expect(otherInfo.Layers).toEqual(r.layers.filter((l) => l.arch === other.arch).map((l) => l.digest));
  });

  it("streams big layers instead of holding them in memory", async () => {
    const SIZE = 256 * 1024 * 1024;
    const CHUNK = 1024 * 1024;
    const seed = createHash("sha512");
    const block = Buffer.alloc(CHUNK);
    for (let off = 0; off < CHUNK; off += 64) seed.copy().update(String(off)).digest().copy(block, off);
    const hexBlock = Buffer.from(block.toString("hex").slice(0, CHUNK)); // compressible, but not trivially
    const big: LayerSource = () =>
      (async function* () {
        yield encodeHeader({ path: "big.bin", type: "file", mode: 0o644, uid: 0, gid: 0, size: SIZE, mtime: CREATED });
        for (let off = 0; off < SIZE; off += CHUNK) {
          const c = Buffer.from(hexBlock);
          c.writeUInt32BE(off / CHUNK, 0);
          yield c;
        }
        yield new Uint8Array(1024);
      })();
    let peak = 0;
    const base = process.memoryUsage().rss;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const started = Date.now();
    let r: OciWriteResult;
    try {
      r = await writeOciImage(
        { images: [image({ layers: [big], history: undefined })], compressionLevel: 1 },
        join(WORK, "big"),
        "oci",
      );
    } finally {
      clearInterval(timer);
    }
    expect(r.layers[0]!.uncompressedSize).toBe(SIZE + 512 + 1024);
    const grew = (peak - base) / 1024 / 1024;
    expect(
      grew,
      `RSS grew by ${grew.toFixed(0)} MiB for a ${SIZE / 1024 / 1024} MiB layer (${Date.now() - started} ms)`,
    ).toBeLessThan(96);
    rmSync(join(WORK, "big"), { recursive: true, force: true });
  });
});

// ---------------------------------------------------------------- failures

describe("writing failures leave nothing behind", () => {
  const siblings = (dir: string) => readdirSync(dir).sort();

  it("a layer stream that fails midway leaves no output and keeps an existing one", async () => {
    const dir = join(WORK, "fail");
    mkdirSync(dir);
    const failing: LayerSource = () =>
      (async function* () {
        yield new Uint8Array(512 * 64);
        throw new Error("disk on fire");
      })();
    for (const format of ["oci", "oci-archive", "docker-archive"] as const) {
      await expectOciError(
        writeOciImage(
          { images: [image({ layers: [tarDir(BASE), failing], history: undefined })] },
          join(dir, `out-${format}`),
          format,
        ),
        "INVALID_LAYER",
        /layer 1: the layer stream failed: disk on fire/,
      );
      expect(siblings(dir)).toEqual([]);
    }
    // an existing image stays as it was
    const prev = await writeOciImage({ images: [image()] }, join(dir, "keep"), "oci");
    await expectOciError(
      writeOciImage({ images: [image({ layers: [failing], history: undefined })] }, join(dir, "keep"), "oci"),
      "INVALID_LAYER",
      /disk on fire/,
    );
    expect(siblings(dir)).toEqual(["keep"]);
    expect((await openOciLayout(join(dir, "keep"))).resolve().digest).toBe(prev.digest);
    // replacing it with a good one works
    const again = await writeOciImage({ images: [image({ cmd: ["--other"] })] }, join(dir, "keep"), "oci");
    expect(siblings(dir)).toEqual(["keep"]);
    expect((await openOciLayout(join(dir, "keep"))).resolve().digest).toBe(again.digest);
  });

  it("an unwritable or missing output directory gives a clear error and creates nothing", async () => {
    const file = join(WORK, "a-file");
    writeFileSync(file, "x");
    await expectOciError(
      writeOciImage({ images: [image()] }, join(file, "img"), "oci"),
      "IO",
      /is not a directory|ENOTDIR/,
    );
    await expectOciError(
      writeOciImage({ images: [image()] }, join(WORK, "no/such/dir/img.tar"), "oci-archive"),
      "IO",
      /output directory .* is not accessible.*ENOENT/,
    );
    // /proc refuses new entries even to root
    await expectOciError(
      writeOciImage({ images: [image()] }, "/proc/kiln-image.tar", "oci-archive"),
      "IO",
      /cannot write \/proc\/kiln-image\.tar/,
    );
    expect(existsSync("/proc/kiln-image.tar")).toBe(false);
    if (process.getuid?.() !== 0) {
      const ro = join(WORK, "ro");
      mkdirSync(ro, { mode: 0o555 });
      await expectOciError(writeOciImage({ images: [image()] }, join(ro, "img"), "oci"), "IO", /EACCES/);
      expect(siblings(ro)).toEqual([]);
    }
    // the output path is a directory, so the final rename of an archive fails: temp removed, directory kept
    const dir = join(WORK, "is-a-dir");
    mkdirSync(join(dir, "img.tar"), { recursive: true });
    writeFileSync(join(dir, "img.tar", "mine"), "keep me");
    await expectOciError(
      writeOciImage({ images: [image()] }, join(dir, "img.tar"), "oci-archive"),
      "IO",
      /cannot write .*img\.tar/,
    );
    expect(siblings(dir)).toEqual(["img.tar"]);
    expect(readFileSync(join(dir, "img.tar", "mine"), "utf8")).toBe("keep me");
  });

  it("rejects malformed input with a clear message", async () => {
    const dir = join(WORK, "bad");
    mkdirSync(dir);
    const notTar: LayerSource = () =>
      (async function* () {
        yield new Uint8Array(100);
      })();
    const strings = (() =>
      (async function* () {
        yield "text";
      })()) as unknown as LayerSource;
    await expectOciError(
      writeOciImage({ images: [image({ layers: [notTar], history: undefined })] }, join(dir, "x"), "oci"),
      "INVALID_LAYER",
      /100 bytes is not a tar stream/,
    );
    await expectOciError(
      writeOciImage({ images: [image({ layers: [strings], history: undefined })] }, join(dir, "x"), "oci"),
      "INVALID_LAYER",
      /yielded a string/,
    );
    await expectOciError(
      writeOciImage({ images: [] }, join(dir, "x"), "oci"),
      "INVALID_INPUT",
      /at least one platform/,
    );
    await expectOciError(
      writeOciImage({ images: [image(), image()] }, join(dir, "x"), "oci"),
      "INVALID_INPUT",
      /platform linux\/\w+ given twice/,
    );
    await expectOciError(
      writeOciImage({ images: [image({ env: ["NOVALUE"] })] }, join(dir, "x"), "oci"),
      "INVALID_INPUT",
      /not KEY=VALUE/,
    );
    await expectOciError(
      writeOciImage({ images: [image({ created: "yesterday" })] }, join(dir, "x"), "oci"),
      "INVALID_INPUT",
      /invalid created time/,
    );
    await expectOciError(
      writeOciImage({ images: [image({ history: [{ createdBy: "one" }] })] }, join(dir, "x"), "oci"),
      "INVALID_INPUT",
      /history has 1 entries for 2 layers/,
    );
    expect(siblings(dir)).toEqual([]);
  });
});

// ---------------------------------------------------------------- registry

describe("registry push", () => {
  let open: Registry | undefined;
  let basic: Registry | undefined;
  let bearer: Registry | undefined;
  let tokenServer: Server | undefined;
  const tokenRequests: Array<{ user: string | null; service: string | null; scopes: string[] }> = [];

  beforeAll(async () => {
    need("docker-registry", "python3", "openssl");
    const [o, b] = await Promise.all([
      startRegistry(join(WORK, "reg-open")),
      (async () => {
        const dir = join(WORK, "reg-basic");
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, "htpasswd"), (await htpasswdLine("kiln", "s3cret")) + "\n");
        return startRegistry(
          dir,
          ["auth:", "  htpasswd:", "    realm: kiln-basic", `    path: ${join(dir, "htpasswd")}`].join("\n"),
        );
      })(),
    ]);
    open = o;
    basic = b;

    // Token auth: a self-signed signing certificate, a token server here, the registry trusting the certificate.
    const dir = join(WORK, "reg-bearer");
    mkdirSync(dir, { recursive: true });
    await ok("openssl", [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "cert.pem"),
      "-days",
      "2",
      "-subj",
      "/CN=kiln-test-token",
    ]);
    const key = createPrivateKey(readFileSync(join(dir, "key.pem")));
    const certDer = new X509Certificate(readFileSync(join(dir, "cert.pem"))).raw.toString("base64");
    const b64u = (x: string | Buffer) => Buffer.from(x).toString("base64url");
    tokenServer = createServer((req, res) => {
      const u = new URL(req.url ?? "/", "http://x");
      const auth = req.headers.authorization;
      const creds = auth?.startsWith("Basic ") ? Buffer.from(auth.slice(6), "base64").toString() : null;
      const scopes = u.searchParams.getAll("scope");
      tokenRequests.push({ user: creds?.split(":")[0] ?? null, service: u.searchParams.get("service"), scopes });
      if (creds !== "kiln:t0ken-pass") {
        res.writeHead(401, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            errors: [{ code: "UNAUTHORIZED", message: creds ? "bad username or password" : "authentication required" }],
          }),
        );
        return;
      }
      const now = Math.floor(Date.now() / 1000);
      const access = scopes.map((s) => {
        const [type, ...rest] = s.split(":");
        const actions = rest.pop()!;
        return { type, name: rest.join(":"), actions: actions.split(",") };
      });
      const header = b64u(JSON.stringify({ typ: "JWT", alg: "RS256", x5c: [certDer] }));
      const claims = b64u(
        JSON.stringify({
          iss: "kiln-test-issuer",
          sub: "kiln",
          aud: "kiln-test-registry",
          exp: now + 300,
          nbf: now - 10,
          iat: now,
          jti: String(Math.random()),
          access,
        }),
      );
      const signature = sign("sha256", Buffer.from(`${header}.${claims}`), key).toString("base64url");
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ token: `${header}.${claims}.${signature}`, expires_in: 300 }));
    });
    await new Promise<void>((r) => tokenServer!.listen(0, "127.0.0.1", () => r()));
    const tport = (tokenServer.address() as { port: number }).port;
    bearer = await startRegistry(
      dir,
      [
        "auth:",
        "  token:",
        `    realm: http://127.0.0.1:${tport}/token`,
        "    service: kiln-test-registry",
        "    issuer: kiln-test-issuer",
        `    rootcertbundle: ${join(dir, "cert.pem")}`,
      ].join("\n"),
    );
  }, 60_000);

  afterAll(async () => {
    stopRegistry(open);
    stopRegistry(basic);
    stopRegistry(bearer);
    await new Promise<void>((r) => (tokenServer ? tokenServer.close(() => r()) : r()));
  });

  it("pushes a layout; skopeo reads the same digest back; a second push uploads nothing", async () => {
    need("skopeo");
    const events: PushEvent[] = [];
    const r = await pushOciImage(single, `${open!.host}/test/img:latest`, {
      insecure: true,
      onEvent: (e) => events.push(e),
    });
    expect(r.digest).toBe(single.digest);
    expect(r.ref).toBe(`${open!.host}/test/img:latest`);
    expect(r.existingBlobs).toEqual([]);
    expect(r.pushedBlobs.sort()).toEqual(
      [single.manifests[0]!.configDigest, ...single.layers.map((l) => l.digest)].sort(),
    );
    expect(r.manifests).toEqual([single.digest]);
    expect(events.filter((e) => e.kind === "blob-pushed")).toHaveLength(3);

    const info = await okJson("skopeo", ["inspect", "--tls-verify=false", `docker://${open!.host}/test/img:latest`]);
    expect(info.Digest).toBe(single.digest);
    expect(info.Layers).toEqual(single.layers.map((l) => l.digest));
    const raw = await ok("skopeo", [
      "inspect",
      "--raw",
      "--tls-verify=false",
      `docker://${open!.host}/test/img:latest`,
    ]);
    expect(sha256(raw)).toBe(single.digest);
    expect(Buffer.compare(raw, readFileSync(join(SINGLE, "blobs/sha256", single.digest.slice(7))))).toBe(0);

    const again = await pushOciImage(SINGLE, `${open!.host}/test/img:latest`, { insecure: true });
    expect(again.digest).toBe(single.digest);
    expect(again.pushedBlobs).toEqual([]);
    expect(again.existingBlobs).toHaveLength(3);
  });

  it("pushes a multi-platform image from an oci-archive, index last, and big blobs in PATCH chunks", async () => {
    need("skopeo");
    const other = ARCH === "arm64" ? { arch: "amd64" } : { arch: "arm64", variant: "v8" };
    // a 3 MiB layer of incompressible bytes, pushed with a 1 MiB chunk threshold
    const noise = Buffer.alloc(3 * 1024 * 1024);
    for (let off = 0; off < noise.length; off += 64) createHash("sha512").update(String(off)).digest().copy(noise, off);
    const noiseLayer: LayerSource = () =>
      (async function* () {
        yield encodeHeader({
          path: "noise.bin",
          type: "file",
          mode: 0o644,
          uid: 0,
          gid: 0,
          size: noise.length,
          mtime: CREATED,
        });
        yield noise;
        yield new Uint8Array(1024);
      })();
    const archive = join(WORK, "multi-push.tar");
    const w = await writeOciImage(
      {
        images: [image(), { ...image(), ...other, layers: [tarDir(BASE), noiseLayer], history: undefined }],
        tag: "v2",
      },
      archive,
      "oci-archive",
    );
    const events: PushEvent[] = [];
    const r = await pushOciImage(archive, `${open!.host}/test/multi:v2`, {
      insecure: true,
      chunkThreshold: 1024 * 1024,
      chunkSize: 512 * 1024,
      onEvent: (e) => events.push(e),
    });
    expect(r.digest).toBe(w.digest);
    const noiseDigest = w.layers.find((l) => l.arch === other.arch && l.diffId !== w.layers[0]!.diffId)!.digest;
    const noiseEvent = events.find((e) => e.kind === "blob-pushed" && e.digest === noiseDigest) as Extract<
      PushEvent,
      { kind: "blob-pushed" }
    >;
    expect(noiseEvent.chunks).toBe(Math.ceil(noiseEvent.size / (512 * 1024)));
    expect(noiseEvent.chunks).toBeGreaterThan(1);
    const manifestEvents = events.filter((e) => e.kind === "manifest-pushed") as Array<
      Extract<PushEvent, { kind: "manifest-pushed" }>
    >;
    expect(manifestEvents.map((e) => e.reference)).toEqual([...w.manifests.map((m) => m.digest), "v2"]);

    const raw = await ok("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${open!.host}/test/multi:v2`]);
    expect(sha256(raw)).toBe(w.digest);
    expect(
      JSON.parse(raw.toString()).manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture),
    ).toEqual([ARCH, other.arch]);
    // skopeo downloads the other platform and checks every blob against its digest
    const copied = join(WORK, "copied");
    await ok("skopeo", [
      "--override-arch",
      other.arch,
      ...(other.variant ? ["--override-variant", other.variant] : []),
      "copy",
      "--src-tls-verify=false",
      `docker://${open!.host}/test/multi:v2`,
      `oci:${copied}:x`,
    ]);
    expect(readFileSync(join(copied, "blobs/sha256", noiseDigest.slice(7))).length).toBe(noiseEvent.size);
    const info = await okJson("skopeo", ["inspect", `oci:${copied}:x`]);
    expect(info.Digest).toBe(w.manifests[1]!.digest);
  });

  it("Basic auth: fails clearly without or with wrong credentials, succeeds with them", async () => {
    need("skopeo");
    const ref = `${basic!.host}/test/img:latest`;
    await expectOciError(
      pushOciImage(single, ref, { insecure: true }),
      "AUTH",
      /registry 127\.0\.0\.1:\d+ requires authentication \(Basic realm="kiln-basic"\); no credentials were given/,
    );
    await expectOciError(
      pushOciImage(single, ref, { insecure: true, username: "kiln", password: "wrong" }),
      "AUTH",
      /rejected the credentials/,
    );
    const r = await pushOciImage(single, ref, { insecure: true, username: "kiln", password: "s3cret" });
    expect(r.digest).toBe(single.digest);
    expect(r.pushedBlobs).toHaveLength(3);
    const info = await okJson("skopeo", ["inspect", "--tls-verify=false", "--creds", "kiln:s3cret", `docker://${ref}`]);
    expect(info.Digest).toBe(single.digest);
    const denied = await run("skopeo", ["inspect", "--tls-verify=false", "--no-creds", `docker://${ref}`]);
    expect(denied.code).not.toBe(0);
  });

  it("Bearer auth: fetches a token from the realm with the credentials and pushes", async () => {
    need("skopeo");
    const ref = `${bearer!.host}/test/img:latest`;
    tokenRequests.length = 0;
    await expectOciError(
      pushOciImage(single, ref, { insecure: true }),
      "AUTH",
      /token service http:\/\/127\.0\.0\.1:\d+\/token refused anonymous access: 401.*authentication required/,
    );
    await expectOciError(
      pushOciImage(single, ref, { insecure: true, username: "kiln", password: "nope" }),
      "AUTH",
      /refused user "kiln": 401.*bad username or password/,
    );
    const n = tokenRequests.length;
    const r = await pushOciImage(single, ref, { insecure: true, username: "kiln", password: "t0ken-pass" });
    expect(r.digest).toBe(single.digest);
    // one token, with push scope, for the whole push
    expect(tokenRequests.slice(n)).toEqual([
      { user: "kiln", service: "kiln-test-registry", scopes: ["repository:test/img:pull,push"] },
    ]);
    const info = await okJson("skopeo", [
      "inspect",
      "--tls-verify=false",
      "--creds",
      "kiln:t0ken-pass",
      `docker://${ref}`,
    ]);
    expect(info.Digest).toBe(single.digest);
    // a token given up front is used as is
    const grab = await fetch(
      `http://127.0.0.1:${(tokenServer!.address() as { port: number }).port}/token?service=kiln-test-registry&scope=repository:test/img:pull,push`,
      {
        headers: { authorization: `Basic ${Buffer.from("kiln:t0ken-pass").toString("base64")}` },
      },
    );
    const { token } = (await grab.json()) as { token: string };
    const before = tokenRequests.length;
    const again = await pushOciImage(SINGLE, ref, { insecure: true, token });
    expect(again.pushedBlobs).toEqual([]);
    expect(tokenRequests.length).toBe(before);
  });

  it("retries 5xx answers and dropped connections, within bounds", async () => {
    need("skopeo");
    // each distinct request fails once (503, or a dropped connection for GETs); uploads restart from POST
    const seen = new Set<string>();
    const proxy = await faultyProxy(open!.port, (method, url) => {
      const key = `${method} ${url.pathname.replace(/\/uploads\/.+$/, "/uploads/*")} ${url.searchParams.get("digest") ?? ""}`;
      if (seen.has(key)) return undefined;
      seen.add(key);
      return method === "GET" ? "drop" : "503";
    });
    try {
      const r = await pushOciImage(single, `127.0.0.1:${proxy.port}/test/flaky:latest`, {
        insecure: true,
        backoffMs: 5,
      });
      expect(r.digest).toBe(single.digest);
      expect(proxy.faults).toEqual(
        expect.arrayContaining([
          "drop GET /v2/",
          `503 HEAD /v2/test/flaky/blobs/${single.layers[0]!.digest}`,
          "503 POST /v2/test/flaky/blobs/uploads/",
          "503 PUT /v2/test/flaky/manifests/latest",
        ]),
      );
      expect(proxy.faults.filter((f) => f.startsWith("503 PUT /v2/test/flaky/blobs/uploads/"))).toHaveLength(3);
      const info = await okJson("skopeo", [
        "inspect",
        "--tls-verify=false",
        `docker://${open!.host}/test/flaky:latest`,
      ]);
      expect(info.Digest).toBe(single.digest);
    } finally {
      proxy.server.close();
    }
    // a registry that keeps failing: a clear error after the bounded retries
    const down = await faultyProxy(open!.port, (method) => (method === "HEAD" ? "503" : undefined));
    try {
      const started = Date.now();
      await expectOciError(
        pushOciImage(single, `127.0.0.1:${down.port}/test/down:latest`, { insecure: true, retries: 3, backoffMs: 5 }),
        "REGISTRY",
        /HEAD .*\/blobs\/sha256:[0-9a-f]{64}: registry answered 503 Service Unavailable \(after 4 attempts\)/,
      );
      expect(down.faults).toHaveLength(4);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      down.server.close();
    }
  });

  it("a closed port or a bad reference gives a clear error", async () => {
    const port = await freePort();
    const started = Date.now();
    await expectOciError(
      pushOciImage(single, `127.0.0.1:${port}/test/img:latest`, { insecure: true, retries: 2, backoffMs: 20 }),
      "NETWORK",
      new RegExp(
        `cannot reach registry 127\\.0\\.0\\.1:${port} \\(GET http://127\\.0\\.0\\.1:${port}/v2/\\): .*ECONNREFUSED.*after 3 attempts`,
      ),
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    await expectOciError(
      pushOciImage(single, "127.0.0.1:1/Test/IMG:latest", { insecure: true }),
      "INVALID_INPUT",
      /repository "Test\/IMG" must be lowercase/,
    );
    await expectOciError(
      pushOciImage(join(WORK, "nowhere"), `${open!.host}/test/img`, { insecure: true }),
      "BAD_LAYOUT",
      /cannot open OCI layout .*ENOENT/,
    );
    await expectOciError(
      pushOciImage({ ...single, format: "docker-archive" }, `${open!.host}/test/img`, { insecure: true }),
      "INVALID_INPUT",
      /cannot push a docker-archive/,
    );
  });

  it("parses references and challenges", () => {
    expect(parseImageRef("127.0.0.1:5000/test/img:1.0")).toEqual({
      registry: "127.0.0.1:5000",
      repository: "test/img",
      tag: "1.0",
    });
    expect(parseImageRef("localhost/a")).toEqual({ registry: "localhost", repository: "a", tag: "latest" });
    expect(parseImageRef("alpine")).toEqual({ registry: "docker.io", repository: "library/alpine", tag: "latest" });
    expect(parseImageRef(`ghcr.io/o/r@sha256:${"a".repeat(64)}`)).toEqual({
      registry: "ghcr.io",
      repository: "o/r",
      digest: `sha256:${"a".repeat(64)}`,
    });
    expect(
      parseWwwAuthenticate(
        'Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull,push"',
      ),
    ).toEqual([
      {
        scheme: "bearer",
        params: { realm: "https://auth.example/token", service: "reg.example", scope: "repository:a/b:pull,push" },
      },
    ]);
    expect(parseWwwAuthenticate('Basic realm="x\\"y", charset="UTF-8"')).toEqual([
      { scheme: "basic", params: { realm: 'x"y', charset: "UTF-8" } },
    ]);
  });
});
