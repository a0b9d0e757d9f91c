// A recipe's `${{ }}` variables: package.* and the architecture's, build
// options' enabled flags, symbolic mirror:// references, the caller's,
// then vars (which may refer to each other) and var-transforms.

import { goRegexp, goReplaceAll, RegexpError, archVariables, packageVariables, scanReferences } from "../substitute.js";
import type { Reporter } from "./report.js";
import type { Path } from "./types.js";

/** The variables of a recipe compiled for `arch` with the build options `enabled`. */
export function recipeVariables(c: Reporter, arch: string, enabled: ReadonlySet<string>): Map<string, string> {
  const r = c.src.recipe;
  const o = c.opts;
  const pkg = r.package;
  const version = String(pkg.version);
  const epoch = pkg.epoch ?? 0;
  const vars = new Map<string, string>([
    ...packageVariables({ name: pkg.name, version, epoch, description: pkg.description ?? "" }),
    ...archVariables(arch),
  ]);
  for (const k of Object.keys(r.options ?? {})) vars.set(`options.${k}.enabled`, String(enabled.has(k)));
  // `${{mirror.NAME}}` stays symbolic (mirror://NAME, resolved by the fetcher on
  // the host) unless the caller resolved it: compiled recipes and their hashes
  // must not depend on the machine's mirror.
  for (const m of JSON.stringify(r).matchAll(/\$\{\{ *mirror\.([a-zA-Z0-9_-]+) *\}\}/g))
    vars.set(`mirror.${m[1]}`, `mirror://${m[1]}`);
  for (const [k, v] of Object.entries(o.variables ?? {})) vars.set(k, v);
  const rawVars: Record<string, { value: string; path: Path }> = {};
  for (const [k, v] of Object.entries(r.vars ?? {})) rawVars[k] = { value: String(v), path: ["vars", k] };
  for (const name of enabled)
    for (const [k, v] of Object.entries(r.options?.[name]?.vars ?? {}))
      rawVars[k] = { value: String(v), path: ["options", name, "vars", k] };
  resolveVars(c, rawVars, vars);
  (r["var-transforms"] ?? []).forEach((t, i) => {
    const from = c.subAt(["var-transforms", i, "from"], t.from, vars);
    let re: RegExp;
    try {
      re = goRegexp(t.match);
    } catch (e) {
      c.problem(["var-transforms", i, "match"], (e as Error).message);
      return;
    }
    try {
      vars.set(`vars.${t.to}`, goReplaceAll(re, from, t.replace));
    } catch (e) {
      if (!(e instanceof RegexpError)) throw e;
      c.problem(["var-transforms", i, "replace"], e.message);
      vars.set(`vars.${t.to}`, "");
    }
  });
  return vars;
}

/** vars may refer to package.* and to each other (melange allows only earlier ones, in map order). */
function resolveVars(c: Reporter, raw: Record<string, { value: string; path: Path }>, vars: Map<string, string>): void {
  const state = new Map<string, "busy" | "done">();
  const resolve = (k: string, chain: string[]): void => {
    const st = state.get(k);
    if (st === "done") return;
    const entry = raw[k]!;
    if (st === "busy") {
      c.problem(
        entry.path,
        `variable vars.${k} refers to itself (${[...chain, k].map((c) => `vars.${c}`).join(" → ")})`,
      );
      vars.set(`vars.${k}`, "");
      return;
    }
    state.set(k, "busy");
    for (const ref of scanReferences(entry.value).refs) {
      if (ref.name.startsWith("vars.") && raw[ref.name.slice(5)] !== undefined)
        resolve(ref.name.slice(5), [...chain, k]);
    }
    if (state.get(k) === "busy") vars.set(`vars.${k}`, c.subAt(entry.path, entry.value, vars));
    state.set(k, "done");
  };
  for (const k of Object.keys(raw)) resolve(k, []);
}
