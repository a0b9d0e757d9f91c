// test.with-packages: the regular files of the newest build of each named
// package, unpacked for an image's smoke test; links and other entries are
// left out so nothing written leads outside the directory.

import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildIndex, emptyPackageInfo, indexRecordForPackage, writePackage, type EntrySpec } from "@kiln/apk";
import { extractTestPackages } from "./image-run.js";

let work: string;
let out: string;

async function pkg(name: string, version: string, entries: EntrySpec[]) {
  const file = join(out, "x86_64", `${name}-${version}.apk`);
  await writePackage({ info: emptyPackageInfo(name, version, "x86_64"), entries }, file);
  return indexRecordForPackage(file);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "kiln-test-pkgs-"));
  out = join(work, "out");
  await mkdir(join(out, "x86_64"), { recursive: true });
  const records = [
    await pkg("hello-cxx", "1.0-r0", [
      { path: "usr", type: "dir" },
      { path: "usr/bin", type: "dir" },
      { path: "usr/bin/hello-cxx", type: "file", mode: 0o755, content: "old" },
    ]),
    await pkg("hello-cxx", "1.0-r1", [
      { path: "usr", type: "dir" },
      { path: "usr/bin", type: "dir" },
      { path: "usr/bin/hello-cxx", type: "file", mode: 0o4755, content: "new" },
      { path: "usr/bin/escape", type: "symlink", linkTarget: "/etc" },
    ]),
  ];
  await writeFile(join(out, "x86_64", "APKINDEX.tar.gz"), buildIndex(records));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("extractTestPackages", () => {
  it("unpacks the newest build's files, without set-id bits and without links", async () => {
    const dir = await mkdtemp(join(work, "x-"));
    await extractTestPackages(out, "x86_64", ["hello-cxx"], dir);
    expect(await readFile(join(dir, "usr/bin/hello-cxx"), "utf8")).toBe("new");
    expect((await stat(join(dir, "usr/bin/hello-cxx"))).mode & 0o7777).toBe(0o755);
    expect(await readdir(join(dir, "usr/bin"))).toEqual(["hello-cxx"]);
  });

  it("a package the repository lacks is one error naming it", async () => {
    const dir = await mkdtemp(join(work, "y-"));
    await expect(extractTestPackages(out, "x86_64", ["nosuch"], dir)).rejects.toThrow(
      /^test\.with-packages: nosuch is not in the repository/,
    );
  });
});
