// tools/build-if-needed.mjs, npm start's build step: turbo runs when a build
// input or a built file changed, and only then. Run on a copy of the script in
// a small tree of its own, whose turbo is a script that logs its runs.

import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const SCRIPT = new URL("../tools/build-if-needed.mjs", import.meta.url).pathname;
const tree = mkdtempSync(join(tmpdir(), "kiln-bin-"));
afterAll(() => rmSync(tree, { recursive: true, force: true }));

function write(rel: string, text: string) {
  mkdirSync(join(tree, rel, ".."), { recursive: true });
  writeFileSync(join(tree, rel), text);
}

write("tools/build-if-needed.mjs", "");
copyFileSync(SCRIPT, join(tree, "tools/build-if-needed.mjs"));
for (const f of ["tsconfig.base.json", "turbo.json", "package-lock.json"]) write(f, "{}\n");
for (const p of ["a", "b"]) {
  write(`packages/${p}/package.json`, `{"name":"${p}"}\n`);
  write(`packages/${p}/tsconfig.json`, "{}\n");
  write(`packages/${p}/src/index.ts`, `export const ${p} = 1;\n`);
}
// The stand-in turbo: logs each run, "builds" each package's dist, fails when told to.
write(
  "node_modules/.bin/turbo",
  `#!/bin/sh
echo "$@" >> "${tree}/turbo.log"
[ -f "${tree}/fail" ] && exit 3
for p in "${tree}"/packages/*; do mkdir -p "$p/dist"; cat "$p/src/index.ts" > "$p/dist/index.js"; done
`,
);
chmodSync(join(tree, "node_modules/.bin/turbo"), 0o755);

function run(): { status: number | null; turboRuns: number } {
  const r = spawnSync(process.execPath, [join(tree, "tools/build-if-needed.mjs")], { encoding: "utf8" });
  const log = existsSync(join(tree, "turbo.log")) ? readFileSync(join(tree, "turbo.log"), "utf8") : "";
  return { status: r.status, turboRuns: log.split("\n").filter(Boolean).length };
}

describe("tools/build-if-needed.mjs", () => {
  it("builds the first time, then not while nothing changed", () => {
    expect(run()).toEqual({ status: 0, turboRuns: 1 });
    expect(readFileSync(join(tree, "turbo.log"), "utf8")).toBe("run build --output-logs=errors-only\n");
    expect(run()).toEqual({ status: 0, turboRuns: 1 });
    expect(run()).toEqual({ status: 0, turboRuns: 1 });
  });

  it("builds again when a source, a package's tsconfig or the lock file changes, or a source is added", () => {
    write("packages/b/src/index.ts", "export const b = 2;\n");
    expect(run().turboRuns).toBe(2);
    expect(run().turboRuns).toBe(2);
    write("packages/a/tsconfig.json", '{"compilerOptions":{}}\n');
    expect(run().turboRuns).toBe(3);
    write("package-lock.json", '{"v":2}\n');
    expect(run().turboRuns).toBe(4);
    write("packages/a/src/more.ts", "export {};\n");
    expect(run().turboRuns).toBe(5);
    expect(run().turboRuns).toBe(5);
  });

  it("builds again when a built file is removed or changed", () => {
    rmSync(join(tree, "packages/a/dist/index.js"));
    expect(run().turboRuns).toBe(6);
    writeFileSync(join(tree, "packages/b/dist/index.js"), "tampered, and longer than before\n");
    expect(run().turboRuns).toBe(7);
    expect(run().turboRuns).toBe(7);
  });

  it("a failed build exits with turbo's status and is not stamped: the next run builds again", () => {
    write("packages/a/src/index.ts", "export const a = 3;\n");
    write("fail", "");
    expect(run()).toEqual({ status: 3, turboRuns: 8 });
    rmSync(join(tree, "fail"));
    expect(run()).toEqual({ status: 0, turboRuns: 9 });
    expect(run()).toEqual({ status: 0, turboRuns: 9 });
    // A damaged stamp is no stamp.
    writeFileSync(join(tree, "node_modules/.cache/kiln-build.json"), "{not json");
    expect(run()).toEqual({ status: 0, turboRuns: 10 });
  });
});
