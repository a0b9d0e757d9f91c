// parseImageConfig and loadImageConfig: apko's ImageConfiguration YAML read
// into kiln's normalised ImageConfig. Every key with its default, the arch
// names and aliases, accounts and path mutations, and each kind of bad input
// as its own case, asserted as the exact file:line:col, dotted path and
// message the user sees.

import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isKilnError } from "@kiln/core";
import { parseImageConfig, shellWords, type ImageConfig } from "./config.js";
import { loadImageConfig } from "./include.js";

const FILE = "images/app.yaml";

/** Node's process.arch as apk names it, the default arch. */
const HOST = process.arch === "x64" ? "x86_64" : process.arch === "arm64" ? "aarch64" : process.arch;

const DEFAULT_ENV = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin",
  SSL_CERT_FILE: "/etc/ssl/certs/ca-certificates.crt",
};

const parse = (text: string): ImageConfig => parseImageConfig(FILE, text);

interface ProblemLike {
  file: string;
  line?: number;
  col?: number;
  path: string;
  message: string;
}

/** The error parse throws, checked to be the config error, and its problems as `line:col path: message`. */
function problems(text: string, file = FILE): string[] {
  let err: unknown;
  try {
    parseImageConfig(file, text);
  } catch (e) {
    err = e;
  }
  expect(isKilnError(err, "INVALID_CONFIG"), `expected a config error, got ${String(err)}`).toBe(true);
  const e = err as Error & { problems: ProblemLike[]; exitCode: number };
  expect(e.name).toBe("ConfigError");
  expect(e.exitCode).toBe(1);
  // The message is one file:line:col line per problem.
  expect(e.message.split("\n")).toHaveLength(e.problems.length);
  for (const p of e.problems) expect(p.file).toBe(file);
  return e.problems.map((p) => `${p.line ?? "-"}:${p.col ?? "-"} ${p.path}: ${p.message}`);
}

const minimal: ImageConfig = {
  file: FILE,
  repositories: [],
  buildRepositories: [],
  runtimeRepositories: [],
  keyring: [],
  packages: [],
  environment: DEFAULT_ENV,
  volumes: [],
  annotations: {},
  users: [],
  groups: [],
  paths: [],
  archs: [HOST],
};

