// Generator `so:` depends of ELF objects: the program loader (`PT_INTERP`)
// as `so:<loader basename>`, and every `DT_NEEDED` library as `so:<lib>`.

import { posix } from "node:path";
import type { Generator, ScaContext, ScaFile } from "./types.js";

export const neededLibraries: Generator = {
  name: "needed-libraries",
  visit(f: ScaFile, ctx: ScaContext): void {
    if (f.category !== "elf" || !f.elf) return;
    if (f.elf.interp) ctx.addDepend(`so:${posix.basename(f.elf.interp)}`, f.rel);
    for (const lib of f.elf.needed) ctx.addDepend(`so:${lib}`, f.rel);
  },
};
