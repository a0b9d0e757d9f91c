// Names from an index never become paths outside where they belong, checked
// in this package's own layer (the apk parser may refuse such names first;
// these tests call the layer with record objects and keys directly): the
// package cache, publish staging, the local directory store and S3 keys.

import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  emptyPackageInfo,
  generateKey,
  indexRecordForPackage,
  newIndexRecord,
  parseSigningKey,
  writePackage,
  type IndexRecord,
  type SigningKey,
} from "@kiln/apk";
import { isKilnError } from "@kiln/core";
import { joinUrl, type Fetcher } from "./fetch.js";
import { fetchPackage, loadIndex, packageFileName, parseRepositoryRef } from "./repository.js";
import { LocalDirStore } from "./store/local.js";
import { S3Store } from "./store/s3.js";
import { isStoreError } from "./store/types.js";
import { packageKey } from "./publish/remote.js";
import { preparePackage, stagingPath, withdraw } from "./publish/publish.js";
import { cleanStaleTempDirs, isStaleTempDir, makeTempDir, removeTempDir, STALE_AFTER_MS } from "./publish/tempdir.js";
import type { RepoPackage } from "./types.js";

let work: string;
let key: SigningKey;
let goodFile: string;
let goodRecord: IndexRecord;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-hostile-names-"));
  const k = await generateKey(2048);
  key = parseSigningKey(k.privatePem, "test.rsa.pub");
  goodFile = join(work, "hello-1.0-r0.apk");
  await writePackage(
    {
      info: emptyPackageInfo("hello", "1.0-r0", "x86_64"),
      entries: [{ path: "usr/share/hello", type: "file", content: "hi\n" }],
      signingKeys: [key],
    },
    goodFile,
  );
  goodRecord = await indexRecordForPackage(goodFile);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Every path under `dir`, for "nothing was written" checks. */
function listing(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();
}

function record(over: Partial<IndexRecord>): IndexRecord {
  return { ...newIndexRecord(), ...goodRecord, ...over };
}

/** A fetcher that serves the good package for any URL and counts calls. */
function countingFetcher(): Fetcher & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async get(url) {
      calls.push(url);
      const { createReadStream } = await import("node:fs");
      return { status: "ok", body: createReadStream(goodFile), validator: {} };
    },
  };
}

