// Private keys on disk. Like ssh, kiln refuses a private key file that its
// group or others can read or write: such a key may already be someone else's.
// New keys are created exclusively (never over an existing file) with mode
// 0600 inside a 0700 directory.

import { constants } from "node:fs";
import { chmod, mkdir, open } from "node:fs/promises";
import { dirname } from "node:path";
import { KilnError } from "./errors.js";

export class KeyFileError extends KilnError {
  readonly code = "KEY_FILE";
}

/** Read a private key file, refusing one that is not a regular file or whose mode gives group/others any access. */
export async function readPrivateKeyFile(path: string): Promise<Buffer> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ELOOP") throw new KeyFileError(`signing key ${path}: is a symbolic link; give the key file itself`);
    throw new KeyFileError(`signing key ${path}: ${code === "ENOENT" ? "no such file" : (e as Error).message}`, {
      cause: e,
      kind: "environment",
    });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new KeyFileError(`signing key ${path}: not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
      throw new KeyFileError(
        `signing key ${path}: permissions ${mode} are too open (group or others can access it); run: chmod 600 ${path}`,
      );
    }
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/** Create a new private key file (mode 0600, parent directory 0700 if it is created); fails if the file exists. */
export async function writeNewPrivateKeyFile(path: string, pem: string | Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.chmod(0o600); // the umask cannot widen it, but make it exact
    await fh.writeFile(pem);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await chmod(path, 0o600);
}
