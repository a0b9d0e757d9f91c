// Deterministic OCI image output: content-addressed blobs (gzip layers streamed
// while hashing), image config, manifest, image index for several platforms,
// then an OCI layout directory, an oci-archive tar or a `docker load` tarball.
// Everything is written under .OUT.kiln-tmp-<pid>-<random> (@kiln/core tempPathFor) and renamed into place last.

import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { hostOciArch, installDir, tempPathFor } from "@kiln/core";
import { OciError, describeError } from "./errors.js";
import { TarWriter } from "./tar.js";
import { parallelGzip } from "@kiln/apk";
import {
  MEDIA_TYPE,
  REF_NAME_ANNOTATION,
  canonicalJson,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from "./types.js";

/** A layer: each call returns a fresh stream of the UNCOMPRESSED tar bytes. */
export type LayerSource = () => AsyncIterable<Uint8Array>;

export interface LayerHistory {
  createdBy?: string;
  comment?: string;
}

/** A layer blob of a base image's OCI layout, copied unchanged (verified again while copied). */
export interface BaseLayerBlob {
  mediaType: string;
  digest: string;
  size: number;
  diffId: string;
  uncompressedSize: number;
  /** The blob file. */
  file: string;
}

/** One platform's image. */
export interface ArchImage {
  /** OCI architecture: amd64, arm64, arm, 386, ppc64le, s390x, riscv64, … */
  arch: string;
  /** OCI variant, e.g. "v8" for arm64, "v7" for arm. */
  variant?: string;
  /** Default "linux". */
  os?: string;
  /** Creation time (SOURCE_DATE_EPOCH): a Date, an ISO 8601 string, or epoch seconds (number or digit string). */
  created: Date | string | number;
  /** Layers, bottom first. */
  layers: LayerSource[];
  entrypoint?: string[];
  cmd?: string[];
  /** "KEY=VALUE" entries. */
  env?: string[];
  workingDir?: string;
  user?: string;
  stopSignal?: string;
  /** Absolute paths. */
  volumes?: string[];
  /** "80/tcp", "53/udp", "8080" (= tcp). */
  exposedPorts?: string[];
  labels?: Record<string, string>;
  /** Manifest annotations. */
  annotations?: Record<string, string>;
  /** One entry per layer; default `{ createdBy: "kiln" }` for each. */
  history?: LayerHistory[];
  /** Layers of a base image, below `layers`, and the base's history entries (kept as they are). */
  base?: { layers: BaseLayerBlob[]; history: NonNullable<ImageConfig["history"]> };
}

export interface OciImageSpec {
  /** One per platform; several make an image index. */
  images: ArchImage[];
  /** org.opencontainers.image.ref.name in index.json; default "latest". */
  tag?: string;
  /** Annotations of the top-level object: the image index, or the manifest of a single-platform image. */
  annotations?: Record<string, string>;
  /** Repository for docker-archive RepoTags (`<repository>:<tag>`); default "kiln", or the tag itself if it already has a ":". */
  repository?: string;
  /** gzip level for layers, 1–9; default 6. Changing it changes the layer digests. */
  compressionLevel?: number;
}

export type OciOutputFormat = "oci" | "oci-archive" | "docker-archive";

export interface WrittenLayer {
  arch: string;
  variant?: string;
  /** sha256 of the gzip blob. */
  digest: string;
  /** sha256 of the uncompressed tar. */
  diffId: string;
  /** Size of the gzip blob. */
  size: number;
  uncompressedSize: number;
  /** A base image's layer keeps its media type; kiln's own are OCI tar+gzip. */
  mediaType?: string;
}

export interface WrittenManifest {
  arch: string;
  variant?: string;
  os: string;
  digest: string;
  size: number;
  configDigest: string;
  configSize: number;
}

export interface OciWriteResult {
  out: string;
  format: OciOutputFormat;
  tag: string;
  /** Digest of the top-level object: the image index (several platforms) or the manifest. */
  digest: string;
  mediaType: string;
  size: number;
  manifests: WrittenManifest[];
  layers: WrittenLayer[];
  /** docker-archive only: the platform written (a docker archive holds one). */
  dockerArch?: string;
  /** Things the caller should know, e.g. platforms left out of a docker-archive. */
  warnings: string[];
}

const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._\-/:@+]{0,254}$/;

