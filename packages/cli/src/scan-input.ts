// What `kiln scan` scans: the installed packages (and os-release) of an OCI
// image (layout directory or oci-archive), a root directory, or an SBOM
// (SPDX 2.3 or CycloneDX JSON, packages by their pkg:apk purls). Everything is
// hostile: layer blobs are checked against their digests while streamed,
// only the few files needed are kept (bounded), links are followed inside
// the image only, a root's files must resolve inside the root.

import { createHash } from "node:crypto";
import { open, readFile, realpath, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { createGunzip } from "node:zlib";
import { pipeline } from "node:stream/promises";
import { decodeHeader, isZeroBlock, parseInstalledDb, parsePax } from "@kiln/apk";
import { isInside } from "@kiln/core";
import { openOciLayout, walkImage, type ImageManifest, type OciLayout } from "@kiln/image";
import type { ScannedPackage } from "@kiln/repo";
import { UserError } from "./util.js";

/** Largest installed database or os-release read, and largest SBOM. */
export const MAX_SCAN_FILE = 64 << 20;
const MAX_LINKS = 100_000;
const DB_PATHS = ["lib/apk/db/installed", "usr/lib/apk/db/installed"];
const OS_RELEASE_PATHS = ["etc/os-release", "usr/lib/os-release"];

export interface ScanTarget {
  /** What was scanned, for messages: the path, with the architecture for an image. */
  subject: string;
  arch?: string;
  /** os-release fields (ID, ID_LIKE, VERSION_ID, …), when the input has one. */
  osRelease?: Record<string, string>;
  packages: ScannedPackage[];
}

/** os-release's KEY=value lines, quotes and backslash escapes removed. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2]!;
    const q = v[0];
    if ((q === '"' || q === "'") && v.endsWith(q) && v.length >= 2) v = v.slice(1, -1);
    out[m[1]!] = q === '"' ? v.replace(/\\(["\\$`])/g, "$1") : v;
  }
  return out;
}

function packagesOf(db: string, subject: string): ScannedPackage[] {
  try {
    return parseInstalledDb(db, subject).map((p) => ({
      name: p.record.name,
      version: p.record.version,
      ...(p.record.origin ? { origin: p.record.origin } : {}),
    }));
  } catch (e) {
    throw new UserError(`${subject}: ${(e as Error).message}`);
  }
}

/** Files of interest collected from an image's layers: regular files by path, links by path. */
interface LayerFiles {
  files: Map<string, Buffer>;
  links: Map<string, string>;
}

function normal(p: string): string {
  return posix
    .normalize("/" + p)
    .slice(1)
    .replace(/\/+$/, "");
}

function whiteout(state: LayerFiles, path: string): void {
  const dir = posix.dirname(path);
  const base = posix.basename(path);
  const gone = base === ".wh..wh..opq" ? (dir === "." ? "" : dir) : posix.join(dir, base.slice(4));
  for (const m of [state.files, state.links])
    for (const k of [...m.keys()]) if (k === gone || gone === "" || k.startsWith(gone + "/")) m.delete(k);
}

function wanted(path: string): boolean {
  return path.endsWith("/apk/db/installed") || posix.basename(path) === "os-release";
}

/** A tar stream's entries fed in chunks, keeping the wanted files and every link. */
class LayerReader {
  private buf: Buffer = Buffer.alloc(0);
  private left = 0;
  private pad = 0;
  private body: Buffer[] | undefined;
  private entry: { path: string; type: string } | undefined;
  private pax: Map<string, Buffer> | undefined;
  private longName: string | undefined;
  private done = false;
  constructor(
    private readonly state: LayerFiles,
    private readonly subject: string,
  ) {}

  feed(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (!this.done) {
      if (this.left > 0 || this.pad > 0) {
        if (!this.buf.length) return;
        const n = Math.min(this.left, this.buf.length);
        if (n && this.body) this.body.push(this.buf.subarray(0, n));
        this.left -= n;
        const p = Math.min(this.pad, this.buf.length - n);
        this.pad -= p;
        this.buf = this.buf.subarray(n + p);
        if (this.left === 0 && this.pad === 0) this.finish();
        continue;
      }
      if (this.buf.length < 512) return;
      const block = this.buf.subarray(0, 512);
      this.buf = this.buf.subarray(512);
      if (isZeroBlock(block)) {
        this.done = true;
        return;
      }
      this.header(block);
    }
  }

  private header(block: Buffer): void {
    const h = decodeHeader(block);
    const raw =
      this.pax?.get("path")?.toString("utf8") ?? this.longName ?? (h.prefix ? `${h.prefix}/${h.name}` : h.name);
    const linkname = this.pax?.get("linkpath")?.toString("utf8") ?? h.linkname;
    this.pax = undefined;
    this.longName = undefined;
    const path = normal(raw);
    const meta = h.typeflag === "x" || h.typeflag === "L";
    if (meta && h.size > 1 << 20) throw new UserError(`${this.subject}: an extended tar header of ${h.size} bytes`);
    this.entry = { path, type: h.typeflag };
    this.left = h.size;
    this.pad = (512 - (h.size % 512)) % 512;
    const keep = meta || ((h.typeflag === "0" || h.typeflag === "\0") && wanted(path));
    if (keep && h.size > MAX_SCAN_FILE)
      throw new UserError(`${this.subject}: ${path} is ${h.size} bytes, more than the ${MAX_SCAN_FILE} read`);
    this.body = keep ? [] : undefined;
    if (posix.basename(path).startsWith(".wh.")) whiteout(this.state, path);
    else if (h.typeflag === "2" || h.typeflag === "1") {
      if (this.state.links.size >= MAX_LINKS) throw new UserError(`${this.subject}: more than ${MAX_LINKS} links`);
      this.state.files.delete(path);
      this.state.links.set(path, h.typeflag === "1" ? "/" + normal(linkname) : linkname);
    } else if (h.typeflag !== "x" && h.typeflag !== "L" && h.typeflag !== "g") {
      this.state.files.delete(path);
      this.state.links.delete(path);
    }
    if (this.left === 0 && this.pad === 0) this.finish();
  }

  private finish(): void {
    const e = this.entry;
    const body = this.body ? Buffer.concat(this.body) : undefined;
    this.entry = undefined;
    this.body = undefined;
    if (!e || !body) return;
    if (e.type === "x") this.pax = parsePax(body, this.subject);
    else if (e.type === "L") this.longName = body.toString("utf8").replace(/\0+$/, "");
    else this.state.files.set(e.path, body);
  }
}

/** PATH in the image, following links (inside the image) component by component. */
function lookup(state: LayerFiles, path: string): Buffer | undefined {
  let parts = normal(path).split("/");
  let hops = 0;
  for (let i = 0; i < parts.length; i++) {
    const cur = parts.slice(0, i + 1).join("/");
    const target = state.links.get(cur);
    if (target === undefined) continue;
    if (++hops > 40) return undefined;
    const base = target.startsWith("/") ? "" : parts.slice(0, i).join("/");
    parts = normal(posix.join(base, target, ...parts.slice(i + 1))).split("/");
    i = -1;
  }
  return state.files.get(parts.join("/"));
}

async function readLayers(layout: OciLayout, manifest: ImageManifest, subject: string): Promise<LayerFiles> {
  const state: LayerFiles = { files: new Map(), links: new Map() };
  for (const l of manifest.layers) {
    if (!/gzip|^application\/vnd\.oci\.image\.layer\.v1\.tar$/.test(l.mediaType))
      throw new UserError(
        `${subject}: layer ${l.digest} has media type ${JSON.stringify(l.mediaType)} (expected a tar or gzip tar)`,
      );
    const reader = new LayerReader(state, `${subject}: layer ${l.digest}`);
    const hash = createHash("sha256");
    const src = layout.openBlob(l.digest);
    src.on("data", (c: Buffer) => hash.update(c));
    const sink = async (chunks: AsyncIterable<Buffer>) => {
      for await (const c of chunks) reader.feed(c);
    };
    try {
      if (l.mediaType.includes("gzip")) await pipeline(src, createGunzip(), sink);
      else await pipeline(src, sink);
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new UserError(`${subject}: layer ${l.digest}: ${(e as Error).message}`);
    }
    const got = `sha256:${hash.digest("hex")}`;
    if (got !== l.digest)
      throw new UserError(`${subject}: layer ${l.digest} is corrupt (its content hashes to ${got})`);
  }
  return state;
}

async function scanImage(path: string): Promise<ScanTarget[]> {
  const layout = await openOciLayout(path);
  const graph = await walkImage(layout, layout.resolve());
  const out: ScanTarget[] = [];
  for (const m of graph.manifests) {
    const man = JSON.parse(m.bytes.toString("utf8")) as ImageManifest;
    if (!man.config || !Array.isArray(man.layers)) continue;
    const cfg = JSON.parse((await layout.readBlob(man.config.digest)).toString("utf8")) as { architecture?: string };
    const arch = typeof cfg.architecture === "string" ? cfg.architecture : "unknown";
    const subject = `${path} (${arch})`;
    const state = await readLayers(layout, man, subject);
    const db = DB_PATHS.map((p) => lookup(state, p)).find((b) => b !== undefined);
    const os = OS_RELEASE_PATHS.map((p) => lookup(state, p)).find((b) => b !== undefined);
    out.push({
      subject,
      arch,
      ...(os ? { osRelease: parseOsRelease(os.toString("utf8")) } : {}),
      packages: db ? packagesOf(db.toString("utf8"), `${subject}: lib/apk/db/installed`) : [],
    });
  }
  if (!out.length) throw new UserError(`${path}: no image manifest in this layout`);
  return out;
}

/** ROOT/REL if it resolves (links followed) to a regular file inside ROOT, at most MAX_SCAN_FILE bytes. */
async function fileInRoot(root: string, rel: string): Promise<string | undefined> {
  const real = await realpath(join(root, rel)).catch(() => undefined);
  if (!real || !isInside(root, real)) return undefined;
  const st = await stat(real);
  if (!st.isFile()) return undefined;
  if (st.size > MAX_SCAN_FILE)
    throw new UserError(`${join(root, rel)}: ${st.size} bytes, more than the ${MAX_SCAN_FILE} read`);
  return readFile(real, "utf8");
}

async function scanRoot(dir: string): Promise<ScanTarget[]> {
  const root = await realpath(dir);
  let db: string | undefined;
  for (const p of DB_PATHS) db ??= await fileInRoot(root, p);
  if (db === undefined)
    throw new UserError(`${dir}: no lib/apk/db/installed (not an apk root, an OCI layout or an SBOM)`);
  let os: string | undefined;
  for (const p of OS_RELEASE_PATHS) os ??= await fileInRoot(root, p);
  return [
    {
      subject: dir,
      ...(os !== undefined ? { osRelease: parseOsRelease(os) } : {}),
      packages: packagesOf(db, join(dir, "lib/apk/db/installed")),
    },
  ];
}

/** pkg:apk/NAMESPACE/NAME@VERSION?arch=…&origin=…: name, version, origin and namespace; undefined for other purls. */
export function parseApkPurl(purl: string): (ScannedPackage & { namespace?: string }) | undefined {
  const m = /^pkg:apk\/(?:([^/@?#]+)\/)?([^/@?#]+)@([^?#]+)(?:\?([^#]*))?/.exec(purl);
  if (!m) return undefined;
  try {
    const q = new URLSearchParams(m[4] ?? "");
    const origin = q.get("origin");
    return {
      name: decodeURIComponent(m[2]!),
      version: decodeURIComponent(m[3]!),
      ...(origin ? { origin } : {}),
      ...(m[1] ? { namespace: decodeURIComponent(m[1]) } : {}),
    };
  } catch {
    return undefined;
  }
}

function sbomPurls(doc: Record<string, unknown>, file: string): string[] {
  if (typeof doc.spdxVersion === "string") {
    if (!Array.isArray(doc.packages)) throw new UserError(`${file}: an SPDX document without packages`);
    return doc.packages.flatMap((p: { externalRefs?: Array<{ referenceType?: string; referenceLocator?: string }> }) =>
      (Array.isArray(p?.externalRefs) ? p.externalRefs : [])
        .filter((r) => r?.referenceType === "purl" && typeof r.referenceLocator === "string")
        .map((r) => r.referenceLocator!),
    );
  }
  if (doc.bomFormat === "CycloneDX") {
    const out: string[] = [];
    const walk = (cs: unknown, depth: number): void => {
      if (!Array.isArray(cs) || depth > 16) return;
      for (const c of cs as Array<{ purl?: unknown; components?: unknown }>) {
        if (typeof c?.purl === "string") out.push(c.purl);
        walk(c?.components, depth + 1);
      }
    };
    walk(doc.components, 0);
    return out;
  }
  throw new UserError(`${file}: a JSON file that is neither an SPDX nor a CycloneDX SBOM`);
}

async function scanSbom(file: string, size: number): Promise<ScanTarget[]> {
  if (size > MAX_SCAN_FILE) throw new UserError(`${file}: ${size} bytes, more than the ${MAX_SCAN_FILE} read`);
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(file, "utf8"));
  } catch (e) {
    throw new UserError(`${file}: not JSON: ${(e as Error).message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new UserError(`${file}: not an SBOM object`);
  const pkgs = sbomPurls(doc as Record<string, unknown>, file)
    .map(parseApkPurl)
    .filter((p): p is NonNullable<typeof p> => p !== undefined);
  const ns = pkgs.find((p) => p.namespace)?.namespace;
  return [
    {
      subject: file,
      ...(ns ? { osRelease: { ID: ns } } : {}),
      packages: pkgs.map(({ namespace: _ns, ...p }) => p),
    },
  ];
}

/** The targets of INPUT: an OCI layout directory or archive, a root directory, or an SBOM. */
export async function readScanInput(input: string): Promise<ScanTarget[]> {
  const st = await stat(input).catch(() => undefined);
  if (!st) throw new UserError(`${input}: no such file or directory`);
  if (st.isDirectory()) {
    if ((await stat(join(input, "oci-layout")).catch(() => undefined))?.isFile()) return scanImage(input);
    return scanRoot(input);
  }
  if (!st.isFile()) throw new UserError(`${input}: not a file or directory`);
  const head = Buffer.alloc(64);
  const fh = await open(input, "r");
  try {
    await fh.read(head, 0, 64, 0);
  } finally {
    await fh.close();
  }
  if (/^\s*\{/.test(head.toString("latin1"))) return scanSbom(input, st.size);
  return scanImage(input);
}
