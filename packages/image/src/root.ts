// An image root kept as a tree of nodes, with file contents in a
// content-addressed spool on disk. Packages are installed into it with apk's
// rules (conflicts, replaces, installed database) but no install scripts run
// and nothing is ever written outside the root: every path is resolved inside
// the tree, with symlinks followed chroot-style (a link to `/` stays at the
// root), before anything is placed. What an install may write is bounded
// while it is written (see budget.ts): per package by its declared installed
// size, per root by a total cap.

import { assertPathComponent, KilnError, replaceDirAtomic } from "@kiln/core";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import { posix } from "node:path";
import {
  ApkError,
  formatInstalledDb,
  formatRepositories,
  formatWorld,
  openPackage,
  sortInstalled,
  type DataEntry,
  type InstalledDir,
  type InstalledPackage,
  type IndexRecord,
} from "@kiln/apk";
import type { RepoPackage } from "@kiln/repo";
import { formatSize, packageAllowance, ROOT_CAP_ENV, rootCapFromEnv } from "./budget.js";
import { BlobSpool, type Allowance, type StoredBlob } from "./spool.js";
import { comparePaths, nodesTar, scriptsTar, sortedPathCheck, withParents } from "./layer-tar.js";
import { createBusyboxLinks } from "./busybox-links.js";
import {
  checkedLabel,
  dbDirs,
  manifestEntry,
  replayEntry,
  SCRIPT_RE,
  type InstallHead,
  type ManifestEntry,
  type PackageManifest,
} from "./manifest.js";

export type { ManifestEntry, PackageManifest } from "./manifest.js";

export type NodeType = "dir" | "file" | "symlink" | "char" | "block" | "fifo";

export interface TreeNode {
  path: string;
  type: NodeType;
  mode: number;
  uid: number;
  gid: number;
  xattrs?: Record<string, Buffer>;
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  /** Content in the spool, by SHA-1 hex. */
  blob?: { sha1: string; size: number };
  /** Hard-link group: every node with the same id shares content. */
  linkGroup?: number;
  /** Package that placed it (absent for files kiln made). */
  owner?: string;
}

export class InstallError extends KilnError {
  constructor(
    message: string,
    readonly code: "CONFLICT" | "MALICIOUS_PATH" | "BAD_PACKAGE" | "INVALID_PATH" | "TOO_LARGE" | "UNSAFE_NAME",
  ) {
    super(message);
    this.name = "InstallError";
  }
}

const MAX_LINK_DEPTH = 40;

export interface ImageRootOptions {
  /** Cap on the regular-file bytes of the whole root; default KILN_MAX_ROOT_SIZE, else 16 GiB. */
  maxBytes?: number;
  /** How to raise the cap, for the refusal (default: set KILN_MAX_ROOT_SIZE). */
  raiseHint?: string;
}

/** Throw unless every segment of a tree path is one plain path segment (what is written to a layer or a directory). */
export function assertTreePath(path: string): string {
  try {
    for (const seg of path.split("/")) assertPathComponent(seg, "path segment");
  } catch (e) {
    throw new InstallError(`refusing to write ${JSON.stringify(path)}: ${(e as Error).message}`, "INVALID_PATH");
  }
  return path;
}

interface Owner {
  name: string;
  origin: string;
  replaces: Set<string>;
}

/** Install one entry: synchronously when nothing needs waiting for, else the promise to await. */
type InstallOne = (e: DataEntry, known?: StoredBlob) => Promise<void> | void;

export class ImageRoot {
  readonly nodes = new Map<string, TreeNode>();
  readonly installed: InstalledPackage[] = [];
  private readonly scripts: Array<{ name: string; body: Buffer }> = [];
  private readonly triggers: string[] = [];
  private readonly owners = new Map<string, Owner>();
  private nextLinkGroup = 1;
  /** The last entry directory resolved during an install (see resolveParent). */
  private lastParent: { pkgParent: string; canon: string } | undefined;
  /** Cap on regular-file bytes written into the root. */
  readonly maxBytes: number;
  private readonly raiseHint: string;
  /** Regular-file bytes written so far (packages and kiln's own files). */
  written = 0;
  /** File contents by SHA-1: small ones in memory (bounded), the rest in spoolDir. */
  readonly blobs: BlobSpool;

