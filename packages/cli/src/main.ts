// The kiln command: argument dispatch and the single place errors become exit codes.

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
import { sign } from "./commands/sign.js";
import { verify } from "./commands/verify.js";
import { version } from "./commands/version.js";
import { runProgram, type Entry } from "./program.js";
import { type Command, type Io } from "./util.js";

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
  compile,
  lint,
  packageVersion,
  image,
  publishCmd,
  withdrawCmd,
  repoCmd,
  planCmd,
  graphCmd,
  imagesCmd,
  distroBuildCmd,
];

/** Commands that still parse their own argv (util.ts's parse()); the rest are program.ts's. */
function legacy(name: string | undefined): Command | undefined {
  return COMMANDS.find((c): c is Command => !("kind" in c) && c.name === name);
}

export async function main(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  // `kiln help build` is `kiln build --help` for them too.
  const own = name === "help" ? legacy(rest[0]) : legacy(name);
  try {
    if (own) return await own.run(name === "help" ? ["--help"] : rest, io);
    return await runProgram(COMMANDS, argv, io);
  } catch (e) {
    return reportError(own?.name ?? name ?? "", e, io);
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
