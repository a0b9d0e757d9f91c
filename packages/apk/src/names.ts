// The fields that later become host paths or URL segments — package name (P:,
// pkgname), version (V:, pkgver) and arch (A:, arch) — checked once, when an
// index or .PKGINFO is parsed, so nothing downstream ever sees `../x` or `a/b`.
// Names follow Alpine practice: letters, digits and `+ _ . -`, not starting
// with `.` or `-`; arches the same; versions apk's grammar.

import { ApkError } from "./errors.js";
import { isValidVersion } from "./version.js";

const NAME = /^[A-Za-z0-9+_][A-Za-z0-9+_.-]*$/;
/** A package file is `NAME-VERSION.apk`: keep that one path segment within 255 bytes. */
const MAX_FILE_NAME = 255;

function show(value: string): string {
  return JSON.stringify(value.length > 80 ? value.slice(0, 80) + "…" : value);
}

/** Throw INVALID_FIELD unless `value` is a valid package name; `where` names the file/line and `field` the key. */
export function checkPackageName(value: string, where: string, field: string): void {
  if (!NAME.test(value)) {
    throw new ApkError(
      "INVALID_FIELD",
      `${where}: ${field} ${show(value)} is not a valid package name (letters, digits and "+ _ . -", not starting with "." or "-")`,
      { subject: where },
    );
  }
}

export function checkArch(value: string, where: string, field: string): void {
  if (!NAME.test(value)) {
    throw new ApkError(
      "INVALID_FIELD",
      `${where}: ${field} ${show(value)} is not a valid arch (letters, digits and "+ _ . -", not starting with "." or "-")`,
      { subject: where },
    );
  }
}

export function checkVersion(value: string, where: string, field: string): void {
  if (!isValidVersion(value))
    throw new ApkError("INVALID_VERSION", `${where}: ${field} ${show(value)} is not a valid apk version`, {
      subject: where,
    });
}

/** The package's file name `NAME-VERSION.apk` must be one path segment of at most 255 bytes. */
export function checkFileName(name: string, version: string, where: string): void {
  if (Buffer.byteLength(name) + Buffer.byteLength(version) + 5 > MAX_FILE_NAME) {
    throw new ApkError(
      "INVALID_FIELD",
      `${where}: package file name ${show(`${name}-${version}.apk`)} is longer than ${MAX_FILE_NAME} bytes`,
      { subject: where },
    );
  }
}

/** Name, version and arch of one package, and the `NAME-VERSION.apk` file name they make; `keys` are the field names to cite. */
export function checkPackageIdentity(
  name: string,
  version: string,
  arch: string,
  where: string,
  keys: { name: string; version: string; arch: string },
): void {
  checkPackageName(name, where, keys.name);
  checkVersion(version, where, keys.version);
  checkArch(arch, where, keys.arch);
  checkFileName(name, version, where);
}
