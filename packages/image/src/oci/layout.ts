// Reading an OCI layout: a directory, or an oci-archive tar read in place.
// Blobs are verified against their digests when read whole and streamed
// (by byte range, for archives) when pushed.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { OciError, describeError } from "./errors.js";
import { indexTar, type TarMember } from "./tar.js";
import {
  REF_NAME_ANNOTATION,
  isIndexMediaType,
  isManifestMediaType,
  isSha256Digest,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
} from "./types.js";

export interface OciLayout {
  /** The layout directory or archive file. */
  path: string;
  kind: "dir" | "archive";
  /** The layout's index.json. */
  index: ImageIndex;
  /** Tagged entries of index.json by org.opencontainers.image.ref.name. */
  refs: Map<string, Descriptor>;
  /** Size of a blob, or undefined when the layout does not have it. */
  blobSize(digest: string): Promise<number | undefined>;
  /** A stream of a blob's bytes, or of bytes [start, end) of it (not verified; the registry verifies what it receives). */
  openBlob(digest: string, range?: { start: number; end: number }): Readable;
  /** A whole blob, verified against its digest. For manifests and configs. */
  readBlob(digest: string): Promise<Buffer>;
  /** The descriptor tagged `name`; with no name, the only entry, else the one tagged "latest". */
  resolve(name?: string): Descriptor;
}

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString("utf8")) as T;
  } catch (e) {
    throw new OciError("BAD_LAYOUT", `${what} is not valid JSON: ${describeError(e)}`, { subject: what });
  }
}

function blobRel(digest: string): string {
  if (!isSha256Digest(digest))
    throw new OciError("BAD_LAYOUT", `unsupported or malformed digest ${JSON.stringify(digest)}`, { subject: digest });
  return `blobs/sha256/${digest.slice(7)}`;
}

/** Reading the files of a layout, whichever its kind. */
interface LayoutFiles {
  readSmall: (rel: string) => Promise<Buffer | undefined>;
  sizeOf: (rel: string) => Promise<number | undefined>;
  open: (rel: string, start: number, end: number | undefined) => Readable;
}

function dirFiles(path: string): LayoutFiles {
  return {
    readSmall: async (rel) =>
      readFile(join(path, rel)).catch((e: NodeJS.ErrnoException) =>
        e.code === "ENOENT" ? undefined : Promise.reject(e),
      ),
    sizeOf: async (rel) =>
      stat(join(path, rel)).then(
        (s) => (s.isFile() ? s.size : undefined),
        () => undefined,
      ),
    open: (rel, start, end) =>
      end === start
        ? Readable.from([])
        : createReadStream(join(path, rel), end === undefined ? { start } : { start, end: end - 1 }),
  };
}

/** The members M of the archive at PATH, read in place by byte range. */
function archiveFiles(path: string, m: Map<string, TarMember>): LayoutFiles {
  return {
    readSmall: async (rel) => {
      const e = m.get(rel);
      if (!e) return undefined;
      const chunks: Buffer[] = [];
      if (e.size === 0) return Buffer.alloc(0);
      for await (const c of createReadStream(path, { start: e.offset, end: e.offset + e.size - 1 }))
        chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    },
    sizeOf: async (rel) => m.get(rel)?.size,
    open: (rel, start, end) => {
      const e = m.get(rel);
      if (!e) throw new OciError("BAD_LAYOUT", `${path}: no ${rel}`, { subject: rel });
      const stop = Math.min(end ?? e.size, e.size);
      if (stop <= start) return Readable.from([]);
      return createReadStream(path, { start: e.offset + start, end: e.offset + stop - 1 });
    },
  };
}

/** The layout's index.json, after checking its oci-layout version. */
async function readLayoutIndex(path: string, readSmall: LayoutFiles["readSmall"]): Promise<ImageIndex> {
  const layoutFile = await readSmall("oci-layout");
  if (!layoutFile)
    throw new OciError("BAD_LAYOUT", `${path} is not an OCI layout (no oci-layout file)`, { subject: path });
  const ver = parseJson<{ imageLayoutVersion?: string }>(layoutFile, `${path}/oci-layout`).imageLayoutVersion;
  if (ver !== "1.0.0")
    throw new OciError("BAD_LAYOUT", `${path}: unsupported imageLayoutVersion ${JSON.stringify(ver)}`, {
      subject: path,
    });
  const indexBytes = await readSmall("index.json");
  if (!indexBytes) throw new OciError("BAD_LAYOUT", `${path} has no index.json`, { subject: path });
  const index = parseJson<ImageIndex>(indexBytes, `${path}/index.json`);
  if (!Array.isArray(index.manifests))
    throw new OciError("BAD_LAYOUT", `${path}/index.json has no manifests array`, { subject: path });
  return index;
}

