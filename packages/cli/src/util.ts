// Shared CLI plumbing: the user-error type, the output interface, SOURCE_DATE_EPOCH, key loading.
// Option parsing is program.ts's.

import { KilnError } from "@kiln/core/base";
import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { ApkError, Keyring, parsePublicKey, resolveSigningKey, type SigningKey } from "@kiln/apk";

/** An error the user can fix: printed as one line, exit status `exitCode`. */
export class UserError extends KilnError {
  readonly code = "USER";
  constructor(message: string, exitCode: 1 | 2 = 1) {
    super(message, { kind: exitCode === 2 ? "usage" : "input" });
  }
}

export interface Io {
  out(line: string): void;
  err(line: string): void;
  env: NodeJS.ProcessEnv;
}

export function sourceDateEpoch(env: NodeJS.ProcessEnv): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === "") return 0; // reproducible by default
  if (!/^\d+$/.test(v))
    throw new UserError(`SOURCE_DATE_EPOCH must be a whole number of seconds, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** The private key file given as --signing-key (sign, index, sign-index, mkpkg): @kiln/apk's resolveSigningKey, no fallback. */
export async function loadSigningKey(path: string): Promise<SigningKey> {
  const found = await resolveSigningKey({ path, variable: false });
  if (!found) throw new UserError("--signing-key: give a private key file", 2);
  return found.key;
}

/** All public keys in a directory, by file name, as apk's keys directory. Unparsable files are skipped. */
export async function loadKeyring(dirs: string[]): Promise<Keyring> {
  const ring = new Keyring();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      throw new UserError(`keys directory ${dir}: ${(e as Error).message}`);
    }
    for (const name of names.sort()) {
      const p = join(dir, name);
      if (!(await stat(p)).isFile()) continue;
      try {
        ring.add(name, parsePublicKey(await readFile(p), p));
      } catch (e) {
        if (!(e instanceof ApkError)) throw e;
      }
    }
  }
  return ring;
}
