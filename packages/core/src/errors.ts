// The one error contract of kiln. Every error a package throws on purpose
// extends KilnError and carries a typed `code`; its `kind` decides the exit
// status: input and environment problems are the user's to fix (exit 1, one
// clear line naming the file, field or object), usage errors exit 2, and
// anything that is not a KilnError is a bug (exit 70, with its stack).

export type ErrorKind =
  /** Bad input: a recipe, config, index, package, argument value. */
  | "input"
  /** The machine or the network: a missing tool, a refused connection, a full disk. */
  | "environment"
  /** The command line itself is malformed. */
  | "usage";

export interface KilnErrorOptions {
  cause?: unknown;
  kind?: ErrorKind;
  /** Further lines printed under the message (a resolver's chain, a publish refusal's reasons). */
  explanation?: string[];
}

export abstract class KilnError extends Error {
  /** Stable machine-readable code, e.g. `BAD_SIGNATURE`, `INVALID_CONFIG`. */
  abstract readonly code: string;
  readonly kind: ErrorKind;
  readonly explanation: string[];

  constructor(message: string, options?: KilnErrorOptions) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.kind = options?.kind ?? "input";
    this.explanation = options?.explanation ?? [];
  }

  get exitCode(): number {
    return this.kind === "usage" ? EXIT_USAGE : EXIT_FAILURE;
  }
}

export function isKilnError(e: unknown, code?: string): e is KilnError {
  return e instanceof KilnError && (code === undefined || e.code === code);
}

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** EX_SOFTWARE: an internal error, a bug in kiln. */
export const EXIT_BUG = 70;

/** System errors (ENOENT, EACCES, ENOSPC…) from Node's fs and net are the environment's, not bugs. */
const SYSTEM_CODES = new Set([
  "ENOENT",
  "EACCES",
  "EPERM",
  "EEXIST",
  "ENOTDIR",
  "EISDIR",
  "ENOTEMPTY",
  "ENOSPC",
  "EDQUOT",
  "EROFS",
  "EMFILE",
  "ENFILE",
  "ELOOP",
  "ENAMETOOLONG",
  "EXDEV",
  "EBUSY",
  "EIO",
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "ERR_INVALID_URL",
]);

export function isSystemError(e: unknown): e is NodeJS.ErrnoException {
  if (!(e instanceof Error)) return false;
  const x = e as NodeJS.ErrnoException;
  if (typeof x.code !== "string") return false;
  return SYSTEM_CODES.has(x.code) || typeof x.syscall === "string" || typeof x.errno === "number";
}

/** The exit status for a thrown value: the contract every command follows. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof KilnError) return e.exitCode;
  if (isSystemError(e)) return EXIT_FAILURE;
  return EXIT_BUG;
}

/** The message of an unknown thrown value, with the system error code or cause if it adds anything. */
export function describeError(e: unknown): string {
  if (e instanceof KilnError) return e.message;
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    const cause = (e as { cause?: unknown }).cause;
    let msg = e.message;
    if (cause instanceof Error && !msg.includes(cause.message)) msg += `: ${cause.message}`;
    else if (code && !msg.includes(code)) msg += ` (${code})`;
    return msg;
  }
  return String(e);
}
