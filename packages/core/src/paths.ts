// Joining untrusted names into host paths. Every value that came from outside
// (a package name, version, arch, repository tag, an archive's file name) goes
// through here before it touches the file system: each component must be one
// plain path segment, and the joined result must stay under the base.

import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { KilnError } from "./errors.js";

export class UnsafePathError extends KilnError {
  readonly code = "UNSAFE_PATH";
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Throw unless `value` is a single, plain path segment: not empty, `.` or `..`, no `/` or `\`, no control characters, at most 255 bytes. */
export function assertPathComponent(value: string, what: string): string {
  if (typeof value !== "string" || value === "" || value === "." || value === "..")
    throw new UnsafePathError(`${what} ${JSON.stringify(value)} is not a valid name (empty, "." or "..")`);
  if (value.includes("/") || value.includes("\\"))
    throw new UnsafePathError(`${what} ${JSON.stringify(value)} must not contain "/" or "\\"`);
  if (CONTROL.test(value)) throw new UnsafePathError(`${what} ${JSON.stringify(value)} contains control characters`);
  if (Buffer.byteLength(value) > 255) throw new UnsafePathError(`${what} is longer than 255 bytes`);
  return value;
}

/** True when `child` is `base` or lies below it (both resolved, no file-system access). */
export function isInside(base: string, child: string): boolean {
  const rel = relative(resolve(base), resolve(child));
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel));
}

/** Join validated single components under `base`; throws UnsafePathError for any component that is not one plain segment. */
export function joinUnder(base: string, ...components: Array<{ value: string; what: string } | string>): string {
  const parts = components.map((c) =>
    typeof c === "string" ? assertPathComponent(c, "path component") : assertPathComponent(c.value, c.what),
  );
  const out = join(base, ...parts);
  if (!isInside(base, out)) throw new UnsafePathError(`${out} is outside ${base}`);
  return out;
}
