// apko's contents.baseimage: build on top of an image kept as a local OCI
// layout. `image` names the layout directory, `apkindex` a directory holding
// ARCH/APKINDEX, the base's installed packages in installed-database (or
// APKINDEX) text. Both are hostile input: they are looked up as include is
// (beside the config, in the current directory, in the include paths) and
// must lie, links resolved, inside those places. Every document read from the
// layout is bounded in size and checked against its descriptor's digest and
// size; every layer blob is hashed whole (digest, size) and decompressed
// (its diff ID against the config's rootfs); media types are checked. The
// layers are later copied into the new image as they are.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { assertPathComponent, isInside, KilnError } from "@kiln/core";
import { isValidVersion, parseDependency, parseInstalledDb, type InstalledPackage } from "@kiln/apk";
import { OCI_PLATFORM, type ImageConfig } from "./config.js";
import { findInBases, lookupBases, lookupRoots } from "./include.js";
import { MEDIA_TYPE, isIndexMediaType, isManifestMediaType, isSha256Digest } from "./oci/types.js";
import type { Descriptor, ImageConfig as OciConfig, ImageIndex, ImageManifest } from "./oci/types.js";
import type { BaseLayerBlob } from "./oci/write.js";
import { TarScanError, TarScanner, type TarLink } from "./oci/tar-scan.js";

/** Largest index.json, manifest or config accepted. */
export const MAX_BASE_DOCUMENT = 4 << 20;
/** Largest base APKINDEX accepted. */
export const MAX_BASE_APKINDEX = 64 << 20;
/** Most layers, and most index entries, a base may have. */
export const MAX_BASE_LAYERS = 256;

const LAYER_TYPES: readonly string[] = [MEDIA_TYPE.layerGzip, MEDIA_TYPE.dockerLayerGzip];
const CONFIG_TYPES: readonly string[] = [MEDIA_TYPE.config, MEDIA_TYPE.dockerConfig];

export class BaseImageError extends KilnError {
  readonly code = "BASE_IMAGE";
  constructor(message: string) {
    super(message);
    this.name = "BaseImageError";
  }
}

export interface BaseImage {
  /** The layout directory, links resolved. */
  layout: string;
  /** The manifest chosen for the architecture. */
  manifestDigest: string;
  layers: BaseLayerBlob[];
  config: OciConfig;
  /** The base's installed packages, from APKINDEX. */
  installed: InstalledPackage[];
  /** The base's symbolic links to directories (merged-usr /lib → usr/lib …), by path. */
  dirLinks: Map<string, TarLink>;
}

export interface BaseImageOptions {
  cwd?: string;
  includePaths?: string[];
  /** Cap on the base layers' uncompressed bytes together. */
  maxBytes: number;
}

/** The directory a baseimage field names, looked up and confined as include is. */
async function resolveDir(cfg: ImageConfig, field: string, name: string, opts: BaseImageOptions): Promise<string> {
  const what = `${cfg.file}: contents.baseimage.${field}`;
  const bases = lookupBases(cfg.file, opts);
  const found = await findInBases(name, bases);
  if (found) {
    const { real, st } = found;
    if (!(await lookupRoots(bases)).some((r) => isInside(r, real)))
      throw new BaseImageError(
        `${what}: ${JSON.stringify(name)} resolves to ${real}, outside the config's directory, the current directory and the include paths`,
      );
    if (!st.isDirectory()) throw new BaseImageError(`${what}: ${real} is not a directory`);
    return real;
  }
  throw new BaseImageError(
    `${what}: ${JSON.stringify(name)}: no such directory beside ${cfg.file}, in the current directory${opts.includePaths?.length ? " or in the include paths" : ""}`,
  );
}

/** DIR/REL as a regular file inside DIR (links resolved), at most MAX bytes: its real path and size. */
async function fileIn(dir: string, rel: string, max: number, what: string): Promise<{ path: string; size: number }> {
  const real = await realpath(join(dir, rel)).catch(() => undefined);
  if (!real) throw new BaseImageError(`${what}: ${rel} is missing`);
  if (!isInside(dir, real)) throw new BaseImageError(`${what}: ${rel} resolves to ${real}, outside ${dir}`);
  const st = await stat(real);
  if (!st.isFile()) throw new BaseImageError(`${what}: ${rel} is not a regular file`);
  if (st.size > max) throw new BaseImageError(`${what}: ${rel} is ${st.size} bytes, more than the ${max} accepted`);
  return { path: real, size: st.size };
}

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    const v: unknown = JSON.parse(bytes.toString("utf8"));
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not a JSON object");
    return v as T;
  } catch (e) {
    throw new BaseImageError(`${what} is not a JSON object: ${(e as Error).message}`);
  }
}