  constructor(
    readonly spoolDir: string,
    opts: ImageRootOptions = {},
  ) {
    this.nodes.set("", { path: "", type: "dir", mode: 0o755, uid: 0, gid: 0 });
    this.blobs = new BlobSpool(spoolDir);
    this.maxBytes = opts.maxBytes ?? rootCapFromEnv();
    this.raiseHint = opts.raiseHint ?? `set ${ROOT_CAP_ENV} to raise it (e.g. ${ROOT_CAP_ENV}=32G)`;
  }

  private tooLarge(what: string, adding?: number): InstallError {
    const detail =
      adding !== undefined ? ` (${formatSize(this.written)} written, ${formatSize(adding)} more declared)` : "";
    return new InstallError(
      `${what}: the image root would exceed its cap of ${formatSize(this.maxBytes)} of file content${detail}; ${this.raiseHint}`,
      "TOO_LARGE",
    );
  }

  private total(what: string): Allowance {
    return { left: this.maxBytes - this.written, refuse: () => this.tooLarge(what) };
  }

  /** Refuse, before anything is fetched or written, packages whose declared installed sizes (I:) alone exceed the cap. */
  checkDeclared(pkgs: RepoPackage[]): void {
    const declared = pkgs.reduce((n, p) => n + (p.record.installedSize ?? 0), 0);
    if (this.written + declared > this.maxBytes) {
      throw this.tooLarge(`${pkgs.length} packages declaring ${formatSize(declared)} installed (I:)`);
    }
  }

  /**
   * Canonical path of `path` inside the root. Symlinks in the parent
   * components are followed (and the last one when `followLast`), `..` stops at
   * the root, so the result can never name anything outside it.
   */
  resolve(path: string, followLast: boolean): string {
    let pending = path.split("/").filter((s) => s !== "" && s !== ".");
    let at = 0;
    const out: string[] = [];
    let cur = ""; // out.join("/"), kept as it grows
    let depth = 0;
    while (at < pending.length) {
      const part = pending[at++]!;
      if (part === "..") {
        out.pop();
        cur = out.join("/");
        continue;
      }
      const candidate = cur ? `${cur}/${part}` : part;
      const node = this.nodes.get(candidate);
      if (node?.type === "symlink" && (at < pending.length || followLast)) {
        if (++depth > MAX_LINK_DEPTH)
          throw new InstallError(`${path}: too many levels of symbolic links`, "INVALID_PATH");
        const target = node.linkTarget ?? "";
        const tparts = target.split("/").filter((s) => s !== "" && s !== ".");
        if (target.startsWith("/")) {
          out.length = 0;
          cur = "";
        }
        pending = [...tparts, ...pending.slice(at)];
        at = 0;
        continue;
      }
      out.push(part);
      cur = candidate;
    }
    return cur;
  }

  get(path: string): TreeNode | undefined {
    return this.nodes.get(this.resolve(path, false));
  }

  /** Ensure a directory exists (mkdir -p inside the root); returns its canonical path. */
  mkdirp(path: string, meta: { mode?: number; uid?: number; gid?: number; owner?: string } = {}): string {
    const canon = this.resolve(path, true);
    const parts = canon.split("/").filter(Boolean);
    let cur = "";
    for (const p of parts) {
      cur = cur ? `${cur}/${p}` : p;
      const n = this.nodes.get(cur);
      if (!n) {
        const node: TreeNode = {
          path: cur,
          type: "dir",
          mode: meta.mode ?? 0o755,
          uid: meta.uid ?? 0,
          gid: meta.gid ?? 0,
        };
        if (meta.owner) node.owner = meta.owner;
        this.nodes.set(cur, node);
      } else if (n.type !== "dir") {
        throw new InstallError(`${path}: ${cur} exists and is a ${n.type}, not a directory`, "CONFLICT");
      }
    }
    return canon;
  }

