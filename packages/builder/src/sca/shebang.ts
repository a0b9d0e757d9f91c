// Generator `cmd:` depends of scripts: the `#!` interpreter of an executable
// script in bin, sbin, usr/bin or usr/sbin → `cmd:<basename>` (through
// `env`, the command it runs), except sh.

import { posix } from "node:path";
import type { DetectionDetails, Generator, ScaContext, ScaFile } from "./types.js";

/** `#!/usr/bin/env -S python3 -u` → "python3"; `#!/bin/bash -e` → "bash". */
export function shebangCommand(line: string): { interpreter: string; command: string } | undefined {
  const m = /^#!\s*(\S+)(.*)$/.exec(line);
  if (!m) return undefined;
  const interpreter = m[1]!;
  let command = posix.basename(interpreter);
  if (command === "env") {
    const args = m[2]!
      .trim()
      .split(/\s+/)
      .filter((a) => a !== "");
    const first = args.find((a) => !a.startsWith("-") && !a.includes("="));
    if (!first) return undefined;
    command = posix.basename(first);
  }
  return { interpreter, command };
}

export const interpreters: Generator = {
  name: "interpreters",
  visit(f: ScaFile, ctx: ScaContext): void {
    if (f.category !== "script" || f.shebang === undefined) return;
    const sb = shebangCommand(f.shebang);
    if (!sb) {
      ctx.details.warnings.push(`${f.rel}: cannot read the interpreter from ${JSON.stringify(f.shebang)}`);
      return;
    }
    const script: DetectionDetails["scripts"][number] = { path: f.rel, interpreter: sb.interpreter };
    if (sb.command !== "sh") {
      script.command = sb.command;
      ctx.addDepend(`cmd:${sb.command}`, f.rel);
    }
    ctx.details.scripts.push(script);
  },
};