describe("defaults", () => {
  it.each([
    ["an empty file", ""],
    ["an empty mapping", "{}\n"],
    ["a comment only", "# nothing yet\n"],
    ["an empty contents", "contents: {}\n"],
  ])("%s is a valid config with every default and nothing optional set", (_what, text) => {
    expect(parse(text)).toEqual(minimal);
  });

  it("every key at once, normalised", () => {
    const text = `contents:
  repositories: [https://repo.example/x, ./out]
  build_repositories: [./build-only]
  runtime_repositories: [https://runtime.example]
  keyring: [keys/a.rsa.pub, https://keys.example/b.rsa.pub]
  packages: [busybox, "ca-certificates-bundle>=2024", so:libc.so.6]
entrypoint:
  command: /usr/bin/app --flag "two words"
cmd: serve --port 8080
stop-signal: SIGTERM
work-dir: /srv
environment:
  LANG: C.UTF-8
volumes: [/data]
annotations:
  org.opencontainers.image.title: app
vcs-url: https://git.example/app
accounts:
  groups:
    - groupname: app
      gid: 1000
      members: [app]
  users:
    - username: app
      uid: 1000
      gid: 1000
      shell: /sbin/nologin
      homedir: /srv
  run-as: app
paths:
  - path: /srv
    type: directory
    uid: 1000
    gid: 1000
    permissions: 0o750
    recursive: true
archs: [amd64, arm64]
layering:
  strategy: origin
  budget: 4
os-release:
  id: kiln
  name: Kiln
  pretty-name: Kiln Linux
  version-id: "1"
  home-url: https://kiln.example
test:
  command: [/usr/bin/app, --version]
  expect: app 1.
  expect-exit: 0
  with-busybox: true
`;
    expect(parse(text)).toEqual({
      file: FILE,
      repositories: ["https://repo.example/x", "./out"],
      buildRepositories: ["./build-only"],
      runtimeRepositories: ["https://runtime.example"],
      keyring: ["keys/a.rsa.pub", "https://keys.example/b.rsa.pub"],
      packages: ["busybox", "ca-certificates-bundle>=2024", "so:libc.so.6"],
      entrypoint: ["/usr/bin/app", "--flag", "two words"],
      cmd: ["serve", "--port", "8080"],
      stopSignal: "SIGTERM",
      workDir: "/srv",
      environment: { ...DEFAULT_ENV, LANG: "C.UTF-8" },
      volumes: ["/data"],
      annotations: {
        "org.opencontainers.image.title": "app",
        "org.opencontainers.image.source": "https://git.example/app",
      },
      users: [{ username: "app", uid: 1000, gid: 1000, shell: "/sbin/nologin", homedir: "/srv" }],
      groups: [{ groupname: "app", gid: 1000, members: ["app"] }],
      runAs: "app",
      paths: [{ path: "/srv", type: "directory", uid: 1000, gid: 1000, permissions: 0o750, recursive: true }],
      archs: ["x86_64", "aarch64"],
      layering: { strategy: "origin", budget: 4 },
      osRelease: {
        id: "kiln",
        name: "Kiln",
        "pretty-name": "Kiln Linux",
        "version-id": "1",
        "home-url": "https://kiln.example",
      },
      test: { command: ["/usr/bin/app", "--version"], expect: "app 1.", expectExit: 0, withBusybox: true },
    } satisfies ImageConfig);
  });

  it("environment entries are added to PATH and SSL_CERT_FILE, and may replace them", () => {
    expect(parse("environment: {PATH: /bin, TZ: UTC}\n").environment).toEqual({
      PATH: "/bin",
      SSL_CERT_FILE: DEFAULT_ENV.SSL_CERT_FILE,
      TZ: "UTC",
    });
  });

  it("vcs-url URL@REVISION gives the source and revision annotations, as apko does", () => {
    expect(parse("vcs-url: https://git.example/app@0123abcd\n").annotations).toEqual({
      "org.opencontainers.image.source": "https://git.example/app",
      "org.opencontainers.image.revision": "0123abcd",
    });
    expect(parse("vcs-url: git@git.example:org/app\n").annotations).toEqual({
      "org.opencontainers.image.source": "git@git.example:org/app",
    });
  });

  it("vcs-url wins over an annotation of the same name", () => {
    const cfg = parse("annotations: {org.opencontainers.image.source: old}\nvcs-url: https://new.example\n");
    expect(cfg.annotations).toEqual({ "org.opencontainers.image.source": "https://new.example" });
  });

  it("layering without a budget gets 10; test without expect-exit expects 0, without busybox", () => {
    const cfg = parse("layering: {strategy: origin}\ntest: {command: [/bin/true]}\n");
    expect(cfg.layering).toEqual({ strategy: "origin", budget: 10 });
    expect(cfg.test).toEqual({ command: ["/bin/true"], expectExit: 0, withBusybox: false });
  });

  it("test.with-packages lists packages for the test only; a name that could be a path is refused at its line", () => {
    const cfg = parse("test: {command: [/.kiln-test/pkg/usr/bin/t], with-packages: [hello-cxx]}\n");
    expect(cfg.test?.withPackages).toEqual(["hello-cxx"]);
    expect(cfg.packages).toEqual([]);
    expect(problems("test:\n  command: [/bin/true]\n  with-packages: [../etc]\n")).toEqual([
      "3:19 test.with-packages[0]: a package name (a-z, 0-9, + . _ -)",
    ]);
  });

  it("os-release keeps only the keys given", () => {
    expect(parse("os-release: {id: kiln}\n").osRelease).toEqual({ id: "kiln" });
  });

  it("empty stop-signal, work-dir and run-as are left unset", () => {
    const cfg = parse(`stop-signal: ""\nwork-dir: ""\naccounts: {run-as: ""}\n`);
    expect([cfg.stopSignal, cfg.workDir, cfg.runAs]).toEqual([undefined, undefined, undefined]);
    expect(Object.keys(cfg)).not.toContain("runAs");
  });
});

describe("entrypoint and cmd", () => {
  it.each([
    ["/bin/sh", ["/bin/sh"]],
    ["  /app   -v  ", ["/app", "-v"]],
    [`/app 'single quoted' "double \\"quoted\\""`, ["/app", "single quoted", 'double "quoted"']],
    [`/app a\\ b ''`, ["/app", "a b", ""]],
    [`/app "a"'b'c`, ["/app", "abc"]],
  ])("command %j is split as a shell would: %j", (command, words) => {
    expect(parse(`entrypoint:\n  command: ${JSON.stringify(command)}\n`).entrypoint).toEqual(words);
    expect(shellWords(command)).toEqual(words);
  });

  it("shell-fragment runs under /bin/sh -c and wins over command", () => {
    const cfg = parse(`entrypoint:\n  command: /ignored\n  shell-fragment: "exec app \\"$@\\""\n`);
    expect(cfg.entrypoint).toEqual(["/bin/sh", "-c", 'exec app "$@"']);
  });

  it("a service bundle runs s6-svscan on /sv whatever the command, and adds s6 to the packages (as apko)", () => {
    const cfg = parse(
      "contents: {packages: [busybox]}\nentrypoint: {type: service-bundle, command: /ignored, services: {app: /usr/bin/app -v, db: 5432}}\n",
    );
    expect(cfg.entrypoint).toEqual(["/bin/s6-svscan", "/sv"]);
    expect(cfg.packages).toEqual(["busybox", "s6"]);
    expect(cfg.services).toEqual({ app: "/usr/bin/app -v", db: "5432" });
    expect(parse("contents: {packages: [s6]}\nentrypoint: {type: service-bundle}\n").packages).toEqual(["s6"]);
  });

  it("services without the bundle type are still written (apko writes the tree for any); a name that is a path is refused", () => {
    expect(parse("entrypoint: {command: /bin/app, services: {x: /bin/x}}\n")).toMatchObject({
      entrypoint: ["/bin/app"],
      services: { x: "/bin/x" },
    });
    expect(problems(`entrypoint: {services: {"../etc": x, ok: y, ".hidden": z}}\n`)).toEqual([
      `1:35 entrypoint.services.../etc: service name "../etc" must be a plain file name`,
      `1:56 entrypoint.services..hidden: service name ".hidden" must be a plain file name`,
    ]);
  });

  it("an unterminated quote is an error at the key", () => {
    expect(problems(`entrypoint:\n  command: "/app 'oops"\ncmd: "\\"half"\n`)).toEqual([
      "2:12 entrypoint.command: unterminated ' quote",
      `3:6 cmd: unterminated " quote`,
    ]);
  });
});

