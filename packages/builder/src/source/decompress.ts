// Decompression: gzip is Node's own zlib. xz, bzip2, zstd and lzma use the
// host's `xz`, `bzip2` and `zstd` programs (Debian packages xz-utils, bzip2,
// zstd), streamed through a pipe. They are the reference decoders, several
// times faster than the JavaScript/WASM ports (the bootstrap unpacks hundreds
// of megabytes of toolchain .debs), stream without holding the archive in
// memory, verify the format's own integrity checks, and handle every variant
// (multi-stream xz, concatenated bzip2, zstd long windows) found in the wild.

import { sleep } from "@kiln/core";
import { spawn } from "node:child_process";
import { statSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { delimiter, join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { SourceError } from "./errors.js";

export type Compression = "none" | "gzip" | "xz" | "bzip2" | "zstd" | "lzma";
export type ArchiveFormat = "tar" | "tar.gz" | "tar.xz" | "tar.bz2" | "tar.zst" | "tar.lzma";

export const FORMAT_COMPRESSION: Record<ArchiveFormat, Compression> = {
  tar: "none",
  "tar.gz": "gzip",
  "tar.xz": "xz",
  "tar.bz2": "bzip2",
  "tar.zst": "zstd",
  "tar.lzma": "lzma",
};

const TOOLS: Record<Exclude<Compression, "none" | "gzip">, { bin: string; args: string[]; pkg: string }> = {
  xz: { bin: "xz", args: ["-dc", "-T1"], pkg: "xz-utils" },
  lzma: { bin: "xz", args: ["-dc", "--format=lzma"], pkg: "xz-utils" },
  bzip2: { bin: "bzip2", args: ["-dc"], pkg: "bzip2" },
  zstd: { bin: "zstd", args: ["-dcq", "--long=31"], pkg: "zstd" },
};

const toolCache = new Map<string, string | undefined>();

function findTool(bin: string): string | undefined {
  if (toolCache.has(bin)) return toolCache.get(bin);
  let found: string | undefined;
  for (const d of (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(delimiter)) {
    if (!d) continue;
    const p = join(d, bin);
    try {
      const st = statSync(p);
      if (st.isFile() && st.mode & 0o111) {
        found = p;
        break;
      }
    } catch {
      /* next */
    }
  }
  toolCache.set(bin, found);
  return found;
}

/** Guess the archive format from its first bytes, falling back to the file name. */
export async function detectArchiveFormat(file: string): Promise<ArchiveFormat> {
  const fh = await fsp.open(file, "r");
  const head = Buffer.alloc(512);
  let n: number;
  try {
    n = (await fh.read(head, 0, 512, 0)).bytesRead;
  } finally {
    await fh.close();
  }
  const b = head.subarray(0, n);
  if (b[0] === 0x1f && b[1] === 0x8b) return "tar.gz";
  if (b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return "tar.xz";
  if (b.subarray(0, 3).toString("latin1") === "BZh") return "tar.bz2";
  if (b.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return "tar.zst";
  if (n >= 262 && b.subarray(257, 262).toString("latin1") === "ustar") return "tar";
  if (/\.(tar\.lzma|tlz)$/i.test(file)) return "tar.lzma";
  if (/\.tar$/i.test(file)) return "tar";
  if (b.subarray(0, 4).toString("latin1") === "PK\u0003\u0004") {
    throw new SourceError("BAD_ARCHIVE", `${file}: zip archives are not supported; use a tarball`);
  }
  throw new SourceError(
    "BAD_ARCHIVE",
    `${file}: not a recognised archive (tar, tar.gz, tar.xz, tar.bz2, tar.zst, tar.lzma)`,
  );
}

export interface Decompressed {
  stream: AsyncIterable<Buffer>;
  /** Resolves when the decompressor finished cleanly; rejects with its error. */
  done: Promise<void>;
  /** Stop early (after an error elsewhere). */
  abort(): void;
  /** The decompressor's own error, if it failed or fails shortly (a host tool is given time to exit): explains a garbled tar stream. */
  failure(): Promise<unknown>;
}

const ignore = (): void => undefined;

/**
 * Decompress a byte stream with zlib (gzip) or a host tool (xz, bzip2, zstd, lzma).
 * Every stream involved has its errors handled from the moment it exists: an
 * error raised before the consumer starts reading (a corrupt gzip header
 * decoded while the destination directory is still being created) surfaces
 * through `stream` or `done`, never as an uncaught exception.
 */
export function decompress(input: Readable, compression: Compression, subject: string): Decompressed {
  if (compression === "none") {
    const done = finished(input);
    done.catch(ignore); // an early abort is a premature close; the reader reports real errors
    return {
      stream: input as AsyncIterable<Buffer>,
      done,
      abort: () => input.destroy(),
      failure: () => Promise.resolve(undefined),
    };
  }
  if (compression === "gzip") return gunzip(input, subject);
  return toolDecompress(input, compression, subject);
}

function gunzip(input: Readable, subject: string): Decompressed {
  const wrap = (e: unknown): unknown => {
    if (e instanceof SourceError) return e;
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && code.startsWith("Z_"))
      return new SourceError("BAD_ARCHIVE", `${subject}: gzip data is corrupt: ${(e as Error).message}`, { cause: e });
    return e; // the input's own read error (a system error), as it is
  };
  const gz = createGunzip();
  let gzError: unknown;
  gz.on("error", (e) => (gzError ??= e));
  // pipeline() puts error handlers on both streams at once and destroys both on either's failure.
  const done = pipeline(input, gz).catch((e: unknown) => {
    throw wrap(e);
  });
  done.catch(ignore); // observed through the stream (or by the caller); never unhandled
  return {
    stream: (async function* () {
      try {
        for await (const c of gz) yield c as Buffer;
      } catch (e) {
        throw wrap(e);
      }
    })(),
    done,
    abort: () => {
      input.destroy();
      gz.destroy();
    },
    // zlib fails as it decodes: no point in waiting.
    failure: () => Promise.resolve(gzError === undefined ? undefined : wrap(gzError)),
  };
}

function toolDecompress(
  input: Readable,
  compression: Exclude<Compression, "none" | "gzip">,
  subject: string,
): Decompressed {
  const tool = TOOLS[compression];
  const bin = findTool(tool.bin);
  if (!bin) {
    input.destroy();
    throw new SourceError(
      "MISSING_TOOL",
      `${subject}: ${compression} data needs the host's \`${tool.bin}\` program (Debian package ${tool.pkg}): apt-get install ${tool.pkg}`,
    );
  }
  const child = spawn(bin, tool.args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  let aborted = false;
  let readFailure: unknown;
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  child.stderr.on("error", ignore);
  // Take stdout at once: when a child exits before anything listens to its
  // stdout, Node resumes that stream and discards its data (so a small
  // member, decompressed while the caller was still creating the destination,
  // read as an empty archive). The pass-through holds it, with backpressure.
  const out = new PassThrough();
  child.stdout.on("error", (e) => out.destroy(e));
  child.stdout.pipe(out);
  out.on("error", ignore); // seen by the consumer's iteration
  // EPIPE on stdin when the tool fails early is expected: its exit status tells. A read error of the input is ours to report.
  pipeline(input, child.stdin).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === "EPIPE" || aborted) return;
    if (input.errored) {
      readFailure = e;
      child.kill("SIGKILL");
    }
  });
  const done = new Promise<void>((res, rej) => {
    child.on("error", (e) =>
      rej(new SourceError("MISSING_TOOL", `${subject}: cannot run ${bin}: ${e.message}`, { cause: e })),
    );
    child.on("close", (code, signal) => {
      if (aborted) res();
      else if (readFailure !== undefined) rej(readFailure);
      else if (code === 0) res();
      else
        rej(
          new SourceError(
            "BAD_ARCHIVE",
            `${subject}: ${tool.bin} could not decompress the data (${signal ?? `exit ${code}`}): ${stderr.trim() || "no message"}`,
          ),
        );
    });
  });
  done.catch(ignore); // observed by the caller; avoid an unhandled rejection meanwhile
  return {
    stream: out as AsyncIterable<Buffer>,
    done,
    abort: () => {
      aborted = true;
      input.destroy();
      out.destroy();
      child.kill("SIGKILL");
    },
    failure: () =>
      Promise.race([
        done.then(
          () => undefined,
          (x: unknown) => x,
        ),
        sleep(2000).then(() => undefined),
      ]),
  };
}
