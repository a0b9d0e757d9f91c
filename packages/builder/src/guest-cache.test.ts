// The bounded guest cache: guests share one copy of each content through the
// store, a sandboxed step cannot change a store file, a damaged entry is not
// linked, and pruning evicts least recently used first, never a guest in use,
// and removes nothing on a dry run.

import { ImageRoot, materializeRoot } from "@kiln/image";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { cacheUsage, GUEST_MARKER, leaseGuest, parseDuration, parseSize } from "./guest-cache.js";
import { dedupGuests } from "./guest-dedup.js";
import { pruneCache } from "./guest-prune.js";
import { forgetChecks, GuestStore, listStore, verifyStore } from "./guest-store.js";
import { CHECK_LOG } from "./store-checks.js";
import { execInSandbox } from "./sandbox.js";

let tmp: string;
let cache: string;
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), "kiln-guest-cache-"));
  cache = join(tmp, "cache");
});
afterEach(() => rm(tmp, { recursive: true, force: true }));

const MiB = 2 ** 20;
const big = (seed: string, n = MiB) => Buffer.alloc(n, seed);

/** A guest as assembleGuest makes one: its root materialized through the store, marked complete. */
async function makeGuest(key: string, files: Record<string, Buffer>, lastUse?: Date, store = new GuestStore(cache)) {
  const root = new ImageRoot(join(tmp, `spool-${key}-${Math.random()}`));
  for (const [p, c] of Object.entries(files)) await root.writeFile(p, c, { mode: 0o755 });
  const dir = join(cache, "guests", key.padEnd(64, "0"));
  await mkdir(join(cache, "guests"), { recursive: true });
  await materializeRoot(root, dir, {
    placeFile: (b, d, m) => store.place(root.blobs, b, d, m),
    placeFileSync: (b, d, m) => store.placeSync(b, d, m),
  });
  await rm(root.blobs.dir, { recursive: true, force: true }); // as assembleGuest does: its files may be store entries now
  await store.checks.flush();
  await writeFile(join(dir, GUEST_MARKER), key);
  if (lastUse) await utimes(join(dir, GUEST_MARKER), lastUse, lastUse);
  return { dir, store };
}