describe("architectures", () => {
  it.each([
    ["x86_64", "x86_64"],
    ["amd64", "x86_64"],
    ["aarch64", "aarch64"],
    ["arm64", "aarch64"],
    ["armv7", "armv7"],
    ["arm/v7", "armv7"],
    ["armhf", "armhf"],
    ["arm/v6", "armhf"],
    ["ppc64le", "ppc64le"],
    ["s390x", "s390x"],
    ["riscv64", "riscv64"],
    ["x86", "x86"],
    ["386", "x86"],
    ["host", HOST],
  ])("%j is apk's %j", (name, apk) => {
    expect(parse(`archs: [${JSON.stringify(name)}]\n`).archs).toEqual([apk]);
  });

  it("all is x86_64 and aarch64; duplicates are dropped in first-seen order", () => {
    expect(parse("archs: [all]\n").archs).toEqual(["x86_64", "aarch64"]);
    expect(parse("archs: [arm64, amd64, aarch64, all, x86_64]\n").archs).toEqual(["aarch64", "x86_64"]);
  });

  it("no archs (or an empty list) is the host's", () => {
    expect(parse("archs: []\n").archs).toEqual([HOST]);
  });

  // constructor, toString and __proto__ are names the alias table inherits from Object.prototype.
  it.each(["i686", "AMD64", "arm", "constructor", "toString", "__proto__"])(
    "%j is refused, listing what is accepted",
    (name) => {
      expect(problems(`contents: {packages: [busybox]}\narchs: [x86_64, ${JSON.stringify(name)}]\n`)).toEqual([
        `2:17 archs[1]: unknown architecture ${JSON.stringify(name)} (expected one of 386, x86_64, amd64, aarch64, arm64, armv7, arm/v7, armhf, arm/v6, ppc64le, s390x, riscv64, x86, host, all)`,
      ]);
    },
  );
});

describe("accounts", () => {
  it("a user's gid defaults to its uid, its shell to /bin/sh and its home to /home/NAME; a group's members to none", () => {
    const cfg = parse(
      "accounts:\n  users: [{username: nonroot, uid: 65532}]\n  groups: [{groupname: nonroot, gid: 65532}]\n",
    );
    expect(cfg.users).toEqual([
      { username: "nonroot", uid: 65532, gid: 65532, shell: "/bin/sh", homedir: "/home/nonroot" },
    ]);
    expect(cfg.groups).toEqual([{ groupname: "nonroot", gid: 65532, members: [] }]);
    expect(cfg.runAs).toBeUndefined();
  });

  it.each([
    ["65532", 65532, "65532"],
    ["a numeric uid string", `"1000"`, "1000"],
    ["uid:gid", `"1000:1000"`, "1000:1000"],
    ["a configured user", "app", "app"],
  ])("run-as %s is kept as a string", (_what, value, want) => {
    const cfg = parse(`accounts:\n  users: [{username: app, uid: 1000}]\n  run-as: ${value}\n`);
    expect(cfg.runAs).toBe(want);
  });

  it("run-as may name any user (apko resolves it in the image's /etc/passwd at build), or root's uid 0", () => {
    expect(parse("accounts: {run-as: root}\n").runAs).toBe("root");
    expect(parse("accounts: {run-as: 0}\n").runAs).toBe("0");
    expect(parse("accounts:\n  users: [{username: app, uid: 1000}]\n  run-as: nobody\n").runAs).toBe("nobody");
  });

  it("run-as with a space is refused at the key", () => {
    expect(problems(`accounts: {run-as: "a b"}\n`)).toEqual([
      `1:20 accounts.run-as: run-as "a b": expected a user name or uid[:gid], without spaces`,
    ]);
  });

  it("uid 0 and a user defined twice are refused, each at its own line", () => {
    expect(
      problems(
        "accounts:\n  users:\n    - {username: a, uid: 0}\n    - {username: b, uid: 1}\n    - {username: b, uid: 2}\n",
      ),
    ).toEqual([
      "3:26 accounts.users[0].uid: uid 0 is refused (as apko refuses it): root comes from the base layout; to run as root, use `run-as: 0`",
      "5:18 accounts.users[2].username: user b is defined twice",
    ]);
  });

  it.each([
    [
      "a user name with a space",
      "users: [{username: a b, uid: 1}]",
      "1:31 accounts.users[0].username: expected a user name",
    ],
    [
      "a negative uid",
      "users: [{username: a, uid: -1}]",
      "1:39 accounts.users[0].uid: Number must be greater than or equal to 0",
    ],
    [
      "a fractional gid",
      "users: [{username: a, uid: 1, gid: 1.5}]",
      "1:47 accounts.users[0].gid: expected integer, got float",
    ],
    ["a user without uid", "users: [{username: a}]", "1:20 accounts.users[0].uid: required: expected number"],
    ["a string uid", `users: [{username: a, uid: "1"}]`, "1:39 accounts.users[0].uid: expected number, got string"],
    [
      "an unknown user key",
      "users: [{username: a, uid: 1, home: /x}]",
      `1:42 accounts.users[0].home: unknown key "home"`,
    ],
    [
      "a group name starting with a digit",
      "groups: [{groupname: 1x, gid: 1}]",
      "1:33 accounts.groups[0].groupname: expected a group name",
    ],
    ["a group without gid", "groups: [{groupname: g}]", "1:21 accounts.groups[0].gid: required: expected number"],
  ])("%s is refused", (_what, yaml, want) => {
    expect(problems(`accounts: {${yaml}}\n`)).toEqual([want]);
  });
});

