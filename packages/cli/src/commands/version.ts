import { compareVersions, isValidVersion } from "@kiln/apk";
import { defineCommand, flag, usageError } from "../program.js";
import { UserError } from "../util.js";

export const version = defineCommand({
  name: "version",
  summary: "compare and validate apk versions",
  args: ["[V...]"],
  usage: "kiln version -t V1 V2 | kiln version -c V...",
  options: {
    test: flag("-t, --test", "V1 V2: print <, = or > (as apk version -t)"),
    check: flag("-c, --check", "V...: print each invalid version; exit 1 if any is invalid (as apk version -c)"),
  },
  async run(values, positionals, io) {
    if (values.test) {
      if (positionals.length !== 2) throw usageError("version", "-t takes two versions");
      const [a, b] = positionals as [string, string];
      for (const v of [a, b]) if (!isValidVersion(v)) throw new UserError(`invalid version ${JSON.stringify(v)}`);
      const c = compareVersions(a, b);
      io.out(c < 0 ? "<" : c > 0 ? ">" : "=");
      return 0;
    }
    if (values.check) {
      let bad = 0;
      for (const v of positionals)
        if (!isValidVersion(v)) {
          io.out(v);
          bad++;
        }
      return bad ? 1 : 0;
    }
    throw usageError("version", "give -t V1 V2 or -c V...");
  },
});