function blobRel(d: Descriptor, what: string): string {
  if (d === null || typeof d !== "object" || !isSha256Digest(d.digest))
    throw new BaseImageError(`${what}: a descriptor without a sha256 digest (${JSON.stringify(d?.digest)})`);
  if (!Number.isSafeInteger(d.size) || d.size < 0)
    throw new BaseImageError(`${what}: descriptor ${d.digest} has no valid size`);
  return `blobs/sha256/${d.digest.slice(7)}`;
}

/** A document blob, checked against its descriptor's size and digest. */
async function readDocument(layout: string, d: Descriptor, what: string): Promise<Buffer> {
  const rel = blobRel(d, what);
  const f = await fileIn(layout, rel, MAX_BASE_DOCUMENT, what);
  const bytes = await readFile(f.path);
  checkBlob(what, d, bytes.length, `sha256:${createHash("sha256").update(bytes).digest("hex")}`);
  return bytes;
}

function checkBlob(what: string, d: Descriptor, size: number, digest: string): void {
  if (digest !== d.digest)
    throw new BaseImageError(`${what}: blob ${d.digest} does not match its digest (its content hashes to ${digest})`);
  if (size !== d.size)
    throw new BaseImageError(`${what}: blob ${d.digest} is ${size} bytes, its descriptor says ${d.size}`);
}

/** The manifest descriptors of index.json, one nested index followed (as apko does). */
async function manifestCandidates(layout: string, what: string): Promise<Descriptor[]> {
  const version = parseJson<{ imageLayoutVersion?: unknown }>(
    await readFile((await fileIn(layout, "oci-layout", 4096, what)).path),
    `${what}: oci-layout`,
  ).imageLayoutVersion;
  if (version !== "1.0.0")
    throw new BaseImageError(`${what}: not an OCI layout (imageLayoutVersion ${JSON.stringify(version)})`);
  let index = parseJson<ImageIndex>(
    await readFile((await fileIn(layout, "index.json", MAX_BASE_DOCUMENT, what)).path),
    `${what}: index.json`,
  );
  for (let depth = 0; ; depth++) {
    if (!Array.isArray(index.manifests) || index.manifests.length > MAX_BASE_LAYERS)
      throw new BaseImageError(`${what}: an image index needs a manifests array of at most ${MAX_BASE_LAYERS}`);
    const nested = index.manifests.find((m) => isIndexMediaType(m?.mediaType));
    if (!nested) return index.manifests;
    if (depth > 0) throw new BaseImageError(`${what}: image indexes nested more than one level`);
    index = parseJson<ImageIndex>(await readDocument(layout, nested, what), `${what}: index ${nested.digest}`);
  }
}

/** The manifest for ARCH (by its descriptor's platform, else its config's architecture), and its config. */
async function pickManifest(
  layout: string,
  arch: string,
  what: string,
): Promise<{ digest: string; manifest: ImageManifest; config: OciConfig }> {
  const want = OCI_PLATFORM[arch] ?? { architecture: arch };
  const seen: string[] = [];
  for (const d of await manifestCandidates(layout, what)) {
    if (!isManifestMediaType(d?.mediaType))
      throw new BaseImageError(
        `${what}: index entry ${JSON.stringify(d?.digest)} has media type ${JSON.stringify(d?.mediaType)}, not an image manifest`,
      );
    if (d.platform && d.platform.architecture !== want.architecture) {
      seen.push(d.platform.architecture);
      continue;
    }
    const manifest = parseJson<ImageManifest>(await readDocument(layout, d, what), `${what}: manifest ${d.digest}`);
    if (manifest.mediaType !== undefined && manifest.mediaType !== d.mediaType)
      throw new BaseImageError(`${what}: manifest ${d.digest} says media type ${JSON.stringify(manifest.mediaType)}`);
    if (!manifest.config || !CONFIG_TYPES.includes(manifest.config.mediaType))
      throw new BaseImageError(
        `${what}: manifest ${d.digest}: config media type ${JSON.stringify(manifest.config?.mediaType)} is not an image config`,
      );
    const config = parseJson<OciConfig>(
      await readDocument(layout, manifest.config, `${what}: config`),
      `${what}: config ${manifest.config.digest}`,
    );
    if (config.architecture !== want.architecture) {
      seen.push(String(config.architecture));
      continue;
    }
    return { digest: d.digest, manifest, config };
  }
  throw new BaseImageError(
    `${what}: no image for ${arch} (${want.architecture}); the layout has ${seen.length ? seen.join(", ") : "no images"}`,
  );
}

