// Compiling package metadata: the version checked as an apk version,
// names checked to fit in file names, copyright into an SPDX expression,
// dependencies parsed, scriptlets substituted, options and timeouts
// normalised; the main package's CompiledPackage.

import { ApkError, isValidVersion, parseDependency, parseProvide } from "@kiln/apk";
import { ARCH_ALIASES } from "@kiln/core";
import type { Copyright, Recipe } from "../recipe-schema.js";
import type { Reporter } from "./report.js";
import type {
  CompiledDependencies,
  CompiledPackage,
  CompiledPackageOptions,
  CompiledScriptlets,
  Path,
} from "./types.js";
import { SCRIPTLET_KEYS } from "./types.js";

/** SPDX expression of a recipe's copyright entries ("" if none). */
export function licenseExpression(cps: Copyright[] | undefined): string {
  const single = (cp: Copyright, nested: boolean): string => {
    if (cp.operator && cp.licenses?.length) {
      const subs = [...new Set(cp.licenses.map((l) => single(l, true)).filter(Boolean))];
      if (subs.length <= 1) return subs[0] ?? "";
      const joined = subs.join(` ${cp.operator} `);
      return nested ? `(${joined})` : joined;
    }
    return cp.license ?? "";
  };
  if (!cps?.length) return "";
  const exprs = [...new Set(cps.map((cp) => single(cp, cps.length > 1)).filter(Boolean))];
  if (exprs.length <= 1) return exprs[0] ?? "";
  const ops = cps.map((cp) => (cp.operator && cp.licenses?.length ? cp.operator : undefined));
  const op = ops.every((o) => o && o === ops[0]) ? ops[0]! : "AND";
  return exprs.join(` ${op} `);
}

function durationSeconds(d: string): number {
  if (/^\d+$/.test(d)) return Number(d);
  const unit: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
  let total = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(m[1]) * unit[m[2]!]!;
  return Math.round(total);
}

export function packageOptions(o: Recipe["package"]["options"]): CompiledPackageOptions {
  return {
    noProvides: o?.["no-provides"] ?? false,
    noDepends: o?.["no-depends"] ?? false,
    noCommands: o?.["no-commands"] ?? false,
    noVersionedShlibDeps: o?.["no-versioned-shlib-deps"] ?? false,
  };
}

/**
 * Check package.version and the copyright entries, warn about a missing
 * license or description; returns the check that a (sub)package name with
 * this version fits in a file name.
 */
export function checkPackage(c: Reporter, pkg: Recipe["package"]): (name: string, path: Path) => boolean {
  const version = String(pkg.version);
  if (version === "") c.problem(["package", "version"], "version must not be empty");
  else if (!isValidVersion(`${version}-r0`))
    c.problem(
      ["package", "version"],
      `${JSON.stringify(version)} is not a valid apk version (expected e.g. 1.2.3, 1.2.3_rc1, 2024.01.05)`,
    );
  if (/-r\d+$/.test(version))
    c.problem(
      ["package", "version"],
      `the version must not carry a release suffix (${JSON.stringify(version)}): set package.epoch instead`,
    );
  const epoch = pkg.epoch ?? 0;
  // Names and versions become file names (NAME-VER-rN.apk, NAME.test.log): one path segment each.
  const fileNameFits = (name: string, path: Path) => {
    if (Buffer.byteLength(`${name}-${version}-r${epoch}.apk`) > 255 || Buffer.byteLength(`${name}.test.log`) > 255) {
      c.problem(
        path,
        `${JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name)} with its version is too long for a file name ` +
          `(NAME-VERSION-rEPOCH.apk must fit in 255 bytes, this is ${Buffer.byteLength(`${name}-${version}-r${epoch}.apk`)})`,
      );
      return false;
    }
    return true;
  };
  fileNameFits(pkg.name, ["package", "name"]);
  pkg.copyright?.forEach((cp, i) => checkCopyright(c, cp, ["package", "copyright", i]));
  if (!licenseExpression(pkg.copyright)) c.warn(["package"], "no license: set package.copyright[].license");
  if (!pkg.description) c.warn(["package"], "no description: set package.description");
  return fileNameFits;
}

export function checkCopyright(c: Reporter, cp: Copyright, path: Path): void {
  const grouping = cp.operator !== undefined || (cp.licenses?.length ?? 0) > 0;
  if (grouping && cp.license) c.problem(path, "either license or operator/licenses, not both");
  if (!grouping && !cp.license) c.problem(path, "expected license (or operator with licenses)");
  if (grouping && !cp.licenses?.length) c.problem(path, "a grouping entry needs at least one entry in licenses");
  cp.licenses?.forEach((l, i) => checkCopyright(c, l, [...path, "licenses", i]));
}

