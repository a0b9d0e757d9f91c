// Private keys never enter git, and kiln refuses key files others can read.

import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BIN = join(ROOT, "packages/cli/dist/bin.js");

function kiln(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, ...env } });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe("key hygiene", () => {
  it("git tracks no private key", () => {
    const files = execFileSync("git", ["ls-files", "-z"], { cwd: ROOT, encoding: "utf8" }).split("\0").filter(Boolean);
    expect(files.length).toBeGreaterThan(100);
    const offenders: string[] = [];
    for (const f of files) {
      if (/\.(rsa|pem|key)$/.test(f) && !f.endsWith(".pub")) offenders.push(f);
      let text: string;
      try {
        text = readFileSync(join(ROOT, f), "latin1");
      } catch {
        continue; // listed but deleted in the work tree
      }
      // A real PEM private key: the armour line followed by base64 body lines.
      if (/-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{40,}\r?\n/.test(text))
        offenders.push(f);
    }
    expect(offenders).toEqual([]);
  });

  it("the key directory is ignored", () => {
    const r = spawnSync("git", ["check-ignore", "-q", ".kiln-keys/kiln-local.rsa"], { cwd: ROOT });
    expect(r.status).toBe(0);
  });

  it("a generated local key is 0600 in a 0700 directory, is reused, and is refused once loosened", async () => {
    const { obtainSigningKey } = (await import(
      join(ROOT, "packages/cli/dist/commands/build.js")
    )) as typeof import("../packages/cli/src/commands/build.js");
    const d = mkdtempSync(join(tmpdir(), "kiln-hyg-"));
    const out = join(d, "out");
    const first = await obtainSigningKey(undefined, out, {});
    expect(first.generated).toBe(true);
    expect(first.privatePath).toBe(join(d, ".kiln-keys", "kiln-local.rsa"));
    expect(statSync(first.privatePath).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(first.privatePath)).mode & 0o077).toBe(0);
    const again = await obtainSigningKey(undefined, out, {});
    expect(again.generated).toBe(false);
    expect(again.publicPem.equals(first.publicPem)).toBe(true);
    chmodSync(first.privatePath, 0o644);
    await expect(obtainSigningKey(undefined, out, {})).rejects.toMatchObject({
      code: "KEY_FILE",
      message: expect.stringMatching(/too open/),
    });
  });

  it.each([0o644, 0o640, 0o604, 0o660])("refuses a private key with mode %o, naming the file and the fix", (mode) => {
    const d = mkdtempSync(join(tmpdir(), "kiln-hyg-"));
    const key = join(d, "k.rsa");
    expect(kiln(["keygen", join(d, "k"), "--bits", "2048"]).status).toBe(0);
    expect(statSync(key).mode & 0o777).toBe(0o600);
    mkdirSync(join(d, "root"));
    writeFileSync(join(d, "root", "hello"), "hi\n");
    chmodSync(key, mode);
    const mk = () =>
      kiln([
        "mkpkg",
        join(d, "root"),
        "--name",
        "a",
        "--version",
        "1-r0",
        "--signing-key",
        key,
        "-o",
        join(d, "a.apk"),
      ]);
    const r = mk();
    expect(r.status).toBe(1);
    expect(r.err).toContain(key);
    expect(r.err).toMatch(/too open/);
    expect(r.err).toContain(`chmod 600 ${key}`);
    expect(r.err).not.toMatch(/internal error|\n\s+at /);
    expect(existsSync(join(d, "a.apk"))).toBe(false);
    chmodSync(key, 0o600);
    const ok = mk();
    expect(ok.status).toBe(0);
    expect(existsSync(join(d, "a.apk"))).toBe(true);
  });

  it("refuses a symlinked private key", () => {
    const d = mkdtempSync(join(tmpdir(), "kiln-hyg-"));
    const key = join(d, "k.rsa");
    expect(kiln(["keygen", join(d, "k"), "--bits", "2048"]).status).toBe(0);
    symlinkSync(key, join(d, "link.rsa"));
    mkdirSync(join(d, "root"));
    const r = kiln([
      "mkpkg",
      join(d, "root"),
      "--name",
      "a",
      "--version",
      "1-r0",
      "--signing-key",
      join(d, "link.rsa"),
      "-o",
      join(d, "a.apk"),
    ]);
    expect(r.status).toBe(1);
    expect(r.err).toMatch(/symbolic link/);
  });
});
