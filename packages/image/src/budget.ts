// Data budgets for assembling a root (images and build guests alike). A
// package is a few megabytes of gzip that may expand to anything, so what an
// install writes is bounded twice while it is written, never after:
//
//   - per package, by what the package declares: its regular-file bytes may
//     exceed its installed size (the index's I:, or .PKGINFO's size when the
//     index has none; the smaller when both) by at most
//     max(10% of it, 1 MiB). Writers count exactly the file bytes (kiln,
//     melange) or more (abuild counts disk blocks), so an honest package is
//     always well inside; the slack only absorbs other tools' rounding.
//     A package that declares nothing is bounded by the total alone;
//   - per root, by a total cap on regular-file bytes (default 16 GiB), set
//     with KILN_MAX_ROOT_SIZE or `kiln image build --max-size`.
//
// Hard links count once (they share content); everything kiln writes itself
// (apk's database, accounts) counts towards the total too.

import { KilnError } from "@kiln/core";

export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;

/** Total regular-file bytes of a root unless configured otherwise. */
export const DEFAULT_ROOT_CAP = 16 * GIB;

/** The environment variable that sets the total cap (a size such as 32G or 500M, or bytes). */
export const ROOT_CAP_ENV = "KILN_MAX_ROOT_SIZE";

/** How far a package's file bytes may exceed its declared installed size: max(10%, 1 MiB). */
export function packageAllowance(declared: number): number {
  return declared + Math.max(Math.ceil(declared / 10), MIB);
}

export class BudgetError extends KilnError {
  readonly code = "BAD_SIZE";
}

const UNITS: Record<string, number> = { "": 1, K: 1024, M: MIB, G: GIB, T: 1024 * GIB };

/** Parse `16G`, `500M`, `2.5GiB`, `1048576` (binary units; B/iB suffixes optional). */
export function parseSize(text: string, what: string, kind: "input" | "usage" = "input"): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!m)
    throw new BudgetError(
      `${what}: expected a size such as 16G, 500M or a number of bytes, got ${JSON.stringify(text)}`,
      { kind },
    );
  const n = Math.floor(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new BudgetError(`${what}: ${JSON.stringify(text)} is not a positive size`, { kind });
  return n;
}

/** 17179869184 → "16 GiB", 1572864 → "1.5 MiB". */
export function formatSize(n: number): string {
  for (const [u, f] of [
    ["TiB", 1024 * GIB],
    ["GiB", GIB],
    ["MiB", MIB],
    ["KiB", 1024],
  ] as const) {
    if (n >= f) return `${Number((n / f).toFixed(1))} ${u}`;
  }
  return `${n} bytes`;
}

/** The total cap from KILN_MAX_ROOT_SIZE, else the default. */
export function rootCapFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const v = env[ROOT_CAP_ENV];
  return v === undefined || v === "" ? DEFAULT_ROOT_CAP : parseSize(v, ROOT_CAP_ENV);
}