describe("paths", () => {
  it("defaults: no owner (apko's unset uid/gid), not recursive, no permissions and no source unless given", () => {
    expect(parse("paths: [{path: /var/lib/app, type: directory}]\n").paths).toEqual([
      { path: "/var/lib/app", type: "directory", recursive: false },
    ]);
    expect(parse("paths: [{path: /x, type: permissions, uid: 0, gid: null}]\n").paths).toEqual([
      { path: "/x", type: "permissions", uid: 0, recursive: false },
    ]);
  });

  it.each([
    ["0o755 (YAML 1.2 octal)", "0o755", 0o755],
    ["0755 (read as octal, as apko's users mean, not YAML 1.2's decimal 755)", "0755", 0o755],
    ["0644", "0644", 0o644],
    ["493 (decimal)", "493", 493],
    ["the string '0o700'", `"0o700"`, 0o700],
    ["the string '755'", `"755"`, 0o755],
    ["the string '0640'", `"0640"`, 0o640],
    ["the string '04755' (setuid)", `"04755"`, 0o4755],
  ])("permissions %s", (_what, value, mode) => {
    expect(parse(`paths: [{path: /x, type: permissions, permissions: ${value}}]\n`).paths[0]!.permissions).toBe(mode);
  });

  it("each type is accepted; links keep their source", () => {
    const cfg = parse(`paths:
  - {path: /a, type: directory}
  - {path: /b, type: empty-file}
  - {path: /c, type: hardlink, source: /b}
  - {path: /d, type: symlink, source: ../b}
  - {path: e/relative, type: permissions, permissions: 0o600}
`);
    expect(cfg.paths.map((p) => [p.path, p.type, p.source])).toEqual([
      ["/a", "directory", undefined],
      ["/b", "empty-file", undefined],
      ["/c", "hardlink", "/b"],
      ["/d", "symlink", "../b"],
      ["e/relative", "permissions", undefined],
    ]);
  });

  it.each([
    ["a symlink without source", "{path: /l, type: symlink}", "1:9 paths[0].source: a symlink needs source"],
    ["a hardlink without source", "{path: /l, type: hardlink}", "1:9 paths[0].source: a hardlink needs source"],
    [
      "a .. segment",
      "{path: /a/../../etc, type: directory}",
      `1:16 paths[0].path: "/a/../../etc" must not contain ".." segments`,
    ],
    ["a path that is ..", "{path: .., type: directory}", `1:16 paths[0].path: ".." must not contain ".." segments`],
    ["an empty path", `{path: "", type: directory}`, "1:16 paths[0].path: String must contain at least 1 character(s)"],
    [
      "an unknown type",
      "{path: /a, type: fifo}",
      `1:26 paths[0].type: expected one of "directory", "empty-file", "hardlink", "symlink", "permissions", got "fifo"`,
    ],
    [
      "a mode above 0o7777",
      "{path: /a, type: permissions, permissions: 0o17777}",
      "1:52 paths[0].permissions: Number must be less than or equal to 4095",
    ],
    [
      "a non-octal mode string",
      `{path: /a, type: permissions, permissions: "rwx"}`,
      "1:52 paths[0].permissions: expected an octal mode such as 0o755",
    ],
    [
      "a missing type",
      "{path: /a}",
      "1:9 paths[0].type: required: expected 'directory' | 'empty-file' | 'hardlink' | 'symlink' | 'permissions'",
    ],
  ])("%s is refused", (_what, item, want) => {
    expect(problems(`paths: [${item}]\n`)).toEqual([want]);
  });
});

