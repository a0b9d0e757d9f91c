// The host side of a build against a hostile workspace: a guest step can
// leave symlinks anywhere in /home/build, and kiln's own steps (fetch,
// deb-unpack, the SBOM write, copying the source directory, reading keys)
// must neither read nor write through them. The workspaces here are set up
// by hand exactly as such a step would leave them.

import { execFileSync } from "node:child_process";
import { createHash, generateKeyPairSync } from "node:crypto";
import {
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KilnError } from "@kiln/core";
import type { CompiledStep } from "./compile.js";
import { emitPackage } from "./emit.js";
import { ensureDirUnder, fileUnder } from "./host-files.js";
import { BuildLog } from "./log-capture.js";
import { copySourceDir, keyringKeys, runNativeStep } from "./native-steps.js";

let work: string;
let outside: string;
let secret: string;
let log: BuildLog;
const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "kiln-native-"));
  outside = join(work, "outside");
  mkdirSync(outside);
  secret = join(outside, "secret.txt");
  writeFileSync(secret, "host secret\n");
  log = new BuildLog(join(work, "log"));
});
afterAll(async () => {
  await log.close();
  rmSync(work, { recursive: true, force: true });
});

function workspace(): string {
  const ws = mkdtempSync(join(work, "ws-"));
  mkdirSync(join(ws, "melange-out", "p"), { recursive: true });
  return ws;
}

const step = (native: "fetch" | "deb-unpack", w: Record<string, string>, wd = "/home/build"): CompiledStep => ({
  name: native,
  origin: "pipeline[0]",
  runs: "",
  workingDirectory: wd,
  environment: {},
  native,
  with: w,
});

