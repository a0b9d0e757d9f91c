import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildLogVersion, pruneBuildLogs, startBuildLog } from "./log-files.js";

const dir = mkdtempSync(join(tmpdir(), "kiln-logs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("build logs per build", () => {
  it("keeps the log of each version and release, NAME.log naming the newest", async () => {
    const a = await startBuildLog(dir, "zlib", "1.2.13-r0", "# r0\n");
    writeFileSync(a, "# r0\nfirst round\n");
    const b = await startBuildLog(dir, "zlib", "1.2.13-r1", "# r1\n");
    expect(a).toBe(join(dir, "zlib-1.2.13-r0.log"));
    expect(b).toBe(join(dir, "zlib-1.2.13-r1.log"));
    expect(readFileSync(a, "utf8")).toBe("# r0\nfirst round\n");
    expect(readlinkSync(join(dir, "zlib.log"))).toBe("zlib-1.2.13-r1.log");
    expect(readFileSync(join(dir, "zlib.log"), "utf8")).toBe("# r1\n");
  });

  it("never writes through a link placed at a build's log name", async () => {
    const victim = join(dir, "victim");
    writeFileSync(victim, "keep");
    symlinkSync(victim, join(dir, "evil-1.0-r0.log"));
    await startBuildLog(dir, "evil", "1.0-r0", "# log\n");
    expect(readFileSync(victim, "utf8")).toBe("keep");
    expect(readFileSync(join(dir, "evil-1.0-r0.log"), "utf8")).toBe("# log\n");
  });

  it("keeps only the newest builds of a package, and no other package's logs", async () => {
    for (const v of ["1.0-r0", "1.0-r1", "1.2-r0", "1.10-r0", "1.9-r3"]) await startBuildLog(dir, "foo", v, "x", 3);
    writeFileSync(join(dir, "foo-bar-1.0-r0.log"), "another package");
    await startBuildLog(dir, "foo", "1.10-r1", "x", 3);
    const foo = readdirSync(dir).filter((f) => buildLogVersion("foo", f) !== undefined);
    expect(foo.sort()).toEqual(["foo-1.10-r0.log", "foo-1.10-r1.log", "foo-1.9-r3.log"]);
    expect(readdirSync(dir)).toContain("foo-bar-1.0-r0.log");
    expect(await pruneBuildLogs(dir, "foo", 1)).toEqual(["foo-1.10-r0.log", "foo-1.9-r3.log"]);
  });

  it("reads versions only from a package's own log names", () => {
    expect(buildLogVersion("zlib", "zlib-1.2.13-r1.log")).toBe("1.2.13-r1");
    expect(buildLogVersion("zlib", "zlib-bootstrap-1.2.13-r0.log")).toBeUndefined();
    expect(buildLogVersion("zlib", "zlib.log")).toBeUndefined();
    expect(buildLogVersion("zlib", "zlib-1.2.13-r0.test.log")).toBeUndefined();
    expect(buildLogVersion("zlib", "zlib-1.2.13.log")).toBeUndefined();
  });
});
