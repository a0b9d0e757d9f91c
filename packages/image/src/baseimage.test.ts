// loadBaseImage on layouts written here with kiln's OCI writer: the manifest
// picked per architecture (from the index's platforms, or a nested index as
// crane and apko write it), the base's directory links read from its layers
// (whiteouts honoured, long names through pax), and the refusals: a diff ID
// that does not match, not an OCI layout, a relative path leaving the allowed
// directories, a missing ARCH/APKINDEX, a layer larger than the budget.

import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeHeader, type TarHeader } from "@kiln/apk";
import { loadBaseImage } from "./baseimage.js";
import type { ImageConfig } from "./config.js";
import { writeOciImage } from "./oci/write.js";
import { TarScanner } from "./oci/tar-scan.js";

let work: string;

function tarOf(entries: Array<Partial<TarHeader> & { path: string; type: TarHeader["type"]; body?: string }>): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? "");
    const { body: _b, ...h } = e;
    parts.push(encodeHeader({ mode: 0o755, uid: 0, gid: 0, mtime: 0, ...h, size: body.length }));
    if (body.length) parts.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const LOWER = tarOf([
  { path: "usr/", type: "dir" },
  { path: "usr/lib/", type: "dir" },
  { path: "usr/bin/", type: "dir" },
  { path: "lib", type: "symlink", linkTarget: "usr/lib" },
  { path: "bin", type: "symlink", linkTarget: "/usr/bin" },
  { path: "lib64", type: "symlink", linkTarget: "lib" },
  { path: "usr/bin/sh", type: "file", body: "#!/bin/true\n" },
  { path: "etc/", type: "dir" },
  { path: "etc/localtime", type: "symlink", linkTarget: "../usr/share/zoneinfo/UTC" },
  { path: "old", type: "symlink", linkTarget: "usr" },
  { path: `deep/${"d".repeat(120)}/`, type: "dir" },
  { path: "long", type: "symlink", linkTarget: `deep/${"d".repeat(120)}` },
]);
const UPPER = tarOf([{ path: ".wh.old", type: "file" }]);

const cfgAt = (file: string, apkindex?: string): ImageConfig =>
  ({ file, baseImage: { image: "./layout", ...(apkindex !== undefined ? { apkindex } : {}) } }) as ImageConfig;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-baseimage-unit-"));
  mkdirSync(join(work, "cfg"));
  mkdirSync(join(work, "nested"));
  const img = (arch: string) => ({
    arch,
    created: 0,
    layers: [
      () =>
        (async function* () {
          yield LOWER;
        })(),
      () =>
        (async function* () {
          yield UPPER;
        })(),
    ],
    entrypoint: ["/bin/sh"],
  });
  await writeOciImage({ images: [img("amd64"), { ...img("arm64"), variant: "v8" }] }, join(work, "cfg/layout"));
  mkdirSync(join(work, "cfg/idx/x86_64"), { recursive: true });
  writeFileSync(join(work, "cfg/idx/x86_64/APKINDEX"), "P:busybox\nV:1.36-r0\nA:x86_64\n\nP:musl\nV:1.2-r1\n\n");
  mkdirSync(join(work, "cfg/idx/aarch64"), { recursive: true });
  writeFileSync(join(work, "cfg/idx/aarch64/APKINDEX"), "P:busybox\nV:1.36-r0\n\n");
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const opts = () => ({ cwd: work, maxBytes: 1 << 30 });

