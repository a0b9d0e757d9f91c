// Where the shared test data lives: `shared/` sits beside the repository
// (…/X/main and …/X/shared), both for developers and in CI's fresh clone.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

function findShared(): string {
  const candidates = [process.env.KILN_SHARED_DIR, join(REPO_ROOT, "../shared"), join(REPO_ROOT, "shared")].filter(Boolean) as string[];
  for (const c of candidates) if (existsSync(join(c, "testdata/apk-real"))) return c;
  throw new Error(`shared test data not found; looked in ${candidates.join(", ")} (set KILN_SHARED_DIR)`);
}

export const SHARED = findShared();
export const APK_REAL = join(SHARED, "testdata/apk-real");
export const KILN_BIN = join(REPO_ROOT, "packages/cli/dist/bin.js");