/** OCI architecture of this host (process.arch mapped to GOARCH names); the table is @kiln/core's. */
export { hostOciArch as hostArch } from "@kiln/core";

/** An RFC 3339 UTC timestamp, whole seconds without ".000". */
export function normalizeCreated(c: Date | string | number): string {
  let d: Date;
  if (typeof c === "number") d = new Date(c * 1000);
  else if (typeof c === "string" && /^\d+$/.test(c.trim())) d = new Date(Number(c.trim()) * 1000);
  else if (c instanceof Date) d = c;
  else if (typeof c === "string") d = new Date(c);
  else d = new Date(NaN);
  if (Number.isNaN(d.getTime()))
    throw new OciError(
      "INVALID_INPUT",
      `invalid created time ${JSON.stringify(c)}: expected a Date, an ISO 8601 string or epoch seconds`,
    );
  return d.toISOString().replace(/\.000Z$/, "Z");
}

function checkStrings(v: unknown, what: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string"))
    throw new OciError("INVALID_INPUT", `${what} must be an array of strings`);
  return v as string[];
}

function checkMap(v: unknown, what: string): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== "object" || Array.isArray(v) || Object.values(v).some((x) => typeof x !== "string")) {
    throw new OciError("INVALID_INPUT", `${what} must be a map of strings to strings`);
  }
  return Object.keys(v).length ? (v as Record<string, string>) : undefined;
}

function platformKey(p: { arch: string; os?: string; variant?: string }): string {
  return `${p.os ?? "linux"}/${p.arch}${p.variant ? "/" + p.variant : ""}`;
}

/** Build the OCI image config document for one platform. */
export function buildImageConfig(img: ArchImage, diffIds: string[]): ImageConfig {
  const what = platformKey(img);
  const created = normalizeCreated(img.created);
  const env = checkStrings(img.env, `${what}: env`);
  for (const e of env ?? [])
    if (!/^[^=]+=/.test(e))
      throw new OciError("INVALID_INPUT", `${what}: env entry ${JSON.stringify(e)} is not KEY=VALUE`);
  const volumes = checkStrings(img.volumes, `${what}: volumes`);
  for (const v of volumes ?? [])
    if (!v.startsWith("/"))
      throw new OciError("INVALID_INPUT", `${what}: volume ${JSON.stringify(v)} is not an absolute path`);
  const ports = checkStrings(img.exposedPorts, `${what}: exposedPorts`);
  for (const p of ports ?? [])
    if (!/^\d{1,5}(\/(tcp|udp|sctp))?$/.test(p))
      throw new OciError("INVALID_INPUT", `${what}: exposed port ${JSON.stringify(p)} is not PORT[/tcp|udp|sctp]`);
  const history = img.history;
  if (history !== undefined && (!Array.isArray(history) || history.length !== img.layers.length)) {
    throw new OciError(
      "INVALID_INPUT",
      `${what}: history has ${Array.isArray(history) ? history.length : "no"} entries for ${img.layers.length} layers`,
    );
  }
  const cfg: NonNullable<ImageConfig["config"]> = {
    User: img.user || undefined,
    ExposedPorts: ports?.length
      ? Object.fromEntries(ports.map((p) => [p.includes("/") ? p : `${p}/tcp`, {}]))
      : undefined,
    Env: env?.length ? env : undefined,
    Entrypoint: checkStrings(img.entrypoint, `${what}: entrypoint`),
    Cmd: checkStrings(img.cmd, `${what}: cmd`),
    Volumes: volumes?.length ? Object.fromEntries(volumes.map((v) => [v, {}])) : undefined,
    WorkingDir: img.workingDir || undefined,
    Labels: checkMap(img.labels, `${what}: labels`),
    StopSignal: img.stopSignal || undefined,
  };
  return {
    created,
    architecture: img.arch,
    variant: img.variant || undefined,
    os: img.os ?? "linux",
    config: cfg,
    rootfs: { type: "layers", diff_ids: diffIds },
    history: [...(img.base?.history ?? [])].concat(
      img.layers.map((_, i) => ({
        created,
        created_by: history ? history[i]?.createdBy || undefined : "kiln",
        comment: history?.[i]?.comment || undefined,
      })),
    ),
  };
}

