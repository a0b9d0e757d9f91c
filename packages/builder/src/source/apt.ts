// apt's configuration, read as apt reads it: one-line `.list` files and
// deb822 `.sources` files, and the Debian mirrors they name.

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export interface AptSource {
  /** File the entry came from. */
  file: string;
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
}

// Debian release names and aliases; a suite is "Debian's main archive" when it
// is one of these, optionally with -updates / -backports / -proposed-updates.
const DEBIAN_SUITES = new Set([
  "buzz",
  "rex",
  "bo",
  "hamm",
  "slink",
  "potato",
  "woody",
  "sarge",
  "etch",
  "lenny",
  "squeeze",
  "wheezy",
  "jessie",
  "stretch",
  "buster",
  "bullseye",
  "bookworm",
  "trixie",
  "forky",
  "duke",
  "sid",
  "stable",
  "testing",
  "unstable",
  "oldstable",
  "oldoldstable",
  "experimental",
]);

function suiteKind(suite: string): "debian" | "debian-security" | undefined {
  const s = suite.replace(/\/+$/, "");
  const sec = /^([a-z]+)(?:-security|\/updates)$/.exec(s);
  if (sec && DEBIAN_SUITES.has(sec[1]!)) return "debian-security";
  const main = /^([a-z]+)(?:-updates|-backports|-proposed-updates|-backports-sloppy)?$/.exec(s);
  if (main && DEBIAN_SUITES.has(main[1]!)) return "debian";
  return undefined;
}

/** Parse deb822 paragraphs (apt `.sources`, Debian control files): field names as written, continuation lines joined with "\n". */
export function parseDeb822(text: string): Array<Record<string, string>> {
  const out: Array<Record<string, string>> = [];
  let cur: Record<string, string> = {};
  let last: string | undefined;
  const flush = (): void => {
    if (Object.keys(cur).length) out.push(cur);
    cur = {};
    last = undefined;
  };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line.startsWith("#")) continue;
    if (line.trim() === "") {
      flush();
      continue;
    }
    if (/^[ \t]/.test(line)) {
      if (last !== undefined) cur[last] += "\n" + line.replace(/^[ \t]/, "");
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    last = line.slice(0, colon).trim();
    cur[last] = line.slice(colon + 1).trim();
  }
  flush();
  return out;
}

function words(v: string | undefined): string[] {
  return (v ?? "").split(/\s+/).filter((w) => w !== "");
}

function fieldCI(p: Record<string, string>, name: string): string | undefined {
  const k = Object.keys(p).find((x) => x.toLowerCase() === name.toLowerCase());
  return k === undefined ? undefined : p[k];
}

function parseOneLineSources(text: string, file: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split("\n")) {
    let line = raw.replace(/#.*$/, "").trim();
    if (line === "") continue;
    const m = /^(deb|deb-src)\s+(.*)$/.exec(line);
    if (!m) continue;
    line = m[2]!.trim();
    if (line.startsWith("[")) {
      const end = line.indexOf("]");
      if (end < 0) continue;
      line = line.slice(end + 1).trim();
    }
    const [uri, suite, ...components] = words(line);
    if (!uri || !suite) continue;
    out.push({ file, types: [m[1]!], uris: [uri], suites: [suite], components });
  }
  return out;
}

/**
 * Read apt's source entries the way apt does: `etc/apt/sources.list`, then
 * every `*.list` and `*.sources` file in `etc/apt/sources.list.d` in name
 * order. Entries with `Enabled: no` are left out.
 */
export function readAptSources(aptRoot = "/"): AptSource[] {
  const out: AptSource[] = [];
  const main = join(aptRoot, "etc/apt/sources.list");
  if (existsSync(main)) out.push(...parseOneLineSources(readFileSync(main, "utf8"), main));
  const dir = join(aptRoot, "etc/apt/sources.list.d");
  let names: string[] = [];
  try {
    names = readdirSync(dir).sort();
  } catch {
    names = [];
  }
  for (const n of names) {
    const f = join(dir, n);
    if (!/^[A-Za-z0-9_.-]+$/.test(n)) continue;
    try {
      if (!statSync(f).isFile()) continue;
    } catch {
      continue;
    }
    if (n.endsWith(".list")) out.push(...parseOneLineSources(readFileSync(f, "utf8"), f));
    else if (n.endsWith(".sources")) {
      for (const p of parseDeb822(readFileSync(f, "utf8"))) {
        if ((fieldCI(p, "Enabled") ?? "yes").trim().toLowerCase() === "no") continue;
        out.push({
          file: f,
          types: words(fieldCI(p, "Types")),
          uris: words(fieldCI(p, "URIs")),
          suites: words(fieldCI(p, "Suites")),
          components: words(fieldCI(p, "Components")),
        });
      }
    }
  }
  return out;
}

/** An apt source URI as an http(s) URL: plain ones as they are; `mirror+file:` lists (Debian's cloud images) give their first http(s) entry. */
function aptUriToHttp(uri: string, aptRoot: string): string | undefined {
  if (/^https?:\/\//.test(uri)) return uri;
  const m = /^mirror\+file:(?:\/\/)?(\/.*)$/.exec(uri);
  if (!m) return undefined;
  try {
    for (const line of readFileSync(join(aptRoot, m[1]!), "utf8").split("\n")) {
      const u = line.replace(/#.*$/, "").trim().split(/\s+/)[0];
      if (u && /^https?:\/\//.test(u)) return u;
    }
  } catch {
    /* unreadable list: not a usable source */
  }
  return undefined;
}

/** The mirrors named by apt's configuration: `debian` and `debian-security`, first match in apt's reading order. */
export function aptMirrors(aptRoot = "/"): { debian?: string; "debian-security"?: string } {
  const found: { debian?: string; "debian-security"?: string } = {};
  for (const src of readAptSources(aptRoot)) {
    if (!src.types.some((t) => t === "deb" || t === "deb-src")) continue;
    const uri = src.uris.map((u) => aptUriToHttp(u, aptRoot)).find((u) => u !== undefined);
    if (!uri) continue;
    for (const suite of src.suites) {
      const kind = suiteKind(suite);
      if (kind && found[kind] === undefined) found[kind] = uri.replace(/\/+$/, "");
    }
  }
  return found;
}
