// Generator `so:` provides: the `DT_SONAME` of a library directly in lib,
// usr/lib, lib64, usr/lib64 or their multiarch subdirectory provides
// `so:<soname>=<abi version>`. Every SONAME, and every file or symlink
// named like a shared library (`*.so`, `*.so.*`) anywhere in the package, is
// something the package satisfies itself.

import {
  type DetectionDetails,
  type Generator,
  isLibDir,
  type ScaContext,
  type ScaFile,
  sonameVersion,
} from "./types.js";

export const sharedLibraryProvides: Generator = {
  name: "shared-library-provides",
  visit(f: ScaFile, ctx: ScaContext): void {
    if (/\.so(\.|$)/.test(f.base)) ctx.addSelf(`so:${f.base}`);
    const soname = f.category === "elf" ? f.elf?.soname : undefined;
    if (soname === undefined) return;
    ctx.addSelf(`so:${soname}`);
    const lib: DetectionDetails["sharedLibraries"][number] = { path: f.rel, soname };
    if (isLibDir(f.parent, ctx.libDirs)) {
      lib.provides = `so:${soname}=${sonameVersion(soname)}`;
      ctx.addProvide(lib.provides, f.rel);
    }
    ctx.details.sharedLibraries.push(lib);
  },
};