function sha256hex(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

function asBytes(c: unknown): Uint8Array {
  if (c instanceof Uint8Array) return c;
  throw new OciError(
    "INVALID_LAYER",
    `layer stream yielded ${typeof c === "string" ? "a string" : typeof c}, expected Uint8Array chunks`,
  );
}

interface BuiltManifest extends WrittenManifest {
  platform: Platform;
  layers: WrittenLayer[];
  configBytes: Buffer;
}

interface BuiltLayout {
  top: Descriptor;
  manifests: BuiltManifest[];
}

class LayoutBuilder {
  readonly blobDir: string;
  constructor(
    readonly dir: string,
    private readonly level: number,
  ) {
    this.blobDir = join(dir, "blobs", "sha256");
  }

  blobPath(digest: string): string {
    return join(this.blobDir, digest.slice("sha256:".length));
  }

  private async place(tmp: string, hex: string): Promise<void> {
    const final = join(this.blobDir, hex);
    if (await exists(final)) await rm(tmp, { force: true });
    else await rename(tmp, final);
  }

  async writeBlob(bytes: Uint8Array): Promise<{ digest: string; size: number }> {
    const hex = sha256hex(bytes);
    const tmp = tempPathFor(join(this.blobDir, "blob"));
    await writeFile(tmp, bytes, { mode: 0o644 });
    await this.place(tmp, hex);
    return { digest: `sha256:${hex}`, size: bytes.length };
  }

  /** Stream one layer through sha256 (diffID), gzip on every core (pgzip.ts), sha256 (digest) into a blob file. */
  async writeLayer(source: LayerSource, what: string): Promise<Omit<WrittenLayer, "arch" | "variant">> {
    const uh = createHash("sha256");
    const ch = createHash("sha256");
    let usize = 0;
    let csize = 0;
    const tmp = tempPathFor(join(this.blobDir, "blob"));
    let iterable: AsyncIterable<Uint8Array>;
    try {
      iterable = source();
      if (iterable == null || typeof (iterable as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] !== "function") {
        throw new OciError("INVALID_LAYER", `${what}: the layer function must return an AsyncIterable<Uint8Array>`);
      }
    } catch (e) {
      if (e instanceof OciError) throw e;
      throw new OciError("INVALID_LAYER", `${what}: ${describeError(e)}`, { cause: e });
    }
    let sourceError: unknown;
    async function* tarBytes(): AsyncGenerator<Uint8Array> {
      try {
        for await (const c of iterable as AsyncIterable<unknown>) {
          const b = asBytes(c);
          uh.update(b);
          usize += b.length;
          yield b;
        }
      } catch (e) {
        sourceError = e;
        throw e;
      }
    }
    try {
      await pipeline(
        parallelGzip(tarBytes(), { level: this.level }),
        async function* (src: AsyncIterable<Buffer>) {
          for await (const b of src) {
            ch.update(b);
            csize += b.length;
            yield b;
          }
        },
        createWriteStream(tmp, { mode: 0o644 }),
      );
    } catch (e) {
      if (e instanceof OciError) throw new OciError(e.code, `${what}: ${e.message}`, { cause: e });
      if (sourceError !== undefined)
        throw new OciError("INVALID_LAYER", `${what}: the layer stream failed: ${describeError(e)}`, { cause: e });
      throw new OciError("IO", `${what}: cannot write blob: ${describeError(e)}`, { cause: e });
    }
    if (usize === 0 || usize % 512 !== 0) {
      throw new OciError(
        "INVALID_LAYER",
        `${what}: ${usize} bytes is not a tar stream (a tar is a non-empty multiple of 512 bytes)`,
      );
    }
    const hex = ch.digest("hex");
    await this.place(tmp, hex);
    return { digest: `sha256:${hex}`, diffId: `sha256:${uh.digest("hex")}`, size: csize, uncompressedSize: usize };
  }

  /** Copy a base layer's blob as it is, checking its digest and size again on the way. */
  async copyBaseLayer(b: BaseLayerBlob): Promise<Omit<WrittenLayer, "arch" | "variant">> {
    const h = createHash("sha256");
    let n = 0;
    const tmp = tempPathFor(join(this.blobDir, "blob"));
    await pipeline(
      createReadStream(b.file),
      async function* (src: AsyncIterable<Buffer>) {
        for await (const c of src) {
          h.update(c);
          n += c.length;
          yield c;
        }
      },
      createWriteStream(tmp, { mode: 0o644 }),
    );
    const hex = h.digest("hex");
    if (`sha256:${hex}` !== b.digest || n !== b.size) {
      await rm(tmp, { force: true });
      throw new OciError(
        "BAD_LAYOUT",
        `base layer ${b.digest} changed while it was copied (now ${n} bytes, sha256:${hex})`,
      );
    }
    await this.place(tmp, hex);
    const { file: _f, ...rest } = b;
    return rest;
  }

  async build(spec: OciImageSpec, tag: string): Promise<BuiltLayout> {
    await mkdir(this.blobDir, { recursive: true });
    const manifests: BuiltManifest[] = [];
    for (const img of spec.images) {
      const what = platformKey(img);
      const layers: WrittenLayer[] = [];
      for (const b of img.base?.layers ?? []) layers.push({ arch: img.arch, ...(await this.copyBaseLayer(b)) });
      for (let i = 0; i < img.layers.length; i++) {
        const l = await this.writeLayer(img.layers[i]!, `${what} layer ${i}`);
        layers.push({ arch: img.arch, ...(img.variant ? { variant: img.variant } : {}), ...l });
      }
      const configDoc = buildImageConfig(
        img,
        layers.map((l) => l.diffId),
      );
      const configBytes = Buffer.from(canonicalJson(configDoc), "utf8");
      const config = await this.writeBlob(configBytes);
      const manifestDoc: ImageManifest = {
        schemaVersion: 2,
        mediaType: MEDIA_TYPE.manifest,
        config: { mediaType: MEDIA_TYPE.config, digest: config.digest, size: config.size },
        layers: layers.map((l) => ({ mediaType: l.mediaType ?? MEDIA_TYPE.layerGzip, digest: l.digest, size: l.size })),
        annotations:
          spec.images.length === 1
            ? checkMap({ ...(spec.annotations ?? {}), ...(img.annotations ?? {}) }, `${what}: annotations`)
            : checkMap(img.annotations, `${what}: annotations`),
      };
      const m = await this.writeBlob(Buffer.from(canonicalJson(manifestDoc), "utf8"));
      const platform: Platform = {
        architecture: img.arch,
        os: img.os ?? "linux",
        ...(img.variant ? { variant: img.variant } : {}),
      };
      manifests.push({
        arch: img.arch,
        ...(img.variant ? { variant: img.variant } : {}),
        os: platform.os,
        digest: m.digest,
        size: m.size,
        configDigest: config.digest,
        configSize: config.size,
        platform,
        layers,
        configBytes,
      });
    }
    let top: Descriptor;
    if (manifests.length === 1) {
      const m = manifests[0]!;
      top = { mediaType: MEDIA_TYPE.manifest, digest: m.digest, size: m.size, platform: m.platform };
    } else {
      const indexDoc: ImageIndex = {
        schemaVersion: 2,
        mediaType: MEDIA_TYPE.index,
        manifests: manifests.map((m) => ({
          mediaType: MEDIA_TYPE.manifest,
          digest: m.digest,
          size: m.size,
          platform: m.platform,
        })),
        annotations: checkMap(spec.annotations, "annotations"),
      };
      const ix = await this.writeBlob(Buffer.from(canonicalJson(indexDoc), "utf8"));
      top = { mediaType: MEDIA_TYPE.index, digest: ix.digest, size: ix.size };
    }
    const layoutIndex: ImageIndex = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPE.index,
      manifests: [{ ...top, annotations: { [REF_NAME_ANNOTATION]: tag } }],
    };
    await writeFile(join(this.dir, "index.json"), canonicalJson(layoutIndex), { mode: 0o644 });
    await writeFile(join(this.dir, "oci-layout"), canonicalJson({ imageLayoutVersion: "1.0.0" }), { mode: 0o644 });
    return { top, manifests };
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

function validateSpec(spec: OciImageSpec, format: OciOutputFormat): { tag: string; level: number } {
  if (!spec || !Array.isArray(spec.images) || spec.images.length === 0)
    throw new OciError("INVALID_INPUT", "an OCI image needs at least one platform image");
  if (!["oci", "oci-archive", "docker-archive"].includes(format))
    throw new OciError(
      "INVALID_INPUT",
      `unknown output format ${JSON.stringify(format)} (oci, oci-archive, docker-archive)`,
    );
  const tag = spec.tag ?? "latest";
  if (!TAG_RE.test(tag)) throw new OciError("INVALID_INPUT", `invalid tag ${JSON.stringify(tag)}`);
  const level = spec.compressionLevel ?? 6;
  if (!Number.isInteger(level) || level < 1 || level > 9)
    throw new OciError("INVALID_INPUT", `compressionLevel must be an integer 1–9, got ${level}`);
  const seen = new Set<string>();
  for (const img of spec.images) {
    if (!img || typeof img.arch !== "string" || !/^[a-z0-9_]+$/.test(img.arch))
      throw new OciError("INVALID_INPUT", `invalid architecture ${JSON.stringify(img?.arch)}`);
    if (img.variant !== undefined && !/^[a-z0-9]+$/.test(img.variant))
      throw new OciError("INVALID_INPUT", `invalid variant ${JSON.stringify(img.variant)}`);
    if (img.os !== undefined && !/^[a-z0-9]+$/.test(img.os))
      throw new OciError("INVALID_INPUT", `invalid os ${JSON.stringify(img.os)}`);
    const k = platformKey(img);
    if (seen.has(k)) throw new OciError("INVALID_INPUT", `platform ${k} given twice`);
    seen.add(k);
    if (!Array.isArray(img.layers) || img.layers.some((l) => typeof l !== "function"))
      throw new OciError(
        "INVALID_INPUT",
        `${k}: layers must be an array of functions returning AsyncIterable<Uint8Array>`,
      );
    normalizeCreated(img.created);
  }
  checkMap(spec.annotations, "annotations");
  return { tag, level };
}

/** All files of a layout directory, as sorted tar entries (directories with a trailing "/"). */
async function layoutEntries(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    const ents = await readdir(join(dir, rel), { withFileTypes: true });
    for (const e of ents) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out.push(p + "/");
        await walk(p);
      } else if (e.isFile()) out.push(p);
    }
  }
  await walk("");
  return out.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

