// parseImageConfig and loadImageConfig: apko's ImageConfiguration YAML read
// into kiln's normalised ImageConfig. Every key with its default, the arch
// names and aliases, accounts and path mutations, and each kind of bad input
// as its own case, asserted as the exact file:line:col, dotted path and
// message the user sees.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isKilnError } from "@kiln/core";
import { loadImageConfig, parseImageConfig, shellWords, type ImageConfig } from "./config.js";

const FILE = "images/app.yaml";

/** Node's process.arch as apk names it, the default arch. */
const HOST = process.arch === "x64" ? "x86_64" : process.arch === "arm64" ? "aarch64" : process.arch;

const DEFAULT_ENV = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
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

  it("vcs-url wins over an annotation of the same name", () => {
    const cfg = parse("annotations: {org.opencontainers.image.source: old}\nvcs-url: https://new.example\n");
    expect(cfg.annotations).toEqual({ "org.opencontainers.image.source": "https://new.example" });
  });

  it("layering without a budget gets 10; test without expect-exit expects 0, without busybox", () => {
    const cfg = parse("layering: {strategy: origin}\ntest: {command: [/bin/true]}\n");
    expect(cfg.layering).toEqual({ strategy: "origin", budget: 10 });
    expect(cfg.test).toEqual({ command: ["/bin/true"], expectExit: 0, withBusybox: false });
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

  it("an entrypoint with only a type (apko's service-bundle) sets no entrypoint", () => {
    expect(parse("entrypoint: {type: service-bundle, services: {app: /usr/bin/app}}\n").entrypoint).toBeUndefined();
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

  it("run-as naming no configured user is refused with the users there are", () => {
    expect(problems("accounts:\n  users: [{username: app, uid: 1000}]\n  run-as: nobody\n")).toEqual([
      `3:11 accounts.run-as: run-as "nobody" is not one of the configured users (app) nor a numeric uid`,
    ]);
    expect(problems("accounts: {run-as: root}\n")).toEqual([
      `1:20 accounts.run-as: run-as "root" is not one of the configured users (none) nor a numeric uid`,
    ]);
  });

  it("uid 0 and a user defined twice are refused, each at its own line", () => {
    expect(
      problems(
        "accounts:\n  users:\n    - {username: a, uid: 0}\n    - {username: b, uid: 1}\n    - {username: b, uid: 2}\n",
      ),
    ).toEqual([
      "3:26 accounts.users[0].uid: uid 0 is refused: the image's root account comes from the base layout; run as a non-root user",
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
  it("defaults: owner 0:0, not recursive, no permissions and no source unless given", () => {
    expect(parse("paths: [{path: /var/lib/app, type: directory}]\n").paths).toEqual([
      { path: "/var/lib/app", type: "directory", uid: 0, gid: 0, recursive: false },
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
  N: 1
volumes: /data
layering: {strategy: size}
test: {command: []}
`),
    ).toEqual([
      "4:6 environment.N: expected string, got number",
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
