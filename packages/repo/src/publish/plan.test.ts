// planPublish and targetRecords, fed real inputs: packages written with
// @kiln/apk's writer into a local repository (OUT/ARCH/APKINDEX.tar.gz, read
// back with readLocalRepository), and a published state read from a real
// directory store (LocalDirStore) with readRemoteArch — put there by
// publish() and withdraw(), or by copying and corrupting objects by hand to
// stand for an interrupted or hostile publish. Every decision the planner
// makes is one case: upload, index, skip, restore, the two kinds of
// conflict, unsatisfied dependencies (local, published, upstream, withdrawn),
// the predicted index size, and the order of everything it returns.

import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildIndex,
  emptyPackageInfo,
  generateKey,
  indexRecordForPackage,
  parseSigningKey,
  writePackage,
  type IndexRecord,
  type PackageInfo,
  type SigningKey,
} from "@kiln/apk";
import { isKilnError } from "@kiln/core";
import { LocalDirStore } from "../store/local.js";
import { readLocalRepository, type LocalArch } from "./local-repo.js";
import { planPublish, targetRecords, type PublishPlan, type RemoteArchState } from "./plan.js";
import { publish, readRemoteArch, withdraw } from "./publish.js";
import { PublishError } from "./errors.js";

let work: string;
let buildKey: SigningKey; // signs the local packages
let pubKey: SigningKey; // publishes (re-signs)
let seq = 0;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-plan-test-"));
  buildKey = parseSigningKey((await generateKey(2048)).privatePem, "build.rsa.pub");
  pubKey = parseSigningKey((await generateKey(2048)).privatePem, "publish.rsa.pub");
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Spec {
  name: string;
  version?: string;
  arch?: string;
  /** File content; a different content under the same NAME-VERSION is a different package. */
  content?: string;
  info?: Partial<PackageInfo>;
}

/** Write OUT/ARCH/*.apk and a signed OUT/ARCH/APKINDEX.tar.gz per arch; `unlisted` are written but not indexed. */
async function localRepo(specs: Spec[], unlisted: Spec[] = []): Promise<string> {
  const out = join(work, `out-${++seq}`);
  const byArch = new Map<string, IndexRecord[]>();
  for (const [i, s] of [...specs, ...unlisted].entries()) {
    const arch = s.arch ?? "x86_64";
    const dir = join(out, arch);
    mkdirSync(dir, { recursive: true });
    const info = { ...emptyPackageInfo(s.name, s.version ?? "1.0-r0", arch), origin: s.name, ...s.info };
    const file = join(dir, `${info.name}-${info.version}.apk`);
    await writePackage(
      {
        info,
        entries: [{ path: `usr/share/${s.name}/README`, type: "file", content: s.content ?? `package ${s.name}\n` }],
        signingKeys: [buildKey],
        sourceDateEpoch: 1_700_000_000,
      },
      file,
    );
    if (i < specs.length) {
      const list = byArch.get(arch) ?? byArch.set(arch, []).get(arch)!;
      list.push(await indexRecordForPackage(file));
    }
  }
  for (const [arch, records] of byArch)
    writeFileSync(join(out, arch, "APKINDEX.tar.gz"), buildIndex(records, { signingKeys: [buildKey] }));
  return out;
}

function target(): { dir: string; store: LocalDirStore } {
  const dir = join(work, `target-${++seq}`);
  mkdirSync(dir, { recursive: true });
  return { dir, store: new LocalDirStore(dir) };
}

async function remoteOf(store: LocalDirStore, archs: string[]): Promise<Map<string, RemoteArchState>> {
  const m = new Map<string, RemoteArchState>();
  for (const a of archs) m.set(a, (await readRemoteArch(store, a)).state);
  return m;
}

/** Plan `out` against what `store` holds for the local archs. */
async function planFor(
  out: string,
  store: LocalDirStore,
  upstream?: Map<string, IndexRecord[]>,
): Promise<{ local: LocalArch[]; plan: PublishPlan }> {
  const local = await readLocalRepository(out);
  const remote = await remoteOf(
    store,
    local.map((l) => l.arch),
  );
  return { local, plan: planPublish(local, remote, upstream) };
}

