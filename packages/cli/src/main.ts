// The kiln command: argument dispatch and the single place errors become exit codes.

import { settleRemovals } from "@kiln/builder";
import { describeError, exitCodeFor, EXIT_BUG, KilnError } from "@kiln/core";
import { build, bump, testCmd } from "./commands/build.js";
import { index, signIndex } from "./commands/index-cmd.js";
import { compile, lint, packageVersion } from "./commands/recipe.js";
import { distroBuildCmd, graphCmd, imagesCmd, planCmd } from "./commands/distro.js";
import { image } from "./commands/image.js";
import { inspect } from "./commands/inspect.js";
import { keygen } from "./commands/keygen.js";
import { mkpkg } from "./commands/mkpkg.js";
import { publishCmd, repoCmd, withdrawCmd } from "./commands/publish.js";
import { debugCmd, runCmd } from "./commands/run.js";
import { scan } from "./commands/scan.js";
import { sign } from "./commands/sign.js";
import { source } from "./commands/source.js";
import { cache } from "./commands/cache.js";
import { verify } from "./commands/verify.js";
import { update } from "./commands/update.js";
import { version } from "./commands/version.js";
import { workerCmd } from "./commands/queue.js";
import { runProgram, type Entry } from "./program.js";
import { type Io } from "./util.js";

/** Every command, in the order `kiln --help` lists them. */
export const COMMANDS: Entry[] = [
  keygen,
  mkpkg,
  index,
  sign,
  signIndex,
  verify,
  inspect,
  version,
  build,
  testCmd,
  bump,
  update,
  source,
  cache,
  compile,
  lint,
  packageVersion,
  image,
  runCmd,
  debugCmd,
  publishCmd,
  withdrawCmd,
  repoCmd,
  scan,
  planCmd,
  graphCmd,
  imagesCmd,
  distroBuildCmd,
  workerCmd,
];

export async function main(argv: string[], io: Io): Promise<number> {
  try {
    const status = await runProgram(COMMANDS, argv, io);
    await settleRemovals(); // work directories builds left to remove in the background
    return status;
  } catch (e) {
    // Errors are named after the command as typed first (kiln image: …), as before subcommands had a parser.
    return reportError(argv[0] ?? "", e, io);
  }
}

/**
 * The exit-code contract: a KilnError (input, environment: 1; usage: 2) or a
 * system error (ENOENT, EACCES…) is one clear message and no stack; anything
 * else is a bug in kiln, printed with its stack, exit 70.
 */
export function reportError(command: string, e: unknown, io: Io): number {
  const status = exitCodeFor(e);
  if (status === EXIT_BUG) {
    io.err(`kiln ${command}: internal error: ${(e as Error)?.stack ?? String(e)}`);
    return status;
  }
  const msg = describeError(e);
  io.err(msg.startsWith("kiln") ? msg : `kiln ${command}: ${msg}`);
  if (e instanceof KilnError) for (const line of e.explanation) if (!msg.includes(line)) io.err(`  ${line}`);
  return status;
}
