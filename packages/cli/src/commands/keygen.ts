import { rm } from "node:fs/promises";
import { writeFileAtomic } from "@kiln/core";
import { DEFAULT_KEY_BITS, generateKey } from "@kiln/apk";
import { generateSigningKey } from "@kiln/image";
import { choice, defineCommand, number, string } from "../program.js";
import { UserError, type Io } from "../util.js";

/** Write the private key, then the public one; never over an existing file, never half a pair. */
async function writePair(priv: string, privPem: string, pub: string, pubPem: string): Promise<void> {
  const { existsSync } = await import("node:fs");
  for (const f of [priv, pub]) if (existsSync(f)) throw new UserError(`${f} exists; refusing to overwrite a key`);
  // Written beside and linked into place (never over an existing key) and fsynced, so a crash never
  // leaves half a key; a public key that cannot be written takes its new private key with it.
  try {
    await writeFileAtomic(priv, privPem, { mode: 0o600, fsync: true, noReplace: true });
    try {
      await writeFileAtomic(pub, pubPem, { mode: 0o644, fsync: true, noReplace: true });
    } catch (e) {
      await rm(priv, { force: true });
      throw e;
    }
  } catch (e) {
    throw new UserError(`${(e as Error).message}`);
  }
}

async function ecdsaKeygen(prefix: string, io: Io): Promise<number> {
  const key = generateSigningKey();
  const priv = `${prefix}.key`,
    pub = `${prefix}.pub`;
  await writePair(priv, key.privatePem, pub, key.publicPem);
  io.out(`wrote ${priv} (private, PKCS#8 PEM, 0600) and ${pub} (public, PEM; for cosign verify --key)`);
  return 0;
}

export const keygen = defineCommand({
  name: "keygen",
  summary: "generate a signing key pair (RSA for apk, or ECDSA P-256 for image signatures)",
  args: ["[PATH]"],
  details: `--type rsa (default): writes PATH.rsa (PKCS#1 PEM private key, mode 0600) and PATH.rsa.pub
(PKIX PEM public key). Signatures made with PATH.rsa are named after PATH.rsa.pub, the file name
consumers install in /etc/apk/keys.
--type ecdsa-p256: writes PREFIX.key (PKCS#8 PEM private key, mode 0600) and PREFIX.pub (SPKI PEM
public key, which cosign verify --key reads), for kiln image sign / kiln images --push --sign.
PREFIX is --prefix, else PATH, else "cosign". cosign itself signs only with its encrypted key file:
cosign import-key-pair --key PREFIX.key converts the private key into one.`,
  options: {
    type: choice("--type <T>", "rsa (apk package and index signing; default) or ecdsa-p256 (images)", [
      "rsa",
      "ecdsa-p256",
    ] as const),
    prefix: string("--prefix <PREFIX>", "file name prefix of the pair (ecdsa-p256: PREFIX.key and PREFIX.pub)"),
    // No minimum here: generateKey refuses weak sizes with its own message (exit 1).
    bits: number("--bits <N>", `RSA key size (default ${DEFAULT_KEY_BITS}; at least 2048)`),
  },
  async run(values, [path], io) {
    if (values.type === "ecdsa-p256") {
      if (values.bits !== undefined) throw new UserError("--bits is for RSA keys; P-256 has one size", 2);
      return ecdsaKeygen(values.prefix ?? path ?? "cosign", io);
    }
    const target = values.prefix ?? path;
    if (!target) throw new UserError("give PATH (or --prefix PATH) for the RSA key pair", 2);
    const bits = values.bits ?? DEFAULT_KEY_BITS;
    const base = target.replace(/\.rsa$/, "");
    const key = await generateKey(bits);
    const priv = `${base}.rsa`,
      pub = `${base}.rsa.pub`;
    await writePair(priv, key.privatePem, pub, key.publicPem);
    io.out(`wrote ${priv} (private, 0600) and ${pub} (public)`);
    return 0;
  },
});
