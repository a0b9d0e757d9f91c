// The error of source fetching and archive extraction, with its codes.

import { KilnError } from "@kiln/core";

export type SourceErrorCode =
  | "NO_CHECKSUM" // no expected checksum, or a malformed one
  | "CHECKSUM_MISMATCH"
  | "HTTP" // a non-retryable HTTP status, or retries exhausted
  | "NETWORK" // connection failures after all retries
  | "MIRROR" // a mirror substitution could not be resolved
  | "BAD_URI"
  | "UNSAFE_PATH" // an archive entry that would land outside the destination
  | "BAD_ARCHIVE" // malformed or unsupported archive data
  | "MISSING_TOOL" // a host decompressor is not installed
  | "SEED"; // a file that cannot be placed in the source cache (not a regular file, too large)

export class SourceError extends KilnError {
  override readonly name = "SourceError";
  constructor(
    readonly code: SourceErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
