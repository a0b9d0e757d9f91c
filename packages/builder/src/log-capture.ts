// Capturing what build steps print, in time and memory linear in the output
// whatever its shape: a package's log file has a size cap (the rest is
// counted and noted at the end), a line longer than the line limit is cut
// with a marker, and the last lines are kept for error messages without ever
// holding more than a bounded number of bytes. A step printing 700 MB with no
// newline costs one pass over the bytes and a fixed amount of memory.

import { createWriteStream, type WriteStream } from "node:fs";

export interface LogLimits {
  /** Bytes of one line kept in the log; the rest of the line is dropped and counted (default 64 KiB). */
  maxLineBytes?: number;
  /** Size of the log file; output beyond it is dropped and counted (default 256 MiB). */
  maxBytes?: number;
}

export const DEFAULT_LOG_LIMITS: Required<LogLimits> = { maxLineBytes: 64 << 10, maxBytes: 256 << 20 };

/** Room kept free under the cap for the closing note, so the file never exceeds the cap. */
const NOTE_ROOM = 512;

/** What a cut line ends with in the log and in the tail. */
export function lineCutMarker(dropped: number): string {
  return ` … [line cut: ${dropped} bytes]`;
}

/** A package's log file, capped in size. Everything written to it (kiln's notes, the steps' output) goes through here. */
export class BuildLog {
  private written = 0;
  private dropped = 0;
  private readonly stream: WriteStream;
  readonly maxBytes: number;
  readonly maxLineBytes: number;

  constructor(
    readonly path: string,
    limits: LogLimits = {},
  ) {
    this.maxBytes = Math.max(limits.maxBytes ?? DEFAULT_LOG_LIMITS.maxBytes, NOTE_ROOM * 2);
    this.maxLineBytes = Math.max(limits.maxLineBytes ?? DEFAULT_LOG_LIMITS.maxLineBytes, 1);
    this.stream = createWriteStream(path, { flags: "a" });
    this.stream.on("error", () => undefined); // a write error (disk full) must not kill the build's process; close() reports it
  }

  /** Bytes written so far (the header written before opening not counted). */
  get size(): number {
    return this.written;
  }

  /** Bytes of output dropped because the log was full. */
  get droppedBytes(): number {
    return this.dropped;
  }

  /** Append; false when the file's buffer is full and the writer should wait for `drained()`. */
  write(chunk: Buffer | string): boolean {
    const b = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    const room = this.maxBytes - NOTE_ROOM - this.written;
    if (room <= 0) {
      this.dropped += b.length;
      return true;
    }
    const part = b.length > room ? b.subarray(0, room) : b;
    this.dropped += b.length - part.length;
    this.written += part.length;
    return this.stream.write(part);
  }

  /** Resolves once the buffered writes have gone to the file. */
  drained(): Promise<void> {
    if (!this.stream.writableNeedDrain) return Promise.resolve();
    return new Promise((r) => this.stream.once("drain", r));
  }

  /** Note the truncation, if any, and close the file. */
  close(): Promise<void> {
    if (this.dropped > 0) {
      this.stream.write(
        `\n# [output truncated: ${this.dropped} bytes not logged; the log is capped at ${this.maxBytes} bytes]\n`,
      );
    }
    return new Promise((resolve, reject) => {
      this.stream.once("error", reject);
      this.stream.end(() => resolve());
    });
  }
}

/** The last lines of output, each cut to `maxLineBytes`: bounded memory for error messages. */
export class Tail {
  private readonly lines: string[] = [];
  constructor(
    readonly keep: number,
    readonly maxLineBytes = 4096,
  ) {}

  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.keep) this.lines.shift();
  }

  get(): string[] {
    return [...this.lines];
  }
}

/**
 * One output stream (a step's stdout or stderr) into the log and the tail,
 * line by line without ever joining more than a line's kept bytes: each
 * chunk is scanned once for newlines, and spans are written as they are.
 */
export class OutputCapture {
  /** Bytes of the current line already logged / dropped. */
  private lineBytes = 0;
  private lineDropped = 0;
  /** The current line's first bytes, for the tail (at most tail.maxLineBytes). */
  private tailPieces: Buffer[] = [];
  private tailBytes = 0;

  constructor(
    private readonly log: BuildLog | undefined,
    private readonly tail: Tail,
  ) {}

  private get maxLine(): number {
    return this.log?.maxLineBytes ?? DEFAULT_LOG_LIMITS.maxLineBytes;
  }

  private keepForTail(seg: Buffer): void {
    const room = this.tail.maxLineBytes - this.tailBytes;
    if (room <= 0 || seg.length === 0) return;
    const part = seg.length > room ? seg.subarray(0, room) : seg;
    // A copy: a view would keep the whole chunk alive.
    this.tailPieces.push(Buffer.from(part));
    this.tailBytes += part.length;
  }

  /** The current line ended; it goes to the tail if it may be one of the last lines. */
  private endLine(forTail: boolean): void {
    if (forTail) {
      const total = this.lineBytes + this.lineDropped;
      let text = Buffer.concat(this.tailPieces).toString("utf8");
      if (total > this.tailBytes) text += lineCutMarker(total - this.tailBytes);
      this.tail.push(text);
    }
    this.lineBytes = 0;
    this.lineDropped = 0;
    this.tailPieces = [];
    this.tailBytes = 0;
  }

  /** Offset in `d` from which lines can still be among the last `keep` once `d` is taken: earlier ones only need counting. */
  private tailStart(d: Buffer): number {
    let pos = d.length;
    for (let n = 0; n <= this.tail.keep; n++) {
      if (pos === 0) return 0;
      const p = d.lastIndexOf(10, pos - 1);
      if (p === -1) return 0;
      pos = p;
    }
    return pos + 1;
  }

  /** Take one chunk; false when the log asks the producer to wait (see BuildLog.drained). */
  push(d: Buffer): boolean {
    let ok = true;
    const write = (b: Buffer) => {
      if (b.length && this.log && !this.log.write(b)) ok = false;
    };
    const tailFrom = this.tailStart(d);
    let from = 0; // start of the span of `d` not yet logged
    let i = 0;
    for (;;) {
      const nl = d.indexOf(10, i);
      const end = nl === -1 ? d.length : nl;
      const forTail = i >= tailFrom;
      const room = Math.max(this.maxLine - this.lineBytes, 0);
      const keepEnd = Math.min(end, i + room);
      if (forTail) this.keepForTail(d.subarray(i, keepEnd));
      this.lineBytes += keepEnd - i;
      if (keepEnd < end) {
        // The line is over the limit: log what fits, drop the rest of it.
        write(d.subarray(from, keepEnd));
        this.lineDropped += end - keepEnd;
        from = end;
      }
      if (nl === -1) break;
      if (this.lineDropped > 0) {
        write(d.subarray(from, nl));
        write(Buffer.from(lineCutMarker(this.lineDropped)));
        from = nl; // the newline goes out with the next span
      }
      this.endLine(forTail);
      i = nl + 1;
    }
    write(d.subarray(from));
    return ok;
  }

  /** The stream ended: a last line without a newline still counts. */
  finish(): void {
    if (this.lineBytes === 0 && this.lineDropped === 0) return;
    if (this.lineDropped > 0) this.log?.write(lineCutMarker(this.lineDropped));
    this.endLine(true);
  }
}
