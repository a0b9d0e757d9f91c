// What an image config adds on top of the installed packages: accounts,
// path mutations and os-release. apko does the same without running scripts.

import { assertPathComponent } from "@kiln/core";
import type { ImageConfig } from "./config.js";
import { ImageRoot, InstallError } from "./root.js";

/** The canonical path of a new leaf `rel` (its parent made and resolved), refusing a last segment that is empty, `.` or `..`. */
function newLeaf(root: ImageRoot, rel: string, where: string): string {
  const slash = rel.lastIndexOf("/");
  const leaf = rel.slice(slash + 1);
  try {
    assertPathComponent(leaf, "last path segment");
  } catch (e) {
    throw new InstallError(`${where}: ${(e as Error).message}`, "INVALID_PATH");
  }
  const parent = root.mkdirp(slash < 0 ? "" : rel.slice(0, slash));
  return (parent ? `${parent}/` : "") + leaf;
}

function parseColonFile(text: string | undefined): string[][] {
  return (text ?? "")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => l.split(":"));
}

/** Locked shadow entries (`!`: no password login) for the configured users, as apko writes them. */
async function writeShadow(root: ImageRoot, cfg: ImageConfig): Promise<void> {
  const shadow = parseColonFile(await root.readText("etc/shadow"));
  for (const u of cfg.users) {
    const row = [u.username, "!", "", "", "", "", "", "", ""];
    const i = shadow.findIndex((x) => x[0] === u.username);
    if (i >= 0) shadow[i] = row;
    else shadow.push(row);
  }
  const mode = root.get("etc/shadow")?.mode ?? 0o640;
  await root.writeFile("etc/shadow", shadow.map((r) => r.join(":")).join("\n") + "\n", { mode });
}

export async function applyAccounts(root: ImageRoot, cfg: ImageConfig): Promise<void> {
  if (!cfg.users.length && !cfg.groups.length) return;
  const passwd = parseColonFile(await root.readText("etc/passwd"));
  const group = parseColonFile(await root.readText("etc/group"));
  if (!passwd.some((p) => p[0] === "root")) passwd.unshift(["root", "x", "0", "0", "root", "/root", "/bin/sh"]);
  if (!group.some((g) => g[0] === "root")) group.unshift(["root", "x", "0", ""]);
  for (const g of cfg.groups) {
    const existing = group.find((x) => x[0] === g.groupname);
    if (existing) {
      existing[2] = String(g.gid);
      existing[3] = g.members.join(",");
    } else group.push([g.groupname, "x", String(g.gid), g.members.join(",")]);
  }
  for (const u of cfg.users) {
    const row = [u.username, "x", String(u.uid), String(u.gid), u.username, u.homedir, u.shell];
    const i = passwd.findIndex((x) => x[0] === u.username);
    if (i >= 0) passwd[i] = row;
    else passwd.push(row);
    if (!group.some((g) => g[2] === String(u.gid))) group.push([u.username, "x", String(u.gid), ""]);
    // As apko: a missing home is made 0700 for its user (parents 0755); /dev/null means homeless.
    const home = u.homedir.replace(/^\/+/, "");
    if (u.homedir !== "/dev/null" && home && !root.get(home)) {
      const slash = home.lastIndexOf("/");
      if (slash > 0) root.mkdirp(home.slice(0, slash), { mode: 0o755 });
      root.mkdirp(home, { mode: 0o700, uid: u.uid, gid: u.gid });
    }
  }
  await root.writeFile("etc/passwd", passwd.map((r) => r.join(":")).join("\n") + "\n", { mode: 0o644 });
  await root.writeFile("etc/group", group.map((r) => r.join(":")).join("\n") + "\n", { mode: 0o644 });
  if (cfg.users.length) await writeShadow(root, cfg);
}

/** The owner a path mutation sets: none when neither uid nor gid is given (apko's nil), else both (the missing one 0). */
function ownerOf(p: { uid?: number; gid?: number }): { uid: number; gid: number } | undefined {
  return p.uid === undefined && p.gid === undefined ? undefined : { uid: p.uid ?? 0, gid: p.gid ?? 0 };
}

