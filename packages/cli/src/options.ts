// The options more than one command takes, defined once: the same name, value
// and check everywhere. A command that words one differently uses
// `opt.x.describe("…")`; one that needs it uses `opt.x.required()`.

import { flag, list, number, string } from "./program.js";

const CACHE_HELP = "download cache (default $KILN_CACHE_DIR or ~/.cache/kiln)";

export const opt = {
  json: flag("--json", "machine-readable output"),
  cacheDir: string("--cache-dir <DIR>", CACHE_HELP),
  signingKey: string("--signing-key <KEY>", "sign with this RSA private key (PEM)"),
  keysDir: list("--keys-dir <DIR>", "trust the public keys in DIR, by file name (as /etc/apk/keys)"),
  sha1: flag("--sha1", "sign with RSA/SHA-1 (.SIGN.RSA.) instead of RSA/SHA-256"),
  output: string("-o, --output <FILE>", "write to FILE"),
  out: string("--out <DIR>", "the local repository: packages go to DIR/ARCH (default ./packages)"),
  description: string("--description <TEXT>", "the index description"),
  dryRun: flag("--dry-run", "check and print what would be done, writing nothing"),
  jobs: number("--jobs <N>", "N builds at once (default 1)", { min: 1 }),
  concurrency: number("--concurrency <N>", "N transfers at once", { min: 1 }),
  /** One architecture (a recipe is resolved for one). */
  arch: string("--arch <A>", "for architecture A (default: the host's)"),
  /** Architectures (repositories and images span several). */
  archs: list("--arch <A>", "only this architecture"),
  distro: string("--distro <FILE>", "distro.yaml (default: ./distro.yaml or the nearest parent's)"),
  allowUntrusted: flag("--allow-untrusted", "accept indexes whose signature does not verify"),
  keyringAppend: list("--keyring-append <KEY>", "trust this public key too"),
  repositoryAppend: list("--repository-append <R>", 'resolve from this repository too (URL or path, "@tag URL")'),
  pipelineDir: list("--pipeline-dir <D>", "also look up named pipelines in D (earlier wins, then the built-ins)"),
  buildOption: list("--build-option <O>", "enable the recipe's build option O"),
  sourceDir: string("--source-dir <D>", "the recipe's source directory"),
  upstream: list("--upstream <URL>", "check dependencies against this repository too"),
  allowUnsatisfied: flag("--allow-unsatisfied", "go on although a dependency would not be satisfiable"),
  // S3 and S3-compatible object stores.
  endpointUrl: string("--endpoint-url <URL>", "S3-compatible endpoint for s3:// URLs"),
  region: string("--region <R>", "S3 region (default $AWS_REGION or us-east-1)"),
  pathStyle: flag("--path-style", "address buckets as ENDPOINT/BUCKET/KEY"),
  timeout: number("--timeout <SEC>", "seconds per S3 request (default 60)", { integer: false, min: 1 }),
  retries: number("--retries <N>", "attempts per S3 request (default 6)", { min: 1 }),
  multipartThreshold: number("--multipart-threshold <BYTES>", "upload in parts above BYTES (default 16 MiB)", {
    min: 1,
  }),
  atomicPut: flag(
    "--atomic-put",
    "the endpoint's PUT is atomic (as AWS S3's, the default without --endpoint-url): one PUT per object, no staged copy",
  ),
} as const;

/** The options of every command that reads s3:// URLs. */
export const S3_OPTIONS = {
  endpointUrl: opt.endpointUrl,
  region: opt.region,
  pathStyle: opt.pathStyle,
  timeout: opt.timeout,
  atomicPut: opt.atomicPut,
  retries: opt.retries,
  multipartThreshold: opt.multipartThreshold,
} as const;