  /**
   * Store content in the spool; returns its SHA-1. The write stops, and the
   * partial file is removed, as soon as the content exceeds the root's cap or
   * any of `allowances`, whose `left` is reduced by the size stored.
   */
  async spool(
    content: AsyncIterable<Uint8Array> | Uint8Array,
    expectSha1?: string,
    what = "kiln's own files",
    allowances: Allowance[] = [],
    sourceChecks = false,
  ): Promise<{ sha1: string; size: number }> {
    const stored = await this.blobs.store(
      content,
      [this.total(what), ...allowances],
      expectSha1,
      () => new InstallError(`content does not match its checksum`, "BAD_PACKAGE"),
      sourceChecks,
    );
    this.written += stored.size;
    for (const a of allowances) a.left -= stored.size;
    return stored;
  }

  /**
   * spool() for a small content at hand, kept in memory without waiting; the
   * same caps are charged. Undefined when it must go to disk: spool() it then.
   */
  private spoolSync(
    bytes: Uint8Array,
    expectSha1: string | undefined,
    what: string,
    allowances: Allowance[],
  ): StoredBlob | undefined {
    const size = bytes.length;
    if (size > this.maxBytes - this.written) throw this.tooLarge(what);
    for (const a of allowances) if (size > a.left) throw a.refuse();
    const stored = this.blobs.storeSync(bytes, expectSha1);
    if (!stored) return undefined;
    this.written += size;
    for (const a of allowances) a.left -= size;
    return stored;
  }

  /** A file node's whole content. */
  readBlob(blob: StoredBlob): Promise<Buffer> {
    return this.blobs.read(blob);
  }

  /** A file node's content as a stream. */
  blobStream(blob: StoredBlob): AsyncIterable<Uint8Array> {
    return this.blobs.stream(blob);
  }

  /** Write a file node's content to a new host file. */
  copyBlob(blob: StoredBlob, dest: string): Promise<void> {
    return this.blobs.copyTo(blob, dest);
  }

  async readText(path: string): Promise<string | undefined> {
    const n = this.get(path);
    if (!n || n.type !== "file" || !n.blob) return undefined;
    return (await this.readBlob(n.blob)).toString("utf8");
  }

  async writeFile(
    path: string,
    content: string | Uint8Array,
    meta: { mode?: number; uid?: number; gid?: number } = {},
  ): Promise<void> {
    const parent = this.mkdirp(posix.dirname(path) === "." ? "" : posix.dirname(path));
    const canon = (parent ? `${parent}/` : "") + posix.basename(path);
    const existing = this.nodes.get(canon);
    if (existing && existing.type === "dir") throw new InstallError(`${path} is a directory`, "CONFLICT");
    const blob = await this.spool(typeof content === "string" ? Buffer.from(content) : content, undefined, `/${canon}`);
    this.nodes.set(canon, {
      path: canon,
      type: "file",
      mode: meta.mode ?? existing?.mode ?? 0o644,
      uid: meta.uid ?? existing?.uid ?? 0,
      gid: meta.gid ?? existing?.gid ?? 0,
      blob,
    });
  }

  private conflictAllowed(newOwner: Owner, existing: TreeNode): "overwrite" | "keep" | false {
    if (!existing.owner) return "overwrite";
    if (existing.owner === newOwner.name) return "overwrite";
    const old = this.owners.get(existing.owner);
    if (newOwner.replaces.has(existing.owner)) return "overwrite";
    if (old && old.origin === newOwner.origin) return "overwrite";
    if (old?.replaces.has(newOwner.name)) return "keep";
    return false;
  }

