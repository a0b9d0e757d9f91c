// The image configuration: apko's YAML format, accepted unchanged where the
// feature exists here. The zod schema is the source of truth for its shape.

import { z } from "zod";
import { parseDependency, ApkError } from "@kiln/apk";
import {
  ARCH_ALIASES,
  ConfigError,
  hostApkArch,
  loadYaml,
  normalizeArch,
  readConfigText,
  type LoadedYaml,
  type Problem,
} from "@kiln/core";

// The architecture table lives in @kiln/core; these names stay exported from here for existing importers.
export { ARCH_ALIASES, OCI_PLATFORM, hostApkArch as hostArch } from "@kiln/core";

const stringMap = z.record(z.string(), z.string());

const user = z
  .object({
    username: z.string().regex(/^[a-z_][a-z0-9_.-]*\$?$/i, "expected a user name"),
    uid: z.number().int().min(0),
    gid: z.number().int().min(0).optional(),
    shell: z.string().optional(),
    homedir: z.string().optional(),
  })
  .strict();

const group = z
  .object({
    groupname: z.string().regex(/^[a-z_][a-z0-9_.-]*$/i, "expected a group name"),
    gid: z.number().int().min(0),
    members: z.array(z.string()).optional(),
  })
  .strict();

const pathMutation = z
  .object({
    path: z.string().min(1),
    type: z.enum(["directory", "empty-file", "hardlink", "symlink", "permissions"]),
    uid: z.number().int().min(0).optional(),
    gid: z.number().int().min(0).optional(),
    permissions: z
      .union([
        z.number().int().min(0).max(0o7777),
        z.string().regex(/^0?o?[0-7]{3,4}$/, "expected an octal mode such as 0o755"),
      ])
      .optional(),
    source: z.string().optional(),
    recursive: z.boolean().optional(),
  })
  .strict();