/** Hash a layer blob whole and decompressed: its digest, size and diff ID. */
async function checkLayer(
  layout: string,
  d: Descriptor,
  diffId: unknown,
  what: string,
  budget: { left: number; cap: number },
  scanner: TarScanner,
): Promise<BaseLayerBlob> {
  const f = await fileIn(layout, blobRel(d, what), Number.MAX_SAFE_INTEGER, what);
  if (f.size !== d.size)
    throw new BaseImageError(`${what}: blob ${d.digest} is ${f.size} bytes, its descriptor says ${d.size}`);
  // The digest first, so a changed blob is reported as that whatever its bytes became.
  const ch = createHash("sha256");
  for await (const c of createReadStream(f.path)) ch.update(c as Buffer);
  checkBlob(what, d, f.size, `sha256:${ch.digest("hex")}`);
  const uh = createHash("sha256");
  let usize = 0;
  let over = false;
  scanner.nextStream();
  try {
    await pipeline(createReadStream(f.path), createGunzip(), async function (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        uh.update(c);
        usize += c.length;
        scanner.feed(c);
        if (usize > budget.left) {
          over = true;
          throw new Error("over the budget");
        }
      }
    });
  } catch (e) {
    if (over) throw new BaseImageError(`${what}: the base's layers hold more than ${budget.cap} bytes uncompressed`);
    if (e instanceof TarScanError) throw new BaseImageError(`${what}: layer ${d.digest}: ${e.message}`);
    throw new BaseImageError(`${what}: layer ${d.digest} is not a gzip tar stream: ${(e as Error).message}`);
  }
  const got = `sha256:${uh.digest("hex")}`;
  if (got !== diffId)
    throw new BaseImageError(`${what}: layer ${d.digest} decompresses to ${got}, the config's diff ID is ${diffId}`);
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, diffId: got, uncompressedSize: usize, file: f.path };
}

/** The base image for one apk ARCH, every blob it uses verified, and its installed packages. */
export async function loadBaseImage(cfg: ImageConfig, arch: string, opts: BaseImageOptions): Promise<BaseImage> {
  const desc = cfg.baseImage!;
  assertPathComponent(arch, "architecture");
  const layout = await resolveDir(cfg, "image", desc.image, opts);
  const what = `${cfg.file}: contents.baseimage.image ${layout}`;
  if (desc.apkindex === undefined)
    throw new BaseImageError(
      `${cfg.file}: contents.baseimage.apkindex: required to build (the directory holding ARCH/APKINDEX of the base's installed packages)`,
    );
  const { digest, manifest, config } = await pickManifest(layout, arch, what);
  const diffIds = config.rootfs?.diff_ids;
  if (!Array.isArray(manifest.layers) || manifest.layers.length > MAX_BASE_LAYERS)
    throw new BaseImageError(`${what}: manifest ${digest} needs a layers array of at most ${MAX_BASE_LAYERS}`);
  if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length)
    throw new BaseImageError(`${what}: the config's rootfs.diff_ids do not match the manifest's layers`);
  const layers: BaseLayerBlob[] = [];
  const scanner = new TarScanner();
  let total = 0;
  for (const [i, l] of manifest.layers.entries()) {
    if (!LAYER_TYPES.includes(l?.mediaType))
      throw new BaseImageError(
        `${what}: layer ${i} has media type ${JSON.stringify(l?.mediaType)}; a base layer must be a gzip tar (${LAYER_TYPES.join(", ")})`,
      );
    const b = await checkLayer(
      layout,
      l,
      diffIds[i],
      what,
      { left: opts.maxBytes - total, cap: opts.maxBytes },
      scanner,
    );
    total += b.uncompressedSize;
    layers.push(b);
  }
  const installed = await loadInstalled(cfg, arch, opts);
  return { layout, manifestDigest: digest, layers, config, installed, dirLinks: scanner.directoryLinks() };
}

async function loadInstalled(cfg: ImageConfig, arch: string, opts: BaseImageOptions): Promise<InstalledPackage[]> {
  const dir = await resolveDir(cfg, "apkindex", cfg.baseImage!.apkindex!, opts);
  const what = `${cfg.file}: contents.baseimage.apkindex ${dir}`;
  const f = await fileIn(dir, `${arch}/APKINDEX`, MAX_BASE_APKINDEX, what);
  let pkgs: InstalledPackage[];
  try {
    pkgs = parseInstalledDb(await readFile(f.path, "utf8"), f.path);
  } catch (e) {
    throw new BaseImageError(`${what}: ${(e as Error).message}`);
  }
  const seen = new Set<string>();
  for (const p of pkgs) {
    const { name, version } = p.record;
    let ok = isValidVersion(version) && !seen.has(name);
    try {
      ok &&= parseDependency(name).name === name;
    } catch {
      ok = false;
    }
    if (!ok)
      throw new BaseImageError(
        `${what}: ${arch}/APKINDEX: package ${JSON.stringify(name)} version ${JSON.stringify(version)}: ${seen.has(name) ? "listed twice" : "expected a package name and an apk version"}`,
      );
    seen.add(name);
  }
  return pkgs;
}