  /**
   * Install one package file whose index record is `pkg`; verifies identity
   * and datahash. With `manifest`, returns what installFromManifest needs to
   * install it again.
   */
  async installPackage(
    file: string,
    pkg: RepoPackage,
    opts: { manifest?: boolean } = {},
  ): Promise<PackageManifest | undefined> {
    const rec = pkg.record;
    const label = checkedLabel(rec);
    const reader = await openPackage(createReadStream(file, { highWaterMark: 256 * 1024 }), { subject: file });
    try {
      if (rec.checksum && reader.head.checksum !== rec.checksum) {
        throw new InstallError(
          `${label}: package bytes differ from the index (C:${reader.head.checksum} vs C:${rec.checksum})`,
          "BAD_PACKAGE",
        );
      }
      const info = reader.head.info;
      const head: InstallHead = {
        checksum: reader.head.checksum,
        replaces: info.replaces,
        triggers: info.triggers,
        scripts: [...reader.head.controlFiles]
          .filter(([n]) => SCRIPT_RE.test(n))
          .map(([name, body]) => ({ name, body })),
      };
      if (info.origin !== undefined) head.origin = info.origin;
      if (info.installedSize !== undefined) head.installedSize = info.installedSize;
      if (info.replacesPriority !== undefined) head.replacesPriority = info.replacesPriority;
      const entries: ManifestEntry[] = [];
      await this.installWith(rec, label, head, async (install) => {
        for await (const batch of reader.entryBatches()) {
          for (const e of batch) {
            const pending = install(e);
            if (pending) await pending;
            if (opts.manifest) entries.push(manifestEntry(e));
          }
        }
      });
      if (!opts.manifest) return undefined;
      const { scripts, ...rest } = head;
      return {
        version: 1,
        ...rest,
        scripts: scripts.map((x) => ({ name: x.name, body: x.body.toString("base64") })),
        entries,
      };
    } catch (e) {
      if (e instanceof ApkError)
        throw new InstallError(
          `${label}: ${e.message}`,
          e.code === "MALICIOUS_PATH" ? "MALICIOUS_PATH" : "BAD_PACKAGE",
        );
      throw e;
    } finally {
      await reader.close();
    }
  }

  /**
   * Install a package from its manifest, without its file: the same rules
   * as installPackage (paths resolved in this root, conflicts, replaces,
   * apk's database), with each regular file's content taken to be the host
   * file `contentPath(entry)` names (a content store kiln keeps). The
   * manifest must be the one of `pkg`'s C:; its entries are checked as a
   * package's are (normal paths, known types, SHA-1 for every file).
   */
  async installFromManifest(
    m: PackageManifest,
    pkg: RepoPackage,
    contentPath: (e: ManifestEntry) => string,
  ): Promise<void> {
    const rec = pkg.record;
    const label = checkedLabel(rec);
    if (m.version !== 1 || m.checksum !== rec.checksum)
      throw new InstallError(`${label}: the manifest is not the one of C:${rec.checksum}`, "BAD_PACKAGE");
    const head: InstallHead = {
      ...m,
      scripts: m.scripts.map((x) => ({ name: x.name, body: Buffer.from(x.body, "base64") })),
    };
    for (const x of head.scripts)
      if (!SCRIPT_RE.test(x.name))
        throw new InstallError(`${label}: manifest script ${x.name} is not a script`, "BAD_PACKAGE");
    await this.installWith(rec, label, head, async (install) => {
      for (const me of m.entries) {
        const e = replayEntry(me, label);
        if (e.type !== "file") await install(e);
        else if (me.size === 0) await install(e, await this.spool(new Uint8Array(0), me.sha1, label));
        else {
          const blob = { sha1: me.sha1!, size: me.size };
          if (this.written + blob.size > this.maxBytes) throw this.tooLarge(label, blob.size);
          this.blobs.addExternal(blob, contentPath(me));
          this.written += blob.size;
          await install(e, blob);
        }
      }
    });
  }

  /** The part of an install both ways share: the owner, the entries (`each` calls `install` for each), apk's database, scripts, triggers. */
  private async installWith(
    rec: IndexRecord,
    label: string,
    head: InstallHead,
    each: (install: InstallOne) => Promise<void>,
  ): Promise<void> {
    const budget = this.packageBudget(label, rec.installedSize, head.installedSize);
    const owner: Owner = {
      name: rec.name,
      origin: head.origin ?? rec.origin ?? rec.name,
      replaces: new Set(head.replaces.map((r) => r.replace(/[<>=~].*$/, ""))),
    };
    this.owners.set(rec.name, owner);
    const { dirs, dir: dbDir } = dbDirs();
    const pkgPathToCanon = new Map<string, string>();
    this.lastParent = undefined;
    await each((e, known) => this.installEntry(e, owner, label, pkgPathToCanon, dbDir, budget, known));
    const record: IndexRecord = { ...rec, replaces: head.replaces, unknownFields: [...rec.unknownFields] };
    delete record.fieldOrder;
    const ip: InstalledPackage = { record, dirs, extra: [] };
    if (head.replacesPriority !== undefined) ip.replacesPriority = head.replacesPriority;
    this.installed.push(ip);
    for (const x of head.scripts)
      this.scripts.push({ name: `${rec.name}-${rec.version}.${head.checksum}.${x.name.slice(1)}`, body: x.body });
    if (head.triggers.length) this.triggers.push(`${head.checksum} ${head.triggers.join(" ")}`);
  }