const actions = (plan: PublishPlan, arch = "x86_64"): string[] =>
  plan.archs.find((a) => a.arch === arch)!.packages.map((p) => `${p.id}:${p.action}${p.restore ? ":restore" : ""}`);

const counts = (plan: PublishPlan): Array<[string, number, number]> =>
  plan.archs.map((a) => [a.arch, a.before, a.after]);

const publishOpts = () => ({ signingKey: pubKey });
const pub = (store: LocalDirStore, out: string) => publish(store, out, { signingKey: pubKey });

describe("planPublish: what happens to each local package", () => {
  it("nothing published: every package is an upload, with its local file, C: and size, in local index order", async () => {
    const out = await localRepo([{ name: "zlib" }, { name: "busybox" }, { name: "hello", version: "2.12-r1" }]);
    const local = await readLocalRepository(out);
    // No remote state at all for the arch (a fresh target) and an empty one give the same plan.
    const plan = planPublish(local, new Map());
    const { plan: viaStore } = await planFor(out, target().store);
    expect(viaStore).toEqual(plan);
    // The local index is sorted by name (buildIndex); the plan keeps the order it is given.
    expect(actions(plan)).toEqual(["busybox-1.0-r0:upload", "hello-2.12-r1:upload", "zlib-1.0-r0:upload"]);
    const reversed = [{ ...local[0]!, packages: [...local[0]!.packages].reverse() }];
    expect(actions(planPublish(reversed, new Map()))).toEqual([
      "zlib-1.0-r0:upload",
      "hello-2.12-r1:upload",
      "busybox-1.0-r0:upload",
    ]);
    const hello = plan.archs[0]!.packages[1]!;
    const helloLocal = local[0]!.packages[1]!;
    expect(hello).toEqual({
      arch: "x86_64",
      id: "hello-2.12-r1",
      file: join(out, "x86_64", "hello-2.12-r1.apk"),
      action: "upload",
      checksum: helloLocal.record.checksum,
      size: statSync(join(out, "x86_64", "hello-2.12-r1.apk")).size,
    });
    expect(hello.checksum).toMatch(/^Q1[A-Za-z0-9+/]{27}=$/);
    expect(counts(plan)).toEqual([["x86_64", 0, 3]]);
    expect(plan.conflicts).toEqual([]);
    expect(plan.unsatisfied).toEqual([]);
  });

  it("unchanged: after a publish (which re-signs every package), the same local repository plans only skips", async () => {
    const out = await localRepo([{ name: "a" }, { name: "b" }]);
    const { dir, store } = target();
    await pub(store, out);
    // Re-signed by the publishing key: the published objects differ in size from the local files, not in C:.
    expect(statSync(join(dir, "x86_64", "a-1.0-r0.apk")).size).not.toBe(
      statSync(join(out, "x86_64", "a-1.0-r0.apk")).size,
    );
    const { plan } = await planFor(out, store);
    expect(actions(plan)).toEqual(["a-1.0-r0:skip", "b-1.0-r0:skip"]);
    expect(counts(plan)).toEqual([["x86_64", 2, 2]]);
    expect(plan.conflicts).toEqual([]);
  });

  it("changed: a new release beside the published one is an upload, and the old release stays in the index", async () => {
    const { store } = target();
    await pub(store, await localRepo([{ name: "a" }, { name: "b" }]));
    const out = await localRepo([{ name: "a" }, { name: "b", version: "1.0-r1", content: "fixed\n" }]);
    const { plan } = await planFor(out, store);
    expect(actions(plan)).toEqual(["a-1.0-r0:skip", "b-1.0-r1:upload"]);
    // a, b-1.0-r0 and b-1.0-r1: publishing never removes what is published.
    expect(counts(plan)).toEqual([["x86_64", 2, 3]]);
  });

  it("a package object present but not indexed (an interrupted publish) is indexed, not uploaded again", async () => {
    const out = await localRepo([{ name: "a" }, { name: "b" }]);
    const { dir, store } = target();
    mkdirSync(join(dir, "x86_64"));
    copyFileSync(join(out, "x86_64", "b-1.0-r0.apk"), join(dir, "x86_64", "b-1.0-r0.apk")); // no index at all
    const { plan } = await planFor(out, store);
    expect(actions(plan)).toEqual(["a-1.0-r0:upload", "b-1.0-r0:index"]);
    expect(counts(plan)).toEqual([["x86_64", 0, 2]]);
  });

  it("a stale index (it lists another package under the id than the object holds) indexes a local package equal to the object", async () => {
    const first = await localRepo([{ name: "a", content: "one\n" }]);
    const second = await localRepo([{ name: "a", content: "two, longer so the size differs\n" }]);
    const { dir, store } = target();
    await pub(store, first);
    // The object is replaced behind the index's back by the second build (S: no longer matches).
    copyFileSync(join(second, "x86_64", "a-1.0-r0.apk"), join(dir, "x86_64", "a-1.0-r0.apk"));
    const { plan } = await planFor(second, store);
    expect(actions(plan)).toEqual(["a-1.0-r0:index"]);
    expect(plan.conflicts).toEqual([]);
    // …while the first build, which the index still names, now conflicts with the object that is really there.
    const { plan: again, local } = await planFor(first, store);
    expect(actions(again)).toEqual([]);
    const objectC = (await readRemoteArch(store, "x86_64")).state.unindexed.get("a-1.0-r0")!.checksum;
    expect(again.conflicts).toEqual([
      `x86_64/a-1.0-r0.apk: a different package is already published under this name (published C:${objectC}, local C:${local[0]!.packages[0]!.record.checksum}); bump the release (-rN) instead`,
    ]);
  });
});