async function writeOciArchive(layoutDir: string, file: string, mtime: number): Promise<void> {
  const tw = await TarWriter.create(file);
  try {
    for (const p of await layoutEntries(layoutDir)) {
      if (p.endsWith("/")) await tw.dir(p, mtime);
      else {
        const full = join(layoutDir, p);
        await tw.file(p, (await stat(full)).size, mtime, createReadStream(full));
      }
    }
    await tw.finish();
  } catch (e) {
    await tw.abort();
    throw e;
  }
}

function dockerRepoTag(spec: OciImageSpec, tag: string): string {
  if (spec.repository) return `${spec.repository}:${tag}`;
  const slash = tag.lastIndexOf("/");
  return tag.indexOf(":", slash + 1) >= 0 ? tag : `kiln:${tag}`;
}

async function writeDockerArchive(
  b: LayoutBuilder,
  m: BuiltManifest,
  repoTag: string,
  file: string,
  mtime: number,
): Promise<void> {
  const cfgHex = m.configDigest.slice(7);
  const layerNames = m.layers.map((l) => `${l.diffId.slice(7)}.tar`);
  const manifestJson = Buffer.from(
    canonicalJson([{ Config: `${cfgHex}.json`, RepoTags: [repoTag], Layers: layerNames }]),
    "utf8",
  );
  const entries = new Map<string, () => Promise<void>>();
  const tw = await TarWriter.create(file);
  entries.set(`${cfgHex}.json`, () => tw.file(`${cfgHex}.json`, m.configBytes.length, mtime, m.configBytes));
  entries.set("manifest.json", () => tw.file("manifest.json", manifestJson.length, mtime, manifestJson));
  for (const l of m.layers) {
    const name = `${l.diffId.slice(7)}.tar`;
    entries.set(name, async () => {
      const h = createHash("sha256");
      const gunzip = createReadStream(b.blobPath(l.digest)).pipe(createGunzip());
      async function* hashed() {
        for await (const c of gunzip as AsyncIterable<Buffer>) {
          h.update(c);
          yield c;
        }
      }
      await tw.file(name, l.uncompressedSize, mtime, hashed());
      if (`sha256:${h.digest("hex")}` !== l.diffId)
        throw new OciError("IO", `layer ${l.digest} does not decompress to its diffID ${l.diffId}`);
    });
  }
  try {
    for (const name of [...entries.keys()].sort()) await entries.get(name)!();
    await tw.finish();
  } catch (e) {
    await tw.abort();
    throw e;
  }
}

