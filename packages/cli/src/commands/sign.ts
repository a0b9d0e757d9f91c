import { resignPackage } from "@kiln/apk";
import { help, loadSigningKey, parse, UserError, type Command } from "../util.js";

export const sign: Command = {
  name: "sign",
  summary: "re-sign packages in place",
  usage: "kiln sign --signing-key KEY [--sha1] FILE.apk...",
  async run(argv, io) {
    const { values, positionals } = parse(this, argv, { "signing-key": { type: "string" }, sha1: { type: "boolean" } });
    if (values.help)
      return help(
        this,
        io,
        `Replaces each package's signatures with one by KEY. The data is checked against its
datahash first. C: is unchanged; the file size (S:) changes with the new signature, so
re-index afterwards. Each file is replaced atomically.`,
      );
    if (!values["signing-key"] || positionals.length === 0) throw new UserError(`usage: ${this.usage}`, 2);
    const key = await loadSigningKey(values["signing-key"]);
    for (const p of positionals) {
      const r = await resignPackage(p, [key], values.sha1 ? "RSA" : "RSA256");
      io.out(`${p}: signed by ${key.name}, ${r.size} bytes`);
    }
    return 0;
  },
};