describe("planPublish: conflicts", () => {
  it("a different package under a published NAME-VERSION is a conflict naming both C:, and is left out of the plan", async () => {
    const { store } = target();
    const published = await localRepo([{ name: "a" }, { name: "b", content: "the published b\n" }]);
    await pub(store, published);
    const out = await localRepo([{ name: "a" }, { name: "b", content: "a rebuilt b\n" }, { name: "c" }]);
    const { plan, local } = await planFor(out, store);
    const pubLocal = await readLocalRepository(published);
    expect(actions(plan)).toEqual(["a-1.0-r0:skip", "c-1.0-r0:upload"]);
    expect(plan.conflicts).toEqual([
      `x86_64/b-1.0-r0.apk: a different package is already published under this name (published C:${pubLocal[0]!.packages[1]!.record.checksum}, local C:${local[0]!.packages[1]!.record.checksum}); bump the release (-rN) instead`,
    ]);
    // The index-to-be keeps the published b: a, b, c.
    expect(counts(plan)).toEqual([["x86_64", 2, 3]]);
  });

  it("an object that cannot be read as a package is never overwritten: a conflict with the reason", async () => {
    const out = await localRepo([{ name: "a" }, { name: "b" }]);
    const { dir, store } = target();
    mkdirSync(join(dir, "x86_64"));
    writeFileSync(join(dir, "x86_64", "a-1.0-r0.apk"), "not a package\n");
    const remote = await remoteOf(store, ["x86_64"]);
    const reason = remote.get("x86_64")!.unreadable.get("a-1.0-r0")!;
    expect(reason).toContain(join(dir, "x86_64", "a-1.0-r0.apk"));
    const plan = planPublish(await readLocalRepository(out), remote);
    expect(actions(plan)).toEqual(["b-1.0-r0:upload"]);
    expect(plan.conflicts).toEqual([
      `x86_64/a-1.0-r0.apk: already published but unreadable (${reason}); refusing to overwrite it`,
    ]);
    // The unreadable object is in no index: only b is predicted.
    expect(counts(plan)).toEqual([["x86_64", 0, 1]]);
  });

  it("conflicts come in local order across architectures, and the other packages are still planned", async () => {
    const { store } = target();
    await pub(
      store,
      await localRepo([
        { name: "x", content: "1\n" },
        { name: "y", content: "1\n" },
        { name: "x", arch: "aarch64", content: "1\n" },
      ]),
    );
    const out = await localRepo([
      { name: "y", content: "2\n" },
      { name: "x", content: "2\n" },
      { name: "x", arch: "aarch64", content: "2\n" },
      { name: "z", arch: "aarch64" },
    ]);
    const { plan, local } = await planFor(out, store);
    const where = (p: PublishPlan) => p.conflicts.map((c) => c.slice(0, c.indexOf(":")));
    expect(where(plan)).toEqual(["aarch64/x-1.0-r0.apk", "x86_64/x-1.0-r0.apk", "x86_64/y-1.0-r0.apk"]);
    expect(actions(plan, "aarch64")).toEqual(["z-1.0-r0:upload"]);
    expect(actions(plan, "x86_64")).toEqual([]);
    // Archs and packages in the other order: the conflicts follow.
    const remote = await remoteOf(store, ["aarch64", "x86_64"]);
    const reversed = [...local].reverse().map((l) => ({ ...l, packages: [...l.packages].reverse() }));
    expect(where(planPublish(reversed, remote))).toEqual([
      "x86_64/y-1.0-r0.apk",
      "x86_64/x-1.0-r0.apk",
      "aarch64/x-1.0-r0.apk",
    ]);
  });
});

