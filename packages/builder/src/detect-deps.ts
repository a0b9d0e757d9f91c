// Automatic dependency detection over a package's output directory, as
// melange's SCA does it: a list of generators, one module each under ./sca/,
// run by one driver, then merged with the recipe's declared dependencies.
//   sca/detect.ts          the driver: walk, classify each file once, run the generators
//   sca/commands.ts        cmd: provides of executables (and symlinks to them) in bin dirs
//   sca/pkgconfig.ts       pc: provides and depends of .pc files
//   sca/shlib-depends.ts   so: depends of ELF objects (loader, DT_NEEDED)
//   sca/shlib-provides.ts  so: provides of SONAMEs in library directories
//   sca/shebang.ts         cmd: depends of #! interpreters
//   sca/merge.ts           declared + detected, with no-provides/no-depends/no-commands
//   sca/elf.ts, sca/pkgconfig-file.ts  the parsers

export * from "./sca/types.js";
export * from "./sca/elf.js";
export * from "./sca/pkgconfig-file.js";
export { resolveInPackage } from "./sca/commands.js";
export { shebangCommand } from "./sca/shebang.js";
export { commands } from "./sca/commands.js";
export { pkgConfig } from "./sca/pkgconfig.js";
export { neededLibraries } from "./sca/shlib-depends.js";
export { sharedLibraryProvides } from "./sca/shlib-provides.js";
export { interpreters } from "./sca/shebang.js";
export { DEFAULT_GENERATORS, detectDependencies } from "./sca/detect.js";
export * from "./sca/merge.js";
