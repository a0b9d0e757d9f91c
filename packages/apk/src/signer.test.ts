import { generateKeyPairSync } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { verifySignature } from "./keys.js";
import { localKeyPath, resolveSigningKey, RsaSigner } from "./signer.js";

function keyFile(dir: string, name: string, mode = 0o600): { path: string; pem: string } {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
  const path = join(dir, name);
  writeFileSync(path, pem, { mode });
  chmodSync(path, mode);
  return { path, pem };
}

describe("resolveSigningKey", () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-signer-"));
  const explicit = keyFile(dir, "acme.rsa");
  const other = keyFile(dir, "other.rsa");

  it("takes an explicit path first, named after the file, and signs with it", async () => {
    const r = (await resolveSigningKey({
      path: explicit.path,
      env: { KILN_SIGNING_KEY: other.path },
      localKey: join(dir, "unused", "kiln-local.rsa"),
    }))!;
    expect(r).toMatchObject({ source: "path", privatePath: explicit.path, generated: false });
    expect(r.signer.name).toBe("acme.rsa.pub");
    expect(r.signer).toBeInstanceOf(RsaSigner);
    const data = Buffer.from("signed bytes");
    expect(verifySignature(data, r.signer.sign(data, "RSA256"), r.signer.publicKey, "RSA256")).toBe(true);
    expect(r.publicPem.toString()).toMatch(/^-----BEGIN PUBLIC KEY-----/);
  });

  it("else the variable (KILN_SIGNING_KEY by default, none when false)", async () => {
    const r = (await resolveSigningKey({ env: { KILN_SIGNING_KEY: other.path } }))!;
    expect(r).toMatchObject({ source: "variable", privatePath: other.path });
    expect(await resolveSigningKey({ env: { KILN_SIGNING_KEY: other.path }, variable: false })).toBeUndefined();
    const v = (await resolveSigningKey({ env: { MY_KEY: explicit.path }, variable: "MY_KEY" }))!;
    expect(v.privatePath).toBe(explicit.path);
  });

  it("takes the PEM from the variable only where allowed", async () => {
    const r = (await resolveSigningKey({
      env: { MY_KEY: explicit.pem },
      variable: "MY_KEY",
      pemInVariable: true,
      pemName: "kiln.rsa.pub",
    }))!;
    expect(r).toMatchObject({ source: "variable", privatePath: "$MY_KEY" });
    expect(r.signer.name).toBe("kiln.rsa.pub");
    await expect(resolveSigningKey({ env: { MY_KEY: explicit.pem }, variable: "MY_KEY" })).rejects.toMatchObject({
      code: "KEY_FILE",
    });
  });

  it("gives nothing when no key is named and no local key is allowed", async () => {
    expect(await resolveSigningKey({ env: {} })).toBeUndefined();
  });

  it("generates the local key on first use (0600 in a 0700 directory), reuses it, refuses it once group-readable", async () => {
    const d = mkdtempSync(join(tmpdir(), "kiln-signer-"));
    const local = localKeyPath(join(d, "out"));
    expect(local).toBe(join(d, ".kiln-keys", "kiln-local.rsa"));
    const first = (await resolveSigningKey({ env: {}, localKey: local }))!;
    expect(first).toMatchObject({ source: "local", privatePath: local, generated: true });
    expect(first.signer.name).toBe("kiln-local.rsa.pub");
    expect(statSync(local).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(local)).mode & 0o077).toBe(0);
    expect(readFileSync(`${local}.pub`).equals(first.publicPem)).toBe(true);
    const again = (await resolveSigningKey({ env: {}, localKey: local }))!;
    expect(again.generated).toBe(false);
    expect(again.publicPem.equals(first.publicPem)).toBe(true);
    chmodSync(local, 0o640);
    await expect(resolveSigningKey({ env: {}, localKey: local })).rejects.toMatchObject({
      code: "KEY_FILE",
      message: expect.stringMatching(/too open/),
    });
  }, 60_000);

  it("refuses an explicit key its group can read", async () => {
    const loose = keyFile(dir, "loose.rsa", 0o640);
    await expect(resolveSigningKey({ path: loose.path })).rejects.toMatchObject({ code: "KEY_FILE" });
  });
});
