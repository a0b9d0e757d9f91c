// Compiling a recipe's environments (the build guest and each test's) as
// apko image configs: their strings substituted, checked as image configs
// with problems pointing into the recipe, build options' package changes
// applied, melange's build user and defaults added.

import { ConfigError } from "@kiln/core";
import { parseImageConfig, type ImageConfigInput } from "@kiln/image";
import { WORKSPACE_DIR } from "../substitute.js";
import type { Reporter } from "./report.js";
import type { Path } from "./types.js";

function undot(s: string): Array<string | number> {
  const out: Array<string | number> = [];
  for (const m of s.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

/** Sorted, without duplicates. */
export function sortedUnique(xs: Iterable<string>): string[] {
  return [...new Set(xs)].sort();
}

/** A build or test environment, compiled. */
export function compileEnvironment(
  c: Reporter,
  env: ImageConfigInput | undefined,
  path: Path,
  vars: ReadonlyMap<string, string>,
  enabled?: ReadonlySet<string>,
): ImageConfigInput {
  const out: ImageConfigInput = structuredClone(env ?? {});
  const cs = out.contents;
  if (cs) {
    for (const key of ["repositories", "build_repositories", "runtime_repositories", "keyring", "packages"] as const) {
      if (cs[key]) cs[key] = cs[key]!.map((s, i) => c.subAt([...path, "contents", key, i], s, vars));
    }
  }
  if (out.environment)
    out.environment = Object.fromEntries(
      Object.entries(out.environment).map(([k, v]) => [k, c.subAt([...path, "environment", k], String(v), vars)]),
    );
  // The environment is an image config: check it as one, pointing into the recipe.
  if (env) {
    try {
      parseImageConfig(c.src.file, JSON.stringify(out));
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      for (const p of e.problems) c.problem([...path, ...undot(p.path)], p.message);
    }
  }
  for (const name of enabled ?? []) {
    const opt = c.src.recipe.options?.[name]?.environment?.contents?.packages;
    if (!opt) continue;
    const cc = (out.contents ??= {});
    cc.packages = [...(cc.packages ?? []).filter((p) => !(opt.remove ?? []).includes(p)), ...(opt.add ?? [])];
  }
  // melange's build user and defaults.
  const accounts = (out.accounts ??= {});
  if (!(accounts.groups ?? []).some((g) => g.groupname === "build"))
    accounts.groups = [...(accounts.groups ?? []), { groupname: "build", gid: 1000, members: ["build"] }];
  if (!(accounts.users ?? []).some((u) => u.username === "build"))
    accounts.users = [...(accounts.users ?? []), { username: "build", uid: 1000, gid: 1000 }];
  const e = (out.environment ??= {});
  e.HOME ||= WORKSPACE_DIR;
  e.GOPATH ||= `${WORKSPACE_DIR}/.cache/go`;
  return out;
}

/**
 * The uid and gid a guest's steps run as for `accounts.run-as`, as melange
 * decides them: unset is the build user (undefined here), `root` or `0` is
 * 0:0, a number is that uid (with its user's gid, else the same number), a
 * name is that user's uid and gid. A name no user has is the build user
 * (the image config check reports it).
 */
export function runAsIds(accounts: ImageConfigInput["accounts"]): { uid: number; gid: number } | undefined {
  const raw = accounts?.["run-as"];
  if (raw === undefined || raw === "") return undefined;
  const runAs = String(raw);
  if (runAs === "root" || runAs === "0") return { uid: 0, gid: 0 };
  const users = accounts?.users ?? [];
  if (/^\d+$/.test(runAs)) {
    const uid = Number(runAs);
    return { uid, gid: users.find((u) => u.uid === uid)?.gid ?? uid };
  }
  const user = users.find((u) => u.username === runAs);
  if (user?.uid === undefined) return undefined;
  return { uid: user.uid, gid: user.gid ?? user.uid };
}
