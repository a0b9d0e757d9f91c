// Memory and time bounds of reading indexes, measured in child processes
// against the built library and CLI (run `npx turbo run build` first):
//   - a realistic index is kept in under 3× its text size;
//   - a 400 MB APKINDEX gzip bomb (about 1 MB compressed) is refused by
//     `kiln verify` and `kiln image show-packages` in under 5 s and 256 MB of
//     RSS, both when its signing key is unknown and when it is trusted.

import { spawnSync } from "node:child_process";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { constants, crc32, createGunzip, deflateRawSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildSignatureMember, encodeHeader, generateKey, parseSigningKey, type SigningKey } from "./index.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const APK_DIST = join(ROOT, "packages/apk/dist/index.js");
const KILN_BIN = join(ROOT, "packages/cli/dist/bin.js");
const MEMORY_SCRIPT = join(ROOT, "packages/apk/test-scripts/index-memory.mjs");

const BOMB_TEXT = 400_000_000;
const MAX_RSS = 256 * 1024 * 1024;

let dir: string;
let signer: SigningKey;
let stranger: SigningKey;
let keysDir: string;
let preload: string;

beforeAll(async () => {
  for (const f of [APK_DIST, KILN_BIN])
    if (!existsSync(f)) throw new Error(`${f} is missing: run \`npx turbo run build\` before these tests`);
  dir = await mkdtemp(join(tmpdir(), "kiln-index-memory-"));
  const [a, b] = await Promise.all([generateKey(2048), generateKey(2048)]);
  signer = parseSigningKey(a.privatePem, "bomb-signer.rsa.pub");
  stranger = parseSigningKey(b.privatePem, "stranger.rsa.pub");
  keysDir = join(dir, "keys");
  await mkdir(keysDir);
  await writeFile(join(keysDir, "bomb-signer.rsa.pub"), a.publicPem);
  // Reports the child's peak RSS on exit, however the CLI exits.
  preload = join(dir, "maxrss.cjs");
  await writeFile(
    preload,
    `process.on("exit", () => require("node:fs").writeSync(2, "\\nMAXRSS_KB=" + process.resourceUsage().maxRSS + "\\n"));\n`,
  );
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const padTo512 = (n: number) => (512 - (n % 512)) % 512;

/**
 * One gzip member holding an index tar whose APKINDEX is `textSize` bytes of
 * minimal records (`P:aN\nV:1-r0\n\n`, N cycling 0-3, so it compresses
 * about 330:1, to 1.2 MB). The deflate stream is one
 * independently compressed chunk repeated: each piece ends with a full flush,
 * which resets the compressor, so the pieces can be concatenated. Nothing the
 * size of the text is ever held.
 */
function bombBody(textSize: number): { member: Buffer; textSize: number } {
  const records: string[] = [];
  for (let i = 0; records.join("").length < 256 * 1024; i++) records.push(`P:a${i % 4}\nV:1-r0\n\n`);
  const chunk = Buffer.from(records.join(""));
  const copies = Math.ceil(textSize / chunk.length);
  const size = copies * chunk.length;
  const head = Buffer.concat([
    encodeHeader({ path: "DESCRIPTION", type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 }),
    encodeHeader({ path: "APKINDEX", type: "file", mode: 0o644, uid: 0, gid: 0, size, mtime: 0 }),
  ]);
  const tail = Buffer.alloc(padTo512(size) + 1024);
  const flush = { level: 9, finishFlush: constants.Z_FULL_FLUSH };
  const piece = deflateRawSync(chunk, flush);
  let crc = crc32(head);
  for (let i = 0; i < copies; i++) crc = crc32(chunk, crc);
  crc = crc32(tail, crc);
  const total = head.length + size + tail.length;
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(total % 2 ** 32, 4);
  const gzHeader = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
  const member = Buffer.concat([
    gzHeader,
    deflateRawSync(head, flush),
    ...Array<Buffer>(copies).fill(piece),
    deflateRawSync(tail),
    trailer,
  ]);
  return { member, textSize: size };
}

/** Inflate a file with zlib (streaming) and count the bytes: proves the bomb is a valid gzip of that size. */
async function inflatedSize(path: string): Promise<number> {
  let n = 0;
  const gunzip = createReadStream(path).pipe(createGunzip());
  for await (const c of gunzip) n += (c as Buffer).length;
  return n;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
  maxRss: number;
}

function kiln(args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ["--require", preload, KILN_BIN, ...args], {
    encoding: "utf8",
    env: { ...process.env, ...env },
    // A guard against a hang only (a killed child has no status and fails the test);
    // how fast a refusal is belongs to `npm run bench`, not to a timed test.
    timeout: 120_000,
  });
  const seconds = (performance.now() - t0) / 1000;
  const m = /MAXRSS_KB=(\d+)/.exec(r.stderr);
  if (!m)
    throw new Error(`no MAXRSS line from the child (status ${r.status}, signal ${r.signal}): ${r.stderr.slice(-2000)}`);
  return {
    status: r.status,
    stdout: r.stdout,
    stderr: r.stderr.replace(/\nMAXRSS_KB=\d+\n/, ""),
    seconds,
    maxRss: Number(m[1]) * 1024,
  };
}

const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;

describe("a 400 MB APKINDEX gzip bomb", () => {
  let untrustedFile: string;
  let trustedFile: string;
  let member: Buffer;

  beforeAll(async () => {
    const bomb = bombBody(BOMB_TEXT);
    member = bomb.member;
    expect(bomb.textSize).toBeGreaterThanOrEqual(BOMB_TEXT);
    untrustedFile = join(dir, "untrusted", "x86_64", "APKINDEX.tar.gz");
    trustedFile = join(dir, "trusted", "x86_64", "APKINDEX.tar.gz");
    for (const [file, key] of [
      [untrustedFile, stranger],
      [trustedFile, signer],
    ] as const) {
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, Buffer.concat([buildSignatureMember(member, [key]), member]));
    }
  });

  it("is what it claims: about 1 MB compressed, inflating (with zlib) to more than 400 MB", async () => {
    console.log(`bomb: ${mb(member.length + 512)} compressed`);
    expect(member.length).toBeLessThan(2 * 1024 * 1024);
    expect(await inflatedSize(trustedFile)).toBeGreaterThan(BOMB_TEXT);
  });

  for (const which of ["untrusted", "trusted"] as const) {
    it(`kiln verify refuses it when its key is ${which === "untrusted" ? "not in the keys directory" : "trusted"}: exit 1, in < ${mb(MAX_RSS)} RSS, the limit named`, () => {
      const file = which === "untrusted" ? untrustedFile : trustedFile;
      const r = kiln(["verify", "--keys-dir", keysDir, file]);
      console.log(
        `kiln verify, ${which} 400 MB bomb: ${r.seconds.toFixed(2)} s, max RSS ${mb(r.maxRss)}: ${r.stdout.trim()}`,
      );
      expect(r.status, r.stderr).toBe(1);
      if (which === "untrusted") expect(r.stdout).toBe(`${file}: UNTRUSTED (no trusted key named stranger.rsa.pub)\n`);
      else {
        expect(r.stdout.startsWith(`${file}: BAD archive (`), r.stdout).toBe(true);
        expect(r.stdout).toMatch(/APKINDEX is \d+ bytes, over the 268435456-byte limit/);
      }
      expect(r.maxRss).toBeLessThan(MAX_RSS);
    });

    it(`kiln image show-packages refuses a repository serving it (${which}): exit 1 naming the repository and the limit, in < ${mb(MAX_RSS)} RSS`, async () => {
      const repo = dirname(dirname(which === "untrusted" ? untrustedFile : trustedFile));
      const cfg = join(dir, `${which}.yaml`);
      await writeFile(
        cfg,
        `contents:\n  repositories:\n    - ${repo}\n  keyring:\n    - ${join(keysDir, "bomb-signer.rsa.pub")}\n  packages:\n    - a1\narchs:\n  - x86_64\n`,
      );
      const r = kiln(["image", "show-packages", cfg, "--cache-dir", join(dir, `cache-${which}`)], {
        KILN_CACHE_DIR: join(dir, `cache-${which}`),
      });
      const said = r.stderr
        .trim()
        .split("\n")
        .filter((l) => !l.startsWith("  "))
        .join(" | ");
      console.log(
        `kiln image show-packages, ${which} 400 MB bomb: ${r.seconds.toFixed(2)} s, max RSS ${mb(r.maxRss)}: ${said}`,
      );
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toContain(`repository ${repo}`);
      expect(r.stderr).toMatch(
        which === "untrusted"
          ? /is UNTRUSTED: no trusted key named stranger\.rsa\.pub/
          : /APKINDEX is \d+ bytes, over the 268435456-byte limit/,
      );
      expect(r.maxRss).toBeLessThan(MAX_RSS);
    });
  }

  it("with KILN_MAX_INDEX_SIZE raised past it, the trusted bomb is still refused in bounded memory: the record limit (KILN_MAX_INDEX_RECORDS) stops the parse", () => {
    const r = kiln(["verify", "--keys-dir", keysDir, trustedFile], {
      KILN_MAX_INDEX_SIZE: String(1 << 30),
      KILN_MAX_INDEX_RECORDS: "100000",
    });
    console.log(
      `kiln verify, trusted bomb, size limit raised: ${r.seconds.toFixed(2)} s, max RSS ${mb(r.maxRss)}: ${r.stdout.trim()}`,
    );
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toContain("more than 100000 records (the limit");
    expect(r.maxRss).toBeLessThan(MAX_RSS);
  });
});

describe("memory kept by a parsed index", () => {
  it("a realistic 20 MB APKINDEX is kept in under 3× its text size (heap + buffers after gc), and round-trips exactly", () => {
    const r = spawnSync(process.execPath, ["--expose-gc", MEMORY_SCRIPT, APK_DIST, "20"], {
      encoding: "utf8",
      timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout) as {
      records: number;
      textBytes: number;
      ms: number;
      heapRatio: number;
      retainedRatio: number;
      roundTrip: boolean;
    };
    console.log(
      `20 MB index: ${m.records} records in ${m.ms} ms; kept ${m.retainedRatio.toFixed(2)}× the text (heap ${m.heapRatio.toFixed(2)}×)`,
    );
    expect(m.textBytes).toBeGreaterThan(20e6);
    expect(m.records).toBeGreaterThan(40_000);
    expect(m.roundTrip).toBe(true);
    expect(m.retainedRatio).toBeLessThan(3);
  });
});
