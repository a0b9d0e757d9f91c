// Building blocks for end-to-end tests: keys, a signed repository of packages
// made with kiln's own writer, a static test binary, and a local registry.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import {
  buildIndex,
  emptyPackageInfo,
  generateKey,
  indexRecordForPackage,
  parseSigningKey,
  writePackage,
  type EntrySpec,
  type IndexRecord,
  type PackageInfo,
  type SigningKey,
} from "@kiln/apk";

export interface TestKey {
  key: SigningKey;
  privatePath: string;
  publicPath: string;
  keysDir: string;
}

export async function makeKey(dir: string, name = "test"): Promise<TestKey> {
  const k = await generateKey(2048);
  mkdirSync(join(dir, "keys"), { recursive: true });
  const privatePath = join(dir, `${name}.rsa`);
  const publicPath = join(dir, "keys", `${name}.rsa.pub`);
  writeFileSync(privatePath, k.privatePem, { mode: 0o600 });
  writeFileSync(publicPath, k.publicPem);
  return { key: parseSigningKey(k.privatePem, `${name}.rsa.pub`), privatePath, publicPath, keysDir: join(dir, "keys") };
}

export interface PkgSpec {
  name: string;
  version?: string;
  entries: EntrySpec[];
  info?: Partial<PackageInfo>;
}

/** Write packages into REPO/ARCH and a signed index; returns the records. */
export async function makeRepo(
  repo: string,
  key: SigningKey,
  pkgs: PkgSpec[],
  arch = "x86_64",
): Promise<IndexRecord[]> {
  const dir = join(repo, arch);
  mkdirSync(dir, { recursive: true });
  const records: IndexRecord[] = [];
  for (const p of pkgs) {
    const info = { ...emptyPackageInfo(p.name, p.version ?? "1.0-r0", arch), origin: p.name, ...p.info };
    const file = join(dir, `${info.name}-${info.version}.apk`);
    await writePackage({ info, entries: p.entries, signingKeys: [key], sourceDateEpoch: 1_700_000_000 }, file);
    records.push(await indexRecordForPackage(file));
  }
  writeFileSync(
    join(dir, "APKINDEX.tar.gz"),
    buildIndex(records, { signingKeys: [key], description: "test repository" }),
  );
  return records;
}

const HELLO_C = `
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  printf("hello from kiln uid=%d cwd=%s", (int)getuid(), cwd);
  for (int i = 1; i < argc; i++) printf(" arg=%s", argv[i]);
  printf("\\n");
  return 0;
}
`;

/** A static binary that prints its uid, working directory and arguments. */
export function buildHello(dir: string): string {
  const src = join(dir, "hello.c");
  const out = join(dir, "hello");
  writeFileSync(src, HELLO_C);
  execFileSync("gcc", ["-static", "-O2", "-o", out, src]);
  return out;
}

/** A minimal merged-usr base layout. */
export function baseLayoutEntries(): EntrySpec[] {
  return [
    { path: "usr/bin", type: "dir" },
    { path: "usr/lib", type: "dir" },
    { path: "usr/sbin", type: "dir" },
    { path: "bin", type: "symlink", linkTarget: "usr/bin" },
    { path: "lib", type: "symlink", linkTarget: "usr/lib" },
    { path: "sbin", type: "symlink", linkTarget: "usr/sbin" },
    { path: "etc/passwd", type: "file", content: "root:x:0:0:root:/root:/sbin/nologin\n" },
    { path: "etc/group", type: "file", content: "root:x:0:\n" },
    { path: "tmp", type: "dir", mode: 0o1777 },
    { path: "root", type: "dir", mode: 0o700 },
  ];
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

export interface Registry {
  port: number;
  host: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Debian's docker-registry on loopback with filesystem storage. */
export async function startRegistry(dir: string, opts: { htpasswd?: string } = {}): Promise<Registry> {
  const port = await freePort();
  mkdirSync(join(dir, "storage"), { recursive: true });
  const cfg = [
    "version: 0.1",
    "log:",
    "  level: error",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${join(dir, "storage")}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    ...(opts.htpasswd ? ["auth:", "  htpasswd:", "    realm: kiln-test", `    path: ${opts.htpasswd}`] : []),
  ].join("\n");
  writeFileSync(join(dir, "config.yml"), cfg + "\n");
  const proc = spawn("docker-registry", ["serve", join(dir, "config.yml")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr!.on("data", (d) => (stderr += d));
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v2/`);
      if (r.status === 200 || r.status === 401) break;
    } catch {
      /* not up yet */
    }
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`docker-registry did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    host: `127.0.0.1:${port}`,
    proc,
    stop: () =>
      new Promise((r) => {
        if (proc.exitCode !== null) return r();
        proc.once("exit", () => r());
        proc.kill("SIGTERM");
      }),
  };
}