describe("contents", () => {
  it("a package that is not a valid dependency is refused at its index", () => {
    expect(
      problems("contents:\n  packages:\n    - busybox\n    - 'bad name!'\n    - ok>=1\n    - x=not a version\n"),
    ).toEqual([
      expect.stringMatching(/^4:7 contents\.packages\[1\]: .+/),
      expect.stringMatching(/^6:7 contents\.packages\[3\]: .+/),
    ]);
  });

  it.each([
    ["packages as a string", "contents: {packages: busybox}", "1:22 contents.packages: expected array, got string"],
    ["a package as a number", "contents: {packages: [1]}", "1:23 contents.packages[0]: expected string, got number"],
    ["a misspelt key", "contents: {pakages: [busybox]}", `1:12 contents.pakages: unknown key "pakages"`],
    ["contents as a list", "contents: [busybox]", "1:11 contents: expected object, got array"],
  ])("%s is refused", (_what, yaml, want) => {
    expect(problems(`${yaml}\n`)).toEqual([want]);
  });
});

describe("errors: every problem at once, with file:line:col and the dotted path", () => {
  it("unknown top-level keys, each at its key", () => {
    expect(problems("contents: {packages: [busybox]}\nentrypoints: {command: /x}\nfoo: 1\n")).toEqual([
      `2:1 entrypoints: unknown key "entrypoints"`,
      `3:1 foo: unknown key "foo"`,
    ]);
  });

  it("schema problems in different places are reported together", () => {
    expect(
      problems(`contents:
  packages: [busybox]
environment:
  N: [1]
volumes: /data
layering: {strategy: size}
test: {command: []}
`),
    ).toEqual([
      "4:6 environment.N: expected string, got array",
      "5:10 volumes: expected array, got string",
      `6:22 layering.strategy: Invalid literal value, expected "origin"`,
      "7:17 test.command: Array must contain at least 1 element(s)",
    ]);
  });

  it.each([
    [
      "a layering budget of 0",
      "layering: {strategy: origin, budget: 0}",
      "1:38 layering.budget: Number must be greater than or equal to 1",
    ],
    [
      "a layering budget of 128",
      "layering: {strategy: origin, budget: 128}",
      "1:38 layering.budget: Number must be less than or equal to 127",
    ],
    ["an unknown os-release key", "os-release: {version: 1}", `1:14 os-release.version: unknown key "version"`],
    ["an unknown test key", "test: {command: [x], expect-code: 1}", `1:22 test.expect-code: unknown key "expect-code"`],
    ["a list at the top", "- busybox", "1:1 : expected object, got array"],
    ["a scalar at the top", "busybox", "1:1 : expected object, got string"],
  ])("%s", (_what, yaml, want) => {
    expect(problems(`${yaml}\n`)).toEqual([want]);
  });

  it("YAML syntax errors, and a key given twice, are reported before the schema runs", () => {
    expect(problems("contents:\n  packages: [busybox\n")).toEqual([expect.stringMatching(/^3:1 : YAML syntax: /)]);
    expect(problems("cmd: a\ncmd: b\n")).toEqual([
      expect.stringMatching(/^2:1 : YAML syntax: Map keys must be unique/),
    ]);
  });

  it("the message the user sees names the file, line, column and path", () => {
    expect(() => parseImageConfig("x/img.yaml", "archs: [mips]\n")).toThrow(
      /^x\/img\.yaml:1:9: archs\[0\]: unknown architecture "mips" \(expected one of /,
    );
  });
});

describe("loadImageConfig", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "kiln-image-config-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads the file and names it in the config and its errors", async () => {
    const file = join(dir, "ok.yaml");
    writeFileSync(file, "contents: {packages: [busybox]}\narchs: [arm64]\n");
    expect(await loadImageConfig(file)).toEqual({ ...minimal, file, packages: ["busybox"], archs: ["aarch64"] });
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "\n\narchs: [sparc]\n");
    await expect(loadImageConfig(bad)).rejects.toThrow(new RegExp(`^${bad}:3:9: archs\\[0\\]: unknown architecture`));
  });

  it("a file that cannot be read is a config error naming it, without a position", async () => {
    const missing = join(dir, "missing.yaml");
    const err = (await loadImageConfig(missing).catch((e: unknown) => e)) as Error & { problems: ProblemLike[] };
    expect(isKilnError(err, "INVALID_CONFIG")).toBe(true);
    expect(err.problems).toEqual([{ file: missing, path: "", message: "cannot read: no such file" }]);
    expect(err.message).toMatch(new RegExp(`^${missing}: cannot read: no such file`));
  });
});

// apko's keys beyond the basics: each read the way apko reads it, and each bad
// form refused at its key. The certificates are self-signed test CAs made for kiln.
const FIXTURES = join(import.meta.dirname, "../../../test/fixtures/apko-compat");
const CA_ONE = readFileSync(join(FIXTURES, "ca-one.crt"), "utf8");
const CA_TWO = readFileSync(join(FIXTURES, "ca-two.crt"), "utf8");
const CA_ONE_SHA256 = "4c468d29b7d1f361f9c912b28ff2cd01df828e92a67efc6c2309319ae6920f65";
const RSA_KEY = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ type: "spki", format: "pem" });
const EC_KEY = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey.export({
  type: "spki",
  format: "pem",
});