/** OciLayout.resolve: the entry tagged NAME; with no name, the only entry, else the one tagged "latest". */
function resolveRef(path: string, index: ImageIndex, refs: Map<string, Descriptor>, name?: string): Descriptor {
  if (name !== undefined) {
    const d = refs.get(name);
    if (!d)
      throw new OciError(
        "BAD_LAYOUT",
        `${path}: no image tagged ${JSON.stringify(name)} (have: ${[...refs.keys()].join(", ") || "none"})`,
        { subject: name },
      );
    return d;
  }
  if (index.manifests.length === 1) return index.manifests[0]!;
  const d = refs.get("latest");
  if (!d)
    throw new OciError(
      "BAD_LAYOUT",
      `${path}: index.json has ${index.manifests.length} entries; say which tag to use`,
      {
        subject: path,
      },
    );
  return d;
}

/** Open an OCI layout directory or an oci-archive tar file. */
export async function openOciLayout(path: string): Promise<OciLayout> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw new OciError("BAD_LAYOUT", `cannot open OCI layout ${path}: ${describeError(e)}`, {
      subject: path,
      cause: e,
    });
  }
  const isDir = st.isDirectory();
  const { readSmall, sizeOf, open } = isDir ? dirFiles(path) : archiveFiles(path, await indexTar(path));
  const index = await readLayoutIndex(path, readSmall);
  const refs = new Map<string, Descriptor>();
  for (const d of index.manifests) {
    const name = d.annotations?.[REF_NAME_ANNOTATION];
    if (name !== undefined) refs.set(name, d);
  }
  return {
    path,
    kind: isDir ? "dir" : "archive",
    index,
    refs,
    blobSize: (digest) => sizeOf(blobRel(digest)),
    openBlob: (digest, range) => open(blobRel(digest), range?.start ?? 0, range?.end),
    async readBlob(digest) {
      const b = await readSmall(blobRel(digest));
      if (!b) throw new OciError("BAD_LAYOUT", `${path}: blob ${digest} is missing`, { subject: digest });
      const got = `sha256:${createHash("sha256").update(b).digest("hex")}`;
      if (got !== digest)
        throw new OciError("BAD_LAYOUT", `${path}: blob ${digest} is corrupt (its content hashes to ${got})`, {
          subject: digest,
        });
      return b;
    },
    resolve: (name) => resolveRef(path, index, refs, name),
  };
}

/** index.json and tags of an OCI layout directory or oci-archive. */
export async function readOciLayout(path: string): Promise<{ index: ImageIndex; refs: Record<string, Descriptor> }> {
  const l = await openOciLayout(path);
  return { index: l.index, refs: Object.fromEntries(l.refs) };
}

export interface ImageGraph {
  /** The top descriptor. */
  top: Descriptor;
  /** Manifests in push order: children first, the top one last. */
  manifests: Array<{ descriptor: Descriptor; bytes: Buffer }>;
  /** Every config and layer blob, deduplicated, in first-use order. */
  blobs: Descriptor[];
}

/** Walk an image (index → manifests → config and layers), reading and checking every manifest. */
export async function walkImage(layout: OciLayout, top: Descriptor): Promise<ImageGraph> {
  const manifests: ImageGraph["manifests"] = [];
  const blobs = new Map<string, Descriptor>();
  const seen = new Set<string>();
  async function visit(d: Descriptor, depth: number): Promise<void> {
    if (depth > 4) throw new OciError("BAD_LAYOUT", `${layout.path}: image indexes nested too deep`);
    if (seen.has(d.digest)) return;
    seen.add(d.digest);
    const bytes = await layout.readBlob(d.digest);
    if (bytes.length !== d.size)
      throw new OciError(
        "BAD_LAYOUT",
        `${layout.path}: ${d.digest} is ${bytes.length} bytes, its descriptor says ${d.size}`,
        { subject: d.digest },
      );
    if (isIndexMediaType(d.mediaType)) {
      const ix = parseJson<ImageIndex>(bytes, d.digest);
      for (const c of ix.manifests ?? []) await visit(c, depth + 1);
    } else if (isManifestMediaType(d.mediaType)) {
      const m = parseJson<ImageManifest>(bytes, d.digest);
      if (!m.config || !Array.isArray(m.layers))
        throw new OciError("BAD_LAYOUT", `${layout.path}: manifest ${d.digest} lacks config or layers`, {
          subject: d.digest,
        });
      for (const b of [m.config, ...m.layers]) {
        if (blobs.has(b.digest)) continue;
        const size = await layout.blobSize(b.digest);
        if (size === undefined)
          throw new OciError("BAD_LAYOUT", `${layout.path}: blob ${b.digest} is missing`, { subject: b.digest });
        if (size !== b.size)
          throw new OciError(
            "BAD_LAYOUT",
            `${layout.path}: blob ${b.digest} is ${size} bytes, its descriptor says ${b.size}`,
            { subject: b.digest },
          );
        blobs.set(b.digest, b);
      }
    } else {
      throw new OciError(
        "BAD_LAYOUT",
        `${layout.path}: unsupported media type ${JSON.stringify(d.mediaType)} for ${d.digest}`,
        { subject: d.digest },
      );
    }
    manifests.push({ descriptor: d, bytes });
  }
  await visit(top, 0);
  return { top, manifests, blobs: [...blobs.values()] };
}
