// Typed errors for the format library. Every failure a caller can act on has a
// `code`; verification failures carry the verdict apk-tools would print.

import { KilnError } from "@kiln/core/base";
export type ApkErrorCode =
  | "BAD_ARCHIVE" // structure apk would reject ("BAD archive")
  | "BAD_SIGNATURE" // digest or signature mismatch apk reports as "BAD signature"
  | "UNTRUSTED" // no usable key for any signature ("UNTRUSTED signature")
  | "MALICIOUS_PATH" // absolute path, `..`, control characters, escaping link
  | "LIMIT" // a size cap was exceeded (gzip bomb, oversized PAX record)
  | "TRUNCATED" // the stream ended early
  | "INVALID_VERSION"
  | "INVALID_DEPENDENCY"
  | "INVALID_FIELD"
  | "INVALID_KEY";

export class ApkError extends KilnError {
  readonly code: ApkErrorCode;
  /** What the error concerns: a file name, an entry path, a field. */
  readonly subject: string | undefined;

  constructor(code: ApkErrorCode, message: string, options?: { subject?: string; cause?: unknown }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = "ApkError";
    this.code = code;
    this.subject = options?.subject;
  }
}

export function isApkError(e: unknown, code?: ApkErrorCode): e is ApkError {
  return e instanceof ApkError && (code === undefined || e.code === code);
}