  /**
   * The allowance of one package: its declared installed size (the smaller of
   * the index's I: and .PKGINFO's size) plus max(10%, 1 MiB); refused at once
   * when the declared size alone does not fit under the root's cap.
   */
  private packageBudget(label: string, indexSize: number | undefined, pkginfoSize: number | undefined): Allowance[] {
    const sizes = [indexSize, pkginfoSize].filter((n): n is number => n !== undefined);
    if (!sizes.length) return [];
    const declared = Math.min(...sizes);
    if (declared > this.maxBytes - this.written) throw this.tooLarge(label, declared);
    const allowed = packageAllowance(declared);
    return [
      {
        left: allowed,
        refuse: () =>
          new InstallError(
            `${label}: its files hold more than ${allowed} bytes, but it declares ${declared} bytes installed (I:), and at most max(10%, 1 MiB) more is accepted; refusing it`,
            "TOO_LARGE",
          ),
      },
    ];
  }

  private installEntry(
    e: DataEntry,
    owner: Owner,
    label: string,
    pkgPathToCanon: Map<string, string>,
    dbDir: (p: string) => InstalledDir,
    budget: Allowance[],
    known?: StoredBlob,
  ): Promise<void> | void {
    if (e.type === "dir") return this.installDir(e, owner, label, pkgPathToCanon, dbDir);
    const slash = e.path.lastIndexOf("/");
    const pkgParent = slash < 0 ? "" : e.path.slice(0, slash);
    const base = slash < 0 ? e.path : e.path.slice(slash + 1);
    const parent = this.resolveParent(pkgParent, label, e.path);
    const canon = parent ? `${parent}/${base}` : base;
    const node: TreeNode = {
      path: canon,
      type: e.type === "hardlink" ? "file" : e.type,
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      owner: owner.name,
    };
    for (const _ in e.xattrs) {
      node.xattrs = e.xattrs;
      break;
    }
    const place = (blob?: StoredBlob) =>
      this.placeEntry(e, node, owner, label, pkgPathToCanon, dbDir, pkgParent, base, blob);
    if (e.type !== "file" || known) return place(known);
    // A small content at hand is kept without waiting; the rest is spooled.
    // The package reader checks the content against e.sha1 (APK-TOOLS.checksum.SHA1).
    const now = e.data ? this.spoolSync(e.data, e.sha1, label, budget) : undefined;
    if (now) return place(now);
    return this.spool(e.data ?? e.content(), e.sha1, label, budget, true).then(place);
  }

  /** The canonical directory a package's entry directory resolves to, refused unless it is a directory. */
  private resolveParent(pkgParent: string, label: string, path: string): string {
    // Consecutive entries share their directory: its resolution is kept until a node is replaced.
    const last = this.lastParent;
    if (last && last.pkgParent === pkgParent) return last.canon;
    const parent = this.resolve(pkgParent, true);
    const pnode = this.nodes.get(parent);
    if (!pnode || pnode.type !== "dir") {
      throw new InstallError(
        `${label}: ${path}: parent ${pkgParent || "/"} resolves to ${parent ? `/${parent}` : "/"}, which is ${pnode ? `a ${pnode.type}` : "missing"}`,
        "INVALID_PATH",
      );
    }
    this.lastParent = { pkgParent, canon: parent };
    return parent;
  }