/** TEXT as a YAML block scalar indented under a key at INDENT. */
const block = (text: string, indent: string) =>
  `|\n${text
    .trimEnd()
    .split("\n")
    .map((l) => `${indent}${l}`)
    .join("\n")}\n`;

describe("apko's string places take numbers and booleans, as written", () => {
  it("environment, annotations, cmd, work-dir and service commands keep the YAML text", () => {
    const cfg = parse(`environment: {SOURCE_DATE_EPOCH: 0, GO_VERSION: 1.10, CGO: false, N: 0x1F}
annotations: {org.example.flag: true}
cmd: 8080
work-dir: 1.0
entrypoint: {type: service-bundle, services: {n: 12}}
`);
    expect(cfg.environment).toMatchObject({ SOURCE_DATE_EPOCH: "0", GO_VERSION: "1.10", CGO: "false", N: "0x1F" });
    expect(cfg.annotations).toEqual({ "org.example.flag": "true" });
    expect([cfg.cmd, cfg.workDir]).toEqual([["8080"], "1.0"]);
  });

  it("a config given as JSON (a recipe's environment) gets the number's string", () => {
    expect(parseImageConfig("r.json", `{"environment": {"A": 1.5, "B": true}}`).environment).toMatchObject({
      A: "1.5",
      B: "true",
    });
  });
});

describe("certificates", () => {
  it("additional certificates are parsed, re-encoded and fingerprinted; providers kept", () => {
    const cfg = parse(`certificates:
  additional:
    - name: corp-root
      content: ${block(`some comment before\n${CA_ONE}trailing text`, "        ")}
    - name: second.ca
      content: ${block(CA_TWO, "        ")}
  providers: [custom-ca-certificates]
`);
    expect(cfg.certificates?.providers).toEqual(["custom-ca-certificates"]);
    expect(cfg.certificates?.additional.map((c) => [c.name, c.pem])).toEqual([
      ["corp-root", CA_ONE],
      ["second.ca", CA_TWO],
    ]);
    expect(cfg.certificates?.additional[0]!.fingerprint).toBe(CA_ONE_SHA256);
  });

  it("no certificates key leaves certificates unset", () => {
    expect(parse("cmd: x\n").certificates).toBeUndefined();
  });

  it.each([
    ["two certificates in one entry", CA_ONE + CA_TWO, "2 PEM blocks found; exactly one certificate is allowed"],
    ["a public key", RSA_KEY, "expected a CERTIFICATE block, got PUBLIC KEY"],
    ["no PEM at all", "hello", "no PEM certificate found"],
    [
      "a block that is not a certificate",
      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
      expect.stringMatching(/^not an X\.509 certificate: /),
    ],
    [
      "a block that is not base64",
      "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
      "the CERTIFICATE block is not base64",
    ],
  ])("%s is refused at its content", (_what, content, message) => {
    const e = problems(`certificates:\n  additional:\n    - name: x\n      content: ${block(content, "        ")}`);
    expect(e).toEqual([expect.stringMatching(/^4:16 certificates\.additional\[0\]\.content: certificate x: /)]);
    expect(e[0]!.replace(/^.*certificate x: /, "")).toEqual(message);
  });

  it.each([".hidden", "a/b", "../up", ""])("the name %j is refused (it becomes a file name)", (name) => {
    expect(problems(`certificates:\n  additional:\n    - {name: ${JSON.stringify(name)}, content: x}\n`)).toEqual([
      `3:14 certificates.additional[0].name: expected a file name of letters, digits, _ - and . (not starting with .)`,
    ]);
  });
});

describe("contents.runtime_keyring", () => {
  it("RSA public keys with their file names, re-encoded", () => {
    const cfg = parse(
      `contents:\n  runtime_keyring:\n    - name: mirror.rsa.pub\n      content: ${block(String(RSA_KEY), "        ")}`,
    );
    expect(cfg.runtimeKeyring).toEqual([{ name: "mirror.rsa.pub", pem: RSA_KEY }]);
  });

  it.each([
    ["an EC key", EC_KEY, "expected an RSA public key, got ec"],
    ["a certificate", CA_ONE, "expected a PUBLIC KEY block, got CERTIFICATE"],
    ["two keys", String(RSA_KEY) + String(RSA_KEY), "2 PEM blocks found; exactly one public key is allowed"],
  ])("%s is refused at its content", (_what, content, message) => {
    expect(
      problems(
        `contents:\n  runtime_keyring:\n    - name: k.pub\n      content: ${block(String(content), "        ")}`,
      ),
    ).toEqual([`4:16 contents.runtime_keyring[0].content: runtime key k.pub: ${message}`]);
  });

  it("a name given twice and an empty content are refused", () => {
    const key = block(String(RSA_KEY), "        ");
    expect(
      problems(
        `contents:\n  runtime_keyring:\n    - name: k.pub\n      content: ${key}    - name: k.pub\n      content: ${key}    - {name: e.pub, content: ""}\n`,
      ),
    ).toEqual(["19:30 contents.runtime_keyring[2].content: expected PEM text"]);
    expect(
      problems(
        `contents:\n  runtime_keyring:\n    - name: k.pub\n      content: ${key}    - name: k.pub\n      content: ${key}`,
      ),
    ).toEqual(["11:13 contents.runtime_keyring[1].name: runtime key k.pub is given twice"]);
  });
});

