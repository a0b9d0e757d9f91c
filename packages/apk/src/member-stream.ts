// A pull reader over inflated gzip members that never lets a read run across a
// member boundary: apk's signature scheme depends on tar entries ending where
// members end, so a read that would cross one is a structural error.

import { ApkError } from "./errors.js";
import { gunzipMembers, type GunzipOptions } from "./gzip.js";

/** What turns compressed bytes into member events: gunzipMembers, or a reader with the same contract. */
export type Inflater = (
  source: AsyncIterable<Uint8Array>,
  opts: GunzipOptions & { subject: string },
) => AsyncGenerator<import("./gzip.js").GzipEvent>;

export class MemberStream {
  private readonly events: AsyncGenerator<import("./gzip.js").GzipEvent>;
  private buf: Uint8Array = new Uint8Array(0);
  private ended = false; // current member fully read from the inflater
  private eof = false;
  /** Index of the member being read. */
  member = 0;
  /** Inflated bytes consumed in the current member. */
  offset = 0;
  readonly subject: string;

  constructor(source: AsyncIterable<Uint8Array>, opts: GunzipOptions & { subject: string; inflate?: Inflater }) {
    this.subject = opts.subject;
    this.events = (opts.inflate ?? gunzipMembers)(source, opts);
  }

  /** Pull events until data is buffered or the member ends. */
  private async fill(): Promise<void> {
    while (this.buf.length === 0 && !this.ended && !this.eof) {
      const r = await this.events.next();
      if (r.done) {
        this.eof = true;
        this.ended = true;
        return;
      }
      const ev = r.value;
      if (ev.type === "end") this.ended = true;
      else this.buf = ev.data;
    }
  }

  /** Exactly n bytes of the current member, or null if it ends first with nothing read. */
  async read(n: number, what: string): Promise<Uint8Array | null> {
    if (this.buf.length >= n) return this.take(n);
    const parts: Uint8Array[] = [];
    let have = 0;
    while (have < n) {
      await this.fill();
      if (this.buf.length === 0) {
        if (have === 0) return null;
        throw new ApkError(
          this.eof ? "TRUNCATED" : "BAD_ARCHIVE",
          `${this.subject}: ${what} is cut off at the end of gzip member ${this.member + 1}`,
          { subject: this.subject },
        );
      }
      const t = this.take(Math.min(n - have, this.buf.length));
      parts.push(t);
      have += t.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Up to n bytes (at least one) of the current member; throws if the member ends. */
  async readSome(n: number, what: string): Promise<Uint8Array> {
    await this.fill();
    if (this.buf.length === 0) {
      throw new ApkError(
        this.eof ? "TRUNCATED" : "BAD_ARCHIVE",
        `${this.subject}: ${what} is cut off at the end of gzip member ${this.member + 1}`,
        { subject: this.subject },
      );
    }
    return this.take(Math.min(n, this.buf.length));
  }

  /** The inflated bytes of the current member at hand now (possibly none), not consumed. */
  buffered(): Uint8Array {
    return this.buf;
  }

  /** Consume `n` bytes of buffered() (n at most its length). */
  skip(n: number): void {
    if (n > this.buf.length) throw new RangeError(`skip(${n}) beyond the ${this.buf.length} buffered bytes`);
    this.take(n);
  }

  private take(n: number): Uint8Array {
    const t = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    this.offset += n;
    return t;
  }

  /** True when the current member has no more inflated bytes. */
  async atMemberEnd(): Promise<boolean> {
    await this.fill();
    return this.buf.length === 0;
  }

  /** Move to the next member; false at end of file. The current member must be exhausted. */
  async nextMember(): Promise<boolean> {
    await this.fill();
    if (this.buf.length) throw new Error("nextMember called with unread data");
    if (this.eof) return false;
    this.ended = false;
    this.member++;
    this.offset = 0;
    await this.fill();
    if (this.eof) {
      this.member--;
      return false;
    }
    return true;
  }

  async close(): Promise<void> {
    await this.events.return(undefined);
  }
}