  /** A non-directory entry's node, its content stored, put in the tree (unless the existing one stays) and in apk's database. */
  private placeEntry(
    e: DataEntry,
    node: TreeNode,
    owner: Owner,
    label: string,
    pkgPathToCanon: Map<string, string>,
    dbDir: (p: string) => InstalledDir,
    pkgParent: string,
    base: string,
    blob: StoredBlob | undefined,
  ): void {
    const canon = node.path;
    const zsum = this.fillNode(e, node, label, pkgPathToCanon, blob);
    const existing = this.nodes.get(canon);
    if (existing) {
      // A replaced node may change how later paths resolve.
      this.lastParent = undefined;
      if (this.keepExisting(e, node, existing, owner, label)) {
        if (e.type === "file") pkgPathToCanon.set(e.path, canon);
        return;
      }
    }
    this.nodes.set(canon, node);
    // Where this package's regular files are, for its hard links.
    if (e.type === "file") pkgPathToCanon.set(e.path, canon);
    const f: InstalledDir["files"][number] = { name: base, extra: [] };
    if (node.mode !== 0o644) f.mode = node.mode;
    if (node.uid) f.uid = node.uid;
    if (node.gid) f.gid = node.gid;
    if (zsum) f.checksum = zsum;
    dbDir(pkgParent).files.push(f);
  }

  /** A directory entry: created unless there (refused over a non-directory), and recorded in the package's db entry. */
  private installDir(
    e: DataEntry,
    owner: Owner,
    label: string,
    pkgPathToCanon: Map<string, string>,
    dbDir: (p: string) => InstalledDir,
  ): void {
    const canon = this.resolve(e.path, true);
    const existing = this.nodes.get(canon);
    if (existing && existing.type !== "dir") {
      throw new InstallError(
        `${label}: directory ${e.path} conflicts with a ${existing.type} from ${existing.owner ?? "the image"}`,
        "CONFLICT",
      );
    }
    if (!existing) {
      this.mkdirp(posix.dirname(canon) === "." ? "" : posix.dirname(canon));
      const node: TreeNode = { path: canon, type: "dir", mode: e.mode, uid: e.uid, gid: e.gid, owner: owner.name };
      if (Object.keys(e.xattrs).length) node.xattrs = e.xattrs;
      this.nodes.set(canon, node);
    }
    pkgPathToCanon.set(e.path, canon);
    const d = dbDir(e.path);
    if (e.mode !== 0o755) d.mode = e.mode;
    if (e.uid) d.uid = e.uid;
    if (e.gid) d.gid = e.gid;
  }

  /** NODE's content from a non-directory entry (a file's stored `blob`, link target, device numbers); returns its Z: checksum. */
  private fillNode(
    e: DataEntry,
    node: TreeNode,
    label: string,
    pkgPathToCanon: Map<string, string>,
    blob: StoredBlob | undefined,
  ): string | undefined {
    if (e.type === "file") {
      node.blob = blob!;
      return "Q1" + Buffer.from(blob!.sha1, "hex").toString("base64");
    }
    if (e.type === "symlink") {
      node.linkTarget = e.linkTarget!;
      return "Q1" + createHash("sha1").update(e.linkTarget!).digest("base64");
    }
    if (e.type === "hardlink") {
      const targetCanon = pkgPathToCanon.get(e.linkTarget!);
      const target = targetCanon !== undefined ? this.nodes.get(targetCanon) : undefined;
      if (!target || target.type !== "file")
        throw new InstallError(
          `${label}: hard link ${e.path} -> ${e.linkTarget}: target not installed by this package`,
          "BAD_PACKAGE",
        );
      target.linkGroup ??= this.nextLinkGroup++;
      node.blob = target.blob!;
      node.linkGroup = target.linkGroup;
      node.mode = target.mode;
      return "Q1" + Buffer.from(target.blob!.sha1, "hex").toString("base64");
    }
    if (e.devMajor !== undefined) node.devMajor = e.devMajor;
    if (e.devMinor !== undefined) node.devMinor = e.devMinor;
    return undefined;
  }