describe("format, baseimage, include", () => {
  it.each([
    ["tar", "tar"],
    ["erofs", "erofs"],
  ])("format %s is kept (refused at build unless tar)", (value, want) => {
    expect(parse(`format: ${value}\n`).format).toBe(want);
  });

  it("an empty format is the default; another is refused with the choices", () => {
    expect(parse(`format: ""\n`).format).toBeUndefined();
    expect(problems("format: squashfs\n")).toEqual([`1:9 format: expected one of "", "tar", "erofs", got "squashfs"`]);
  });

  it("format erofs with layering is refused, as apko does", () => {
    expect(problems("format: erofs\nlayering: {strategy: origin}\n")).toEqual([
      "2:11 layering: layering cannot be combined with format erofs (as in apko)",
    ]);
  });

  it("a base image is read (image and apkindex); with settings apko refuses beside it, refused", () => {
    expect(parse("contents:\n  baseimage: {image: ./base, apkindex: ./idx}\n").baseImage).toEqual({
      image: "./base",
      apkindex: "./idx",
    });
    expect(problems("contents:\n  baseimage: {image: ./base}\ncmd: x\nenvironment: {A: b}\n")).toEqual([
      "2:14 contents.baseimage: with a base image only contents, archs and include may be given (as apko requires), not cmd, environment",
    ]);
    expect(problems("contents:\n  baseimage: {image: ./base}\nlayering: {strategy: origin, budget: 3}\n")).toEqual([
      "3:11 layering: layering cannot be combined with contents.baseimage (as in apko)",
    ]);
  });

  it("include in a config given as text (no file to resolve it from) is refused at the key", () => {
    expect(problems("include: base.yaml\n")).toEqual([
      "1:10 include: include needs the config read from a file (kiln image …), where the included path is resolved",
    ]);
  });
});

