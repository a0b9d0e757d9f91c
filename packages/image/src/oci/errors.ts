// Typed errors for OCI image output and registry push. Every failure a caller
// can act on has a `code`; network and server failures say whether a retry may help.

import { KilnError } from "@kiln/core";
export type OciErrorCode =
  | "INVALID_INPUT" // the image spec, a reference or an option is malformed
  | "INVALID_LAYER" // a layer stream is not a tar stream or yields non-bytes
  | "IO" // the output could not be written (permissions, missing parent, disk full)
  | "BAD_LAYOUT" // an OCI layout or archive to read is missing or corrupt
  | "NETWORK" // the registry could not be reached
  | "AUTH" // the registry refused the credentials, or needs some and none were given
  | "REGISTRY"; // the registry answered with an error

export class OciError extends KilnError {
  readonly code: OciErrorCode;
  /** What the error concerns: a path, a digest, a URL. */
  readonly subject: string | undefined;
  /** HTTP status, when the registry answered. */
  readonly status: number | undefined;
  /** Whether repeating the operation may succeed (network errors, 5xx, 429). */
  readonly retryable: boolean;

  constructor(
    code: OciErrorCode,
    message: string,
    options?: { subject?: string; cause?: unknown; status?: number; retryable?: boolean },
  ) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = "OciError";
    this.code = code;
    this.subject = options?.subject;
    this.status = options?.status;
    this.retryable = options?.retryable ?? false;
  }
}

export function isOciError(e: unknown, code?: OciErrorCode): e is OciError {
  return e instanceof OciError && (code === undefined || e.code === code);
}

// One helper for the message of an unknown thrown value, shared by every package.
export { describeError } from "@kiln/core";
