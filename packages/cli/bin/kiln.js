#!/usr/bin/env node
// The `kiln` executable npm links at install time. It exists before the
// TypeScript is compiled, so `npx kiln` works in a fresh clone; the command
// itself is in dist/ (built by `npm run build`, `npm test` or `npm start`).
import { existsSync } from "node:fs";

const entry = new URL("../dist/bin.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write("kiln: not built yet; run `npm run build` in the repository first\n");
  process.exit(1);
}
await import(entry.href);