describe("loadImageConfig: include", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "kiln-image-include-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const f = join(dir, name);
    mkdirSync(join(f, ".."), { recursive: true });
    writeFileSync(f, text);
    return f;
  };
  const refused = async (file: string, opts = {}) => {
    const err = (await loadImageConfig(file, opts).catch((e: unknown) => e)) as Error;
    expect(isKilnError(err, "INVALID_CONFIG"), String(err)).toBe(true);
    return err.message;
  };

  it("merges as apko does: this file's settings win, lists are the included one's then this one's", async () => {
    write(
      "merge/base.yaml",
      `contents:
  repositories: [https://base.example]
  keyring: [base.rsa.pub]
  packages: [baselayout, busybox]
  runtime_repositories: [https://rt-base.example]
entrypoint: {command: /bin/base}
cmd: base-cmd
work-dir: /base
stop-signal: SIGINT
environment: {A: base, B: base}
annotations: {a: base}
accounts:
  users: [{username: base, uid: 100}]
  groups: [{groupname: base, gid: 100}]
  run-as: base
paths: [{path: /base, type: directory}]
volumes: [/base]
archs: [aarch64]
format: tar
vcs-url: https://git.example/base
`,
    );
    const top = write(
      "merge/top.yaml",
      `include: base.yaml
contents:
  repositories: [https://top.example]
  packages: [app]
cmd: top-cmd
environment: {B: top, C: top}
annotations: {b: top}
accounts:
  users: [{username: app, uid: 1000}]
paths: [{path: /top, type: empty-file}]
volumes: [/top]
`,
    );
    const cfg = await loadImageConfig(top);
    expect(cfg).toMatchObject({
      file: top,
      repositories: ["https://base.example", "https://top.example"],
      runtimeRepositories: ["https://rt-base.example"],
      keyring: ["base.rsa.pub"],
      packages: ["baselayout", "busybox", "app"],
      entrypoint: ["/bin/base"],
      cmd: ["top-cmd"],
      workDir: "/base",
      stopSignal: "SIGINT",
      environment: { A: "base", B: "top", C: "top" },
      // apko does not take vcs-url from an included file.
      annotations: { a: "base", b: "top" },
      users: [expect.objectContaining({ username: "base" }), expect.objectContaining({ username: "app" })],
      groups: [{ groupname: "base", gid: 100, members: [] }],
      runAs: "base",
      paths: [expect.objectContaining({ path: "/base" }), expect.objectContaining({ path: "/top" })],
      volumes: ["/base", "/top"],
      archs: ["aarch64"],
      format: "tar",
      includes: [join(dir, "merge/base.yaml")],
    });
  });

  it("chains: each level merged under the one including it", async () => {
    write("chain/c.yaml", "contents: {packages: [c]}\ncmd: from-c\n");
    write("chain/b.yaml", "include: c.yaml\ncontents: {packages: [b]}\n");
    const a = write("chain/a.yaml", "include: b.yaml\ncontents: {packages: [a]}\n");
    const cfg = await loadImageConfig(a);
    expect([cfg.packages, cfg.cmd]).toEqual([["c", "b", "a"], ["from-c"]]);
    expect(cfg.includes).toEqual([join(dir, "chain/b.yaml"), join(dir, "chain/c.yaml")]);
  });

  it("a path is tried beside the including file, then in the current directory (apko's rule), then the include paths", async () => {
    write("lookup/examples/base.yaml", "cmd: found\n");
    const f = write("lookup/examples/top.yaml", "include: examples/base.yaml\n");
    expect(await refused(f, { cwd: dir })).toMatch(
      /top\.yaml:1:10: include: include "examples\/base\.yaml": no such file beside .*top\.yaml, in the current directory$/,
    );
    expect((await loadImageConfig(f, { cwd: join(dir, "lookup") })).cmd).toEqual(["found"]);
    expect((await loadImageConfig(f, { cwd: dir, includePaths: ["lookup"] })).cmd).toEqual(["found"]);
  });

  it("a file outside the config's directory, the current directory and the include paths is refused, links resolved", async () => {
    const outside = mkdtempSync(join(tmpdir(), "kiln-outside-"));
    try {
      writeFileSync(join(outside, "secret.yaml"), "cmd: x\n");
      mkdirSync(join(dir, "confined"), { recursive: true });
      symlinkSync(join(outside, "secret.yaml"), join(dir, "confined/link.yaml"));
      const viaLink = write("confined/a.yaml", "include: link.yaml\n");
      const cwd = join(dir, "confined");
      expect(await refused(viaLink, { cwd })).toMatch(
        /a\.yaml:1:10: include: include "link\.yaml" resolves to .*secret\.yaml, outside the config's directory, the current directory and the include paths/,
      );
      const absolute = write("confined/b.yaml", `include: ${join(outside, "secret.yaml")}\n`);
      expect(await refused(absolute, { cwd })).toMatch(/outside the config's directory/);
      const dotdot = write("confined/c.yaml", "include: ../../" + outside.split("/").pop() + "/secret.yaml\n");
      expect(await refused(dotdot, { cwd })).toMatch(/outside the config's directory/);
      // Named as an include path, the directory is allowed.
      expect((await loadImageConfig(absolute, { cwd, includePaths: [outside] })).cmd).toEqual(["x"]);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it("a cycle is refused with the chain", async () => {
    write("cycle/x.yaml", "include: y.yaml\n");
    write("cycle/y.yaml", "include: x.yaml\n");
    expect(await refused(join(dir, "cycle/x.yaml"))).toMatch(
      /y\.yaml:1:10: include: include "x\.yaml" makes a cycle: .*x\.yaml -> .*y\.yaml -> .*x\.yaml/,
    );
    const self = write("cycle/self.yaml", "include: self.yaml\n");
    expect(await refused(self)).toMatch(/makes a cycle/);
  });

  it("chains deeper than MAX_INCLUDE_DEPTH are refused", async () => {
    for (let i = 0; i < 12; i++) write(`deep/${i}.yaml`, i < 11 ? `include: ${i + 1}.yaml\n` : "cmd: bottom\n");
    expect(await refused(join(dir, "deep/0.yaml"))).toMatch(
      /8\.yaml:1:10: include: include chains more than 8 configs deep/,
    );
    expect((await loadImageConfig(join(dir, "deep/4.yaml"))).cmd).toEqual(["bottom"]);
  });

  it("a directory, an endless device or a file over the YAML limit is refused without reading it all", async () => {
    mkdirSync(join(dir, "odd/sub"), { recursive: true });
    const d = write("odd/d.yaml", "include: sub\n");
    expect(await refused(d)).toMatch(/odd\/sub: cannot read: a directory, not a file/);
    const big = join(dir, "odd/big.yaml");
    writeFileSync(big, "");
    truncateSync(big, 64 << 20);
    const b = write("odd/b.yaml", "include: big.yaml\n");
    expect(await refused(b)).toMatch(/big\.yaml: the file is larger than 8 MiB/);
    const dev = write("odd/dev.yaml", "include: /dev/zero\n");
    // An endless device is read only up to the limit.
    expect(await refused(dev, { includePaths: ["/dev"] })).toMatch(/\/dev\/zero: the file is larger than 8 MiB/);
  });

  it("a problem in the included file is placed in that file", async () => {
    write("bad/base.yaml", "cmd: ok\narchs: [sparc]\n");
    const top = write("bad/top.yaml", "include: base.yaml\n");
    expect(await refused(top)).toMatch(/bad\/base\.yaml:2:9: archs\[0\]: unknown architecture "sparc"/);
  });

  it("a merged config that breaks a rule across files is refused (a user defined in both)", async () => {
    write("dup/base.yaml", "accounts: {users: [{username: app, uid: 1}]}\n");
    const top = write("dup/top.yaml", "include: base.yaml\naccounts: {users: [{username: app, uid: 2}]}\n");
    expect(await refused(top)).toMatch(
      /dup\/top\.yaml:\d+:\d+: accounts\.users\[1\]\.username: user app is defined twice/,
    );
  });
});