describe("loadBaseImage", () => {
  it("picks each architecture's manifest of a multi-platform layout, with its layers, config and packages", async () => {
    const cfg = cfgAt(join(work, "cfg/image.yaml"), "./idx");
    const amd = await loadBaseImage(cfg, "x86_64", opts());
    const arm = await loadBaseImage(cfg, "aarch64", opts());
    expect(amd.config.architecture).toBe("amd64");
    expect(arm.config.architecture).toBe("arm64");
    expect(amd.manifestDigest).not.toBe(arm.manifestDigest);
    expect(amd.layers).toHaveLength(2);
    expect(amd.layers[0]!.diffId).toBe(`sha256:${createHash("sha256").update(LOWER).digest("hex")}`);
    expect(amd.layers[0]!.uncompressedSize).toBe(LOWER.length);
    expect(amd.installed.map((p) => `${p.record.name}-${p.record.version}`)).toEqual([
      "busybox-1.36-r0",
      "musl-1.2-r1",
    ]);
    expect(arm.installed.map((p) => p.record.name)).toEqual(["busybox"]);
  });

  it("keeps the links to directories, through links and long names, less what a whiteout removed", async () => {
    const b = await loadBaseImage(cfgAt(join(work, "cfg/image.yaml"), "./idx"), "x86_64", opts());
    expect(Object.fromEntries([...b.dirLinks].map(([p, l]) => [p, l.target]))).toEqual({
      lib: "usr/lib",
      bin: "/usr/bin",
      lib64: "lib",
      long: `deep/${"d".repeat(120)}`,
    });
  });

  it("follows an index nested in index.json, as crane writes it", async () => {
    await writeOciImage(
      {
        images: [
          {
            arch: "amd64",
            created: 0,
            layers: [
              () =>
                (async function* () {
                  yield LOWER;
                })(),
            ],
          },
        ],
      },
      join(work, "nested/single"),
    );
    // wrap the single manifest into an index blob, referenced from index.json
    const single = join(work, "nested/single");
    const top = JSON.parse(readFileSync(join(single, "index.json"), "utf8")).manifests[0];
    const ix = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [top] }),
    );
    const hex = createHash("sha256").update(ix).digest("hex");
    writeFileSync(join(single, "blobs/sha256", hex), ix);
    writeFileSync(
      join(single, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: "application/vnd.oci.image.index.v1+json", digest: `sha256:${hex}`, size: ix.length }],
      }),
    );
    const b = await loadBaseImage(
      {
        file: join(work, "nested/image.yaml"),
        baseImage: { image: "./single", apkindex: "../cfg/idx" },
      } as ImageConfig,
      "x86_64",
      opts(),
    );
    expect(b.layers).toHaveLength(1);
    expect(b.manifestDigest).toBe(top.digest);
  });

  it("refuses a diff ID that does not match, naming both", async () => {
    const l = join(work, "cfg/badiff");
    await writeOciImage(
      {
        images: [
          {
            arch: "amd64",
            created: 0,
            layers: [
              () =>
                (async function* () {
                  yield LOWER;
                })(),
            ],
          },
        ],
      },
      l,
    );
    const index = JSON.parse(readFileSync(join(l, "index.json"), "utf8"));
    const mPath = join(l, "blobs/sha256", index.manifests[0].digest.slice(7));
    const m = JSON.parse(readFileSync(mPath, "utf8"));
    const c = JSON.parse(readFileSync(join(l, "blobs/sha256", m.config.digest.slice(7)), "utf8"));
    c.rootfs.diff_ids = [`sha256:${"0".repeat(64)}`];
    const cb = Buffer.from(JSON.stringify(c));
    const ch = createHash("sha256").update(cb).digest("hex");
    writeFileSync(join(l, "blobs/sha256", ch), cb);
    m.config = { ...m.config, digest: `sha256:${ch}`, size: cb.length };
    const mb = Buffer.from(JSON.stringify(m));
    const mh = createHash("sha256").update(mb).digest("hex");
    writeFileSync(join(l, "blobs/sha256", mh), mb);
    index.manifests[0] = { ...index.manifests[0], digest: `sha256:${mh}`, size: mb.length };
    writeFileSync(join(l, "index.json"), JSON.stringify(index));
    const cfg = {
      file: join(work, "cfg/image.yaml"),
      baseImage: { image: "./badiff", apkindex: "./idx" },
    } as ImageConfig;
    await expect(loadBaseImage(cfg, "x86_64", opts())).rejects.toThrow(
      new RegExp(`layer sha256:[0-9a-f]{64} decompresses to sha256:[0-9a-f]{64}, the config's diff ID is sha256:0{64}`),
    );
  });

  it("refuses a directory that is not an OCI layout, a path leaving the allowed places, a missing APKINDEX, an oversized base", async () => {
    mkdirSync(join(work, "cfg/empty"), { recursive: true });
    const at = (image: string, apkindex = "./idx") =>
      ({ file: join(work, "cfg/image.yaml"), baseImage: { image, apkindex } }) as ImageConfig;
    await expect(loadBaseImage(at("./empty"), "x86_64", opts())).rejects.toThrow(
      /contents\.baseimage\.image .*empty: oci-layout is missing/,
    );
    const outside = mkdtempSync(join(tmpdir(), "kiln-baseimage-unit-outside-"));
    try {
      await expect(
        loadBaseImage(at(`../../${outside.split("/").pop()}`), "x86_64", { cwd: join(work, "cfg"), maxBytes: 1 << 30 }),
      ).rejects.toThrow(/contents\.baseimage\.image: ".*" resolves to .*, outside the config's directory/);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
    await expect(loadBaseImage(at("./layout"), "riscv64", opts())).rejects.toThrow(
      /no image for riscv64 \(riscv64\); the layout has amd64, arm64/,
    );
    await expect(loadBaseImage(at("./layout", "./empty"), "x86_64", opts())).rejects.toThrow(
      /contents\.baseimage\.apkindex .*empty: x86_64\/APKINDEX is missing/,
    );
    for (const [text, why] of [
      ["P:a b\nV:1-r0\n\n", "expected a package name and an apk version"],
      ["P:x\n\n", "expected a package name and an apk version"],
      ["P:x\nV:1-r0\n\nP:x\nV:2-r0\n\n", "listed twice"],
    ]) {
      mkdirSync(join(work, "cfg/badidx/x86_64"), { recursive: true });
      writeFileSync(join(work, "cfg/badidx/x86_64/APKINDEX"), text!);
      await expect(loadBaseImage(at("./layout", "./badidx"), "x86_64", opts())).rejects.toThrow(
        new RegExp(`contents\\.baseimage\\.apkindex .*badidx: x86_64/APKINDEX: package .*: ${why}`),
      );
    }
    await expect(loadBaseImage(at("./layout"), "x86_64", { cwd: work, maxBytes: 4096 })).rejects.toThrow(
      /the base's layers hold more than 4096 bytes uncompressed/,
    );
  });
});

describe("TarScanner", () => {
  it("reads headers split across chunks of any size", () => {
    for (const size of [1, 7, 512, 1000]) {
      const s = new TarScanner();
      for (let i = 0; i < LOWER.length; i += size) s.feed(LOWER.subarray(i, i + size));
      expect([...s.directoryLinks().keys()].sort()).toEqual(["bin", "lib", "lib64", "long", "old"]);
      expect(s.links.get("etc/localtime")?.target).toBe("../usr/share/zoneinfo/UTC");
    }
  });
});
