import { execFileSync } from "node:child_process";
import { createReadStream, readFileSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, Keyring, parseSigningKey, parsePublicKey, type SigningKey } from "./keys.js";
import { emptyPackageInfo, type PackageInfo } from "./pkginfo.js";
import { openPackage, type DataEntry } from "./package-read.js";
import { writePackage, type EntrySpec } from "./package-write.js";
import { indexRecordForPackage, resignPackage, verifyFile } from "./verify.js";
import { buildIndex, readIndex, verifyIndex, mergeIndexRecords } from "./apkindex.js";

const SPLIT = new URL("../../../test/helpers/split-members.py", import.meta.url).pathname;
function independent(file: string) {
  return JSON.parse(execFileSync("python3", [SPLIT, file], { encoding: "utf8" })) as {
    file_size: number;
    members: Array<{ size: number; sha1_q1: string; sha256: string }>;
  };
}

let dir: string;
let key: SigningKey;
let key2: SigningKey;
const ring = new Keyring();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-pkg-"));
  const k = await generateKey(2048);
  key = parseSigningKey(k.privatePem, "test.rsa.pub");
  ring.add("test.rsa.pub", parsePublicKey(k.publicPem, "test"));
  const k2 = await generateKey(3072);
  key2 = parseSigningKey(k2.privatePem, "other.rsa.pub");
  ring.add("other.rsa.pub", parsePublicKey(k2.publicPem, "other"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function info(): PackageInfo {
  const i = emptyPackageInfo("demo", "1.2.3-r4", "x86_64");
  i.description = "a demo package";
  i.url = "https://example.invalid/demo";
  i.license = "MIT AND Apache-2.0";
  i.origin = "demo-src";
  i.maintainer = "Kiln Team <team@example.invalid>";
  i.commit = "0123456789abcdef0123456789abcdef01234567";
  i.providerPriority = 10;
  i.replacesPriority = 5;
  i.depends = ["so:libc.so.6", "busybox>=1.36", "!conflicting"];
  i.provides = ["cmd:demo=1.2.3-r4", "virtual-demo"];
  i.installIf = ["demo-base", "lang"];
  i.replaces = ["old-demo"];
  i.triggers = ["/usr/share/demo/*"];
  i.extra = [["x-custom", "value"]];
  return i;
}

const big = Buffer.alloc(300_000, 0);
for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;

const ENTRIES: EntrySpec[] = [
  { path: "usr/bin/demo", type: "file", mode: 0o4755, content: "#!/bin/sh\necho demo\n" },
  { path: "usr/bin/demo-hard", type: "hardlink", linkTarget: "usr/bin/demo" },
  { path: "usr/bin/aa-link-first", type: "hardlink", linkTarget: "usr/lib/blob" },
  { path: "usr/lib/blob", type: "file", content: big },
  { path: "usr/lib/libdemo.so", type: "symlink", linkTarget: "libdemo.so.1" },
  {
    path: "usr/sbin/ping",
    type: "file",
    mode: 0o755,
    content: "ping",
    xattrs: { "security.capability": Buffer.from([1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) },
  },
  { path: "var/lib/demo", type: "dir", mode: 0o2770, uid: 1000, gid: 1000, uname: "demo", gname: "demo" },
  { path: "var/lib/demo/state", type: "file", mode: 0o600, uid: 1000, gid: 1000, content: "" },
  { path: "dev/null", type: "char", mode: 0o666, devMajor: 1, devMinor: 3 },
  { path: "run/demo.fifo", type: "fifo", mode: 0o644 },
  {
    path: "usr/share/a-very-long-directory-name-that-goes-on-and-on/and-on-and-on-past-the-ustar-limit-of-one-hundred-bytes/file.txt",
    type: "file",
    content: "long",
  },
  {
    path: "usr/share/long-link",
    type: "symlink",
    linkTarget:
      "/usr/share/a-very-long-directory-name-that-goes-on-and-on/and-on-and-on-past-the-ustar-limit-of-one-hundred-bytes/file.txt",
  },
];

async function readAll(file: string) {
  const reader = await openPackage(createReadStream(file), { subject: file });
  const entries: Array<Omit<DataEntry, "content"> & { body?: Buffer }> = [];
  for await (const e of reader.entries()) {
    const { content, ...rest } = e;
    const item: (typeof entries)[number] = { ...rest };
    if (e.type === "file") {
      const parts: Buffer[] = [];
      for await (const c of content()) parts.push(Buffer.from(c));
      item.body = Buffer.concat(parts);
    }
    entries.push(item);
  }
  return { head: reader.head, entries };
}

describe("write → read round trip", () => {
  it("keeps metadata, scripts, files, modes, owners, xattrs, link targets and hard links", async () => {
    const out = join(dir, "demo.apk");
    const w = await writePackage(
      {
        info: info(),
        entries: ENTRIES,
        scripts: { ".post-install": "#!/bin/sh\necho installed\n", ".trigger": "#!/bin/sh\n" },
        controlFiles: { ".melange.yaml": "package:\n  name: demo\n" },
        signingKeys: [key],
        sourceDateEpoch: 1700000000,
      },
      out,
    );
    const { head, entries } = await readAll(out);
    const expected = {
      ...info(),
      dataHash: w.info.dataHash,
      installedSize: w.info.installedSize,
      buildDate: 1700000000,
    };
    expect(head.info).toEqual(expected);
    expect(head.signatures.map((s) => [s.type, s.keyName])).toEqual([["RSA256", "test.rsa.pub"]]);
    expect(head.controlFiles.get(".post-install")!.toString()).toBe("#!/bin/sh\necho installed\n");
    expect(head.controlFiles.get(".melange.yaml")!.toString()).toContain("name: demo");
    const byPath = new Map(entries.map((e) => [e.path, e]));
    // Parents were added, in order, before their contents.
    const paths = entries.map((e) => e.path);
    for (const p of paths) {
      const parent = p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : "";
      if (parent) expect(paths.indexOf(parent)).toBeLessThan(paths.indexOf(p));
    }
    expect(byPath.get("usr/bin/demo")).toMatchObject({
      type: "file",
      mode: 0o4755,
      uid: 0,
      gid: 0,
      body: Buffer.from("#!/bin/sh\necho demo\n"),
    });
    expect(byPath.get("usr/bin/demo-hard")).toMatchObject({ type: "hardlink", linkTarget: "usr/bin/demo" });
    // The hard link that sorts first carries the content; the named target links to it.
    expect(byPath.get("usr/bin/aa-link-first")).toMatchObject({ type: "file" });
    expect(byPath.get("usr/bin/aa-link-first")!.body!.equals(big)).toBe(true);
    expect(byPath.get("usr/lib/blob")).toMatchObject({ type: "hardlink", linkTarget: "usr/bin/aa-link-first" });
    expect(byPath.get("usr/lib/libdemo.so")).toMatchObject({ type: "symlink", linkTarget: "libdemo.so.1" });
    expect(byPath.get("usr/sbin/ping")!.xattrs["security.capability"]).toEqual(
      ENTRIES[5]!.xattrs!["security.capability"],
    );
    expect(byPath.get("var/lib/demo")).toMatchObject({
      type: "dir",
      mode: 0o2770,
      uid: 1000,
      gid: 1000,
      uname: "demo",
      gname: "demo",
    });
    expect(byPath.get("var/lib/demo/state")).toMatchObject({ mode: 0o600, uid: 1000, gid: 1000, size: 0 });
    expect(byPath.get("dev/null")).toMatchObject({ type: "char", devMajor: 1, devMinor: 3, mode: 0o666 });
    expect(byPath.get("run/demo.fifo")).toMatchObject({ type: "fifo" });
    expect(byPath.get(ENTRIES[10]!.path)!.body!.toString()).toBe("long");
    expect(byPath.get("usr/share/long-link")!.linkTarget).toBe(ENTRIES[11]!.linkTarget);
    // Every regular file and symlink carries APK-TOOLS.checksum.SHA1.
    for (const e of entries) if (e.type === "file" || e.type === "symlink") expect(e.sha1).toMatch(/^[0-9a-f]{40}$/);
    expect(w.info.installedSize).toBe(big.length + "#!/bin/sh\necho demo\n".length + 4 + 4);
    expect((await verifyFile(out, ring)).verdict).toBe("OK");
  });

  it("the record writePackage returns is the one reading the file back gives; the data member is one gzip member gzip reads", async () => {
    const out = join(dir, "record.apk");
    // More than one parallel-gzip chunk of data, so the member is several deflate pieces.
    const bulk = Buffer.alloc(3 * 1024 * 1024 + 12345);
    for (let i = 0; i < bulk.length; i++) bulk[i] = (i * 2654435761) >>> 24;
    const full: PackageInfo = {
      ...info(),
      depends: ["so:libc.so.6", "busybox>=1.36"],
      provides: ["cmd:demo=1.0-r0", "so:libdemo.so.1=1"],
      replaces: ["old-demo"],
      providerPriority: 10,
      installIf: ["demo", "bash"],
    };
    const w = await writePackage(
      {
        info: full,
        entries: [...ENTRIES, { path: "usr/share/bulk", type: "file", content: bulk }],
        signingKeys: [key],
      },
      out,
    );
    expect(w.record).toEqual(await indexRecordForPackage(out));
    expect(w.record.providerPriority).toBe(10);
    // gzip itself reads the package's concatenated members, the data among them, and checks every CRC
    expect(() => execFileSync("gzip", ["-t", out])).not.toThrow();
    expect((await verifyFile(out, ring)).verdict).toBe("OK");
  });

  it("two writes of the same inputs are byte-identical; another epoch differs", async () => {
    const opts = { info: info(), entries: ENTRIES, signingKeys: [key], sourceDateEpoch: 42 };
    await writePackage(opts, join(dir, "a.apk"));
    await writePackage(opts, join(dir, "b.apk"));
    await writePackage({ ...opts, sourceDateEpoch: 43 }, join(dir, "c.apk"));
    expect(readFileSync(join(dir, "a.apk")).equals(readFileSync(join(dir, "b.apk")))).toBe(true);
    expect(readFileSync(join(dir, "a.apk")).equals(readFileSync(join(dir, "c.apk")))).toBe(false);
    expect((await readdir(dir)).filter((f) => f.includes("kiln-tmp"))).toEqual([]);
  });

  it("signs with SHA-1 (.SIGN.RSA.) on request, and unsigned packages read as UNTRUSTED", async () => {
    await writePackage(
      { info: info(), entries: ENTRIES, signingKeys: [key], signatureType: "RSA" },
      join(dir, "sha1.apk"),
    );
    const { head } = await readAll(join(dir, "sha1.apk"));
    expect(head.signatures[0]!.type).toBe("RSA");
    expect((await verifyFile(join(dir, "sha1.apk"), ring)).verdict).toBe("OK");
    await writePackage({ info: info(), entries: ENTRIES }, join(dir, "unsigned.apk"));
    expect((await verifyFile(join(dir, "unsigned.apk"), ring)).verdict).toBe("UNTRUSTED");
  });
});

describe("index fields equal independent computations", () => {
  it("C:, S: and datahash, also after re-signing with another key", async () => {
    const f = join(dir, "idx-demo.apk");
    const w = await writePackage({ info: info(), entries: ENTRIES, signingKeys: [key] }, f);
    let ind = independent(f);
    let rec = await indexRecordForPackage(f);
    expect(ind.members).toHaveLength(3);
    expect(rec.checksum).toBe(ind.members[1]!.sha1_q1);
    expect(rec.fileSize).toBe(ind.file_size);
    expect(w.info.dataHash).toBe(ind.members[2]!.sha256);
    const before = ind.file_size;

    // Re-sign with a 3072-bit key: the signature grows, so S: must follow.
    await resignPackage(f, [key2]);
    ind = independent(f);
    rec = await indexRecordForPackage(f);
    expect(ind.file_size).not.toBe(before);
    expect(rec.fileSize).toBe(ind.file_size);
    expect(rec.checksum).toBe(ind.members[1]!.sha1_q1);
    const { head } = await readAll(f);
    expect(head.signatures.map((s) => s.keyName)).toEqual(["other.rsa.pub"]);
    expect((await verifyFile(f, ring)).verdict).toBe("OK");

    // The index built from it is signed, verifies, and carries these values.
    const idx = buildIndex([rec], { signingKeys: [key], description: "test repo" });
    const read = await readIndex(idx);
    expect(verifyIndex(read, ring).verdict).toBe("OK");
    expect(read.records[0]).toMatchObject({
      name: "demo",
      version: "1.2.3-r4",
      checksum: ind.members[1]!.sha1_q1,
      fileSize: ind.file_size,
    });
    expect(read.description).toBe("test repo");
  });

  it("merge replaces the same name+version and keeps the rest, preserving unknown lowercase fields", async () => {
    const a = {
      ...(await indexRecordForPackage(join(dir, "a.apk"))),
      unknownFields: [["z", "kept"]] as Array<[string, string]>,
    };
    const b = { ...a, version: "1.2.4-r0", unknownFields: [] };
    const a2 = { ...a, description: "replaced", unknownFields: [] };
    const merged = mergeIndexRecords([a, b], [a2]);
    expect(merged.map((r) => [r.version, r.description])).toEqual([
      ["1.2.3-r4", "replaced"],
      ["1.2.4-r0", "a demo package"],
    ]);
    const rt = await readIndex(buildIndex([a, b]));
    expect(rt.records.find((r) => r.version === "1.2.3-r4")!.unknownFields).toEqual([["z", "kept"]]);
  });
});
