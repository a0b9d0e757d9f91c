import { stat } from "node:fs/promises";
import { readFile } from "node:fs/promises";
import { emptyPackageInfo, entriesFromDirectory, writePackage, SCRIPT_NAMES, type ScriptName } from "@kiln/apk";
import { asArray, help, loadSigningKey, parse, sourceDateEpoch, UserError, type Command } from "../util.js";

export const mkpkg: Command = {
  name: "mkpkg",
  summary: "make a signed .apk from a directory",
  usage:
    "kiln mkpkg DIR --name N --version V [--arch A] [--description D] [--license L] [--url U] [--origin O] [--depends DEP]... [--provides P]... [--script .post-install=FILE]... [--signing-key KEY] [--sha1] -o FILE",
  async run(argv, io) {
    const { values, positionals } = parse(this, argv, {
      name: { type: "string" },
      version: { type: "string" },
      arch: { type: "string" },
      description: { type: "string" },
      license: { type: "string" },
      url: { type: "string" },
      origin: { type: "string" },
      depends: { type: "string", multiple: true },
      provides: { type: "string", multiple: true },
      "install-if": { type: "string", multiple: true },
      replaces: { type: "string", multiple: true },
      script: { type: "string", multiple: true },
      "signing-key": { type: "string" },
      sha1: { type: "boolean" },
      "keep-owners": { type: "boolean" },
      output: { type: "string", short: "o" },
      json: { type: "boolean" },
    });
    if (values.help)
      return help(
        this,
        io,
        `Packs DIR into an APK v2 package: entries sorted, directories before their contents,
owners normalised to root (unless --keep-owners), mtimes set to SOURCE_DATE_EPOCH (default 0).
Signed with RSA/SHA-256 (.SIGN.RSA256.<key>.pub); --sha1 signs .SIGN.RSA. instead.
Without --signing-key the package is unsigned (consumers then rely on the signed index).`,
      );
    if (positionals.length !== 1) throw new UserError(`mkpkg: expected exactly one DIR\nusage: ${this.usage}`, 2);
    if (!values.name || !values.version || !values.output)
      throw new UserError(`mkpkg: --name, --version and -o are required\nusage: ${this.usage}`, 2);
    const dir = positionals[0]!;
    if (!(await stat(dir).catch(() => undefined))?.isDirectory())
      throw new UserError(`mkpkg: ${dir} is not a directory`);
    const epoch = sourceDateEpoch(io.env);
    const info = emptyPackageInfo(values.name, values.version, values.arch ?? "x86_64");
    if (values.description !== undefined) info.description = values.description;
    if (values.license !== undefined) info.license = values.license;
    if (values.url !== undefined) info.url = values.url;
    info.origin = values.origin ?? values.name;
    info.buildDate = epoch;
    info.depends = asArray(values.depends).flatMap((d) => d.split(/\s+/).filter(Boolean));
    info.provides = asArray(values.provides).flatMap((d) => d.split(/\s+/).filter(Boolean));
    info.installIf = asArray(values["install-if"]).flatMap((d) => d.split(/\s+/).filter(Boolean));
    info.replaces = asArray(values.replaces).flatMap((d) => d.split(/\s+/).filter(Boolean));
    const scripts: Partial<Record<ScriptName, Buffer>> = {};
    for (const s of asArray(values.script)) {
      const eq = s.indexOf("=");
      const name = s.slice(0, eq) as ScriptName;
      if (eq < 0 || !(SCRIPT_NAMES as readonly string[]).includes(name))
        throw new UserError(
          `mkpkg: --script expects NAME=FILE with NAME one of ${SCRIPT_NAMES.join(" ")}, got ${JSON.stringify(s)}`,
          2,
        );
      scripts[name] = await readFile(s.slice(eq + 1)).catch((e) => {
        throw new UserError(`mkpkg: script ${s.slice(eq + 1)}: ${(e as Error).message}`);
      });
    }
    const keys = values["signing-key"] ? [await loadSigningKey(values["signing-key"])] : [];
    const entries = await entriesFromDirectory(dir, { keepOwners: values["keep-owners"] ?? false });
    const w = await writePackage(
      {
        info,
        entries,
        scripts,
        signingKeys: keys,
        signatureType: values.sha1 ? "RSA" : "RSA256",
        sourceDateEpoch: epoch,
      },
      values.output,
    );
    if (values.json)
      io.out(
        JSON.stringify({
          path: w.path,
          name: w.info.name,
          version: w.info.version,
          checksum: w.checksum,
          size: w.size,
          datahash: w.info.dataHash,
        }),
      );
    else
      io.out(
        `${w.path}: ${w.info.name}-${w.info.version} ${w.size} bytes, ${w.checksum}${keys.length ? `, signed by ${keys[0]!.name}` : ", unsigned"}`,
      );
    return 0;
  },
};
