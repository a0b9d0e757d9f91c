// The image configuration: apko's YAML format, accepted unchanged where the
// feature exists here. The zod schema is the source of truth for its shape.

import { z } from "zod";
import { isScalar } from "yaml";
import { parseDependency, ApkError } from "@kiln/apk";
import {
  ARCH_ALIASES,
  ConfigError,
  hostApkArch,
  loadYaml,
  normalizeArch,
  type LoadedYaml,
  type Problem,
} from "@kiln/core";
import { parseCertificate, parseRuntimeKey, type RuntimeKey, type TrustCertificate } from "./trust.js";

// The architecture table lives in @kiln/core; these names stay exported from here for existing importers.
export { ARCH_ALIASES, OCI_PLATFORM, hostApkArch as hostArch } from "@kiln/core";

/**
 * A string where apko's YAML decoding (into Go strings) also takes a number
 * or a boolean: `SOURCE_DATE_EPOCH: 0`, an annotation `true`. parseImageConfig
 * puts back the text as written (`1.10`, not 1.1).
 */
const str = () => z.preprocess((v) => (typeof v === "number" || typeof v === "boolean" ? String(v) : v), z.string());

const stringMap = () => z.record(z.string(), str());

/** apko's rule for names that become file names (certificates, runtime keys): no path, no leading dot. */
export const TRUST_NAME = /^[a-zA-Z0-9_-]+[a-zA-Z0-9_.-]*$/;

/** An inline PEM with the file name it is written under (certificates.additional, contents.runtime_keyring). */
const namedPem = () =>
  z
    .object({
      name: z.string().regex(TRUST_NAME, "expected a file name of letters, digits, _ - and . (not starting with .)"),
      content: z.string().min(1, "expected PEM text"),
    })
    .strict();

