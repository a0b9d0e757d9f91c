// Publishing errors: one message naming the file, object or field, and for
// refusals the list of reasons (printed one per line by the CLI).

import { KilnError } from "@kiln/core";
export type PublishErrorCode =
  "LOCAL_REPO" | "CONFLICT" | "UNSATISFIED" | "WRONG_KEY" | "BAD_REMOTE" | "NOT_PUBLISHED" | "NOT_CONVERGED" | "USAGE";

export class PublishError extends KilnError {
  constructor(
    message: string,
    readonly code: PublishErrorCode,
    explanation: string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, { ...options, explanation });
    this.name = "PublishError";
  }
}