describe("the workspace after a guest step planted symlinks", () => {
  it("ensureDirUnder and fileUnder never follow a link out", async () => {
    const ws = workspace();
    symlinkSync(outside, join(ws, "out-link"));
    await expect(ensureDirUnder(ws, "out-link/sub", "x")).rejects.toThrow(/is a symlink/);
    expect(existsSync(join(outside, "sub"))).toBe(false);
    await expect(ensureDirUnder(ws, "../escape", "x")).rejects.toThrow(/outside the workspace/);
    symlinkSync(secret, join(ws, "file-link"));
    await expect(fileUnder(ws, "file-link", "x")).rejects.toThrow(/leads it out of the workspace/);
    await expect(fileUnder(ws, "out-link/secret.txt", "x")).rejects.toThrow(/leads it out of the workspace/);
    await expect(ensureDirUnder(ws, "a/b/c", "x")).resolves.toBe(join(ws, "a/b/c"));
  });

  it("fetch does not write through a planted directory link or file link", async () => {
    const src = join(work, "recipes");
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, "data.txt"), "fetched\n");
    const ctx = (ws: string) => ({
      file: "r.yaml",
      workspace: ws,
      fileRoots: [{ dir: src, what: "the recipe's directory" }],
      cacheDir: join(work, "cache"),
      log,
    });
    const uri = `file://${join(src, "data.txt")}`;
    // directory: a symlink out of the workspace
    const ws1 = workspace();
    symlinkSync(outside, join(ws1, "dest"));
    await expect(
      runNativeStep(
        step("fetch", { uri, "expected-sha256": sha256("fetched\n"), extract: "false", directory: "dest" }),
        ctx(ws1),
      ),
    ).rejects.toThrow(/r\.yaml: pipeline\[0\]: .*dest in the workspace: it is a symlink/);
    expect(readdirSync(outside)).toEqual(["secret.txt"]);
    // the target file name: a symlink to a host file is replaced, not written through
    const ws2 = workspace();
    symlinkSync(secret, join(ws2, "data.txt"));
    await runNativeStep(
      step("fetch", { uri, "expected-sha256": sha256("fetched\n"), extract: "false", directory: "." }),
      ctx(ws2),
    );
    expect(readFileSync(secret, "utf8")).toBe("host secret\n");
    expect(lstatSync(join(ws2, "data.txt")).isFile()).toBe(true);
    expect(readFileSync(join(ws2, "data.txt"), "utf8")).toBe("fetched\n");
    // a working directory that is a link out
    const ws3 = workspace();
    symlinkSync(outside, join(ws3, "wd"));
    await expect(
      runNativeStep(
        step(
          "fetch",
          { uri, "expected-sha256": sha256("fetched\n"), extract: "false", directory: "." },
          "/home/build/wd",
        ),
        ctx(ws3),
      ),
    ).rejects.toThrow(/is a symlink/);
    // paths outside the workspace are refused outright
    await expect(
      runNativeStep(
        step("fetch", { uri, "expected-sha256": sha256("fetched\n"), extract: "false" }, "/opt"),
        ctx(workspace()),
      ),
    ).rejects.toThrow(/r\.yaml: pipeline\[0\]: working-directory: \/opt is outside the workspace/);
    await expect(
      runNativeStep(
        step("fetch", { uri, "expected-sha256": sha256("fetched\n"), directory: "../../.." }),
        ctx(workspace()),
      ),
    ).rejects.toThrow(/directory: \.\.\/\.\.\/\.\. is outside the workspace/);
  });

  it("deb-unpack does not read a .deb through a link out of the workspace", async () => {
    const ws = workspace();
    const deb = join(outside, "host.deb");
    execFileSync("sh", ["-c", `cd ${outside} && printf '2.0\\n' > debian-binary && ar rc host.deb debian-binary`]);
    symlinkSync(deb, join(ws, "pkg.deb"));
    const ctx = { file: "r.yaml", workspace: ws, fileRoots: [], cacheDir: join(work, "cache"), log };
    await expect(
      runNativeStep(step("deb-unpack", { deb: "pkg.deb", directory: "/home/build/melange-out/p" }), ctx),
    ).rejects.toThrow(/pkg\.deb: a symlink leads it out of the workspace/);
    await expect(
      runNativeStep(step("deb-unpack", { deb: deb, directory: "/home/build/melange-out/p" }), ctx),
    ).rejects.toThrow(/is outside the workspace/);
    await expect(
      runNativeStep(step("deb-unpack", { deb: "../../../../../../../.." + deb, directory: "." }), ctx),
    ).rejects.toThrow(/is outside the workspace/);
  });

  it("deb-unpack refuses an exclude that is not a path inside the package, before unpacking anything", async () => {
    const ws = workspace();
    execFileSync("sh", ["-c", `cd ${ws} && printf '2.0\\n' > debian-binary && ar rc pkg.deb debian-binary`]);
    const ctx = { file: "r.yaml", workspace: ws, fileRoots: [], cacheDir: join(work, "cache"), log };
    for (const bad of ["../etc/passwd", "usr/../../x", "usr//bin", "."])
      await expect(
        runNativeStep(step("deb-unpack", { deb: "pkg.deb", directory: "out", exclude: `usr/bin/ok ${bad}` }), ctx),
      ).rejects.toThrow(/exclude: expected paths inside the package such as usr\/bin\/tool, got/);
    expect(existsSync(join(ws, "out"))).toBe(false);
  });

  it("the SBOM is not written through a link the guest left in the package's directory", async () => {
    const ws = workspace();
    const destdir = join(ws, "melange-out", "p");
    symlinkSync(outside, join(destdir, "var"));
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const before = readdirSync(outside).sort();
    const spec = {
      name: "p",
      version: "1.0-r0",
      arch: "x86_64",
      origin: "p",
      runtime: [],
      provides: [],
      replaces: [],
      options: {},
      scripts: {},
      triggers: [],
      controlFiles: {},
      sources: [],
    };
    await expect(
      emitPackage(spec, destdir, join(work, "p.apk"), {
        signingKeys: [{ name: "k.rsa.pub", privateKey, publicKey }],
        sourceDateEpoch: 0,
      }),
    ).rejects.toThrow(/var in the workspace: it is a symlink/);
    expect(readdirSync(outside).sort()).toEqual(before);
  });
});

