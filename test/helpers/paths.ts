// Where things are for the end-to-end tests. The reference data (real
// packages and indexes made by Alpine's and Chainguard's tools, and the
// apk-tools source) is not part of this repository: it lives in `shared/`
// beside the clone (…/X/main and …/X/shared), or wherever KILN_SHARED_DIR
// points. Without it, the tests that need it skip with one line saying so;
// under CI (CI=true) its absence is a failure, so CI never skips them.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const KILN_BIN = join(REPO_ROOT, "packages/cli/dist/bin.js");

const candidates = [process.env.KILN_SHARED_DIR, join(REPO_ROOT, "../shared"), join(REPO_ROOT, "shared")].filter(
  Boolean,
) as string[];

/** The shared reference data directory, or undefined when it is absent. */
export const SHARED: string | undefined = candidates.find((c) => existsSync(join(c, "testdata/apk-real")));

/** Why tests needing the shared data are skipped (undefined when it is present). */
export const SHARED_MISSING: string | undefined = SHARED
  ? undefined
  : `shared reference data not found (looked in ${candidates.join(", ")}; set KILN_SHARED_DIR)`;

if (SHARED_MISSING !== undefined && process.env.CI === "true") {
  throw new Error(`${SHARED_MISSING} — CI must run the tests that need it`);
}

let told = false;
/** True when the shared data is absent; says so once per test file. Use with describe.skipIf / it.skipIf. */
export function noShared(): boolean {
  if (SHARED_MISSING !== undefined && !told) {
    told = true;
    console.warn(`skipping tests that need it: ${SHARED_MISSING}`);
  }
  return SHARED_MISSING !== undefined;
}

/** testdata/apk-real inside the shared data ("" when absent: only use it in tests guarded by noShared()). */
export const APK_REAL = SHARED ? join(SHARED, "testdata/apk-real") : "";
