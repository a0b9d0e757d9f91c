// Errors of image signing and attestation: a bad key file, a registry that
// does not hold what was to be signed, an answer that is not what it claims.

import { KilnError } from "@kiln/core";

export type SignErrorCode =
  | "BAD_KEY" // a key file is missing, unreadable, not PEM or not ECDSA P-256
  | "NOT_FOUND" // the image to sign is not in the registry
  | "BAD_MANIFEST"; // the registry sent a manifest that is not JSON, too big, or not the digest it named

export class SignError extends KilnError {
  readonly code: SignErrorCode;
  constructor(code: SignErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
