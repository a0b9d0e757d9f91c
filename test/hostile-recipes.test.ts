// Recipes written by an attacker, through the CLI: every route a recipe
// controls towards a host file (file:// in all its spellings, symlinks and
// hard links in the recipe's directory, the source directory, keyring
// entries, substitution variables, a file:// mirror, an http redirect,
// deb-unpack and fetch paths) must fail to reach the build's own signing key
// kept beside the recipe directory: neither its content nor its hash may
// appear in any output, log, error message, cache or package. And documents
// built to exhaust the parser or the substitution (alias bombs, deep nesting,
// exponential vars) or naming paths outside the workspace get one line and
// exit 1, never an internal error. Only kiln-native steps run here (no guest).

import { createHash } from "node:crypto";
import {
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey } from "@kiln/apk";
import { kilnAsync, type Run } from "./helpers/cli.js";

let root: string;
let recipes: string;
let keyFile: string;
let key: Buffer;
let server: Server;
let base: string;
const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const sha512 = (b: Buffer | string) => createHash("sha512").update(b).digest("hex");

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "kiln-hostile-"));
  recipes = join(root, "recipes");
  mkdirSync(recipes);
  mkdirSync(join(root, "keys"));
  mkdirSync(join(root, "mirror"));
  keyFile = join(root, "keys", "kiln-test.rsa");
  const k = await generateKey(2048);
  key = Buffer.from(k.privatePem);
  writeFileSync(keyFile, key, { mode: 0o600 });
  writeFileSync(`${keyFile}.pub`, k.publicPem);
  writeFileSync(join(recipes, "src.txt"), "an honest local source\n");
  server = createServer((req, res) => {
    const to = new URL(req.url ?? "/", "http://x").searchParams.get("to");
    res.writeHead(to ? 302 : 404, to ? { location: to } : {}).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(root, { recursive: true, force: true });
});

function recipe(name: string, body: string): string {
  const f = join(recipes, `${name}.yaml`);
  writeFileSync(
    f,
    `package:\n  name: ${name}\n  version: 1.0\n  epoch: 0\n  description: hostile\n  copyright:\n    - license: MIT\n${body}`,
  );
  return f;
}

/** A fetch step copying `uri` into the package, pinned by the key's real hash (the worst case). */
function fetchInto(uri: string, sha = sha256(key)): string {
  return `pipeline:\n  - uses: fetch\n    with:\n      uri: ${uri}\n      expected-sha256: ${sha}\n      extract: false\n      directory: \${{targets.destdir}}/usr/share/loot\n`;
}

async function build(
  file: string,
  extra: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<Run & { out: string; cache: string }> {
  const out = mkdtempSync(join(root, "out-"));
  const cache = mkdtempSync(join(root, "cache-"));
  const r = await kilnAsync(
    ["build", file, "--out", out, "--cache-dir", cache, "--signing-key", keyFile, "--no-test", ...extra],
    { env },
  );
  return { ...r, out, cache };
}

/** Every byte kiln left behind: outputs, logs, cache, packages (decompressed), as text. */
function everything(r: Run & { out: string; cache: string }): string {
  const parts = [r.stdout, r.stderr];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        const b = readFileSync(p);
        parts.push(b.toString("latin1"));
        if (n.endsWith(".apk")) parts.push(gunzipSync(b).toString("latin1"));
      }
    }
  };
  walk(r.out);
  walk(r.cache);
  return parts.join("\n");
}

function assertNoLeak(r: Run & { out: string; cache: string }, what: string): void {
  const all = everything(r);
  const line = key.toString().split("\n")[5]!; // a line of the key's base64
  for (const leak of [line, sha256(key), sha512(key)])
    expect(all.includes(leak), `${what}: the key leaked`).toBe(false);
  expect(existsSync(join(r.out, "x86_64")), `${what}: a package was written`).toBe(false);
}

function oneLine(r: Run, what: string): void {
  expect(r.status, `${what}: ${r.stderr}`).toBe(1);
  const errLines = r.stderr.split("\n").filter((l) => l.startsWith("kiln "));
  expect(errLines, `${what}: ${r.stderr}`).toHaveLength(1);
  expect(r.stderr, what).not.toMatch(/internal error|\n\s+at /);
}

