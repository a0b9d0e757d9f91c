import { verifyFile } from "@kiln/apk";
import { opt } from "../options.js";
import { defineCommand } from "../program.js";
import { loadKeyring } from "../util.js";

export const verify = defineCommand({
  name: "verify",
  summary: "check packages and indexes as apk verify does",
  args: ["FILE..."],
  details: `Prints one line per file: FILE: OK | UNTRUSTED | BAD signature | BAD archive, with the reason.
A signature is checked with the key of the same file name in the keys directory (as /etc/apk/keys);
packages are also checked against their datahash. Exit status 1 if any file is not OK.`,
  options: { keysDir: opt.keysDir.required(), json: opt.json },
  async run(values, files, io) {
    const ring = await loadKeyring(values.keysDir);
    let bad = 0;
    const reports = [];
    for (const f of files) {
      const r = await verifyFile(f, ring);
      if (r.verdict !== "OK") bad++;
      reports.push(r);
      if (!values.json) io.out(`${f}: ${r.verdict} (${r.reason})`);
    }
    if (values.json) io.out(JSON.stringify(reports, null, 2));
    return bad ? 1 : 0;
  },
});
