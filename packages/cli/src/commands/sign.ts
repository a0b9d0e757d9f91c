import { resignPackage } from "@kiln/apk";
import { opt } from "../options.js";
import { defineCommand } from "../program.js";
import { loadSigningKey } from "../util.js";

export const sign = defineCommand({
  name: "sign",
  summary: "re-sign packages in place",
  args: ["FILE.apk..."],
  details: `Replaces each package's signatures with one by KEY. The data is checked against its
datahash first. C: is unchanged; the file size (S:) changes with the new signature, so
re-index afterwards. Each file is replaced atomically.`,
  options: { signingKey: opt.signingKey.required(), sha1: opt.sha1 },
  async run(values, files, io) {
    const key = await loadSigningKey(values.signingKey);
    for (const p of files) {
      const r = await resignPackage(p, [key], values.sha1 ? "RSA" : "RSA256");
      io.out(`${p}: signed by ${key.name}, ${r.size} bytes`);
    }
    return 0;
  },
});
