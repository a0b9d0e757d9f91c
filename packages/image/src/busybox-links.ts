// Busybox's applet links in an image root, made the way apko makes them.

import type { ImageRoot } from "./root.js";

/**
 * Busybox's applet links, as apko makes them: busybox packages list their
 * applets in /etc/busybox-paths.d/*; each listed path that nothing installed
 * gets a symlink to the busybox binary. Real files always win, and no
 * package owns the links, so tools like binutils' ar never conflict.
 */
export async function createBusyboxLinks(root: ImageRoot): Promise<number> {
  const bin = ["usr/bin/busybox", "bin/busybox"]
    .map((p) => root.resolve(p, true))
    .find((p) => root.nodes.get(p)?.type === "file");
  if (!bin) return 0;
  const dir = root.resolve("etc/busybox-paths.d", true);
  let made = 0;
  for (const n of root.sorted((x) => x.type === "file" && x.path.startsWith(dir + "/"))) {
    const text = (await root.readBlob(n.blob!)).toString("utf8");
    for (const line of text.split("\n")) {
      const p = line.trim().replace(/^\/+/, "");
      if (!p || p.startsWith("#") || p.split("/").includes("..")) continue;
      const slash = p.lastIndexOf("/");
      const parent = root.resolve(slash < 0 ? "" : p.slice(0, slash), true);
      const pnode = root.nodes.get(parent);
      if (!pnode || pnode.type !== "dir") continue;
      const canon = (parent ? `${parent}/` : "") + p.slice(slash + 1);
      if (root.nodes.has(canon) || canon === bin) continue;
      root.nodes.set(canon, { path: canon, type: "symlink", mode: 0o777, uid: 0, gid: 0, linkTarget: "/" + bin });
      made++;
    }
  }
  return made;
}