describe("guest store", () => {
  it("two guests holding the same files share their inodes and take about one copy", async () => {
    const files = { "usr/lib/libbig.so": big("a", 4 * MiB), "usr/bin/tool": big("b", 2 * MiB) };
    const a = await makeGuest("aa", files);
    const b = await makeGuest("bb", { ...files, "etc/own": Buffer.from("b only\n") });
    const ia = await stat(join(a.dir, "usr/lib/libbig.so"));
    const ib = await stat(join(b.dir, "usr/lib/libbig.so"));
    expect(ib.ino).toBe(ia.ino);
    expect(ia.nlink).toBe(3); // the store's entry and the two guests
    expect(ia.mode & 0o7777).toBe(0o755);
    expect(await readFile(join(b.dir, "usr/bin/tool"))).toEqual(files["usr/bin/tool"]);
    const u = await cacheUsage(cache);
    expect(u.guestsApparent).toBeGreaterThan(12 * MiB);
    expect(u.kinds.store).toBeGreaterThanOrEqual(6 * MiB);
    expect(u.kinds.store).toBeLessThan(6.2 * MiB);
    expect(u.kinds.guests).toBeLessThan(0.5 * MiB);
    expect(u.total).toBeLessThan(7 * MiB);
    expect(b.store.stats).toMatchObject({ shared: 2, added: 1 });
  });

  it("the same content with another mode is another entry (a shared inode has one mode)", async () => {
    const store = new GuestStore(cache);
    await makeGuest("aa", { "bin/x": big("x", 8192) }, undefined, store);
    const root = new ImageRoot(join(tmp, "spool-m"));
    await root.writeFile("etc/x", big("x", 8192), { mode: 0o644 });
    await materializeRoot(root, join(tmp, "m"), { placeFile: (b, d, m) => store.place(root.blobs, b, d, m) });
    expect((await stat(join(tmp, "m/etc/x"))).mode & 0o7777).toBe(0o644);
    expect((await stat(join(cache, "guests", "aa".padEnd(64, "0"), "bin/x"))).mode & 0o7777).toBe(0o755);
    expect((await listStore(cache)).map((e) => e.mode).sort()).toEqual([0o644, 0o755]);
  });

  it("a content the root spooled to disk enters the store by a link, not a second copy", async () => {
    const store = new GuestStore(cache);
    const root = new ImageRoot(join(tmp, "spool-give"));
    const content = big("s", 2 * MiB);
    await root.writeFile("usr/lib/libs.so", content, { mode: 0o755 });
    await root.writeFile("usr/share/s.dat", content, { mode: 0o644 }); // the same content, another mode: another entry
    const dir = join(tmp, "give");
    await materializeRoot(root, dir, { placeFile: (b, d, m) => store.place(root.blobs, b, d, m) });
    const sha1 = createHash("sha1").update(content).digest("hex");
    const spooled = await stat(root.blobs.path(sha1));
    const lib = await stat(join(dir, "usr/lib/libs.so"));
    const dat = await stat(join(dir, "usr/share/s.dat"));
    // The two are placed concurrently: whichever enters the store first takes the spool's file, the other is a copy.
    expect([lib.ino, dat.ino].filter((i) => i === spooled.ino)).toHaveLength(1);
    expect(dat.ino).not.toBe(lib.ino);
    expect(lib.mode & 0o7777).toBe(0o755);
    expect(dat.mode & 0o7777).toBe(0o644);
    expect(await readFile(join(dir, "usr/share/s.dat"))).toEqual(content);
    expect(await readFile(join(dir, "usr/lib/libs.so"))).toEqual(content);
    expect(await verifyStore(cache)).toEqual([]);
  });

  it("an entry checked once is linked into later guests without being read again, though each link changes its ctime", async () => {
    const files = { "usr/lib/libbig.so": big("k", 2 * MiB), "usr/bin/tool": big("l", MiB) };
    await makeGuest("aa", files);
    const [entry] = await listStore(cache);
    const ctime = (await stat(entry!.path)).ctimeMs;
    const b = await makeGuest("bb", { ...files, "etc/b": Buffer.from("b\n") }); // (a new GuestStore; the check is per process)
    expect(b.store.stats.checked).toBe(0);
    expect(b.store.stats.shared).toBe(2);
    const c = await makeGuest("cc", files);
    expect(c.store.stats).toMatchObject({ checked: 0, shared: 2, added: 0 });
    expect((await stat(entry!.path)).ctimeMs).toBeGreaterThan(ctime);
    expect((await stat(join(c.dir, "usr/bin/tool"))).nlink).toBe(4);
  });

  it("a later process links entries an earlier one checked without reading them (CACHE/store/checked.log)", async () => {
    const files = { "usr/lib/libbig.so": big("p", 2 * MiB), "usr/bin/tool": big("q", MiB) };
    await makeGuest("aa", files);
    expect((await readFile(join(cache, "store", CHECK_LOG), "utf8")).trim().split("\n")).toHaveLength(2);
    forgetChecks(); // a new process
    const b = await makeGuest("bb", files);
    expect(b.store.stats).toMatchObject({ checked: 0, shared: 2 });
    forgetChecks();
    const [entry] = await listStore(cache);
    await writeFile(entry!.path, Buffer.alloc((await stat(entry!.path)).size, "Z")); // same size, other content
    const c = await makeGuest("cc", files); // the damaged entry's stamp is not the one on record
    expect(c.store.stats.checked).toBe(1);
    expect(c.store.stats.corrupt).toEqual([entry!.path]);
    expect(await readFile(join(c.dir, "usr/lib/libbig.so"))).toEqual(files["usr/lib/libbig.so"]);
    expect(await readFile(join(c.dir, "usr/bin/tool"))).toEqual(files["usr/bin/tool"]);
  });

  it("a damaged or foreign line in checked.log is ignored: the entry is hashed", async () => {
    const good = big("r", 64 * 1024);
    await makeGuest("aa", { "usr/bin/tool": good });
    const [entry] = await listStore(cache);
    const log = join(cache, "store", CHECK_LOG);
    const [line] = (await readFile(log, "utf8")).split("\n");
    const [rel] = line!.split(" ");
    await writeFile(log, `${rel} 1:2:3\n../../etc/passwd 1:2:3\ngarbage\n`);
    forgetChecks();
    const b = await makeGuest("bb", { "usr/bin/tool": good });
    expect(b.store.stats).toMatchObject({ checked: 1, shared: 1, corrupt: [] });
    expect((await stat(join(b.dir, "usr/bin/tool"))).ino).toBe(entry!.ino);
  });

  it("an entry damaged after it was checked in this process is checked again and not linked", async () => {
    const good = big("m", 64 * 1024);
    await makeGuest("aa", { "usr/bin/tool": good });
    const b = await makeGuest("bb", { "usr/bin/tool": good });
    expect(b.store.stats).toMatchObject({ checked: 0, shared: 1 });
    const [entry] = await listStore(cache);
    await writeFile(entry!.path, big("E", 64 * 1024)); // same size, same inode, other content
    const c = await makeGuest("cc", { "usr/bin/tool": good });
    expect(c.store.stats.checked).toBe(1);
    expect(c.store.stats.corrupt).toEqual([entry!.path]);
    expect(await readFile(join(c.dir, "usr/bin/tool"))).toEqual(good);
  });

  it("a damaged store entry is detected and not linked into the next guest", async () => {
    const good = big("g", 64 * 1024);
    await makeGuest("aa", { "usr/bin/tool": good });
    const [entry] = await listStore(cache);
    await writeFile(entry!.path, big("E", 64 * 1024)); // same size, other content: damage on the host
    expect(await verifyStore(cache)).toEqual([entry!.path]);
    const b = await makeGuest("bb", { "usr/bin/tool": good }); // a new process's store
    expect(await readFile(join(b.dir, "usr/bin/tool"))).toEqual(good);
    expect(b.store.stats.corrupt).toEqual([entry!.path]);
    expect((await stat(join(b.dir, "usr/bin/tool"))).ino).not.toBe(entry!.ino);
    expect(await verifyStore(cache)).toEqual([]);
  });

  it("a build step cannot change a store file through its guest (read-only bind, no link out)", async () => {
    const host = async (p: string) => readFile(p);
    const data = big("d", 10_000);
    const bins = ["sh", "rm", "ln", "chmod", "truncate"];
    const files: Record<string, Buffer> = {
      "lib/x86_64-linux-gnu/libc.so.6": await host("/lib/x86_64-linux-gnu/libc.so.6"),
      "lib64/ld-linux-x86-64.so.2": await host("/lib64/ld-linux-x86-64.so.2"),
      "etc/data": data,
    };
    for (const b of bins) files[`bin/${b}`] = await host(`/bin/${b}`);
    const { dir } = await makeGuest("cc", files);
    for (const d of ["home/build", "proc", "dev", "tmp", "run"]) await mkdir(join(dir, d), { recursive: true });
    const ws = join(tmp, "ws");
    await mkdir(ws);
    const ops = [
      "echo x >> /etc/data",
      "truncate -s 0 /etc/data",
      "chmod 777 /etc/data",
      "rm -f /etc/data",
      "ln /etc/data /home/build/link",
    ];
    const script = ops.map((op) => `if ${op} 2>/dev/null; then echo "ALLOWED: ${op}"; fi`).join("\n");
    const r = await execInSandbox(
      { guestRoot: dir, workspace: ws, env: { PATH: "/bin" } },
      ["/bin/sh", "-c", `${script}\necho ran > /home/build/ran`],
      { tailLines: 20 },
    );
    expect(r.tail.filter((l) => l.startsWith("ALLOWED"))).toEqual([]);
    expect(r.tail.join("\n") + `\nexit ${r.exitCode}`).toMatch(/exit 0$/);
    expect(await readFile(join(ws, "ran"), "utf8")).toBe("ran\n"); // the step did run, and could write its workspace
    const entry = (await listStore(cache)).find((e) => e.sha256 === createHash("sha256").update(data).digest("hex"));
    expect(entry).toBeDefined();
    expect(await readFile(entry!.path)).toEqual(data);
    expect((await stat(entry!.path)).mode & 0o7777).toBe(0o755);
    expect(await verifyStore(cache)).toEqual([]);
  });
});

