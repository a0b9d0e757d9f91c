// Publishing errors: one message naming the file, object or field, and for
// refusals the list of reasons (printed one per line by the CLI).

export type PublishErrorCode = "LOCAL_REPO" | "CONFLICT" | "UNSATISFIED" | "WRONG_KEY" | "BAD_REMOTE" | "NOT_PUBLISHED" | "NOT_CONVERGED" | "USAGE";

export class PublishError extends Error {
  constructor(
    message: string,
    readonly code: PublishErrorCode,
    readonly explanation: string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "PublishError";
  }
}