describe("planPublish: withdrawn packages", () => {
  it("withdrawn, object kept: publishing it again indexes the object and lifts the withdrawal", async () => {
    const out = await localRepo([{ name: "a" }, { name: "b" }]);
    const { store } = target();
    await pub(store, out);
    await withdraw(store, ["b-1.0-r0"], publishOpts());
    const { plan } = await planFor(out, store);
    expect(actions(plan)).toEqual(["a-1.0-r0:skip", "b-1.0-r0:index:restore"]);
    expect(counts(plan)).toEqual([["x86_64", 1, 2]]);
  });

  it("withdrawn and deleted: publishing it again uploads it and lifts the withdrawal", async () => {
    const out = await localRepo([{ name: "a" }, { name: "b" }]);
    const { dir, store } = target();
    await pub(store, out);
    await withdraw(store, ["b-1.0-r0"], { ...publishOpts(), delete: true });
    expect(readdirSync(join(dir, "x86_64")).filter((n) => n.endsWith(".apk"))).toEqual(["a-1.0-r0.apk"]);
    const { plan } = await planFor(out, store);
    expect(actions(plan)).toEqual(["a-1.0-r0:skip", "b-1.0-r0:upload:restore"]);
    expect(counts(plan)).toEqual([["x86_64", 1, 2]]);
  });

  it("withdrawal marked but the index not yet rewritten (killed in between): still indexed, so index it and restore", async () => {
    const out = await localRepo([{ name: "a" }, { name: "b" }]);
    const { dir, store } = target();
    await pub(store, out);
    mkdirSync(join(dir, "x86_64", ".kiln", "withdrawn"), { recursive: true });
    writeFileSync(join(dir, "x86_64", ".kiln", "withdrawn", "b-1.0-r0"), "withdrawn\n");
    const { plan } = await planFor(out, store);
    expect(actions(plan)).toEqual(["a-1.0-r0:skip", "b-1.0-r0:index:restore"]);
    // The index lists both; without the local b it would converge to a alone.
    expect(counts(plan)).toEqual([["x86_64", 2, 2]]);
    const { plan: withoutB } = await planFor(await localRepo([{ name: "a" }]), store);
    expect(counts(withoutB)).toEqual([["x86_64", 2, 1]]);
  });
});

