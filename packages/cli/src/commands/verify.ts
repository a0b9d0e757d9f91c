import { verifyFile } from "@kiln/apk";
import { asArray, help, loadKeyring, parse, UserError, type Command } from "../util.js";

export const verify: Command = {
  name: "verify",
  summary: "check packages and indexes as apk verify does",
  usage: "kiln verify --keys-dir DIR [--keys-dir DIR]... [--json] FILE...",
  async run(argv, io) {
    const { values, positionals } = parse(this, argv, {
      "keys-dir": { type: "string", multiple: true },
      json: { type: "boolean" },
    });
    if (values.help)
      return help(
        this,
        io,
        `Prints one line per file: FILE: OK | UNTRUSTED | BAD signature | BAD archive, with the reason.
A signature is checked with the key of the same file name in the keys directory (as /etc/apk/keys);
packages are also checked against their datahash. Exit status 1 if any file is not OK.`,
      );
    const dirs = asArray(values["keys-dir"]);
    if (dirs.length === 0 || positionals.length === 0) throw new UserError(`usage: ${this.usage}`, 2);
    const ring = await loadKeyring(dirs);
    let bad = 0;
    const reports = [];
    for (const f of positionals) {
      const r = await verifyFile(f, ring);
      if (r.verdict !== "OK") bad++;
      reports.push(r);
      if (!values.json) io.out(`${f}: ${r.verdict} (${r.reason})`);
    }
    if (values.json) io.out(JSON.stringify(reports, null, 2));
    return bad ? 1 : 0;
  },
};