describe("the source directory and keyring entries", () => {
  it("copies the source directory with symlinks as written; refuses one that leads out, hard links and private keys", async () => {
    const recipes = mkdtempSync(join(work, "recipes-"));
    const src = join(recipes, "pkg");
    mkdirSync(join(src, "sub"), { recursive: true });
    writeFileSync(join(src, "fix.patch"), "--- a\n+++ b\n");
    symlinkSync(secret, join(src, "sub", "link"));
    const roots = [{ dir: recipes, what: "the recipe's directory" }];
    const ws = workspace();
    expect(await copySourceDir(src, ws, roots, "r.yaml")).toBe(true);
    expect(readFileSync(join(ws, "fix.patch"), "utf8")).toBe("--- a\n+++ b\n");
    expect(lstatSync(join(ws, "sub", "link")).isSymbolicLink()).toBe(true);
    // a source directory that is a link out of the recipe's directory
    symlinkSync(outside, join(recipes, "evil"));
    await expect(copySourceDir(join(recipes, "evil"), workspace(), roots, "r.yaml")).rejects.toThrow(
      /r\.yaml: the source directory .* outside the recipe's directory/,
    );
    // a hard link to a host file
    const hard = join(recipes, "hard");
    mkdirSync(hard);
    linkSync(secret, join(hard, "h"));
    await expect(copySourceDir(hard, workspace(), roots, "r.yaml")).rejects.toThrow(/2 hard links/);
    // a private key
    const keyed = join(recipes, "keyed");
    mkdirSync(keyed);
    writeFileSync(
      join(keyed, "k.rsa"),
      generateKeyPairSync("rsa", { modulusLength: 1024 })
        .privateKey.export({ type: "pkcs8", format: "pem" })
        .toString(),
    );
    await expect(copySourceDir(keyed, workspace(), roots, "r.yaml")).rejects.toThrow(/holds a private key/);
    // no source directory at all is fine
    expect(await copySourceDir(join(recipes, "missing"), workspace(), roots, "r.yaml")).toBe(false);
  });

  it("a guest trusts public halves only, and the recipe's own entries come from its directory", async () => {
    const recipes = mkdtempSync(join(work, "ring-"));
    const pair = generateKeyPairSync("rsa", { modulusLength: 1024 });
    const pub = pair.publicKey.export({ type: "spki", format: "pem" }).toString();
    const priv = pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    writeFileSync(join(recipes, "ok.rsa.pub"), pub);
    const trustedPriv = join(outside, "trusted-but-private.rsa");
    writeFileSync(trustedPriv, priv);
    const src = {
      trusted: new Set([trustedPriv]),
      roots: [{ dir: recipes, what: "the recipe's directory" }],
      baseDir: recipes,
      subject: "r.yaml",
    };
    const keys = await keyringKeys(["ok.rsa.pub", trustedPriv], src);
    expect(keys.map((k) => k.pem.toString())).toEqual([pub, pub]);
    for (const k of keys) expect(k.pem.toString()).not.toContain("PRIVATE");
    await expect(keyringKeys([secret], src)).rejects.toThrow(/r\.yaml: keyring entry .*outside the recipe's directory/);
    writeFileSync(join(recipes, "mine.rsa"), priv);
    await expect(keyringKeys(["mine.rsa"], src)).rejects.toThrow(/holds a private key/);
    await expect(keyringKeys(["../outside/secret.txt"], src)).rejects.toBeInstanceOf(KilnError);
  });
});

describe("fetch's retry-limit", () => {
  it("is the number of attempts in all (melange's wget --tries), bounded and checked", async () => {
    const { createServer } = await import("node:http");
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.writeHead(503).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const ctx = { file: "r.yaml", workspace: workspace(), fileRoots: [], cacheDir: join(work, "cache-retry"), log };
    const fetch = (limit: string) =>
      runNativeStep(
        step("fetch", {
          uri: `http://127.0.0.1:${port}/src.tar.gz`,
          "expected-sha256": sha256("never served\n"),
          "retry-limit": limit,
        }),
        ctx,
      );
    try {
      await expect(fetch("2")).rejects.toThrow(/failed after 2 attempts: HTTP 503/);
      expect(requests).toBe(2);
      requests = 0;
      await expect(fetch("1")).rejects.toThrow(/failed after 1 attempts: HTTP 503/);
      expect(requests).toBe(1);
      requests = 0;
      for (const bad of ["0", "21", "three"])
        await expect(fetch(bad), bad).rejects.toThrow(
          `r.yaml: pipeline[0]: retry-limit must be a whole number from 1 to 20, got "${bad}"`,
        );
      expect(requests).toBe(0);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