describe("dedup of guests assembled before the store", () => {
  it("replaces each copy by a link to one store entry; contents, modes and markers stay", async () => {
    for (const k of ["a", "b"]) {
      const dir = join(cache, "guests", k.repeat(64));
      await mkdir(join(dir, "bin"), { recursive: true });
      await writeFile(join(dir, "bin/tool"), big("t", 2 * MiB), { mode: 0o755 });
      await writeFile(join(dir, "bin/own"), big(k, 8192));
      await writeFile(join(dir, GUEST_MARKER), k);
    }
    const before = await cacheUsage(cache);
    expect(before.kinds.guests).toBeGreaterThan(4 * MiB);
    const r = await dedupGuests(cache);
    expect(r).toMatchObject({ guests: 2, linked: 1, adopted: 3 });
    const [a, b] = ["a", "b"].map((k) => join(cache, "guests", k.repeat(64)));
    expect((await stat(join(a!, "bin/tool"))).ino).toBe((await stat(join(b!, "bin/tool"))).ino);
    expect((await stat(join(b!, "bin/tool"))).mode & 0o7777).toBe(0o755);
    expect(await readFile(join(b!, "bin/tool"))).toEqual(big("t", 2 * MiB));
    expect(await readFile(join(b!, GUEST_MARKER), "utf8")).toBe("b");
    expect((await stat(join(b!, GUEST_MARKER))).nlink).toBe(1);
    const after = await cacheUsage(cache);
    expect(after.total).toBeLessThan(before.total - 1.9 * MiB);
    expect(await verifyStore(cache)).toEqual([]);
    // Run again: nothing left to do.
    expect(await dedupGuests(cache)).toMatchObject({ linked: 0, adopted: 0 });
  });
});