describe("a recipe cannot read the signing key kept outside its directory", () => {
  it("the honest case works: a file:// source inside the recipe's directory is packaged", async () => {
    const r = await build(
      recipe("honest", fetchInto(pathToFileURL(join(recipes, "src.txt")).href, sha256("an honest local source\n"))),
    );
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(join(r.out, "x86_64"))).toContain("honest-1.0-r0.apk");
  });

  // Each route gets the recipe's name (its source directory is recipes/NAME).
  const routes: Array<[string, (name: string) => { body: string; env?: NodeJS.ProcessEnv; extra?: string[] }, RegExp]> =
    [
      [
        "file:// to the key",
        () => ({ body: fetchInto(pathToFileURL(keyFile).href) }),
        /outside the recipe's directory/,
      ],
      [
        "file:// with a wrong hash (which would print the real one)",
        () => ({ body: fetchInto(pathToFileURL(keyFile).href, "0".repeat(64)) }),
        /outside the recipe's directory/,
      ],
      [
        "dot-dot out of the recipe's directory",
        () => ({ body: fetchInto(`file://${recipes}/../keys/kiln-test.rsa`) }),
        /outside the recipe's directory/,
      ],
      [
        "percent-encoded dot-dot",
        () => ({ body: fetchInto(`file://${recipes}/%2e%2e/keys/kiln-test.rsa`) }),
        /outside the recipe's directory/,
      ],
      ["file://localhost", () => ({ body: fetchInto(`file://localhost${keyFile}`) }), /outside the recipe's directory/],
      [
        "file: with one slash, through a variable",
        () => ({ body: `vars:\n  u: "file:${keyFile}"\n` + fetchInto("${{vars.u}}") }),
        /uri must be|outside the recipe's directory/,
      ],
      [
        "file:// through a variable",
        () => ({ body: `vars:\n  u: "file://${keyFile}"\n` + fetchInto("${{vars.u}}") }),
        /outside the recipe's directory/,
      ],
      [
        "a symlink in the recipe's directory",
        () => {
          symlinkSync(keyFile, join(recipes, "link.rsa"));
          return { body: fetchInto(`file://${recipes}/link.rsa`) };
        },
        /outside the recipe's directory/,
      ],
      [
        "a hard link in the recipe's directory",
        () => {
          linkSync(keyFile, join(recipes, "hard.rsa"));
          return { body: fetchInto(`file://${recipes}/hard.rsa`) };
        },
        /hard links|private key/,
      ],
      [
        "an http redirect to file://",
        () => ({ body: fetchInto(`${base}/?to=${encodeURIComponent(pathToFileURL(keyFile).href)}`) }),
        /refusing the redirect/,
      ],
      [
        "a file:// mirror, then dot-dot out of it",
        () => ({
          body: fetchInto("mirror://local/../keys/kiln-test.rsa"),
          env: { KILN_LOCAL_MIRROR: pathToFileURL(join(root, "mirror")).href },
        }),
        /outside .*the local mirror/,
      ],
      [
        "a file:// mirror pointing at the key's directory serves no private key",
        () => ({
          body: fetchInto("mirror://keys/kiln-test.rsa"),
          env: { KILN_KEYS_MIRROR: pathToFileURL(join(root, "keys")).href },
        }),
        /private key/,
      ],
      [
        "--source-dir elsewhere does not open the key's directory",
        () => ({ body: fetchInto(pathToFileURL(keyFile).href), extra: ["--source-dir", join(root, "mirror")] }),
        /outside the recipe's directory .* or --source-dir/,
      ],
      [
        "the source directory as a symlink to the key's directory",
        (name) => {
          symlinkSync(join(root, "keys"), join(recipes, name));
          return {
            body:
              "pipeline:\n  - uses: fetch\n    with:\n      uri: file://" +
              join(recipes, "src.txt") +
              "\n      expected-sha256: " +
              sha256("an honest local source\n") +
              "\n      extract: false\n",
          };
        },
        /source directory .* outside/,
      ],
      [
        "a hard link to the key in the source directory, where the package's files are",
        (name) => {
          mkdirSync(join(recipes, name, "melange-out", name), { recursive: true });
          linkSync(keyFile, join(recipes, name, "melange-out", name, "key"));
          return {
            body:
              "pipeline:\n  - uses: fetch\n    with:\n      uri: file://" +
              join(recipes, "src.txt") +
              "\n      expected-sha256: " +
              sha256("an honest local source\n") +
              "\n      extract: false\n",
          };
        },
        /hard links/,
      ],
      [
        "a keyring entry naming the key",
        () => ({
          body:
            `environment:\n  contents:\n    keyring:\n      - ${keyFile}\n` +
            fetchInto(`file://${recipes}/src.txt`, sha256("an honest local source\n")),
        }),
        /keyring entry .*outside the recipe's directory/,
      ],
      [
        "a relative keyring entry",
        () => ({
          body:
            "environment:\n  contents:\n    keyring:\n      - ../keys/kiln-test.rsa\n" +
            fetchInto(`file://${recipes}/src.txt`, sha256("an honest local source\n")),
        }),
        /keyring entry .*outside the recipe's directory/,
      ],
      [
        "a keyring entry symlinked into the recipe's directory",
        () => {
          symlinkSync(keyFile, join(recipes, "ring.rsa.pub"));
          return {
            body:
              "environment:\n  contents:\n    keyring:\n      - ring.rsa.pub\n" +
              fetchInto(`file://${recipes}/src.txt`, sha256("an honest local source\n")),
          };
        },
        /keyring entry .*outside the recipe's directory/,
      ],
      [
        "deb-unpack of a path outside the workspace",
        () => ({ body: `pipeline:\n  - uses: deb/unpack\n    with:\n      deb: ../../../../../../../..${keyFile}\n` }),
        /deb .* is outside the workspace/,
      ],
      [
        "deb-unpack of an absolute path",
        () => ({ body: `pipeline:\n  - uses: deb/unpack\n    with:\n      deb: ${keyFile}\n` }),
        /deb .* is outside the workspace/,
      ],
    ];

  it.each(routes)("%s: refused, nothing leaks", async (what, setup, why) => {
    const name = what
      .replace(/[^a-z0-9]+/gi, "-")
      .replace(/^-|-$/g, "")
      .toLowerCase()
      .slice(0, 60)
      .replace(/-$/, "");
    const { body, env, extra } = setup(name);
    const r = await build(recipe(name, body), extra ?? [], env ?? {});
    oneLine(r, what);
    expect(r.stderr, what).toMatch(why);
    expect(r.stderr, what).toContain(`${name}.yaml`);
    assertNoLeak(r, what);
  });

  it("kiln bump does not hash a file outside the recipe's directory either", async () => {
    const f = recipe("bumped", fetchInto(pathToFileURL(keyFile).href, "ab".repeat(32)));
    const before = readFileSync(f, "utf8");
    const r = await kilnAsync(["bump", f, "2.0", "--cache-dir", mkdtempSync(join(root, "cache-"))]);
    oneLine(r, "bump");
    expect(r.stderr).toMatch(/outside the recipe's directory/);
    expect(r.stdout + r.stderr).not.toContain(sha256(key));
    expect(readFileSync(f, "utf8")).toBe(before);
  });
});

describe("hostile documents get one line and exit 1, never an internal error", () => {
  const aliasBomb = () => {
    const lines = ['  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 10; i++)
      lines.push(
        `  a${i}: &a${i} [${Array(9)
          .fill(`*a${i - 1}`)
          .join(",")}]`,
      );
    return `vars:\n${lines.join("\n")}\npipeline:\n  - runs: echo\n`;
  };
  const deep = (n: number) => `vars:\n  x: ${"{a: ".repeat(n)}1${"}".repeat(n)}\npipeline:\n  - runs: echo\n`;
  const deepBlock = (n: number) =>
    `update:\n${Array.from({ length: n }, (_, i) => `${" ".repeat(i + 1)}a:`).join("\n")} 1\npipeline:\n  - runs: echo\n`;
  const growingVars = () => {
    const v = ["  v0: xxxxxxxxxx"];
    for (let i = 1; i < 40; i++) v.push(`  v${i}: \${{vars.v${i - 1}}}\${{vars.v${i - 1}}}`);
    return `vars:\n${v.join("\n")}\npipeline:\n  - runs: echo \${{vars.v39}}\n`;
  };
  const cases: Array<[string, () => string, RegExp]> = [
    ["a billion-laughs alias bomb", aliasBomb, /:\d+:\d+: YAML aliases expand too much/],
    ["a 3,000-deep flow mapping", () => deep(3000), /:\d+:\d+: YAML nested more than 64 levels deep/],
    ["a 3,000-deep block mapping", () => deepBlock(3000), /:\d+:\d+: YAML nested more than 64 levels deep/],
    [
      "vars that double 40 times",
      growingVars,
      /:\d+:\d+: vars\.v\d+: longer than 1048576 characters once its \$\{\{ \}\} variables are substituted/,
    ],
    [
      "a fetch step with working-directory: /opt",
      () =>
        `pipeline:\n  - working-directory: /opt\n    uses: fetch\n    with:\n      uri: file://${"/tmp/x.tar.gz"}\n      expected-sha256: ${"a".repeat(64)}\n`,
      /:9:\d+: pipeline\[0\]\.working-directory: working-directory \/opt is outside the workspace/,
    ],
    [
      "a fetch directory escaping the workspace",
      () =>
        `pipeline:\n  - uses: fetch\n    with:\n      uri: https://example.invalid/x.tar.gz\n      expected-sha256: ${"a".repeat(64)}\n      directory: ../../..\n`,
      /pipeline\[0\]\.with\.directory: directory "\.\.\/\.\.\/\.\." is outside the workspace/,
    ],
  ];
  for (const [what, body, message] of cases) {
    for (const cmd of ["lint", "compile", "build"]) {
      it(`${what}: kiln ${cmd}`, async () => {
        const name = `doc-${what.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}`.slice(0, 50).replace(/-$/, "");
        const f = recipe(name, body());
        const t0 = Date.now();
        const r = cmd === "build" ? await build(f) : await kilnAsync([cmd, f]);
        expect(Date.now() - t0).toBeLessThan(20_000);
        expect(r.status, r.stderr).toBe(1);
        expect(r.stderr + r.stdout).not.toMatch(/internal error|\n\s+at /);
        const problem = (cmd === "lint" ? r.stdout : r.stderr)
          .split("\n")
          .filter((l) => l.includes(`${name}.yaml`) && !l.includes("warning:"));
        expect(problem, r.stdout + r.stderr).toHaveLength(1);
        expect(problem[0]).toMatch(message);
      });
    }
  }

  it("the same limits hold for image configs and distro.yaml", async () => {
    const dir = mkdtempSync(join(root, "docs-"));
    const img = join(dir, "image.yaml");
    const lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 10; i++)
      lines.push(
        `a${i}: &a${i} [${Array(9)
          .fill(`*a${i - 1}`)
          .join(",")}]`,
      );
    for (const [text, message] of [
      [`${lines.join("\n")}\ncontents:\n  packages: [x]\n`, /YAML aliases expand too much/],
      [`contents: ${"{a: ".repeat(3000)}1${"}".repeat(3000)}\n`, /YAML nested more than 64 levels deep/],
    ] as const) {
      writeFileSync(img, text);
      const r = await kilnAsync(["image", "show-packages", img]);
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(r.stderr).toMatch(new RegExp(`image\\.yaml:\\d+:\\d+: ${message.source}`));
      const distro = join(dir, "distro.yaml");
      writeFileSync(distro, text.replace("contents:", "name:"));
      const d = await kilnAsync(["plan", "--distro", distro]);
      expect(d.status, d.stderr).toBe(1);
      expect(d.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(d.stderr).toMatch(new RegExp(`distro\\.yaml:\\d+:\\d+: ${message.source}`));
    }
  });
});

describe("names from recipes never become paths outside their place", () => {
  it.each([
    ["a package named ../evil", "../evil", "", /package\.name: expected a package name/],
    [
      "a subpackage named x/../../y",
      "fine",
      "subpackages:\n  - name: x/../../y\n    pipeline:\n      - runs: echo\n",
      /subpackages\[0\]\.name: subpackage name "x\/\.\.\/\.\.\/y" must match/,
    ],
    [
      "a range expanding to a path",
      "fine",
      "data:\n  - name: d\n    items:\n      ../../z: a\nsubpackages:\n  - range: d\n    name: fine-${{range.key}}\n    pipeline:\n      - runs: echo\n",
      /subpackages\[0\]\.name: subpackage name "fine-\.\.\/\.\.\/z" must match/,
    ],
    ["a name too long for a file name", "n".repeat(250), "", /package\.name: .* is too long for a file name/],
  ])("%s: one error with file:line at compile time, nothing written", async (_what, name, extra, message) => {
    const f = join(recipes, `named-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(
      f,
      `package:\n  name: ${name}\n  version: 1.0\n  epoch: 0\n  description: x\n  copyright:\n    - license: MIT\npipeline:\n  - runs: echo\n${extra}`,
    );
    for (const cmd of ["lint", "build"]) {
      const r = cmd === "build" ? await build(f) : await kilnAsync([cmd, f]);
      expect(r.status, r.stderr).toBe(1);
      expect(r.stdout + r.stderr).toMatch(new RegExp(`named-\\w+\\.yaml:\\d+:\\d+: ${message.source}`));
      expect(r.stdout + r.stderr).not.toMatch(/internal error|\n\s+at /);
      if (cmd === "build") expect(readdirSync(r.out)).toEqual([]);
    }
    expect(existsSync(join(root, "evil"))).toBe(false);
    expect(existsSync(join(root, "y"))).toBe(false);
  });
});
