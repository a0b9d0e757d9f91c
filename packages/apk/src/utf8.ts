// Strict UTF-8 decoding for names and text that come from archives. Decoding
// with replacement would turn distinct invalid byte strings into the same
// U+FFFD text (two entries collapsing into one name), so invalid bytes are an
// error that says where they are.

import { isUtf8 } from "node:buffer";
import { ApkError, type ApkErrorCode } from "./errors.js";

/** Offset of the first byte that is not part of a valid UTF-8 sequence, or -1. Only called on the error path. */
function firstInvalid(b: Uint8Array): number {
  for (let i = 0; i < b.length;) {
    const c = b[i]!;
    const n = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0;
    if (n === 0 || i + n > b.length || !isUtf8(b.subarray(i, i + n))) return i;
    i += n;
  }
  return -1;
}

export interface DecodeOptions {
  code?: ApkErrorCode;
  /** Number of the first line of `bytes` within the whole text; set for text, so the error names a line. */
  firstLine?: number;
}

/**
 * Decode `bytes` as UTF-8 or throw: `what` says what they are (`entry name`,
 * `.PKGINFO`), `subject` the file.
 */
export function decodeUtf8(bytes: Uint8Array, what: string, subject: string, opts: DecodeOptions = {}): string {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isUtf8(buf)) return buf.toString("utf8");
  const at = firstInvalid(buf);
  const byte = `byte 0x${buf[at]!.toString(16).padStart(2, "0")}`;
  if (opts.firstLine === undefined) {
    // A name: show it with the bad bytes escaped, so two such names stay distinguishable.
    throw new ApkError(
      opts.code ?? "BAD_ARCHIVE",
      `${subject}: ${what} ${JSON.stringify(buf.toString("latin1"))} is not valid UTF-8 (${byte} at offset ${at})`,
      { subject },
    );
  }
  let line = opts.firstLine;
  for (let i = buf.indexOf(0x0a); i >= 0 && i < at; i = buf.indexOf(0x0a, i + 1)) line++;
  const lineStart = at === 0 ? 0 : buf.lastIndexOf(0x0a, at - 1) + 1;
  const shown = buf.subarray(lineStart, Math.min(buf.length, at + 8)).toString("latin1");
  throw new ApkError(
    opts.code ?? "BAD_ARCHIVE",
    `${subject}:${line}: ${what} is not valid UTF-8 (${byte}: ${JSON.stringify(shown)})`,
    { subject },
  );
}
