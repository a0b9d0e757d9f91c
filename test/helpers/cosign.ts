// The real cosign for the signature tests: Debian's package from the newest
// suite that has it, found through apt's configured mirror (never a host name
// written here), its SHA256 checked against the Packages index, unpacked with
// dpkg-deb -x and cached under node_modules/.cache/kiln-tests.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { debianMirror } from "../../packages/builder/src/source/mirrors.js";
import { REPO_ROOT } from "./paths.js";

const CACHE = join(REPO_ROOT, "node_modules/.cache/kiln-tests");
/** Newest first: unstable, then the testing and stable suites that may carry it. */
const SUITES = ["sid", "forky", "trixie"];
const ARCH = "amd64";

export interface Cosign {
  bin: string;
  /** The Debian package version, e.g. 3.1.1-2 (Debian's build reports GitVersion "devel"). */
  debVersion: string;
  suite: string;
}

async function get(url: string, limit: number): Promise<Buffer> {
  const res = await fetch(url, { signal: AbortSignal.timeout(300_000) });
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${res.statusText}`);
  const b = Buffer.from(await res.arrayBuffer());
  if (b.length > limit) throw new Error(`GET ${url}: ${b.length} bytes, more than the ${limit} expected`);
  return b;
}

/** The cosign paragraph of a Packages index. */
function cosignEntry(packages: string): { version: string; filename: string; sha256: string } | undefined {
  for (const para of packages.split("\n\n")) {
    if (!para.startsWith("Package: cosign\n")) continue;
    const field = (n: string) => new RegExp(`^${n}: (.+)$`, "m").exec(para)?.[1]?.trim();
    const version = field("Version"),
      filename = field("Filename"),
      sha256 = field("SHA256");
    if (
      version &&
      filename &&
      sha256 &&
      /^pool\/[A-Za-z0-9+._/~-]+\.deb$/.test(filename) &&
      /^[0-9a-f]{64}$/.test(sha256)
    )
      return { version, filename, sha256 };
  }
  return undefined;
}

/** cosign 2.x or 3.x from the Debian archive (downloaded once, then from the cache). */
export async function fetchCosign(): Promise<Cosign> {
  const mirror = debianMirror();
  const problems: string[] = [];
  for (const suite of SUITES) {
    let entry;
    try {
      const gz = await get(`${mirror}/dists/${suite}/main/binary-${ARCH}/Packages.gz`, 200 * 1024 * 1024);
      entry = cosignEntry(gunzipSync(gz, { maxOutputLength: 1024 * 1024 * 1024 }).toString("utf8"));
    } catch (e) {
      problems.push(`${suite}: ${(e as Error).message}`);
      continue;
    }
    if (!entry) {
      problems.push(`${suite}: no cosign package`);
      continue;
    }
    if (!/^[23]\./.test(entry.version)) {
      problems.push(`${suite}: cosign ${entry.version} is not 2.x or 3.x`);
      continue;
    }
    const dir = join(CACHE, `cosign-${entry.sha256.slice(0, 16)}`);
    const bin = join(dir, "usr/bin/cosign");
    if (!existsSync(bin)) {
      const deb = await get(`${mirror}/${entry.filename}`, 256 * 1024 * 1024);
      const got = createHash("sha256").update(deb).digest("hex");
      if (got !== entry.sha256) throw new Error(`${entry.filename}: SHA256 ${got}, the index says ${entry.sha256}`);
      const tmp = `${dir}.tmp-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp, { recursive: true });
      writeFileSync(join(tmp, "cosign.deb"), deb);
      execFileSync("dpkg-deb", ["-x", join(tmp, "cosign.deb"), tmp]);
      rmSync(join(tmp, "cosign.deb"));
      if (!existsSync(join(tmp, "usr/bin/cosign"))) throw new Error(`${entry.filename} has no usr/bin/cosign`);
      try {
        renameSync(tmp, dir);
      } catch (e) {
        // Another worker got there first: use its copy.
        rmSync(tmp, { recursive: true, force: true });
        if (!existsSync(bin)) throw e;
      }
    }
    return { bin, debVersion: entry.version, suite };
  }
  throw new Error(`no cosign 2.x/3.x in the Debian archive at ${mirror}: ${problems.join("; ")}`);
}