export async function applyPaths(root: ImageRoot, cfg: ImageConfig): Promise<void> {
  for (const [i, p] of cfg.paths.entries()) {
    const where = `${cfg.file}: paths[${i}] (${p.path})`;
    const rel = p.path.replace(/^\/+/, "");
    const owner = ownerOf(p);
    switch (p.type) {
      case "directory":
        root.mkdirp(rel, { mode: p.permissions ?? 0o755, ...owner });
        setMeta(root, rel, p.permissions, owner, p.recursive);
        break;
      case "empty-file":
        await root.writeFile(rel, "", { mode: p.permissions ?? 0o644, uid: owner?.uid ?? 0, gid: owner?.gid ?? 0 });
        break;
      case "symlink": {
        const canon = newLeaf(root, rel, where);
        const existing = root.nodes.get(canon);
        if (existing && existing.type === "dir")
          throw new InstallError(`${where}: a directory exists there`, "CONFLICT");
        root.nodes.set(canon, {
          path: canon,
          type: "symlink",
          mode: 0o777,
          uid: owner?.uid ?? 0,
          gid: owner?.gid ?? 0,
          linkTarget: p.source!,
        });
        break;
      }
      case "hardlink": {
        const src = root.get(p.source!.replace(/^\/+/, ""));
        if (!src || src.type !== "file")
          throw new InstallError(
            `${where}: hardlink source ${p.source} is not a regular file in the image`,
            "INVALID_PATH",
          );
        const canon = newLeaf(root, rel, where);
        src.linkGroup ??= 1_000_000 + i;
        root.nodes.set(canon, { ...src, path: canon });
        // One inode: its mode and owner change for every name it has, as chmod/chown on a link do.
        for (const n of root.nodes.values()) {
          if (n.linkGroup !== src.linkGroup) continue;
          if (p.permissions !== undefined) n.mode = p.permissions;
          if (owner) Object.assign(n, owner);
        }
        break;
      }
      case "permissions":
        setMeta(root, rel, p.permissions, owner, p.recursive, where);
        break;
    }
  }
}

function setMeta(
  root: ImageRoot,
  rel: string,
  mode: number | undefined,
  owner: { uid: number; gid: number } | undefined,
  recursive: boolean,
  where = rel,
): void {
  const canon = root.resolve(rel, true);
  const n = root.nodes.get(canon);
  if (!n) throw new InstallError(`${where}: no such path in the image`, "INVALID_PATH");
  const targets = recursive
    ? [...root.nodes.values()].filter((x) => x.path === canon || x.path.startsWith(canon + "/"))
    : [n];
  for (const t of targets) {
    if (mode !== undefined && t.type !== "symlink") t.mode = mode;
    if (owner) {
      t.uid = owner.uid;
      t.gid = owner.gid;
    }
  }
}

export async function applyOsRelease(root: ImageRoot, cfg: ImageConfig): Promise<void> {
  if (!cfg.osRelease) return;
  const keys: Record<string, string> = {
    id: "ID",
    name: "NAME",
    "pretty-name": "PRETTY_NAME",
    "version-id": "VERSION_ID",
    "home-url": "HOME_URL",
  };
  const lines = Object.entries(cfg.osRelease).map(
    ([k, v]) => `${keys[k] ?? k.toUpperCase()}="${v.replace(/["\\$`]/g, "\\$&")}"`,
  );
  await root.writeFile("etc/os-release", lines.join("\n") + "\n");
}

/** apko's supervision tree: each entrypoint.services entry as an execline run script /sv/NAME/run for s6. */
export async function applyServices(root: ImageRoot, cfg: ImageConfig): Promise<void> {
  for (const [name, command] of Object.entries(cfg.services ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const dir = newLeaf(root, `sv/${name}`, `${cfg.file}: entrypoint.services.${name}`);
    root.mkdirp(dir, { mode: 0o755 });
    await root.writeFile(`${dir}/run`, `#!/bin/execlineb\n${command}\n`, { mode: 0o755, uid: 0, gid: 0 });
  }
}
