import { rm } from "node:fs/promises";
import { writeFileAtomic } from "@kiln/core";
import { DEFAULT_KEY_BITS, generateKey } from "@kiln/apk";
import { defineCommand, number } from "../program.js";
import { UserError } from "../util.js";

export const keygen = defineCommand({
  name: "keygen",
  summary: "generate an RSA signing key pair",
  args: ["PATH"],
  details: `Writes PATH.rsa (PKCS#1 PEM private key, mode 0600) and PATH.rsa.pub (PKIX PEM public key).
Signatures made with PATH.rsa are named after PATH.rsa.pub, the file name consumers install in /etc/apk/keys.`,
  options: {
    // No minimum here: generateKey refuses weak sizes with its own message (exit 1).
    bits: number("--bits <N>", `key size (default ${DEFAULT_KEY_BITS}; at least 2048)`),
  },
  async run(values, [path], io) {
    const bits = values.bits ?? DEFAULT_KEY_BITS;
    const base = path!.replace(/\.rsa$/, "");
    const key = await generateKey(bits);
    const priv = `${base}.rsa`,
      pub = `${base}.rsa.pub`;
    const { existsSync } = await import("node:fs");
    for (const f of [priv, pub])
      if (existsSync(f)) throw new UserError(`keygen: ${f} exists; refusing to overwrite a key`);
    // Written beside and linked into place (never over an existing key) and fsynced, so a crash never
    // leaves half a key; a public key that cannot be written takes its new private key with it.
    try {
      await writeFileAtomic(priv, key.privatePem, { mode: 0o600, fsync: true, noReplace: true });
      try {
        await writeFileAtomic(pub, key.publicPem, { mode: 0o644, fsync: true, noReplace: true });
      } catch (e) {
        await rm(priv, { force: true });
        throw e;
      }
    } catch (e) {
      throw new UserError(`keygen: ${(e as Error).message}`);
    }
    io.out(`wrote ${priv} (private, 0600) and ${pub} (public)`);
    return 0;
  },
});