/**
 * Write a deterministic OCI image to `out`: an OCI layout directory ("oci"),
 * the same layout as one tar file ("oci-archive"), or a `docker load` tarball
 * ("docker-archive", one platform: the host's if present, else the first).
 * Nothing is left at `out` (or beside it) if anything fails.
 */
export async function writeOciImage(
  spec: OciImageSpec,
  out: string,
  format: OciOutputFormat = "oci",
): Promise<OciWriteResult> {
  const { tag, level } = validateSpec(spec, format);
  if (typeof out !== "string" || out === "") throw new OciError("INVALID_INPUT", "output path is empty");
  const outDir = dirname(out);
  try {
    const st = await stat(outDir);
    if (!st.isDirectory())
      throw new OciError("IO", `cannot write ${out}: ${outDir} is not a directory`, { subject: out });
  } catch (e) {
    if (e instanceof OciError) throw e;
    throw new OciError("IO", `cannot write ${out}: output directory ${outDir} is not accessible: ${describeError(e)}`, {
      subject: out,
      cause: e,
    });
  }
  const tmp = tempPathFor(out);
  try {
    try {
      await mkdir(tmp);
    } catch (e) {
      throw new OciError("IO", `cannot write ${out}: ${describeError(e)}`, { subject: out, cause: e });
    }
    const layoutDir = format === "oci" ? tmp : join(tmp, "layout");
    if (layoutDir !== tmp) await mkdir(layoutDir);
    const b = new LayoutBuilder(layoutDir, level);
    const built = await b.build(spec, tag);
    const mtime = Math.max(0, Math.floor(new Date(normalizeCreated(spec.images[0]!.created)).getTime() / 1000));
    const warnings: string[] = [];
    let dockerArch: string | undefined;
    if (format === "oci") {
      await installDir(tmp, out);
    } else {
      const archive = join(tmp, "archive.tar");
      if (format === "oci-archive") await writeOciArchive(layoutDir, archive, mtime);
      else {
        const host = hostOciArch();
        const m = built.manifests.find((x) => x.arch === host && x.os === "linux") ?? built.manifests[0]!;
        dockerArch = platformKey(m);
        if (built.manifests.length > 1) {
          warnings.push(
            `docker-archive holds one platform: wrote ${dockerArch}, left out ${built.manifests
              .filter((x) => x !== m)
              .map((x) => platformKey(x))
              .join(", ")}`,
          );
        }
        await writeDockerArchive(b, m, dockerRepoTag(spec, tag), archive, mtime);
      }
      await rename(archive, out);
      await rm(tmp, { recursive: true, force: true });
    }
    return {
      out,
      format,
      tag,
      digest: built.top.digest,
      mediaType: built.top.mediaType,
      size: built.top.size,
      manifests: built.manifests.map(({ platform: _p, layers: _l, configBytes: _c, ...m }) => m),
      layers: built.manifests.flatMap((m) => m.layers),
      ...(dockerArch ? { dockerArch } : {}),
      warnings,
    };
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    if (e instanceof OciError) throw e;
    throw new OciError("IO", `cannot write ${out}: ${describeError(e)}`, { subject: out, cause: e });
  }
}