export const imageConfigSchema = z
  .object({
    contents: z
      .object({
        repositories: z.array(z.string()).optional(),
        build_repositories: z.array(z.string()).optional(),
        runtime_repositories: z.array(z.string()).optional(),
        keyring: z.array(z.string()).optional(),
        packages: z.array(z.string()).optional(),
      })
      .strict()
      .optional(),
    entrypoint: z
      .object({
        type: z.string().optional(),
        command: z.string().optional(),
        "shell-fragment": z.string().optional(),
        services: z.record(z.string(), z.unknown()).optional(),
      })
      .strict()
      .optional(),
    cmd: z.string().optional(),
    "stop-signal": z.string().optional(),
    "work-dir": z.string().optional(),
    environment: stringMap.optional(),
    volumes: z.array(z.string()).optional(),
    annotations: stringMap.optional(),
    "vcs-url": z.string().optional(),
    accounts: z
      .object({
        users: z.array(user).optional(),
        groups: z.array(group).optional(),
        "run-as": z.union([z.string(), z.number().int()]).optional(),
      })
      .strict()
      .optional(),
    paths: z.array(pathMutation).optional(),
    archs: z.array(z.string()).optional(),
    layering: z
      .object({
        strategy: z.literal("origin"),
        budget: z.number().int().min(1).max(127).optional(),
      })
      .strict()
      .optional(),
    "os-release": z
      .object({
        id: z.string().optional(),
        name: z.string().optional(),
        "pretty-name": z.string().optional(),
        "version-id": z.string().optional(),
        "home-url": z.string().optional(),
      })
      .strict()
      .optional(),
    /** kiln extension: a smoke test run from the unpacked image (`kiln images --test`). */
    test: z
      .object({
        command: z.array(z.string()).min(1),
        expect: z.string().optional(),
        "expect-exit": z.number().int().optional(),
        /** For images with no shell or tools of their own (e.g. `static`): the test harness mounts a static busybox at /.kiln-test/busybox. */
        "with-busybox": z.boolean().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type ImageConfigInput = z.infer<typeof imageConfigSchema>;

export interface PathMutation {
  path: string;
  type: "directory" | "empty-file" | "hardlink" | "symlink" | "permissions";
  uid: number;
  gid: number;
  permissions?: number;
  source?: string;
  recursive: boolean;
}

/** A validated, normalised image configuration. */
export interface ImageConfig {
  file: string;
  repositories: string[];
  buildRepositories: string[];
  runtimeRepositories: string[];
  keyring: string[];
  packages: string[];
  entrypoint?: string[];
  cmd?: string[];
  stopSignal?: string;
  workDir?: string;
  environment: Record<string, string>;
  volumes: string[];
  annotations: Record<string, string>;
  users: Array<{ username: string; uid: number; gid: number; shell: string; homedir: string }>;
  groups: Array<{ groupname: string; gid: number; members: string[] }>;
  runAs?: string;
  paths: PathMutation[];
  /** apk arch names. */
  archs: string[];
  layering?: { strategy: "origin"; budget: number };
  osRelease?: Record<string, string>;
  test?: { command: string[]; expect?: string; expectExit: number; withBusybox: boolean };
}

/** Split a command line as a POSIX shell would for simple words and quotes. */
export function shellWords(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inWord = false;
  let q: '"' | "'" | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q) {
      if (c === q) q = undefined;
      else if (c === "\\" && q === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      q = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (q) throw new Error(`unterminated ${q} quote`);
  if (inWord) out.push(cur);
  return out;
}

/** Where parseImageConfig records a problem: the path into the YAML, and what is wrong there. */
type At = (path: Array<string | number>, message: string) => void;

/** Every contents.packages entry must parse as a dependency. */
function checkPackages(packages: string[], at: At): void {
  packages.forEach((p, i) => {
    try {
      parseDependency(p);
    } catch (e) {
      if (e instanceof ApkError) at(["contents", "packages", i], e.message);
      else throw e;
    }
  });
}

/** The archs as apk names (host and all expanded), duplicates kept. */
function parseArchs(v: ImageConfigInput, at: At): string[] {
  const archs: string[] = [];
  for (const [i, a] of (v.archs ?? []).entries()) {
    if (a === "host") archs.push(hostApkArch());
    else if (a === "all") archs.push("x86_64", "aarch64");
    else if (normalizeArch(a)) archs.push(normalizeArch(a)!);
    else
      at(
        ["archs", i],
        `unknown architecture ${JSON.stringify(a)} (expected one of ${Object.keys(ARCH_ALIASES).join(", ")}, host, all)`,
      );
  }
  return archs;
}

/** accounts: users (no uid 0, no name twice) with defaults, groups, and run-as naming a user or a numeric uid. */
function parseAccounts(
  v: ImageConfigInput,
  at: At,
): Pick<ImageConfig, "users" | "groups"> & { runAs: string | number | undefined } {
  const users = (v.accounts?.users ?? []).map((u, i) => {
    if (u.uid === 0)
      at(
        ["accounts", "users", i, "uid"],
        `uid 0 is refused: the image's root account comes from the base layout; run as a non-root user`,
      );
    return {
      username: u.username,
      uid: u.uid,
      gid: u.gid ?? u.uid,
      shell: u.shell ?? "/bin/sh",
      homedir: u.homedir ?? `/home/${u.username}`,
    };
  });
  const seenUsers = new Map<string, number>();
  users.forEach((u, i) => {
    if (seenUsers.has(u.username)) at(["accounts", "users", i, "username"], `user ${u.username} is defined twice`);
    seenUsers.set(u.username, i);
  });
  const groups = (v.accounts?.groups ?? []).map((g) => ({
    groupname: g.groupname,
    gid: g.gid,
    members: g.members ?? [],
  }));
  const runAs = v.accounts?.["run-as"];
  if (typeof runAs === "string" && runAs !== "" && !/^\d+(:\d+)?$/.test(runAs) && !seenUsers.has(runAs)) {
    at(
      ["accounts", "run-as"],
      `run-as ${JSON.stringify(runAs)} is not one of the configured users (${[...seenUsers.keys()].join(", ") || "none"}) nor a numeric uid`,
    );
  }
  return { users, groups, runAs };
}

/** paths: mutations with octal permissions (as apko reads them), links with a source, no ".." segments. */
function parsePaths(v: ImageConfigInput, loaded: LoadedYaml<ImageConfigInput>, at: At): PathMutation[] {
  return (v.paths ?? []).map((p, i) => {
    let permissions: number | undefined;
    if (typeof p.permissions === "string") permissions = parseInt(p.permissions.replace(/^0?o?/, ""), 8);
    else if (typeof p.permissions === "number") {
      // YAML 1.2 reads `0755` as decimal 755; apko's users mean octal.
      const src = loaded.source(["paths", i, "permissions"]);
      permissions = src && /^0[0-7]+$/.test(src) ? parseInt(src, 8) : p.permissions;
    }
    if ((p.type === "symlink" || p.type === "hardlink") && !p.source)
      at(["paths", i, "source"], `a ${p.type} needs source`);
    if (!p.path.startsWith("/") && !/^[^/]/.test(p.path)) at(["paths", i, "path"], "expected a path");
    else if (p.path.split("/").some((seg) => seg === ".."))
      at(["paths", i, "path"], `${JSON.stringify(p.path)} must not contain ".." segments`);
    const m: PathMutation = {
      path: p.path,
      type: p.type,
      uid: p.uid ?? 0,
      gid: p.gid ?? 0,
      recursive: p.recursive ?? false,
    };
    if (permissions !== undefined) m.permissions = permissions;
    if (p.source !== undefined) m.source = p.source;
    return m;
  });
}

/** entrypoint (a shell fragment or a command line) and cmd, split into words. */
function parseCommands(v: ImageConfigInput, at: At): { entrypoint?: string[]; cmd?: string[] } {
  let entrypoint: string[] | undefined;
  let cmd: string[] | undefined;
  try {
    if (v.entrypoint?.["shell-fragment"]) entrypoint = ["/bin/sh", "-c", v.entrypoint["shell-fragment"]];
    else if (v.entrypoint?.command) entrypoint = shellWords(v.entrypoint.command);
  } catch (e) {
    at(["entrypoint", "command"], (e as Error).message);
  }
  try {
    if (v.cmd !== undefined) cmd = shellWords(v.cmd);
  } catch (e) {
    at(["cmd"], (e as Error).message);
  }
  return { ...(entrypoint ? { entrypoint } : {}), ...(cmd ? { cmd } : {}) };
}

/** The optional settings of a valid config, set on CFG only when given. */
function applyOptional(cfg: ImageConfig, v: ImageConfigInput, runAs: string | number | undefined): void {
  if (v["stop-signal"]) cfg.stopSignal = v["stop-signal"];
  if (v["work-dir"]) cfg.workDir = v["work-dir"];
  if (runAs !== undefined && runAs !== "") cfg.runAs = String(runAs);
  if (v.layering) cfg.layering = { strategy: "origin", budget: v.layering.budget ?? 10 };
  if (v["os-release"])
    cfg.osRelease = Object.fromEntries(Object.entries(v["os-release"]).filter(([, x]) => x !== undefined)) as Record<
      string,
      string
    >;
  if (v.test) {
    cfg.test = {
      command: v.test.command,
      expectExit: v.test["expect-exit"] ?? 0,
      withBusybox: v.test["with-busybox"] ?? false,
    };
    if (v.test.expect !== undefined) cfg.test.expect = v.test.expect;
  }
}

/** Parse and validate an image config text; throws ConfigError listing every problem. */
export function parseImageConfig(file: string, text: string): ImageConfig {
  const loaded = loadYaml(file, text, imageConfigSchema);
  const v = loaded.value;
  const problems: Problem[] = [];
  const at = (path: Array<string | number>, message: string) =>
    problems.push({
      file,
      ...loaded.locate(path),
      path: path.map((p, i) => (typeof p === "number" ? `[${p}]` : i ? `.${p}` : p)).join(""),
      message,
    });

  const packages = v.contents?.packages ?? [];
  checkPackages(packages, at);
  const archs = parseArchs(v, at);
  const { users, groups, runAs } = parseAccounts(v, at);
  const paths = parsePaths(v, loaded, at);
  const { entrypoint, cmd } = parseCommands(v, at);
  if (problems.length) throw new ConfigError(problems);

  const environment: Record<string, string> = {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    SSL_CERT_FILE: "/etc/ssl/certs/ca-certificates.crt",
    ...(v.environment ?? {}),
  };
  const cfg: ImageConfig = {
    file,
    repositories: v.contents?.repositories ?? [],
    buildRepositories: v.contents?.build_repositories ?? [],
    runtimeRepositories: v.contents?.runtime_repositories ?? [],
    keyring: v.contents?.keyring ?? [],
    packages,
    environment,
    volumes: v.volumes ?? [],
    annotations: {
      ...(v.annotations ?? {}),
      ...(v["vcs-url"] ? { "org.opencontainers.image.source": v["vcs-url"] } : {}),
    },
    users,
    groups,
    paths,
    archs: archs.length ? [...new Set(archs)] : [hostApkArch()],
  };
  if (entrypoint) cfg.entrypoint = entrypoint;
  if (cmd) cfg.cmd = cmd;
  applyOptional(cfg, v, runAs);
  return cfg;
}

export async function loadImageConfig(file: string): Promise<ImageConfig> {
  return parseImageConfig(file, await readConfigText(file));
}
