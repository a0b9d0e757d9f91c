// The real apk client, apk-tools 2.14, built from the source in shared/
// (tools/apk-tools/build.sh, ~30 s once) into node_modules/.cache: the judge
// of what kiln publishes. Needs gcc make pkg-config libssl-dev zlib1g-dev
// (.ci/run installs them).

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { takeLock } from "./lock.js";
import { REPO_ROOT, SHARED } from "./paths.js";

/** The path of the real `apk` (a wrapper script), building it first when missing. */
export async function realApk(): Promise<string> {
  if (!SHARED) throw new Error("shared/ is missing: the real apk client is built from shared/tools/apk-tools");
  const prefix = join(REPO_ROOT, "node_modules/.cache/kiln-tests/apk-tools");
  const apk = join(prefix, "bin/apk");
  while (!existsSync(apk)) {
    const release = await takeLock(`${prefix}.lock`);
    if (!release) continue;
    try {
      if (!existsSync(apk))
        execFileSync("bash", [join(SHARED, "tools/apk-tools/build.sh"), prefix], {
          stdio: ["ignore", "pipe", "inherit"],
        });
    } finally {
      release();
    }
  }
  return apk;
}
