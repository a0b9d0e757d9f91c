// Commands that start without loading the whole command set. `kiln index`
// over a directory of packages otherwise spends more time (and memory) loading
// every command's modules — builder, image, the S3 client — than indexing.
// Errors go through main.ts's reportError, loaded only then.

import { index, signIndex } from "./commands/index-cmd.js";
import { runProgram } from "./program.js";
import type { Io } from "./util.js";

export async function main(argv: string[], io: Io): Promise<number> {
  try {
    return await runProgram([index, signIndex], argv, io);
  } catch (e) {
    const { reportError } = await import("./main.js");
    return reportError(argv[0] ?? "", e, io);
  }
}
