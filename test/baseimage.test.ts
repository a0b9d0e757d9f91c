// apko's contents.baseimage, built for real: a base image is built with kiln
// from a repository the test makes and signs, its installed database becomes
// the base's ARCH/APKINDEX (as apko's on_top_of_base example prepares it),
// and a config with contents.baseimage adds packages on top. The layers are
// read with GNU tar, the layout with umoci and skopeo when they are installed.
// Hostile layouts (a tampered, missing or escaping blob, a wrong media type)
// are refused with one error and nothing written.

import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kiln } from "./helpers/cli.js";
import { baseLayoutEntries, makeKey, makeRepo, type TestKey } from "./helpers/fixtures.js";

const HAVE_UMOCI = spawnSync("umoci", ["--version"]).status === 0;
const HAVE_SKOPEO = spawnSync("skopeo", ["--version"]).status === 0;

let work: string;
let key: TestKey;
let repo: string;

function write(name: string, text: string): string {
  const f = join(work, name);
  mkdirSync(join(f, ".."), { recursive: true });
  writeFileSync(f, text);
  return f;
}

const blobPath = (layout: string, d: string) => join(layout, "blobs/sha256", d.replace(/^sha256:/, ""));
const json = (file: string) => JSON.parse(readFileSync(file, "utf8"));

function readImage(layout: string) {
  const index = json(join(layout, "index.json"));
  const manifest = json(blobPath(layout, index.manifests[0].digest));
  const config = json(blobPath(layout, manifest.config.digest));
  return { index, manifest, config };
}

const listLayer = (file: string) =>
  execFileSync("tar", ["-tzf", file], { encoding: "utf8" })
    .trim()
    .split("\n")
    .map((l) => l.replace(/\/$/, ""));
const layerFile = (file: string, path: string) => execFileSync("tar", ["-xOzf", file, path], { encoding: "utf8" });