  /**
   * Whether the node already at NODE's path stays instead: refused over a
   * directory, or when differing and replaces do not allow it; true when the
   * replaces rules keep the existing one.
   */
  private keepExisting(e: DataEntry, node: TreeNode, existing: TreeNode, owner: Owner, label: string): boolean {
    const canon = node.path;
    const same =
      existing.type === node.type &&
      existing.mode === node.mode &&
      existing.uid === node.uid &&
      existing.gid === node.gid &&
      existing.blob?.sha1 === node.blob?.sha1 &&
      existing.linkTarget === node.linkTarget;
    if (existing.type === "dir") {
      throw new InstallError(`${label}: ${e.path} conflicts with directory /${canon}`, "CONFLICT");
    }
    if (same) return false;
    const verdict = this.conflictAllowed(owner, existing);
    if (verdict === false) {
      throw new InstallError(
        `file conflict: /${canon} is in both ${existing.owner} and ${owner.name} (${label}); declare replaces to allow it`,
        "CONFLICT",
      );
    }
    return verdict === "keep";
  }

  /** Busybox's applet links (busybox-links.ts); how many were made. */
  createBusyboxLinks(): Promise<number> {
    return createBusyboxLinks(this);
  }

  /** Write apk's state so `apk` works in the image later. */
  async writeApkState(opts: {
    world: string[];
    repositories: Array<{ tag?: string; url: string }>;
    arch: string;
    keys: Array<{ name: string; pem: Uint8Array }>;
  }): Promise<void> {
    // On a merged-usr root lib → usr/lib; resolve() follows it.
    await this.writeFile("lib/apk/db/installed", formatInstalledDb(sortInstalled(this.installed)));
    await this.writeFile("lib/apk/db/triggers", this.triggers.length ? this.triggers.join("\n") + "\n" : "");
    await this.writeFile("lib/apk/db/lock", "", { mode: 0o600 });
    await this.writeFile("lib/apk/db/scripts.tar", scriptsTar(this.scripts));
    this.mkdirp("etc/apk/keys");
    this.mkdirp("var/cache/apk");
    await this.writeFile("etc/apk/world", formatWorld(opts.world));
    await this.writeFile("etc/apk/repositories", formatRepositories(opts.repositories));
    await this.writeFile("etc/apk/arch", `${opts.arch}\n`);
    for (const k of [...opts.keys].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      try {
        assertPathComponent(k.name, "key name");
      } catch (e) {
        throw new InstallError(`etc/apk/keys: ${(e as Error).message}`, "UNSAFE_NAME");
      }
      await this.writeFile(`etc/apk/keys/${k.name}`, k.pem);
    }
  }

  /** Nodes sorted by path (UTF-8 byte order); hard-link groups lead with their first path. */
  sorted(filter?: (n: TreeNode) => boolean): TreeNode[] {
    const out: TreeNode[] = [];
    for (const n of this.nodes.values()) if (n.path !== "" && (!filter || filter(n))) out.push(n);
    return out.sort((a, b) => comparePaths(a.path, b.path));
  }

  /** A tar stream of the given nodes (all by default) with every parent directory included. */
  tar(opts: { mtime: number; nodes?: TreeNode[] }): AsyncGenerator<Uint8Array> {
    // Every node has its parents in the tree: all of them need none added.
    const all = opts.nodes ? withParents(opts.nodes, (p) => this.nodes.get(p)) : this.sorted();
    const checkPath = sortedPathCheck(assertTreePath, (name) => assertPathComponent(name, "path segment"));
    return nodesTar(all, {
      mtime: opts.mtime,
      checkPath,
      content: (blob) => this.blobStream(blob),
      contentSync: (blob) => this.blobs.inMemory(blob),
    });
  }

  /** Installed size of everything (regular file bytes). */
  get contentSize(): number {
    let s = 0;
    const seen = new Set<number>();
    for (const n of this.nodes.values()) {
      if (n.type !== "file" || !n.blob) continue;
      if (n.linkGroup !== undefined) {
        if (seen.has(n.linkGroup)) continue;
        seen.add(n.linkGroup);
      }
      s += n.blob.size;
    }
    return s;
  }
}

/** Replace the directory `dir` with the one `write` fills (@kiln/core's replaceDirAtomic). */
export async function writeDirAtomic(dir: string, write: (tmp: string) => Promise<void>): Promise<void> {
  await replaceDirAtomic(dir, write);
}

export { writeFile as writeHostFile };
