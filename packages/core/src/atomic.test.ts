import { execFileSync } from "node:child_process";
import { lstat, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { installDir, replaceAtomic, replaceDirAtomic, tempPathFor, TEMP_MARKER, writeFileAtomic } from "./atomic.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-atomic-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("temporary names", () => {
  it("are hidden, beside the target, and name the process", () => {
    const t = tempPathFor("/a/b/APKINDEX.tar.gz");
    expect(dirname(t)).toBe("/a/b");
    expect(basename(t)).toMatch(new RegExp(`^\\.APKINDEX\\.tar\\.gz\\.kiln-tmp-${process.pid}-[0-9a-f]{8}$`));
    expect(tempPathFor("/a/x")).not.toBe(tempPathFor("/a/x"));
    expect(tempPathFor("/a/x", ".apk")).toMatch(/\.apk$/);
  });
  it("stay valid file names when the target's name is already long", () => {
    const t = tempPathFor(`/a/${"n".repeat(250)}`);
    expect(basename(t)).toMatch(new RegExp(`^\\${TEMP_MARKER}${process.pid}-[0-9a-f]{8}$`));
  });
});

describe("writeFileAtomic", () => {
  it("creates and replaces a file, leaving no temporary", async () => {
    const f = join(dir, "f.txt");
    await writeFileAtomic(f, "one");
    await writeFileAtomic(f, Buffer.from("two"), { fsync: true });
    expect(await readFile(f, "utf8")).toBe("two");
    expect(await readdir(dir)).toEqual(["f.txt"]);
  });
  it("sets the exact mode", async () => {
    const f = join(dir, "key.rsa");
    await writeFileAtomic(f, "secret", { mode: 0o600 });
    expect((await stat(f)).mode & 0o777).toBe(0o600);
  });
  it("refuses to replace with noReplace, keeping the old content", async () => {
    const f = join(dir, "k");
    await writeFile(f, "old");
    await expect(writeFileAtomic(f, "new", { noReplace: true })).rejects.toMatchObject({ code: "EEXIST" });
    expect(await readFile(f, "utf8")).toBe("old");
    expect(await readdir(dir)).toEqual(["k"]);
  });
  it("removes the temporary when the rename fails", async () => {
    const target = join(dir, "sub");
    await mkdir(join(target, "child"), { recursive: true });
    await expect(writeFileAtomic(target, "x")).rejects.toBeDefined();
    expect((await readdir(dir)).filter((n) => n.includes(TEMP_MARKER))).toEqual([]);
  });
});

describe("what atomic writes refuse to replace", () => {
  // `kiln index -o /dev/null` once replaced the device with a regular file (as root).
  it("a fifo or a directory target is one clear error; the target stays as it was and no temporary is left", async () => {
    const fifo = join(dir, "pipe");
    execFileSync("mkfifo", [fifo]);
    await expect(writeFileAtomic(fifo, "x")).rejects.toThrow(/pipe: is a fifo, not a file: refusing to replace it/);
    expect((await lstat(fifo)).isFIFO()).toBe(true);
    const sub = join(dir, "sub");
    await mkdir(sub);
    await expect(replaceAtomic(sub, async (tmp) => writeFile(tmp, "x"))).rejects.toMatchObject({
      code: "NOT_A_REGULAR_FILE",
    });
    expect((await readdir(dir)).sort()).toEqual(["pipe", "sub"]);
  });
  it("a symbolic link is replaced, not followed", async () => {
    const real = join(dir, "real");
    await writeFile(real, "keep");
    const l = join(dir, "link");
    await symlink(real, l);
    await writeFileAtomic(l, "new");
    expect(await readFile(real, "utf8")).toBe("keep");
    expect((await lstat(l)).isFile()).toBe(true);
  });
});

describe("replaceAtomic", () => {
  it("returns what the writer returns and keeps the old file when it throws", async () => {
    const f = join(dir, "out");
    expect(await replaceAtomic(f, async (tmp) => (await writeFile(tmp, "v1"), 42))).toBe(42);
    await expect(
      replaceAtomic(f, async (tmp) => {
        await writeFile(tmp, "half");
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(await readFile(f, "utf8")).toBe("v1");
    expect(await readdir(dir)).toEqual(["out"]);
  });
});

describe("directories", () => {
  it("replaceDirAtomic replaces a whole tree, or leaves the old one", async () => {
    const d = join(dir, "nested", "tree");
    await replaceDirAtomic(d, (tmp) => writeFile(join(tmp, "a"), "1"));
    await replaceDirAtomic(d, (tmp) => writeFile(join(tmp, "b"), "2"));
    expect(await readdir(d)).toEqual(["b"]);
    await expect(
      replaceDirAtomic(d, async (tmp) => {
        await writeFile(join(tmp, "c"), "3");
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(await readdir(d)).toEqual(["b"]);
    expect(await readdir(join(dir, "nested"))).toEqual(["tree"]);
  });
  it("installDir moves a finished directory into place", async () => {
    const src = join(dir, "new");
    await mkdir(src);
    await writeFile(join(src, "x"), "");
    await installDir(src, join(dir, "dst"));
    expect(await readdir(dir)).toEqual(["dst"]);
  });
});
