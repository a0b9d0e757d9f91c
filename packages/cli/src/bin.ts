#!/usr/bin/env node

// A closed pipe (`kiln inspect x | head`) ends output quietly, as Unix tools do.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw e;
});

const argv = process.argv.slice(2);
// `kiln index` and `kiln sign-index` load only their own modules (see light.ts).
const light = argv[0] === "index" || argv[0] === "sign-index";
if (light) {
  // A short run whose work is native (reading, hashing, signing): V8's
  // optimizing compiler and a young generation grown to 16 MB cost it more
  // memory (80 -> 57 MB over 2,000 packages) and CPU (its background
  // compiles) than they save. Set before the command's modules load.
  const { setFlagsFromString } = await import("node:v8");
  setFlagsFromString("--no-opt");
  setFlagsFromString("--semi-space-growth-factor=1");
}
const { main } = light ? await import("./light.js") : await import("./main.js");
const code = await main(argv, {
  out: (l) => process.stdout.write(l + "\n"),
  err: (l) => process.stderr.write(l + "\n"),
  env: process.env,
});
process.exitCode = code;
