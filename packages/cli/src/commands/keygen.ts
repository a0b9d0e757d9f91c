import { chmod, writeFile, rename, rm } from "node:fs/promises";
import { DEFAULT_KEY_BITS, generateKey } from "@kiln/apk";
import { help, parse, UserError, type Command } from "../util.js";

export const keygen: Command = {
  name: "keygen",
  summary: "generate an RSA signing key pair",
  usage: "kiln keygen PATH [--bits N]",
  async run(argv, io) {
    const { values, positionals } = parse(this, argv, { bits: { type: "string" } });
    if (values.help)
      return help(
        this,
        io,
        `Writes PATH.rsa (PKCS#1 PEM private key, mode 0600) and PATH.rsa.pub (PKIX PEM public key).
Signatures made with PATH.rsa are named after PATH.rsa.pub, the file name consumers install in /etc/apk/keys.
--bits N   key size (default ${DEFAULT_KEY_BITS}; at least 2048)`,
      );
    if (positionals.length !== 1) throw new UserError(`usage: ${this.usage}`, 2);
    const bits = values.bits === undefined ? DEFAULT_KEY_BITS : Number(values.bits);
    if (!Number.isInteger(bits)) throw new UserError(`--bits must be a whole number`, 2);
    const base = positionals[0]!.replace(/\.rsa$/, "");
    const key = await generateKey(bits);
    const priv = `${base}.rsa`,
      pub = `${base}.rsa.pub`;
    const { existsSync } = await import("node:fs");
    for (const f of [priv, pub])
      if (existsSync(f)) throw new UserError(`keygen: ${f} exists; refusing to overwrite a key`);
    // Write beside and rename so a crash never leaves half a key.
    try {
      await writeFile(`${priv}.tmp`, key.privatePem, { mode: 0o600, flag: "wx" });
      await chmod(`${priv}.tmp`, 0o600);
      await writeFile(`${pub}.tmp`, key.publicPem, { mode: 0o644, flag: "wx" });
      await rename(`${priv}.tmp`, priv);
      await rename(`${pub}.tmp`, pub);
    } catch (e) {
      await rm(`${priv}.tmp`, { force: true });
      await rm(`${pub}.tmp`, { force: true });
      throw new UserError(`keygen: ${(e as Error).message}`);
    }
    io.out(`wrote ${priv} (private, 0600) and ${pub} (public)`);
    return 0;
  },
};
