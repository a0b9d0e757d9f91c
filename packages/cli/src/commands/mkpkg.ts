import { stat } from "node:fs/promises";
import { readFile } from "node:fs/promises";
import { emptyPackageInfo, entriesFromDirectory, writePackage, SCRIPT_NAMES, type ScriptName } from "@kiln/apk";
import { opt } from "../options.js";
import { defineCommand, flag, list, string } from "../program.js";
import { loadSigningKey, sourceDateEpoch, UserError } from "../util.js";

/** Dependency-like lists: repeatable, and each value may hold several, separated by spaces. */
const words = (values: string[]) => values.flatMap((d) => d.split(/\s+/).filter(Boolean));

export const mkpkg = defineCommand({
  name: "mkpkg",
  summary: "make a signed .apk from a directory",
  args: ["DIR"],
  details: `Packs DIR into an APK v2 package: entries sorted, directories before their contents,
owners normalised to root (unless --keep-owners), mtimes set to SOURCE_DATE_EPOCH (default 0).
Signed with RSA/SHA-256 (.SIGN.RSA256.<key>.pub); --sha1 signs .SIGN.RSA. instead.
Without --signing-key the package is unsigned (consumers then rely on the signed index).`,
  options: {
    name: string("--name <N>", "package name").required(),
    version: string("--version <V>", "package version (apk format, e.g. 1.0-r0)").required(),
    output: opt.output.describe("the package to write").required(),
    arch: opt.arch.describe("architecture (default x86_64)"),
    description: opt.description.describe("package description"),
    license: string("--license <L>", "license"),
    url: string("--url <U>", "project URL"),
    origin: string("--origin <O>", "origin package (default: --name)"),
    depends: list("--depends <DEP>", "a dependency (or several, separated by spaces)"),
    provides: list("--provides <P>", "a provided name (or several)"),
    installIf: list("--install-if <DEP>", "an install_if condition (or several)"),
    replaces: list("--replaces <P>", "a package whose files this one may replace (or several)"),
    script: list("--script <NAME=FILE>", "an install script, e.g. .post-install=FILE"),
    signingKey: opt.signingKey,
    sha1: opt.sha1,
    keepOwners: flag("--keep-owners", "keep the files' owners instead of root"),
    json: opt.json,
  },
  async run(values, positionals, io) {
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
    info.depends = words(values.depends);
    info.provides = words(values.provides);
    info.installIf = words(values.installIf);
    info.replaces = words(values.replaces);
    const scripts: Partial<Record<ScriptName, Buffer>> = {};
    for (const s of values.script) {
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
    const keys = values.signingKey ? [await loadSigningKey(values.signingKey)] : [];
    const entries = await entriesFromDirectory(dir, { keepOwners: values.keepOwners });
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
});
