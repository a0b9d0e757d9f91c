import { compareVersions, isValidVersion } from "@kiln/apk";
import { help, parse, UserError, type Command } from "../util.js";

export const version: Command = {
  name: "version",
  summary: "compare and validate apk versions",
  usage: "kiln version -t V1 V2 | kiln version -c V...",
  async run(argv, io) {
    const { values, positionals } = parse(this, argv, {
      test: { type: "boolean", short: "t" },
      check: { type: "boolean", short: "c" },
    });
    if (values.help)
      return help(
        this,
        io,
        `-t V1 V2   print <, = or > (as apk version -t)
-c V...    print each invalid version; exit 1 if any is invalid (as apk version -c)`,
      );
    if (values.test) {
      if (positionals.length !== 2) throw new UserError(`usage: ${this.usage}`, 2);
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
    throw new UserError(`usage: ${this.usage}`, 2);
  },
};
