// What an image config adds to the image's trust: extra CA certificates
// (apko's `certificates`: into every CA bundle the packages installed, and as
// a file of its own under usr/local/share/ca-certificates), the certificates
// of packages named by `certificates.providers`, and `contents.runtime_keyring`
// (apk public keys for runtime `apk add`, written to /etc/apk/keys after the
// build). Every PEM is parsed and re-encoded, so what lands in the image is
// canonical whatever text surrounded it in the config.

import { createHash, createPublicKey, X509Certificate } from "node:crypto";
import { posix } from "node:path";
import { JksError, readKeyStore, setTrustedCertificate, writeKeyStore } from "./jks.js";
import type { ImageRoot } from "./root.js";
import { InstallError } from "./root.js";

/** A certificate as installed: its canonical PEM and the SHA-256 of its DER, hex. */
export interface TrustCertificate {
  name: string;
  pem: string;
  fingerprint: string;
}

/** An apk public key for runtime use: canonical PEM under its file name. */
export interface RuntimeKey {
  name: string;
  pem: string;
}

/** Where update-ca-certificates looks for local certificates; apko writes config certificates here too. */
export const LOCAL_CA_DIR = "usr/local/share/ca-certificates";

/** The CA bundles apko appends to, when a package installed them. */
export const CA_BUNDLES = [
  "etc/ssl/certs/ca-certificates.crt",
  "var/lib/ecs/deps/execute-command/certs/tls-ca-bundle.pem",
  "kaniko/ssl/certs/ca-certificates.crt",
];

/** The Java truststores apko adds certificates to and checksums. */
export const JAVA_TRUSTSTORES = ["etc/ssl/certs/java/cacerts"];

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/** The PEM blocks of TEXT as type and DER bytes; text outside blocks is ignored (as PEM readers do). */
function pemBlocks(text: string): Array<{ type: string; der: Buffer }> {
  const out: Array<{ type: string; der: Buffer }> = [];
  for (const m of text.matchAll(BLOCK)) {
    const body = m[2]!.replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new Error(`the ${m[1]} block is not base64`);
    out.push({ type: m[1]!, der: Buffer.from(body, "base64") });
  }
  return out;
}