function build(cfg: string, out: string): { status: number; stderr: string; digest?: string } {
  const r = kiln(["image", "build", cfg, out, "--json"]);
  return { status: r.status, stderr: r.stderr, ...(r.status === 0 ? { digest: JSON.parse(r.stdout).digest } : {}) };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-baseimage-"));
  key = await makeKey(work);
  repo = join(work, "repo");
  await makeRepo(repo, key.key, [
    { name: "baselayout", entries: baseLayoutEntries() },
    { name: "libfoo", entries: [{ path: "usr/lib/libfoo.so.1", type: "file", content: "foo library\n" }] },
    {
      name: "tool",
      entries: [{ path: "usr/bin/tool", type: "file", mode: 0o755, content: "#!/bin/sh\necho tool\n" }],
      info: { depends: ["libfoo", "libbar"] },
    },
    { name: "libbar", entries: [{ path: "usr/lib/libbar.so.2", type: "file", content: "bar library\n" }] },
  ]);
  const contents = `repositories: [${repo}]\n  keyring: [${key.publicPath}]`;
  write(
    "base.yaml",
    `contents:
  ${contents}
  packages: [baselayout, libfoo]
entrypoint: {command: /usr/bin/tool --serve}
cmd: --port 8080
work-dir: /srv
stop-signal: SIGQUIT
accounts: {run-as: root}
environment: {BASE_ONLY: "1"}
volumes: [/data]
archs: [x86_64]
`,
  );
  const r = build(join(work, "base.yaml"), join(work, "base-oci"));
  expect(r.status, r.stderr).toBe(0);
  // As apko's example prepares it: the base's installed database is its APKINDEX.
  const base = readImage(join(work, "base-oci"));
  write(
    "apkindex/x86_64/APKINDEX",
    layerFile(blobPath(join(work, "base-oci"), base.manifest.layers[0].digest), "usr/lib/apk/db/installed"),
  );
  write(
    "top.yaml",
    `contents:
  ${contents}
  baseimage: {image: ./base-oci, apkindex: ./apkindex}
  # libfoo is in the base already and is not added again
  packages: [libfoo, tool]
archs: [x86_64]
`,
  );
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("an image built on contents.baseimage", () => {
  let base: ReturnType<typeof readImage>;
  let top: ReturnType<typeof readImage>;
  let digest: string | undefined;
  let newLayer: string;

  beforeAll(() => {
    const r = build(join(work, "top.yaml"), join(work, "top-oci"));
    expect(r.status, r.stderr).toBe(0);
    digest = r.digest;
    base = readImage(join(work, "base-oci"));
    top = readImage(join(work, "top-oci"));
    newLayer = blobPath(join(work, "top-oci"), top.manifest.layers[1].digest);
  });

  it("the base's layer comes first, the same blob (digest, size, media type, bytes), then one new layer", () => {
    expect(top.manifest.layers).toHaveLength(2);
    expect(top.manifest.layers[0]).toEqual(base.manifest.layers[0]);
    const d = base.manifest.layers[0].digest;
    expect(readFileSync(blobPath(join(work, "top-oci"), d))).toEqual(readFileSync(blobPath(join(work, "base-oci"), d)));
    expect(top.config.rootfs.diff_ids[0]).toBe(base.config.rootfs.diff_ids[0]);
    expect(top.config.rootfs.diff_ids).toHaveLength(2);
    expect(top.config.history).toHaveLength(2);
    expect(top.config.history[0]).toEqual(base.config.history[0]);
  });

  it("the new layer holds the new packages' files only, not the base's packages again", () => {
    const files = listLayer(newLayer);
    expect(files).toContain("usr/bin/tool");
    expect(files).toContain("usr/lib/libbar.so.2");
    expect(files).not.toContain("usr/lib/libfoo.so.1");
    expect(files).not.toContain("etc/passwd"); // baselayout's, and the accounts are the base's
    expect(files).not.toContain("etc/group");
    // the base's merged-usr link stays a link: the apk database went to usr/lib, not to a new /lib directory
    const verbose = execFileSync("tar", ["-tvzf", newLayer], { encoding: "utf8" });
    expect(verbose).toMatch(/^l\S+ .* lib -> usr\/lib$/m);
    expect(verbose).not.toMatch(/^d\S+ .* lib\/$/m);
    expect(files).toContain("usr/lib/apk/db/installed");
  });

  it("the installed database lists the base's packages and the new ones; the world names the base's at their versions", () => {
    const db = layerFile(newLayer, "usr/lib/apk/db/installed");
    const names = [...db.matchAll(/^P:(.*)$/gm)].map((m) => m[1]);
    expect(names).toEqual(["baselayout", "libbar", "libfoo", "tool"]);
    // the base's entries keep their file lists
    expect(db).toMatch(/P:libfoo\n(?:.*\n)*?R:libfoo\.so\.1/);
    const world = layerFile(newLayer, "etc/apk/world").trim().split("\n");
    expect(world).toEqual(expect.arrayContaining(["tool", "libfoo", "baselayout=1.0-r0", "libfoo=1.0-r0"]));
  });

  it("the config keeps the base's process settings; the environment is apko's defaults, not the base's", () => {
    const b = base.config.config;
    const c = top.config.config;
    expect(c.Entrypoint).toEqual(["/usr/bin/tool", "--serve"]);
    for (const k of ["Entrypoint", "Cmd", "WorkingDir", "User", "StopSignal", "Volumes"]) expect(c[k]).toEqual(b[k]);
    expect(b.Env).toContain("BASE_ONLY=1");
    expect(c.Env).not.toContain("BASE_ONLY=1");
    expect(c.Env).toContain("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt");
    expect(top.config.architecture).toBe("amd64");
  });

  it("the same inputs give the same digest", () => {
    const again = build(join(work, "top.yaml"), join(work, "top-again-oci"));
    expect(again.status, again.stderr).toBe(0);
    expect(again.digest).toBe(digest);
  });

  it("a lock file lists only the packages installed on the base, and building from it gives the same digest", () => {
    const lockFile = join(work, "top.lock.json");
    const l = kiln(["image", "lock", join(work, "top.yaml"), "-o", lockFile]);
    expect(l.status, l.stderr).toBe(0);
    const lock = json(lockFile);
    expect(lock.contents.x86_64.map((e: { name: string }) => e.name).sort()).toEqual(["libbar", "tool"]);
    const r = kiln([
      "image",
      "build",
      join(work, "top.yaml"),
      join(work, "top-locked-oci"),
      "--lockfile",
      lockFile,
      "--json",
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).digest).toBe(digest);
  });

  it("a docker-archive of it holds the base's layer tar and the new one, named by diff ID", () => {
    const out = join(work, "top.docker.tar");
    const r = kiln(["image", "build", join(work, "top.yaml"), out, "--format", "docker-archive"]);
    expect(r.status, r.stderr).toBe(0);
    const manifest = JSON.parse(execFileSync("tar", ["-xOf", out, "manifest.json"], { encoding: "utf8" }));
    expect(manifest[0].Layers).toEqual(top.config.rootfs.diff_ids.map((d: string) => `${d.slice(7)}.tar`));
  });

  it("relative paths are also looked for in --include-paths (after the config's directory and the current one)", () => {
    const cfg = write(
      "sub/inc.yaml",
      readFileSync(join(work, "top.yaml"), "utf8").replace(/\.\/(base-oci|apkindex)/g, "$1"),
    );
    const refused = kiln(["image", "build", cfg, join(work, "inc-oci")]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/sub\/inc\.yaml: contents\.baseimage\.image: "base-oci": no such directory beside/);
    const r = kiln(["image", "build", cfg, join(work, "inc-oci"), "--include-paths", work, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(readImage(join(work, "inc-oci")).manifest.layers[0]).toEqual(base.manifest.layers[0]);
  });

  it.skipIf(!HAVE_UMOCI)(
    "umoci unpacks it to the base's files with the new ones on top (skipped without umoci)",
    () => {
      const bundle = join(work, "bundle");
      execFileSync("umoci", ["unpack", "--rootless", "--image", `${join(work, "top-oci")}:latest`, bundle], {
        stdio: "pipe",
      });
      const rootfs = join(bundle, "rootfs");
      expect(readFileSync(join(rootfs, "usr/lib/libfoo.so.1"), "utf8")).toBe("foo library\n");
      expect(readFileSync(join(rootfs, "usr/bin/tool"), "utf8")).toBe("#!/bin/sh\necho tool\n");
      expect(readFileSync(join(rootfs, "etc/passwd"), "utf8")).toMatch(/^root:x:0:0:/);
    },
  );

  it.skipIf(!HAVE_SKOPEO)("skopeo reads the layout and its two layers (skipped without skopeo)", () => {
    const info = JSON.parse(
      execFileSync("skopeo", ["inspect", `oci:${join(work, "top-oci")}:latest`], { encoding: "utf8" }),
    );
    expect(info.Layers).toEqual(top.manifest.layers.map((l: { digest: string }) => l.digest));
  });
});

describe("hostile base layouts: one clear error, nothing written", () => {
  let n = 0;
  /** A copy of the base layout changed by EDIT, and a config on it. */
  function variant(edit: (layout: string) => void, image?: string): string {
    const name = `bad${++n}`;
    const layout = join(work, `${name}-oci`);
    cpSync(join(work, "base-oci"), layout, { recursive: true });
    edit(layout);
    return write(
      `${name}.yaml`,
      `contents:\n  repositories: [${repo}]\n  keyring: [${key.publicPath}]\n  baseimage: {image: ${image ?? `./${name}-oci`}, apkindex: ./apkindex}\n  packages: [tool]\n`,
    );
  }
  function fails(cfg: string, expected: RegExp) {
    const out = join(work, "refused-oci");
    const r = kiln(["image", "build", cfg, out]);
    expect(r.status, r.stdout).toBe(1);
    expect(r.stderr).toMatch(expected);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).not.toMatch(/internal error| {4}at /);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((x) => x.startsWith("refused-oci"))).toEqual([]);
  }
  const manifestOf = (layout: string) => json(join(layout, "index.json")).manifests[0].digest as string;
  /** Replace the manifest by EDIT(manifest), index.json pointing at the new one. */
  function rewriteManifest(layout: string, edit: (m: Record<string, unknown>) => void) {
    const m = json(blobPath(layout, manifestOf(layout)));
    edit(m);
    const bytes = Buffer.from(JSON.stringify(m));
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    writeFileSync(blobPath(layout, digest), bytes);
    const index = json(join(layout, "index.json"));
    index.manifests[0] = { ...index.manifests[0], digest, size: bytes.length };
    writeFileSync(join(layout, "index.json"), JSON.stringify(index));
  }

  it("a layer blob whose bytes were changed", () => {
    const cfg = variant((l) => {
      const f = blobPath(l, json(blobPath(l, manifestOf(l))).layers[0].digest);
      const b = readFileSync(f);
      b[b.length >> 1] ^= 0xff;
      writeFileSync(f, b);
    });
    fails(
      cfg,
      /bad1\.yaml: contents\.baseimage\.image .*bad1-oci: blob sha256:[0-9a-f]{64} does not match its digest \(its content hashes to sha256:[0-9a-f]{64}\)/,
    );
  });

  it("a missing config blob", () => {
    const cfg = variant((l) => unlinkSync(blobPath(l, json(blobPath(l, manifestOf(l))).config.digest)));
    fails(cfg, /bad2\.yaml: contents\.baseimage\.image .*bad2-oci: config: blobs\/sha256\/[0-9a-f]{64} is missing/);
  });

  it("a layout outside the config's directory, the current directory and the include paths", () => {
    const outside = mkdtempSync(join(tmpdir(), "kiln-baseimage-outside-"));
    try {
      cpSync(join(work, "base-oci"), join(outside, "oci"), { recursive: true });
      const cfg = variant(() => undefined, join(outside, "oci"));
      fails(cfg, /bad3\.yaml: contents\.baseimage\.image: ".*oci" resolves to .*, outside the config's directory/);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it("a blob that is a link out of the layout", () => {
    const cfg = variant((l) => {
      const f = blobPath(l, json(blobPath(l, manifestOf(l))).config.digest);
      unlinkSync(f);
      execFileSync("ln", ["-s", "/etc/hostname", f]);
    });
    fails(
      cfg,
      /bad4\.yaml: contents\.baseimage\.image .*bad4-oci: config: blobs\/sha256\/[0-9a-f]{64} resolves to \/etc\/hostname, outside/,
    );
  });

  it("a layer whose media type is not a gzip tar", () => {
    const cfg = variant((l) =>
      rewriteManifest(l, (m) => {
        (m.layers as Array<{ mediaType: string }>)[0]!.mediaType = "application/vnd.oci.image.layer.v1.tar+zstd";
      }),
    );
    fails(
      cfg,
      /bad5\.yaml: contents\.baseimage\.image .*: layer 0 has media type "application\/vnd\.oci\.image\.layer\.v1\.tar\+zstd"; a base layer must be a gzip tar/,
    );
  });

  it("a layout without an image for the architecture", () => {
    const cfg = variant(() => undefined);
    writeFileSync(cfg, readFileSync(cfg, "utf8") + "archs: [aarch64]\n");
    fails(cfg, /bad6\.yaml: contents\.baseimage\.image .*: no image for aarch64 \(arm64\); the layout has amd64/);
  });

  it("a base image without apkindex", () => {
    const cfg = variant(() => undefined);
    writeFileSync(cfg, readFileSync(cfg, "utf8").replace(", apkindex: ./apkindex", ""));
    fails(cfg, /bad7\.yaml: contents\.baseimage\.apkindex: required to build/);
  });
});
