// Which guest-store entries were read and hashed, remembered across
// processes: CACHE/store/checked.log, one line per check, `AA/NAME STAMP`
// (the entry's path under the store, and its inode, modification time and
// size when it was found to hash to its name). A process that links an
// entry whose stamp is on record and unchanged does not read it again, so a
// single `kiln build` no longer re-reads every file of its guests (hundreds
// of MB for a toolchain) once per process. A write to an entry changes its
// modification time, so damage is still caught; lines are appended, the last
// one per entry wins, and the file is compacted when it grows past a bound.
// Nothing here is trusted beyond the stamp: an entry whose inode, time or
// size differs is hashed as before.

import { writeFileAtomic } from "@kiln/core";
import { appendFile, readFile, stat } from "node:fs/promises";
import { join, relative } from "node:path";

export const CHECK_LOG = "checked.log";
/** Past this size the log is rewritten with one line per entry. */
const COMPACT_AT = 8 * 1024 * 1024;
const LINE_RE = /^([0-9a-f]{2}\/[0-9a-f]{64}-[0-7]{1,5}) (\d+:[0-9.]+:\d+)$/;

const loaded = new Map<string, Promise<void>>();

export class CheckLog {
  readonly file: string;
  private pending: string[] = [];
  private scheduled = false;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    readonly storeDir: string,
    /** Entry path → stamp, the process's record this log feeds. */
    private readonly into: Map<string, string>,
  ) {
    this.file = join(storeDir, CHECK_LOG);
  }

  /** Read the log into the record, once per process and store. */
  load(): Promise<void> {
    let p = loaded.get(this.storeDir);
    if (!p) {
      p = this.read();
      loaded.set(this.storeDir, p);
    }
    return p;
  }

  private async read(): Promise<void> {
    const text = await readFile(this.file, "utf8").catch(() => "");
    const seen = new Map<string, string>();
    for (const line of text.split("\n")) {
      const m = LINE_RE.exec(line);
      if (m) seen.set(m[1]!, m[2]!);
    }
    for (const [rel, stamp] of seen) {
      const entry = join(this.storeDir, rel);
      if (!this.into.has(entry)) this.into.set(entry, stamp);
    }
    if (text.length > COMPACT_AT) {
      const lines = [...seen].map(([rel, stamp]) => `${rel} ${stamp}\n`).join("");
      await writeFileAtomic(this.file, lines).catch(() => undefined);
    }
  }

  /** Note that `entry` hashed to its name with `stamp`; written shortly after, with the others noted meanwhile, in one append. */
  record(entry: string, stamp: string): void {
    const rel = relative(this.storeDir, entry);
    if (!LINE_RE.test(`${rel} ${stamp}`)) return;
    this.pending.push(`${rel} ${stamp}\n`);
    if (this.scheduled) return;
    this.scheduled = true;
    this.writing = this.writing
      .then(() => new Promise<void>((r) => setImmediate(r)))
      .then(() => {
        this.scheduled = false;
        return this.write();
      });
  }

  /** Wait until everything recorded is written. */
  async flush(): Promise<void> {
    await this.writing;
    await this.write();
  }

  /** A log that cannot be written only costs later processes a re-hash. */
  private async write(): Promise<void> {
    const lines = this.pending.splice(0).join("");
    if (!lines) return;
    if (!(await stat(this.storeDir).catch(() => undefined))) return;
    await appendFile(this.file, lines, { mode: 0o600 }).catch(() => undefined);
  }
}

/** Forget which logs this process has read (tests: a new process). */
export function forgetLoadedLogs(): void {
  loaded.clear();
}