/** One PEM block of TYPE as text: base64 in lines of 64. */
function encodePem(type: string, der: Buffer): string {
  const b64 = der.toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${type}-----\n${lines.join("\n")}\n-----END ${type}-----\n`;
}

/** Exactly one X.509 certificate in PEM; throws naming what is wrong. */
export function parseCertificate(name: string, text: string): TrustCertificate {
  const blocks = pemBlocks(text);
  if (blocks.length === 0) throw new Error("no PEM certificate found");
  if (blocks.length > 1) throw new Error(`${blocks.length} PEM blocks found; exactly one certificate is allowed`);
  const { type, der } = blocks[0]!;
  if (type !== "CERTIFICATE") throw new Error(`expected a CERTIFICATE block, got ${type}`);
  try {
    new X509Certificate(der);
  } catch (e) {
    throw new Error(`not an X.509 certificate: ${(e as Error).message}`);
  }
  return { name, pem: encodePem(type, der), fingerprint: createHash("sha256").update(der).digest("hex") };
}

/** Exactly one RSA public key in PEM (what apk verifies with); throws naming what is wrong. */
export function parseRuntimeKey(name: string, text: string): RuntimeKey {
  const blocks = pemBlocks(text);
  if (blocks.length === 0) throw new Error("no PEM public key found");
  if (blocks.length > 1) throw new Error(`${blocks.length} PEM blocks found; exactly one public key is allowed`);
  const { type, der } = blocks[0]!;
  if (type !== "PUBLIC KEY") throw new Error(`expected a PUBLIC KEY block, got ${type}`);
  let kind: string | undefined;
  try {
    kind = createPublicKey({ key: der, format: "der", type: "spki" }).asymmetricKeyType;
  } catch (e) {
    throw new Error(`not a public key: ${(e as Error).message}`);
  }
  if (kind !== "rsa") throw new Error(`expected an RSA public key, got ${kind ?? "an unknown kind"}`);
  return { name, pem: encodePem(type, der) };
}

/** The certificate files under LOCAL_CA_DIR installed by packages providing one of PROVIDERS, sorted by path. */
function providedCertificates(root: ImageRoot, providers: string[]): string[] {
  const owners = new Set(
    root.installed
      .filter((p) =>
        [p.record.name, ...p.record.provides.map((x) => x.replace(/[<>=~].*$/, ""))].some((n) => providers.includes(n)),
      )
      .map((p) => p.record.name),
  );
  return root
    .sorted(
      (n) =>
        n.type === "file" &&
        n.owner !== undefined &&
        owners.has(n.owner) &&
        n.path.startsWith(`${LOCAL_CA_DIR}/`) &&
        [".crt", ".pem"].includes(posix.extname(n.path)),
    )
    .map((n) => n.path);
}

/**
 * apko's certificate step: each configured certificate written to
 * LOCAL_CA_DIR/NAME-FINGERPRINT.crt, then it and each provider package's
 * certificate (files that do not hold exactly one certificate are skipped)
 * appended to every CA bundle present. Returns how many were added.
 */
export async function applyCertificates(
  root: ImageRoot,
  certs: { additional: TrustCertificate[]; providers: string[] },
  where: string,
  epoch: number,
): Promise<number> {
  const all: Array<TrustCertificate & { alias: string }> = [];
  for (const c of certs.additional) {
    await root.writeFile(`${LOCAL_CA_DIR}/${c.name}-${c.fingerprint}.crt`, c.pem, { mode: 0o644, uid: 0, gid: 0 });
    all.push({ ...c, alias: `${c.name}-${c.fingerprint}` });
  }
  for (const path of providedCertificates(root, certs.providers)) {
    try {
      const c = parseCertificate(posix.basename(path), (await root.readText(path)) ?? "");
      all.push({ ...c, alias: `pkg-${c.fingerprint}` });
    } catch {
      // apko skips a provider's file that is not exactly one certificate.
    }
  }
  if (!all.length) return 0;
  for (const bundle of CA_BUNDLES) {
    // A bundle that is a link is appended to where it points, inside the root.
    const canon = root.resolve(bundle, true);
    const node = root.nodes.get(canon);
    if (!node) continue;
    if (node.type !== "file")
      throw new InstallError(`${where}: the CA bundle /${bundle} is a ${node.type}, not a file`, "CONFLICT");
    const text = (await root.readText(canon)) ?? "";
    await root.writeFile(canon, text + all.map((c) => `${c.pem}\n`).join(""));
  }
  for (const store of JAVA_TRUSTSTORES) await addToTruststore(root, store, all, where, epoch);
  return all.length;
}

/** The DER bytes of a canonical one-block PEM. */
function derOf(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");
}

/** apko also adds the certificates to the Java truststore (JKS, password changeit) when the image has one. */
async function addToTruststore(
  root: ImageRoot,
  store: string,
  certs: Array<{ alias: string; pem: string }>,
  where: string,
  epoch: number,
): Promise<void> {
  const canon = root.resolve(store, true);
  const node = root.nodes.get(canon);
  if (!node) return;
  if (node.type !== "file" || !node.blob)
    throw new InstallError(`${where}: the Java truststore /${store} is a ${node.type}, not a file`, "CONFLICT");
  let ks;
  try {
    ks = readKeyStore(await root.readBlob(node.blob));
  } catch (e) {
    if (e instanceof JksError)
      throw new InstallError(
        `${where}: cannot add certificates to the Java truststore /${store}: ${e.message}`,
        "BAD_PACKAGE",
      );
    throw e;
  }
  for (const c of certs) setTrustedCertificate(ks, c.alias, derOf(c.pem), epoch);
  await root.writeFile(canon, writeKeyStore(ks));
}

/** contents.runtime_keyring into etc/apk/keys, sorted by name; a name a package or the keyring already placed is refused. */
export async function applyRuntimeKeyring(root: ImageRoot, keys: RuntimeKey[], where: string): Promise<void> {
  for (const k of [...keys].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const path = `etc/apk/keys/${k.name}`;
    if (root.nodes.has(root.resolve(path, false)))
      throw new InstallError(`${where}: runtime_keyring ${k.name} collides with an existing /${path}`, "CONFLICT");
    await root.writeFile(path, k.pem, { mode: 0o644, uid: 0, gid: 0 });
  }
}

/**
 * apko's integrity baseline: beside each CA bundle and Java truststore the
 * image has, a read-only `.NAME.sha256` in sha256sum's format, so later
 * tooling can check they were not changed after the build.
 */
export async function writeBundleChecksums(root: ImageRoot): Promise<void> {
  for (const store of [...CA_BUNDLES, ...JAVA_TRUSTSTORES]) {
    const canon = root.resolve(store, true);
    const node = root.nodes.get(canon);
    if (node?.type !== "file" || !node.blob) continue;
    const sum = createHash("sha256");
    for await (const c of root.blobStream(node.blob)) sum.update(c);
    const line = `${sum.digest("hex")}  ${posix.basename(store)}\n`;
    await root.writeFile(`${posix.dirname(store)}/.${posix.basename(store)}.sha256`, line, {
      mode: 0o444,
      uid: 0,
      gid: 0,
    });
  }
}