describe("pruning", () => {
  const day = 86400_000;
  const now = Date.UTC(2026, 0, 10);
  async function threeGuests() {
    // Each guest has 2 MiB of its own content and 1 MiB shared by all three.
    for (const [i, k] of ["aa", "bb", "cc"].entries())
      await makeGuest(k, { "lib/shared": big("s"), "lib/own": big(k, 2 * MiB) }, new Date(now - (3 - i) * day));
  }
  const key = (k: string) => k.padEnd(64, "0");

  it("evicts least recently used first, only as many as the cap needs, and the store entries they alone held", async () => {
    await threeGuests();
    const before = (await cacheUsage(cache)).total;
    // Dropping the oldest frees its 2 MiB; the cap needs two to go.
    const r = await pruneCache(cache, { maxSize: before - 3 * MiB, now });
    expect(r.evicted.map((e) => e.name)).toEqual([key("aa"), key("bb")]);
    expect(await stat(join(cache, "guests", key("cc"), "lib/own"))).toBeTruthy();
    expect(r.freed).toBeGreaterThanOrEqual(4 * MiB);
    expect(r.freed).toBeLessThan(4.3 * MiB);
    const after = await cacheUsage(cache);
    expect(after.total).toBeLessThanOrEqual(before - 3 * MiB);
    expect(r.after).toBe(after.total);
    expect((await listStore(cache)).length).toBe(2); // cc's own and the shared one
    // The last guest goes, and the shared entry with it.
    const all = await pruneCache(cache, { allGuests: true, now });
    expect(all.evicted.map((e) => e.name)).toEqual([key("cc")]);
    expect(await listStore(cache)).toEqual([]);
  });

  it("--older-than evicts only what was unused for longer", async () => {
    await threeGuests();
    const r = await pruneCache(cache, { olderThanMs: 1.5 * day, now });
    expect(r.evicted.map((e) => e.name)).toEqual([key("aa"), key("bb")]);
  });

  it("never evicts a guest a running build holds; once released it may go", async () => {
    await threeGuests();
    const lease = await leaseGuest(cache, key("aa"));
    const r = await pruneCache(cache, { allGuests: true, now });
    expect(r.inUse).toEqual([key("aa")]);
    expect(r.evicted.map((e) => e.name)).toEqual([key("bb"), key("cc")]);
    expect(await readFile(join(cache, "guests", key("aa"), "lib/shared"))).toEqual(big("s"));
    await lease.release();
    expect((await pruneCache(cache, { allGuests: true, now })).evicted.map((e) => e.name)).toEqual([key("aa")]);
  });

  it("a lease of a process that has ended does not hold the guest", async () => {
    await threeGuests();
    const dir = join(cache, "guest-leases", key("aa"));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "999999999-deadbeef"), "999999999\n"); // no such process
    const r = await pruneCache(cache, { allGuests: true, now });
    expect(r.inUse).toEqual([]);
    expect(r.evicted).toHaveLength(3);
  });

  it("a dry run removes nothing and reports what the real prune then frees", async () => {
    await threeGuests();
    const before = await cacheUsage(cache);
    const dry = await pruneCache(cache, { allGuests: true, dryRun: true, now });
    expect(dry.evicted).toHaveLength(3);
    expect(await cacheUsage(cache)).toEqual(before);
    expect((await listStore(cache)).length).toBe(4);
    const real = await pruneCache(cache, { allGuests: true, now });
    expect(real.freed).toBe(dry.freed);
    expect(real.evicted).toEqual(dry.evicted);
  });
});

describe("sizes and durations", () => {
  it("reads sizes and durations", () => {
    expect(parseSize("4G", "--max-size")).toBe(4 * 2 ** 30);
    expect(parseSize("512M", "--max-size")).toBe(512 * MiB);
    expect(parseSize("1.5T", "--max-size")).toBe(1.5 * 2 ** 40);
    expect(parseSize("1000", "--max-size")).toBe(1000);
    expect(parseDuration("7d", "--older-than")).toBe(7 * 86400_000);
    expect(parseDuration("30m", "--older-than")).toBe(1800_000);
  });

  it("a bad size or duration is one error naming the option and what was expected", () => {
    expect(() => parseSize("4X", "--max-size")).toThrow('--max-size: expected a size such as 512M, 4G or 1T, got "4X"');
    expect(() => parseSize("", "KILN_CACHE_MAX_SIZE")).toThrow(/^KILN_CACHE_MAX_SIZE: expected a size/);
    expect(() => parseDuration("7 days", "--older-than")).toThrow(
      '--older-than: expected a duration such as 30m, 12h, 7d or 2w, got "7 days"',
    );
  });
});