describe("planPublish: dependencies of the index-to-be", () => {
  const app = (depends: string[]): Spec => ({ name: "app", info: { depends } });

  it("a dependency nothing provides is reported with the package, arch, token and reason", async () => {
    const { plan } = await planFor(await localRepo([app(["libfoo", "!old"])]), target().store);
    expect(plan.unsatisfied).toEqual([
      { package: "app-1.0-r0", arch: "x86_64", dependency: "libfoo", reason: `nothing provides "libfoo"` },
    ]);
  });

  it("is met by another local package, by name or provides, with apk's version rules", async () => {
    const out = await localRepo([
      app(["lib>=2", "so:libz.so.1", "cmd:sh"]),
      { name: "lib", version: "1.5-r0" },
      { name: "zlib", info: { provides: ["so:libz.so.1=1.3"] } },
      { name: "busybox", info: { provides: ["cmd:sh=1.0-r0"] } },
    ]);
    const { plan } = await planFor(out, target().store);
    expect(plan.unsatisfied).toEqual([
      { package: "app-1.0-r0", arch: "x86_64", dependency: "lib>=2", reason: "only lib-1.5-r0" },
    ]);
  });

  it("is met by a package already published, but not by one withdrawn", async () => {
    const { store } = target();
    await pub(store, await localRepo([{ name: "libfoo" }, { name: "libbar" }]));
    await withdraw(store, ["libbar-1.0-r0"], publishOpts());
    const { plan } = await planFor(await localRepo([app(["libfoo", "libbar"])]), store);
    expect(plan.unsatisfied).toEqual([
      { package: "app-1.0-r0", arch: "x86_64", dependency: "libbar", reason: `nothing provides "libbar"` },
    ]);
  });

  it("is met by the upstream records of the same arch only, and published packages' own dependencies count too", async () => {
    const { store } = target();
    // A published package whose dependency is missing makes the index-to-be unsatisfiable whatever is added.
    const published = await localRepo([{ name: "old", info: { depends: ["gone"] } }]);
    await publish(store, published, { signingKey: pubKey, allowUnsatisfied: true });
    const out = await localRepo([
      app(["so:libc.so.6"]),
      { name: "tool", arch: "aarch64", info: { depends: ["so:libc.so.6"] } },
    ]);
    const upstreamRecord = (arch: string): IndexRecord => ({
      ...(emptyPackageInfo("glibc", "2.41-r0", arch) as IndexRecord),
      provides: ["so:libc.so.6=6"],
      unknownFields: [],
    });
    const { plan } = await planFor(out, store, new Map([["x86_64", [upstreamRecord("x86_64")]]]));
    expect(plan.unsatisfied).toEqual([
      {
        package: "tool-1.0-r0",
        arch: "aarch64",
        dependency: "so:libc.so.6",
        reason: `nothing provides "so:libc.so.6"`,
      },
      { package: "old-1.0-r0", arch: "x86_64", dependency: "gone", reason: `nothing provides "gone"` },
    ]);
  });
});

describe("planPublish: shape and order of the plan", () => {
  it("one ArchPlan per local arch in local order, each against its own published state, with the unlisted files", async () => {
    const { store } = target();
    await pub(store, await localRepo([{ name: "a", arch: "aarch64" }]));
    const out = await localRepo(
      [{ name: "a" }, { name: "a", arch: "aarch64" }, { name: "b", arch: "aarch64" }],
      [{ name: "stray" }],
    );
    const local = await readLocalRepository(out);
    expect(local.map((l) => l.arch)).toEqual(["aarch64", "x86_64"]);
    const remote = await remoteOf(store, ["aarch64", "x86_64"]);
    const plan = planPublish(local, remote);
    expect(counts(plan)).toEqual([
      ["aarch64", 1, 2],
      ["x86_64", 0, 1],
    ]);
    // a is published for aarch64 only: skipped there, uploaded for x86_64.
    expect(actions(plan, "aarch64")).toEqual(["a-1.0-r0:skip", "b-1.0-r0:upload"]);
    expect(actions(plan, "x86_64")).toEqual(["a-1.0-r0:upload"]);
    expect(plan.archs.map((a) => a.unlisted)).toEqual([[], ["stray-1.0-r0.apk"]]);
    // Given in the other order, the plan follows.
    expect(planPublish([...local].reverse(), remote).archs.map((a) => a.arch)).toEqual(["x86_64", "aarch64"]);
  });

  it("an index record whose object is gone is not predicted in the index after (after < before)", async () => {
    const out = await localRepo([{ name: "a" }, { name: "b" }]);
    const { dir, store } = target();
    await pub(store, out);
    rmSync(join(dir, "x86_64", "b-1.0-r0.apk"));
    const { plan } = await planFor(await localRepo([{ name: "a" }]), store);
    expect(actions(plan)).toEqual(["a-1.0-r0:skip"]);
    expect(counts(plan)).toEqual([["x86_64", 2, 1]]);
  });
});

