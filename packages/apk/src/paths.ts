// Entry-name safety. apk refuses absolute names, `..` segments and control
// characters as "malicious"; kiln also refuses relative links that climb out
// of the package root, which apk would follow on install.

import { posix } from "node:path";
import { ApkError } from "./errors.js";

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Normalise a stored entry name (`./a/b/` → `a/b`) or throw MALICIOUS_PATH. */
export function normalizeEntryPath(raw: string, subject: string): string {
  if (CONTROL.test(raw))
    throw new ApkError("MALICIOUS_PATH", `${subject}: entry name ${JSON.stringify(raw)} contains control characters`, {
      subject,
    });
  if (raw.startsWith("/"))
    throw new ApkError("MALICIOUS_PATH", `${subject}: entry name ${JSON.stringify(raw)} is absolute`, { subject });
  let p = raw;
  while (p.startsWith("./")) p = p.slice(2);
  while (p.endsWith("/")) p = p.slice(0, -1);
  if (p === "" || p === ".") return "";
  const segs = p.split("/");
  for (const s of segs) {
    if (s === "..")
      throw new ApkError("MALICIOUS_PATH", `${subject}: entry name ${JSON.stringify(raw)} contains ".."`, { subject });
    if (s === "" || s === ".")
      throw new ApkError(
        "MALICIOUS_PATH",
        `${subject}: entry name ${JSON.stringify(raw)} has an empty or "." segment`,
        { subject },
      );
  }
  return p;
}

/** Throw if a relative symlink target, resolved from the link's directory, climbs above the root. */
export function checkSymlinkTarget(path: string, target: string, subject: string): void {
  if (target === "") throw new ApkError("BAD_ARCHIVE", `${subject}: symlink ${path} has an empty target`, { subject });
  if (CONTROL.test(target))
    throw new ApkError("MALICIOUS_PATH", `${subject}: symlink ${path} target contains control characters`, { subject });
  if (target.startsWith("/")) return; // resolved inside the image root at install time
  let depth = posix.dirname(path) === "." ? 0 : posix.dirname(path).split("/").length;
  for (const s of target.split("/")) {
    if (s === "" || s === ".") continue;
    if (s === "..") {
      depth--;
      if (depth < 0)
        throw new ApkError(
          "MALICIOUS_PATH",
          `${subject}: symlink ${path} -> ${target} points outside the package root`,
          { subject },
        );
    } else depth++;
  }
}

export function parentDir(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}
