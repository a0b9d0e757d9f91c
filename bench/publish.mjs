// Publishing benchmarks (issue: publish to S3): publish 1,000 packages to a
// real S3-protocol server (s3rver on loopback), then one more package into
// that 1,000-package repository. The figure is incremental / full: the
// incremental publish must not redo the work of the whole repository (it
// lists the bucket and reads the index; it reads no published package).
// A second row compares the full publish with `aws s3 sync` of the same
// files (Debian's awscli), when it is installed.

import { spawn, execFile } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { promisify } from "node:util";
import {
  buildIndex,
  emptyPackageInfo,
  generateKey,
  indexRecordForPackage,
  parseSigningKey,
  writePackage,
} from "@kiln/apk";
import { publish, S3Store } from "@kiln/repo";
import { peakRssMb, time } from "./common.mjs";

const require = createRequire(import.meta.url);
const S3RVER = require.resolve("s3rver");

const SERVER = `
const S3rver = require(${JSON.stringify(S3RVER)});
const s = new S3rver({ port: 0, address: "127.0.0.1", silent: !process.env.S3RVER_LOG, directory: process.argv[1] });
s.run().then((a) => process.stdout.write(a.port + "\\n"));
`;

// s3rver encrypts ListObjectsV2 continuation tokens with DES, which Node's
// OpenSSL 3 only has in its legacy provider: without it, listing more than
// 1,000 keys fails with a 500.
async function startServer(dir) {
  const proc = spawn(process.execPath, ["--openssl-legacy-provider", "-e", SERVER, dir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise((resolve, reject) => {
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /^(\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once("exit", (c) => reject(new Error(`s3rver exited ${c}`)));
  });
  return {
    port,
    stop: () => new Promise((r) => (proc.exitCode !== null ? r() : (proc.once("exit", r), proc.kill("SIGTERM")))),
  };
}

async function writeRepo(dir, key, n, extra = []) {
  const arch = join(dir, "x86_64");
  mkdirSync(arch, { recursive: true });
  const records = [];
  const names = [...Array.from({ length: n }, (_, i) => `pkg${i}`), ...extra];
  for (const name of names) {
    const info = {
      ...emptyPackageInfo(name, "1.0-r0", "x86_64"),
      description: `benchmark package ${name}`,
      depends: name === "pkg0" ? [] : ["pkg0"],
    };
    const file = join(arch, `${name}-1.0-r0.apk`);
    if (!existsSync(file)) {
      const body = Buffer.alloc(2048 + ((name.length * 97) % 4096), name);
      await writePackage(
        {
          info,
          entries: [
            { path: `usr/share/${name}`, type: "dir" },
            { path: `usr/share/${name}/data`, type: "file", content: body },
          ],
          signingKeys: [key],
          sourceDateEpoch: 1_700_000_000,
        },
        file,
      );
    }
    records.push(await indexRecordForPackage(file));
  }
  const { writeFileSync } = await import("node:fs");
  writeFileSync(join(arch, "APKINDEX.tar.gz"), buildIndex(records, { signingKeys: [key] }));
}

/** The awscli executable: Debian's /usr/bin/aws, or the first `aws` on PATH. */
function awsCli() {
  const dirs = ["/usr/bin", ...(process.env.PATH ?? "").split(":").filter(Boolean)];
  return dirs.map((d) => join(d, "aws")).find((p) => existsSync(p));
}

export async function publishBenchmarks(log) {
  const results = [];
  const dir = await mkdtemp(join(tmpdir(), "kiln-bench-publish-"));
  const server = await startServer(join(dir, "s3"));
  const endpointUrl = `http://127.0.0.1:${server.port}`;
  process.env.AWS_ACCESS_KEY_ID ??= "S3RVER";
  process.env.AWS_SECRET_ACCESS_KEY ??= "S3RVER";
  const env = {
    ...process.env,
    AWS_ACCESS_KEY_ID: "S3RVER",
    AWS_SECRET_ACCESS_KEY: "S3RVER",
    AWS_DEFAULT_REGION: "us-east-1",
  };
  try {
    const N = Number(process.env.KILN_BENCH_PUBLISH_PACKAGES ?? 1000);
    const [b, p] = await Promise.all([generateKey(2048), generateKey(2048)]);
    const buildKey = parseSigningKey(b.privatePem, "build.rsa.pub");
    const pubKey = parseSigningKey(p.privatePem, "pub.rsa.pub");
    const out = join(dir, "out");
    log(`writing ${N} packages (signed by a build key; publishing re-signs them)`);
    await writeRepo(out, buildKey, N);

    const { S3Client, CreateBucketCommand } = await import("@aws-sdk/client-s3");
    const admin = new S3Client({
      endpoint: endpointUrl,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
    await admin.send(new CreateBucketCommand({ Bucket: "bench" }));
    admin.destroy();
    const store = (prefix = "repo/", extra = {}) =>
      new S3Store({ bucket: "bench", prefix }, { endpointUrl, pathStyle: true, region: "us-east-1", ...extra });

    log(`publish ${N} packages to s3rver`);
    const s1 = store();
    const full = await time(() => publish(s1, out, { signingKey: pubKey, concurrency: 8 }));
    await s1.close();
    if (full.value.archs[0].indexPackages !== N)
      throw new Error(`full publish indexed ${full.value.archs[0].indexPackages}`);

    log("add one package and publish again");
    await writeRepo(out, buildKey, N, ["newcomer"]);
    const s2 = store();
    const inc = await time(() => publish(s2, out, { signingKey: pubKey, concurrency: 8 }));
    await s2.close();
    const a = inc.value.archs[0];
    if (a.uploaded.length !== 1 || a.skipped.length !== N || a.indexPackages !== N + 1)
      throw new Error(
        `incremental publish: ${JSON.stringify({ uploaded: a.uploaded.length, skipped: a.skipped.length, index: a.indexPackages })}`,
      );
    results.push({
      name: `publish +1 package into ${N} / publish ${N} (S3)`,
      kiln: `${(inc.ms / 1000).toFixed(2)} s`,
      peer: `${(full.ms / 1000).toFixed(1)} s`,
      ratio: inc.ms / full.ms,
      note: `incremental / full publish to s3rver on loopback; full = ${(N / (full.ms / 1000)).toFixed(0)} pkg/s incl. re-signing; lower is better`,
    });

    // The same publish with one PUT per object, as against AWS S3 (whose PUT is atomic; s3rver's is not).
    log(`publish ${N} packages to s3rver with --atomic-put`);
    const s3 = store("atomic/", { atomicPut: true });
    const atomic = await time(() => publish(s3, out, { signingKey: pubKey, concurrency: 8 }));
    await s3.close();
    if (atomic.value.archs[0].indexPackages !== N + 1)
      throw new Error(`atomic publish indexed ${atomic.value.archs[0].indexPackages}`);

    const aws = awsCli();
    if (!aws) log("aws s3 sync: skipped (no aws on PATH)");
    else {
      log(`aws s3 sync of the same ${N} files (awscli, for scale)`);
      const sync = await time(() =>
        promisify(execFile)(
          aws,
          ["--endpoint-url", endpointUrl, "s3", "sync", "--quiet", join(out, "x86_64"), "s3://bench/sync/x86_64/"],
          { env, maxBuffer: 64 * 1024 * 1024 },
        ),
      );
      results.push({
        name: `publish ${N} packages (S3) vs aws s3 sync`,
        kiln: `${(full.ms / 1000).toFixed(1)} s`,
        peer: `${(sync.ms / 1000).toFixed(1)} s`,
        ratio: full.ms / sync.ms,
        note: "kiln verifies, re-signs, uploads atomically (stage + copy), signs the index; awscli only copies files; lower is better",
      });
      results.push({
        name: `publish ${N + 1} packages (S3), --atomic-put, vs aws s3 sync`,
        kiln: `${(atomic.ms / 1000).toFixed(1)} s`,
        peer: `${(sync.ms / 1000).toFixed(1)} s`,
        ratio: atomic.ms / sync.ms,
        note: "one conditional PUT per object (for servers whose PUT is atomic, as AWS S3's); still verifies and re-signs every package",
      });
    }
    log(`peak RSS so far: ${peakRssMb()} MB`);
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}

// Run alone: node bench/publish.mjs
if (import.meta.url === `file://${process.argv[1]}`) {
  const rs = await publishBenchmarks((l) => process.stderr.write(`   ${l}\n`));
  for (const r of rs)
    console.log(
      `${r.name.padEnd(57)}${r.kiln.padStart(16)}${r.peer.padStart(16)}${r.ratio.toFixed(3).padStart(8)}x  (${r.note})`,
    );
}