describe("targetRecords: the records the index converges to", () => {
  it("every readable object not withdrawn: indexed records whose S: matches, read records for the rest", async () => {
    const out = await localRepo([{ name: "a" }, { name: "b" }, { name: "c" }, { name: "d", content: "old\n" }]);
    const { dir, store } = target();
    await pub(store, out);
    const x = join(dir, "x86_64");
    rmSync(join(x, "a-1.0-r0.apk")); // indexed, object gone
    await withdraw(store, ["b-1.0-r0"], publishOpts()); // object kept, withdrawn
    const other = await localRepo([{ name: "d", content: "replaced by a longer one\n" }, { name: "e" }]);
    copyFileSync(join(other, "x86_64", "d-1.0-r0.apk"), join(x, "d-1.0-r0.apk")); // S: no longer matches
    copyFileSync(join(other, "x86_64", "e-1.0-r0.apk"), join(x, "e-1.0-r0.apk")); // not indexed
    writeFileSync(join(x, "f-1.0-r0.apk"), "garbage"); // unreadable
    const { state } = await readRemoteArch(store, "x86_64");
    const got = targetRecords(state)
      .map((r) => `${r.name}-${r.version} ${r.checksum}`)
      .sort();
    const otherLocal = await readLocalRepository(other);
    const published = new Map(state.indexed.map((r) => [r.name, r.checksum]));
    expect(got).toEqual([
      `c-1.0-r0 ${published.get("c")}`,
      `d-1.0-r0 ${otherLocal[0]!.packages[0]!.record.checksum}`,
      `e-1.0-r0 ${otherLocal[0]!.packages[1]!.record.checksum}`,
    ]);
    expect(published.get("d")).not.toBe(otherLocal[0]!.packages[0]!.record.checksum);
  });

  it("an index record without S: is taken as is for a present object", () => {
    const rec = { ...(emptyPackageInfo("a", "1-r0", "x86_64") as IndexRecord), checksum: "Q1x=", unknownFields: [] };
    const state: RemoteArchState = {
      arch: "x86_64",
      indexed: [rec],
      objects: new Map([["a-1-r0", { key: "x86_64/a-1-r0.apk", size: 123 }]]),
      unindexed: new Map(),
      unreadable: new Map(),
      withdrawn: new Set(),
    };
    expect(targetRecords(state)).toEqual([rec]);
    expect(targetRecords({ ...state, withdrawn: new Set(["a-1-r0"]) })).toEqual([]);
    expect(targetRecords({ ...state, objects: new Map() })).toEqual([]);
  });
});

describe("the refusals publish() makes from the plan, before any write", () => {
  it("a conflict is a CONFLICT PublishError and the target is left as it was", async () => {
    const { dir, store } = target();
    await pub(store, await localRepo([{ name: "a", content: "1\n" }]));
    const before = readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();
    const err = await pub(store, await localRepo([{ name: "a", content: "2\n" }, { name: "b" }])).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PublishError);
    expect(isKilnError(err, "CONFLICT")).toBe(true);
    expect((err as Error).message).toMatch(
      new RegExp(`^refusing to publish to ${dir}: x86_64/a-1\\.0-r0\\.apk: a different package is already published`),
    );
    expect(readdirSync(dir, { recursive: true, encoding: "utf8" }).sort()).toEqual(before);
  });

  it("an unsatisfied dependency is UNSATISFIED with one explanation line each, unless allowed", async () => {
    const { dir, store } = target();
    const out = await localRepo([{ name: "app", info: { depends: ["x", "y"] } }]);
    const err = (await pub(store, out).catch((e: unknown) => e)) as PublishError;
    expect(isKilnError(err, "UNSATISFIED")).toBe(true);
    expect(err.message).toBe(
      `refusing to publish to ${dir}: 2 dependencies would not be satisfiable from the repository (--allow-unsatisfied to go ahead anyway)`,
    );
    expect(err.explanation).toEqual([
      `x86_64/app-1.0-r0 depends on x: nothing provides "x"`,
      `x86_64/app-1.0-r0 depends on y: nothing provides "y"`,
    ]);
    expect(readdirSync(dir)).toEqual([]);
    const r = await publish(store, out, { signingKey: pubKey, allowUnsatisfied: true, dryRun: true });
    expect(r.archs.map((a) => [a.arch, a.uploaded])).toEqual([["x86_64", ["app-1.0-r0"]]]);
    expect(readdirSync(dir)).toEqual([]);
  });
});