export function compileDependencies(
  c: Reporter,
  d: Recipe["package"]["dependencies"],
  path: Path,
  vars: ReadonlyMap<string, string>,
): CompiledDependencies {
  const list = (key: "runtime" | "provides" | "replaces", check: (s: string) => void) =>
    (d?.[key] ?? []).map((s, i) => {
      const v = c.subAt([...path, key, i], s, vars);
      try {
        if (v && !v.includes("${{")) check(v);
      } catch (e) {
        if (e instanceof ApkError) c.problem([...path, key, i], e.message);
        else throw e;
      }
      return v;
    });
  const out: CompiledDependencies = {
    runtime: list("runtime", (s) => parseDependency(s)),
    provides: list("provides", (s) => parseProvide(s)),
    replaces: list("replaces", (s) => parseDependency(s)),
  };
  const prio = (key: "provider-priority" | "replaces-priority") => {
    const raw = d?.[key];
    if (raw === undefined) return undefined;
    const s = c.subAt([...path, key], String(raw), vars);
    if (s === "") return undefined; // melange: an empty priority is none
    if (!/^-?\d+$/.test(s) && !s.includes("${{")) {
      c.problem([...path, key], `expected an integer, got ${JSON.stringify(s)}`);
      return undefined;
    }
    return Number(s);
  };
  const pp = prio("provider-priority");
  const rp = prio("replaces-priority");
  if (pp !== undefined) out.providerPriority = pp;
  if (rp !== undefined) out.replacesPriority = rp;
  return out;
}

export function compileScriptlets(
  c: Reporter,
  s: Recipe["package"]["scriptlets"],
  path: Path,
  vars: ReadonlyMap<string, string>,
): CompiledScriptlets {
  const out: CompiledScriptlets = {};
  if (!s) return out;
  if (s.trigger && (s.trigger.script || s.trigger.paths?.length)) {
    out.trigger = {
      script: c.subAt([...path, "trigger", "script"], s.trigger.script ?? "", vars),
      paths: (s.trigger.paths ?? []).map((p, i) => c.subAt([...path, "trigger", "paths", i], p, vars)),
    };
  }
  for (const k of SCRIPTLET_KEYS) {
    const v = s[k];
    if (v !== undefined) out[k] = c.subAt([...path, k], v, vars);
  }
  return out;
}

/** The main package, compiled. */
export function compilePackage(
  c: Reporter,
  pkg: Recipe["package"],
  vars: ReadonlyMap<string, string>,
): CompiledPackage {
  const version = String(pkg.version);
  const epoch = pkg.epoch ?? 0;

  const targetArchitecture = (pkg["target-architecture"] ?? ["all"]).map((a) =>
    a === "all" ? a : (ARCH_ALIASES[a] ?? a),
  );
  (pkg["target-architecture"] ?? []).forEach((a, i) => {
    if (a !== "all" && !ARCH_ALIASES[a])
      c.problem(["package", "target-architecture", i], `unknown architecture ${JSON.stringify(a)}`);
  });
  const compiledPkg: CompiledPackage = {
    name: pkg.name,
    version,
    epoch,
    fullVersion: `${version}-r${epoch}`,
    description: pkg.description !== undefined ? c.subText(["package", "description"], pkg.description, vars) : "",
    license: licenseExpression(pkg.copyright),
    copyright: pkg.copyright ?? [],
    dependencies: compileDependencies(c, pkg.dependencies, ["package", "dependencies"], vars),
    options: packageOptions(pkg.options),
    scriptlets: compileScriptlets(c, pkg.scriptlets, ["package", "scriptlets"], vars),
    targetArchitecture,
  };
  if (pkg.url !== undefined) compiledPkg.url = c.subAt(["package", "url"], pkg.url, vars);
  if (pkg.commit !== undefined) compiledPkg.commit = pkg.commit;
  if (pkg.timeout !== undefined) compiledPkg.timeoutSeconds = durationSeconds(pkg.timeout);
  if (pkg.resources)
    compiledPkg.resources = Object.fromEntries(Object.entries(pkg.resources).map(([k, v]) => [k, String(v)]));
  // Scheduling hints for a build farm: recorded in the plan; kiln's own runner does not size guests by them.
  if (pkg["test-resources"]) compiledPkg.testResources = { ...pkg["test-resources"] };
  if (pkg.checks) compiledPkg.checks = pkg.checks;
  if (pkg.annotations) compiledPkg.annotations = pkg.annotations;
  if (pkg.setcap) compiledPkg.setcap = pkg.setcap;
  return compiledPkg;
}
