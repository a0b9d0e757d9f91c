// Generator `pc:` provides and depends: a `.pc` file in
// (usr/)lib(64)[/multiarch]/pkgconfig or usr/share/pkgconfig provides
// `pc:<name>=<Version>`; its Requires and Requires.private become `pc:<name>`
// depends, with the version constraint when apk can express it.

import * as fsp from "node:fs/promises";
import { parsePkgConfig, toApkVersion } from "./pkgconfig-file.js";
import type { Generator, ScaContext, ScaFile } from "./types.js";

const APK_OPS = ["=", "<", ">", "<=", ">="];

export const pkgConfig: Generator = {
  name: "pkgconfig",
  async visit(f: ScaFile, ctx: ScaContext): Promise<void> {
    if (f.category !== "pkgconfig") return;
    const name = f.base.slice(0, -3);
    const pc = parsePkgConfig(await fsp.readFile(f.abs, "utf8"), name, "/" + f.parent);
    ctx.details.pkgconfig.push({
      path: f.rel,
      name,
      ...(pc.version ? { version: pc.version } : {}),
      requires: pc.requires,
      requiresPrivate: pc.requiresPrivate,
    });
    ctx.addSelf(`pc:${name}`);
    const v = pc.version ? toApkVersion(pc.version) : undefined;
    if (pc.version && !v)
      ctx.details.warnings.push(
        `${f.rel}: Version ${JSON.stringify(pc.version)} is not an apk version; providing pc:${name} without a version`,
      );
    ctx.addProvide(v ? `pc:${name}=${v}` : `pc:${name}`, f.rel);
    for (const req of [...pc.requires, ...pc.requiresPrivate]) ctx.addDepend(requireToken(req, f.rel, ctx), f.rel);
  },
};

/** `zlib >= 1.2` → `pc:zlib>=1.2`; a constraint apk cannot express is dropped with a warning. */
function requireToken(req: string, path: string, ctx: ScaContext): string {
  const [rname, op, rver] = req.split(" ");
  let tok = `pc:${rname}`;
  if (op && rver) {
    const av = toApkVersion(rver);
    if (av && APK_OPS.includes(op)) tok += `${op}${av}`;
    else
      ctx.details.warnings.push(`${path}: dropping the constraint of ${JSON.stringify(req)} (not expressible in apk)`);
  }
  return tok;
}
