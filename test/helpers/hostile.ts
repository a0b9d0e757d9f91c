// Hostile repositories for tests: an APKINDEX written from raw record text and
// signed with a trusted key, and a package whose .PKGINFO says whatever it is
// told — both built with @kiln/apk's low-level pieces, bypassing the
// validation of its writers (buildIndex, writePackage), the way an attacker
// holding a signing key (or a careless tool) would.

import { createHash } from "node:crypto";
import {
  buildSignatureMember,
  emptyPackageInfo,
  encodeHeader,
  formatIndexText,
  formatPkgInfo,
  gzipMember,
  identityOf,
  signIndexBody,
  type IndexRecord,
  type PackageInfo,
  type SigningKey,
} from "@kiln/apk";

function tarEntry(
  path: string,
  body: Buffer,
  type: "file" | "dir" = "file",
  extra: { uid?: number; gid?: number; pax?: Record<string, string> } = {},
): Buffer[] {
  return [
    encodeHeader({
      path,
      type,
      mode: type === "dir" ? 0o755 : 0o644,
      uid: extra.uid ?? 0,
      gid: extra.gid ?? 0,
      size: body.length,
      mtime: 0,
      ...(extra.pax ? { pax: extra.pax } : {}),
    }),
    body,
    Buffer.alloc((512 - (body.length % 512)) % 512),
  ];
}

/** A signed APKINDEX.tar.gz holding exactly `records`, unvalidated. */
export function rawIndex(records: IndexRecord[], key: SigningKey, description = "hostile"): Buffer {
  const text = Buffer.from(formatIndexText(records));
  const tar = Buffer.concat([
    ...tarEntry("DESCRIPTION", Buffer.from(description)),
    ...tarEntry("APKINDEX", text),
    Buffer.alloc(1024),
  ]);
  return signIndexBody(gzipMember(tar), [key]);
}

export interface RawPackage {
  bytes: Buffer;
  /** The index record of these bytes (C:, S:, the .PKGINFO fields). */
  record: IndexRecord;
}

/** A signed package with `files` whose .PKGINFO is `info` as given (name, version, size unchecked). */
export function rawPackage(
  info: Partial<PackageInfo> & { name: string; version: string },
  files: Array<{ path: string; content: string | Buffer }>,
  key: SigningKey,
): RawPackage {
  const entries: Buffer[] = [];
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join("/") + "/";
      if (!dirs.has(d)) entries.push(...tarEntry(d, Buffer.alloc(0), "dir"));
      dirs.add(d);
    }
    const body = Buffer.from(f.content);
    entries.push(
      ...tarEntry(f.path, body, "file", {
        pax: { "APK-TOOLS.checksum.SHA1": createHash("sha1").update(body).digest("hex") },
      }),
    );
  }
  const data = gzipMember(Buffer.concat([...entries, Buffer.alloc(1024)]));
  const full: PackageInfo = {
    ...emptyPackageInfo(info.name, info.version, info.arch ?? "x86_64"),
    ...info,
    dataHash: createHash("sha256").update(data).digest("hex"),
  };
  // The control member carries no end-of-archive blocks (as apk writes it).
  const control = gzipMember(Buffer.concat(tarEntry(".PKGINFO", Buffer.from(formatPkgInfo(full)))));
  const bytes = Buffer.concat([buildSignatureMember(control, [key]), control, data]);
  const record: IndexRecord = {
    ...full,
    checksum: identityOf(control),
    fileSize: bytes.length,
    unknownFields: [],
    extra: [],
  };
  delete record.dataHash;
  return { bytes, record };
}