const user = z
  .object({
    username: z.string().regex(/^[a-z_][a-z0-9_.-]*\$?$/i, "expected a user name"),
    uid: z.number().int().min(0),
    gid: z.number().int().min(0).nullable().optional(),
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
    uid: z.number().int().min(0).nullable().optional(),
    gid: z.number().int().min(0).nullable().optional(),
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
        /** Public keys written to /etc/apk/keys after the build, for runtime `apk add`; not used to build. */
        runtime_keyring: z.array(namedPem()).optional(),
        /** apko's experimental base image: a local OCI layout and its installed packages as an APKINDEX. */
        baseimage: z
          .object({ image: z.string().min(1), apkindex: z.string().min(1).optional() })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    entrypoint: z
      .object({
        type: z.string().optional(),
        command: str().optional(),
        "shell-fragment": str().optional(),
        services: z.record(z.string(), str()).optional(),
      })
      .strict()
      .optional(),
    cmd: str().optional(),
    "stop-signal": str().optional(),
    "work-dir": str().optional(),
    environment: stringMap().optional(),
    volumes: z.array(z.string()).optional(),
    annotations: stringMap().optional(),
    "vcs-url": str().optional(),
    /** Another config merged under this one (apko's deep merge; this file's values win). Read by loadImageConfig. */
    include: z.string().min(1).optional(),
    /** Layer payload format: tar (the default) or apko's experimental erofs. */
    format: z.enum(["", "tar", "erofs"]).optional(),
    certificates: z
      .object({
        /** CA certificates added to the image's trust bundles. */
        additional: z.array(namedPem()).optional(),
        /** Names provided by installed packages whose usr/local/share/ca-certificates files join the bundles. */
        providers: z.array(z.string().min(1)).optional(),
      })
      .strict()
      .optional(),
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
        /** Packages of the distribution's repository unpacked beside the image, read-only at /.kiln-test/pkg (not in the image): a test program for a runtime image (e.g. a C++ binary for `cc`). */
        "with-packages": z
          .array(z.string().regex(/^[a-z0-9][a-z0-9+._-]*$/, "a package name (a-z, 0-9, + . _ -)"))
          .max(8)
          .optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type ImageConfigInput = z.infer<typeof imageConfigSchema>;

export interface PathMutation {
  path: string;
  type: "directory" | "empty-file" | "hardlink" | "symlink" | "permissions";
  /** Unset (with gid unset too): ownership is left as it is (apko's nil uid); one set, the other is 0. */
  uid?: number;
  gid?: number;
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
  /** certificates: extra CAs (parsed, canonical) and the names of packages whose certificates join the bundles. */
  certificates?: { additional: TrustCertificate[]; providers: string[] };
  /** contents.runtime_keyring: apk keys written to /etc/apk/keys for runtime use only. */
  runtimeKeyring?: RuntimeKey[];
  /** format, when given ("tar" is what kiln writes; "erofs" is refused at build). */
  format?: "tar" | "erofs";
  /** contents.baseimage, when given: the image is built on this local OCI layout (base-build.ts). */
  baseImage?: { image: string; apkindex?: string };
  /** entrypoint.services: name → command, written as s6 run scripts /sv/NAME/run. */
  services?: Record<string, string>;
  /** The files merged in by include, outermost first (loadImageConfig). */
  includes?: string[];
  test?: { command: string[]; expect?: string; expectExit: number; withBusybox: boolean; withPackages?: string[] };
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

/** accounts: users (no uid 0, as apko; no name twice) with defaults, groups, and run-as (any user; resolved at build). */
function parseAccounts(
  v: ImageConfigInput,
  at: At,
): Pick<ImageConfig, "users" | "groups"> & { runAs: string | number | undefined } {
  const users = (v.accounts?.users ?? []).map((u, i) => {
    if (u.uid === 0)
      at(
        ["accounts", "users", i, "uid"],
        "uid 0 is refused (as apko refuses it): root comes from the base layout; to run as root, use `run-as: 0`",
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
  if (typeof runAs === "string" && /[\s\0]/.test(runAs))
    at(["accounts", "run-as"], `run-as ${JSON.stringify(runAs)}: expected a user name or uid[:gid], without spaces`);
  return { users, groups, runAs };
}

/** paths: mutations with octal permissions (as apko reads them), links with a source, no ".." segments. */
function parsePaths(v: ImageConfigInput, loaded: ConfigSource, at: At): PathMutation[] {
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
      recursive: p.recursive ?? false,
    };
    if (p.uid !== undefined && p.uid !== null) m.uid = p.uid;
    if (p.gid !== undefined && p.gid !== null) m.gid = p.gid;
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
    // apko's service bundle: s6 supervises the services from /sv, whatever command was given.
    if (v.entrypoint?.type === "service-bundle") entrypoint = ["/bin/s6-svscan", "/sv"];
    else if (v.entrypoint?.["shell-fragment"]) entrypoint = ["/bin/sh", "-c", v.entrypoint["shell-fragment"]];
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

/**
 * vcs-url as image annotations: apko's URL@REVISION gives source and
 * revision; a URL without a revision is kept as the source (apko uses it only
 * in the SBOM then).
 */
function vcsAnnotations(vcs: string | undefined): Record<string, string> {
  if (!vcs) return {};
  const at = vcs.lastIndexOf("@");
  // An @ before the host (user@host) is not a revision: the revision follows the path.
  if (at > vcs.lastIndexOf("/"))
    return {
      "org.opencontainers.image.source": vcs.slice(0, at),
      "org.opencontainers.image.revision": vcs.slice(at + 1),
    };
  return { "org.opencontainers.image.source": vcs };
}

/** entrypoint.services: each name becomes the directory /sv/NAME, so it must be one plain path segment. */
function parseServices(v: ImageConfigInput, at: At): Record<string, string> | undefined {
  const services = v.entrypoint?.services;
  if (!services) return undefined;
  for (const name of Object.keys(services))
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$/.test(name))
      at(["entrypoint", "services", name], `service name ${JSON.stringify(name)} must be a plain file name`);
  return { ...services };
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
    if (v.test["with-packages"]?.length) cfg.test.withPackages = [...v.test["with-packages"]];
  }
}

/** certificates and contents.runtime_keyring, each PEM parsed (apko checks them at build; kiln at once, at the key). */
function parseTrust(v: ImageConfigInput, at: At): Pick<ImageConfig, "certificates" | "runtimeKeyring"> {
  const out: Pick<ImageConfig, "certificates" | "runtimeKeyring"> = {};
  if (v.certificates) {
    const additional: TrustCertificate[] = [];
    (v.certificates.additional ?? []).forEach((c, i) => {
      try {
        additional.push(parseCertificate(c.name, c.content));
      } catch (e) {
        at(["certificates", "additional", i, "content"], `certificate ${c.name}: ${(e as Error).message}`);
      }
    });
    out.certificates = { additional, providers: v.certificates.providers ?? [] };
  }
  const keys = v.contents?.runtime_keyring;
  if (keys) {
    const seen = new Set<string>();
    out.runtimeKeyring = [];
    keys.forEach((k, i) => {
      if (seen.has(k.name)) at(["contents", "runtime_keyring", i, "name"], `runtime key ${k.name} is given twice`);
      seen.add(k.name);
      try {
        out.runtimeKeyring!.push(parseRuntimeKey(k.name, k.content));
      } catch (e) {
        at(["contents", "runtime_keyring", i, "content"], `runtime key ${k.name}: ${(e as Error).message}`);
      }
    });
  }
  return out;
}

/** apko builds on a base image with contents, archs and include only, and no layering; format erofs takes no layering. */
function checkCombinations(v: ImageConfigInput, at: At): void {
  if (v.contents?.baseimage) {
    const others = (
      ["entrypoint", "cmd", "stop-signal", "work-dir", "accounts", "environment", "paths", "annotations"] as const
    ).filter((k) => v[k] !== undefined && !(typeof v[k] === "object" && Object.keys(v[k]).length === 0));
    if (others.length)
      at(
        ["contents", "baseimage"],
        `with a base image only contents, archs and include may be given (as apko requires), not ${others.join(", ")}`,
      );
  }
  if (v.contents?.baseimage && v.layering && (v.layering.strategy || v.layering.budget))
    at(["layering"], "layering cannot be combined with contents.baseimage (as in apko)");
  if (v.format === "erofs" && v.layering)
    at(["layering"], "layering cannot be combined with format erofs (as in apko)");
}

/** The places apko reads as strings, where YAML wrote a number or a boolean. */
const STRING_PLACES: Array<Array<string | number>> = [
  ["cmd"],
  ["stop-signal"],
  ["work-dir"],
  ["vcs-url"],
  ["entrypoint", "command"],
  ["entrypoint", "shell-fragment"],
];

/** Put back the text as written where a string place held a number or boolean (`1.10` stays "1.10"). */
function asWritten(loaded: LoadedYaml<ImageConfigInput>): void {
  const v = loaded.value as Record<string, unknown>;
  const places = [...STRING_PLACES];
  for (const [map, path] of [
    [v.environment, ["environment"]],
    [v.annotations, ["annotations"]],
    [(v.entrypoint as { services?: unknown } | undefined)?.services, ["entrypoint", "services"]],
  ] as const)
    for (const k of Object.keys((map as object | undefined) ?? {})) places.push([...path, k]);
  for (const path of places) {
    const node = loaded.doc.getIn(path, true);
    if (!isScalar(node) || typeof node.value === "string") continue;
    const text = loaded.source(path);
    if (text === undefined) continue;
    let parent: Record<string, unknown> = v;
    for (const k of path.slice(0, -1)) parent = parent[k] as Record<string, unknown>;
    parent[path.at(-1)!] = text;
  }
}

/** Where a config's problems are placed: positions and source text of its YAML. */
export type ConfigSource = Pick<LoadedYaml<ImageConfigInput>, "locate" | "source">;

/** A config text checked against the schema, strings as written. */
export function readImageInput(file: string, text: string): LoadedYaml<ImageConfigInput> {
  const loaded = loadYaml(file, text, imageConfigSchema);
  asWritten(loaded);
  return loaded;
}

/** Parse and validate an image config text; throws ConfigError listing every problem. */
export function parseImageConfig(file: string, text: string): ImageConfig {
  const loaded = readImageInput(file, text);
  if (loaded.value.include !== undefined)
    throw new ConfigError([
      {
        file,
        ...loaded.locate(["include"]),
        path: "include",
        message: "include needs the config read from a file (kiln image …), where the included path is resolved",
      },
    ]);
  return imageConfigFrom(file, loaded.value, loaded);
}

/** Validate a (merged) config value; problems are placed with SRC. */
export function imageConfigFrom(file: string, v: ImageConfigInput, src: ConfigSource): ImageConfig {
  const problems: Problem[] = [];
  const at = (path: Array<string | number>, message: string) =>
    problems.push({
      file,
      ...src.locate(path),
      path: path.map((p, i) => (typeof p === "number" ? `[${p}]` : i ? `.${p}` : p)).join(""),
      message,
    });

  const packages = [...(v.contents?.packages ?? [])];
  if (v.entrypoint?.type === "service-bundle" && !packages.includes("s6")) packages.push("s6");
  checkPackages(packages, at);
  const services = parseServices(v, at);
  const archs = parseArchs(v, at);
  const { users, groups, runAs } = parseAccounts(v, at);
  const paths = parsePaths(v, src, at);
  const { entrypoint, cmd } = parseCommands(v, at);
  const trust = parseTrust(v, at);
  checkCombinations(v, at);
  if (problems.length) throw new ConfigError(problems);
  const environment: Record<string, string> = {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin",
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
      ...vcsAnnotations(v["vcs-url"]),
    },
    users,
    groups,
    paths,
    archs: archs.length ? [...new Set(archs)] : [hostApkArch()],
  };
  if (entrypoint) cfg.entrypoint = entrypoint;
  if (cmd) cfg.cmd = cmd;
  applyOptional(cfg, v, runAs);
  Object.assign(cfg, trust);
  if (services) cfg.services = services;
  if (v.format) cfg.format = v.format;
  if (v.contents?.baseimage) cfg.baseImage = { ...v.contents.baseimage };
  return cfg;
}