// Climbs from any cache directory to `work/outside`: path.join resolves `..` lexically.
const climb = () => "x/" + "../".repeat(30) + join(work, "outside").replace(/^\//, "") + "/evil";

describe("the package cache", () => {
  it.each([
    ["a name with ../", () => ({ name: climb() })],
    ["a name with /", () => ({ name: "a/b" })],
    ["a version with ../", () => ({ version: "../../../../outside-1.0-r0" })],
    ["a name that is ..", () => ({ name: ".." })],
    ["an arch with ../", () => ({ arch: "../aarch64" })],
  ])("fetchPackage refuses %s before downloading anything", async (_what, over) => {
    const hostile = over();
    const cacheDir = mkdtempSync(join(work, "cache-"));
    const fetcher = countingFetcher();
    const pkg: RepoPackage = { record: record(hostile), repo: { url: work }, url: goodFile };
    const err = await fetchPackage(pkg, { keyring: undefined as never, cacheDir, fetcher }).catch((e: unknown) => e);
    expect(isKilnError(err, "BAD_INDEX"), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/refusing to cache it: .*(must not contain "\/"|is not a valid name)/);
    expect(fetcher.calls).toEqual([]);
    expect(listing(cacheDir)).toEqual([]);
    expect(existsSync(join(work, "outside"))).toBe(false);
  });

  it("packageFileName, which loadIndex applies to every record, accepts plain names and refuses the rest", () => {
    expect(packageFileName({ name: "libstdc++", version: "13.2-r0", arch: "x86_64" })).toBe("libstdc++-13.2-r0.apk");
    for (const r of [
      { name: "x/../../y", version: "1-r0" },
      { name: "x", version: "1/../../2" },
      { name: "x", version: "1-r0", arch: "../aarch64" },
      { name: "x\n", version: "1-r0" },
    ]) {
      expect(() => packageFileName(r), JSON.stringify(r)).toThrow(/package name|version of|arch of/);
    }
  });

  it("loadIndex refuses an architecture that is not one plain segment before fetching", async () => {
    const fetcher = countingFetcher();
    const err = await loadIndex({ url: work }, "../../etc", {
      keyring: undefined as never,
      cacheDir: mkdtempSync(join(work, "cache-")),
      fetcher,
    }).catch((e: unknown) => e);
    expect(isKilnError(err, "BAD_INDEX"), String(err)).toBe(true);
    expect((err as Error).message).toBe(`repository ${work}: architecture "../../etc" must not contain "/" or "\\"`);
    expect(fetcher.calls).toEqual([]);
  });

  it("a repository @tag must be one plain word", () => {
    expect(parseRepositoryRef("@edge /srv/repo")).toEqual({ tag: "edge", url: "/srv/repo" });
    expect(() => parseRepositoryRef("@../../x /srv/repo")).toThrow(/repository tag "\.\.\/\.\.\/x" must not contain/);
  });
});

describe("publish staging", () => {
  it("stagingPath and preparePackage refuse an id or arch that would leave the temporary directory, writing nothing", async () => {
    const tmp = mkdtempSync(join(work, "stage-"));
    const outside = join(work, "stage-outside");
    mkdirSync(outside);
    // The re-signed copy of `../stage-outside/x` would have been written to WORK/stage-outside/x.apk.
    const plans = [
      { arch: "x86_64", id: `../${"stage-outside"}/x` },
      { arch: "..", id: "hello-1.0-r0" },
      { arch: "x86_64/../..", id: "hello-1.0-r0" },
    ];
    for (const p of plans) {
      expect(() => stagingPath(tmp, p.arch, p.id)).toThrow(/refusing to stage/);
      const err = await preparePackage(
        { ...p, file: goodFile, action: "upload", checksum: goodRecord.checksum!, size: 0 },
        key,
        tmp,
      ).catch((e: unknown) => e);
      expect(isKilnError(err, "LOCAL_REPO"), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/refusing to stage/);
    }
    expect(listing(tmp)).toEqual([]);
    expect(listing(outside)).toEqual([]);
    // The plain case still stages the re-signed copy inside tmp.
    const ok = await preparePackage(
      { arch: "x86_64", id: "hello-1.0-r0", file: goodFile, action: "upload", checksum: goodRecord.checksum!, size: 0 },
      key,
      tmp,
    );
    expect(ok.resigned).toBe(false); // already signed by this key alone
    expect(ok.path).toBe(goodFile);
  });

  it("packageKey refuses ids and archs that are not one segment", () => {
    expect(packageKey("x86_64", "hello-1.0-r0")).toBe("x86_64/hello-1.0-r0.apk");
    expect(() => packageKey("x86_64", "../aarch64/x-1.0-r0")).toThrow(/must not contain "\/"/);
    expect(() => packageKey("..", "x-1.0-r0")).toThrow(/not a valid name/);
  });
});

describe("the local directory store", () => {
  it.each([
    "x86_64/../aarch64/x.apk",
    "../outside.apk",
    "x86_64//x.apk",
    "./x86_64/x.apk",
    "x86_64/./x.apk",
    "/etc/x",
    "x86_64/",
  ])("refuses key %j for every operation, writing nothing", async (k) => {
    const root = mkdtempSync(join(work, "store-"));
    mkdirSync(join(root, "x86_64"));
    mkdirSync(join(root, "aarch64"));
    const store = new LocalDirStore(root);
    const before = listing(join(work));
    const opts = { contentType: "x", cacheControl: "x", sha256: "0".repeat(64) };
    for (const op of [
      () => store.write(k, Buffer.from("evil"), opts),
      () => store.write(k, Buffer.from("evil"), { ...opts, condition: { ifAbsent: true } }),
      () => store.head(k),
      () => store.get(k),
      () => store.delete(k),
    ]) {
      const err = await op().catch((e: unknown) => e);
      expect(isStoreError(err, "UNSAFE_KEY"), `${k}: ${String(err)}`).toBe(true);
    }
    expect(listing(root)).toEqual(["aarch64", "x86_64"]);
    expect(listing(join(work))).toEqual(before);
  });

  it("still writes, lists and reads plain keys", async () => {
    const store = new LocalDirStore(mkdtempSync(join(work, "store-")));
    await store.write("x86_64/.kiln/withdrawn/x-1.0-r0", Buffer.from("w"), {
      contentType: "x",
      cacheControl: "x",
      sha256: "0".repeat(64),
    });
    const keys: string[] = [];
    for await (const o of store.list("x86_64/")) keys.push(o.key);
    for await (const o of store.list("")) keys.push(o.key);
    expect(keys).toEqual(["x86_64/.kiln/withdrawn/x-1.0-r0", "x86_64/.kiln/withdrawn/x-1.0-r0"]);
    expect((await store.get("x86_64/.kiln/withdrawn/x-1.0-r0"))?.body.toString()).toBe("w");
  });
});

describe("S3 keys", () => {
  it.each(["x86_64/../aarch64/x.apk", "../../other-prefix/x.apk", "x86_64//x.apk", "x86_64/./x.apk"])(
    "refuses key %j before sending any request",
    async (k) => {
      const sent: unknown[] = [];
      const client = { send: async (cmd: unknown) => void sent.push(cmd), destroy() {} };
      const store = new S3Store({ bucket: "bucket", prefix: "repo/" }, { maxAttempts: 1 }, client as never);
      const opts = { contentType: "x", cacheControl: "x", sha256: "0".repeat(64) };
      for (const op of [
        () => store.write(k, Buffer.from("evil"), opts),
        () => store.head(k),
        () => store.get(k),
        () => store.delete(k),
      ]) {
        const err = await op().catch((e: unknown) => e);
        expect(isStoreError(err, "UNSAFE_KEY"), `${k}: ${String(err)}`).toBe(true);
        expect((err as Error).message).toContain(`refusing key ${JSON.stringify(k)}`);
      }
      const listed = (async () => {
        for await (const _ of store.list("x86_64/../")) void _;
      })();
      expect(isStoreError(await listed.catch((e: unknown) => e), "UNSAFE_KEY")).toBe(true);
      expect(sent).toEqual([]);
    },
  );
});

describe("withdraw", () => {
  it("refuses a NAME-VERSION that is not one plain segment before touching the store", async () => {
    const root = mkdtempSync(join(work, "withdraw-"));
    const err = await withdraw(new LocalDirStore(root), ["../x86_64/x-1.0-r0"], { signingKey: key }).catch(
      (e: unknown) => e,
    );
    expect(isKilnError(err, "USAGE"), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/cannot withdraw "\.\.\/x86_64\/x-1\.0-r0"/);
    expect(listing(root)).toEqual([]);
  });
});

describe("temporary directories of killed runs", () => {
  it("are stale once their pid is gone or after STALE_AFTER_MS; live ones and other names are kept", async () => {
    const base = mkdtempSync(join(work, "tmp-"));
    // A pid that is certainly not running: beyond pid_max.
    const dead = join(base, "kiln-publish-99999999-AbC123");
    const mine = join(base, `kiln-publish-${process.pid}-XyZ789`);
    const legacyOld = join(base, "kiln-publish-OldOne");
    const legacyNew = join(base, "kiln-publish-NewOne");
    const unrelated = join(base, "kiln-publish-e2e-AbC123");
    const oldButMine = join(base, `kiln-publish-${process.pid}-Old123`);
    for (const d of [dead, mine, legacyOld, legacyNew, unrelated, oldButMine]) {
      mkdirSync(d);
      writeFileSync(join(d, "x86_64-x-1.0-r0.apk"), "x");
    }
    const longAgo = (Date.now() - STALE_AFTER_MS - 60_000) / 1000;
    utimesSync(legacyOld, longAgo, longAgo);
    utimesSync(oldButMine, longAgo, longAgo);
    utimesSync(unrelated, longAgo, longAgo);
    expect(isStaleTempDir(base, "kiln-publish-99999999-AbC123", "kiln-publish-")).toBe(true);
    const removed = await cleanStaleTempDirs("kiln-publish-", base);
    expect(removed.sort()).toEqual([dead, legacyOld, oldButMine].sort());
    expect(readdirSync(base).sort()).toEqual(
      ["kiln-publish-NewOne", `kiln-publish-${process.pid}-XyZ789`, "kiln-publish-e2e-AbC123"].sort(),
    );
  });

  it("makeTempDir names the directory with the pid; removeTempDir removes it and the signal handlers", async () => {
    const base = mkdtempSync(join(work, "tmp-"));
    const before = process.listenerCount("SIGTERM");
    const d = await makeTempDir("kiln-publish-", base);
    expect(d).toMatch(new RegExp(`/kiln-publish-${process.pid}-[A-Za-z0-9]{6}$`));
    expect(process.listenerCount("SIGTERM")).toBe(before + 1);
    expect(await cleanStaleTempDirs("kiln-publish-", base)).toEqual([]); // live: kept
    await removeTempDir(d);
    expect(existsSync(d)).toBe(false);
    expect(process.listenerCount("SIGTERM")).toBe(before);
  });
});

describe("repository URLs", () => {
  it("joinUrl refuses a relative part with .., . or empty segments", () => {
    expect(joinUrl("http://127.0.0.1:8080/os/", "x86_64/hello-1.0-r0.apk")).toBe(
      "http://127.0.0.1:8080/os/x86_64/hello-1.0-r0.apk",
    );
    for (const rel of ["x86_64/../../etc/passwd", "../x", "x86_64//a.apk", "./x"])
      expect(() => joinUrl("/srv/repo", rel), rel).toThrow(/URL path segment/);
  });
});
