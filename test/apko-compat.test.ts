// apko's ImageConfiguration keys, built for real with kiln image build from a
// repository the test makes and signs, and read back from the OCI layout:
// include, certificates (additional and providers), runtime repositories and
// keyring, accounts with run-as root, every path mutation type, annotations,
// volumes and the config's process settings. The layer is read with GNU tar.
// The configs are written here in apko's shapes; the certificates are
// self-signed test CAs made for kiln (test/fixtures/apko-compat).

import { execFileSync, spawnSync } from "node:child_process";
import { createHash, generateKeyPairSync, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kiln } from "./helpers/cli.js";
import { baseLayoutEntries, makeKey, makeRepo, type TestKey } from "./helpers/fixtures.js";

const FIXTURES = join(import.meta.dirname, "fixtures/apko-compat");
const CA_ONE = readFileSync(join(FIXTURES, "ca-one.crt"), "utf8");
const CA_TWO = readFileSync(join(FIXTURES, "ca-two.crt"), "utf8");
const CA_ONE_SHA256 = "4c468d29b7d1f361f9c912b28ff2cd01df828e92a67efc6c2309319ae6920f65";
const MIRROR_KEY = String(
  generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ type: "spki", format: "pem" }),
);
const BUNDLE_HEAD = "# the distribution's CA bundle\n";
/** The JDK's keytool makes and checks the Java truststore independently of kiln. */
const HAVE_KEYTOOL = spawnSync("keytool", ["-help"]).status === 0;
const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256.replace(/:/g, "").toLowerCase();

let work: string;
let key: TestKey;
let repo: string;

/** TEXT as a YAML block scalar under a key indented by INDENT. */
const block = (text: string, indent: string) =>
  `|\n${text
    .trimEnd()
    .split("\n")
    .map((l) => `${indent}${l}`)
    .join("\n")}\n`;

function write(name: string, text: string): string {
  const f = join(work, name);
  mkdirSync(join(f, ".."), { recursive: true });
  writeFileSync(f, text);
  return f;
}

interface Layer {
  /** path → "type mode uid/gid [-> target]" as GNU tar lists it. */
  entries: Map<string, { perms: string; owner: string; link?: string }>;
  file(path: string): string;
}

/** The single-arch image at LAYOUT: its manifest, config and (only) layer. */
function readImage(layout: string) {
  const blob = (d: string) => join(layout, "blobs/sha256", d.replace(/^sha256:/, ""));
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8"));
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), "utf8"));
  const config = JSON.parse(readFileSync(blob(manifest.config.digest), "utf8"));
  expect(manifest.layers).toHaveLength(1);
  const tarFile = blob(manifest.layers[0].digest);
  const listing = execFileSync("tar", ["--numeric-owner", "-tvzf", tarFile], { encoding: "utf8" });
  const entries: Layer["entries"] = new Map();
  for (const line of listing.trim().split("\n")) {
    const f = line.split(/\s+/);
    const path = f[5]!.replace(/\/$/, "");
    const arrow = f.indexOf("->") >= 0 ? f.indexOf("->") : f.indexOf("link");
    entries.set(path, {
      perms: f[0]!,
      owner: f[1]!,
      ...(arrow > 0
        ? {
            link: f
              .slice(arrow + 1)
              .join(" ")
              .replace(/^to /, ""),
          }
        : {}),
    });
  }
  const layer: Layer = {
    entries,
    file: (path) => execFileSync("tar", ["-xOzf", tarFile, path], { encoding: "utf8" }),
  };
  return { index, manifest, config, layer, layerFile: tarFile };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-apko-compat-"));
  key = await makeKey(work);
  repo = join(work, "repo");
  const truststore = join(work, "cacerts");
  if (HAVE_KEYTOOL) {
    writeFileSync(join(work, "ca-two.crt"), CA_TWO);
    execFileSync(
      "keytool",
      [
        ...["-importcert", "-noprompt", "-storetype", "JKS", "-keystore", truststore],
        ...["-storepass", "changeit", "-alias", "distro-ca", "-file", join(work, "ca-two.crt")],
      ],
      { stdio: "pipe" },
    );
  }
  await makeRepo(repo, key.key, [
    ...(HAVE_KEYTOOL
      ? [
          {
            name: "java-cacerts",
            entries: [{ path: "etc/ssl/certs/java/cacerts", type: "file" as const, content: { file: truststore } }],
          },
        ]
      : []),
    { name: "baselayout", entries: baseLayoutEntries() },
    {
      name: "ca-certificates-bundle",
      entries: [{ path: "etc/ssl/certs/ca-certificates.crt", type: "file", content: BUNDLE_HEAD }],
    },
    {
      name: "corp-ca",
      entries: [
        { path: "usr/local/share/ca-certificates/corp-two.crt", type: "file", content: CA_TWO },
        { path: "usr/local/share/ca-certificates/README", type: "file", content: "not a certificate\n" },
        { path: "usr/local/share/ca-certificates/broken.pem", type: "file", content: "no PEM here\n" },
      ],
      info: { provides: ["custom-ca-certificates"] },
    },
    { name: "s6", entries: [{ path: "bin/s6-svscan", type: "file", mode: 0o755, content: "#!/bin/sh\n" }] },
    {
      name: "app",
      entries: [
        { path: "usr/bin/app", type: "file", mode: 0o755, content: "#!/bin/sh\necho app\n" },
        { path: "etc/app/app.conf", type: "file", content: "listen 8080\n" },
        { path: "srv/app", type: "dir", uid: 1234, gid: 1234, mode: 0o750 },
        { path: "srv/app/data", type: "file", uid: 1234, gid: 1234, mode: 0o640, content: "data\n" },
      ],
    },
  ]);
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A base config (the one included) and the image config that includes it. */
function writeConfigs(dir: string): string {
  write(
    `${dir}/common/base.yaml`,
    `contents:
  repositories: [${repo}]
  keyring: [${key.publicPath}]
  packages: [baselayout, ca-certificates-bundle]
environment:
  LANG: C.UTF-8
  SOURCE_DATE_EPOCH: 0
annotations:
  org.opencontainers.image.vendor: kiln tests
  org.example.shared: true
accounts:
  groups: [{groupname: app, gid: 10000}]
  users: [{username: app, uid: 10000, gid: 10000}]
  run-as: app
paths:
  - {path: /var/lib/app, type: directory, uid: 10000, gid: 10000, permissions: 0o750}
volumes: [/var/lib/app]
archs: [x86_64]
`,
  );
  return write(
    `${dir}/image.yaml`,
    `include: common/base.yaml
contents:
  packages: [app, corp-ca${HAVE_KEYTOOL ? ", java-cacerts" : ""}]
  runtime_repositories: [https://mirror.invalid/os]
  runtime_keyring:
    - name: mirror.rsa.pub
      content: ${block(MIRROR_KEY, "        ")}
certificates:
  additional:
    - name: corp-one
      content: ${block(CA_ONE, "        ")}
  providers: [custom-ca-certificates]
accounts:
  users: [{username: homeless, uid: 10001, gid: null, homedir: /dev/null}]
  run-as: root
entrypoint:
  command: /usr/bin/app --serve
cmd: --port 8080
stop-signal: SIGQUIT
work-dir: /srv/app
environment:
  LANG: en_US.UTF-8
annotations:
  org.opencontainers.image.title: app
volumes: [/data]
paths:
  - {path: /data, type: directory, uid: 10000, gid: 10000, permissions: 0o700}
  - {path: /run/app.pid, type: empty-file, permissions: 0o600, uid: 10000}
  - {path: /etc/app/default.conf, type: hardlink, source: /etc/app/app.conf, permissions: 0o640, uid: 10000, gid: 10000}
  - {path: /usr/local/bin/app, type: symlink, source: /usr/bin/app}
  - {path: /srv/app, type: permissions, permissions: 0o755, recursive: true}
  - {path: /usr/bin/app, type: permissions, permissions: 0o700, uid: 0, gid: 10000}
`,
  );
}

describe("an image from apko-shaped configs", () => {
  let layout: string;
  let digest: string;
  let image: ReturnType<typeof readImage>;

  beforeAll(() => {
    const cfg = writeConfigs("one");
    layout = join(work, "one-oci");
    const r = kiln(["image", "build", cfg, layout, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    digest = JSON.parse(r.stdout).digest;
    image = readImage(layout);
  });

  it("include: the base's packages, accounts, paths and volumes under the image's own, the image's settings winning", () => {
    const world = image.layer.file("etc/apk/world");
    expect(world).toBe(`app\nbaselayout\nca-certificates-bundle\ncorp-ca\n${HAVE_KEYTOOL ? "java-cacerts\n" : ""}`);
    expect(image.layer.file("etc/passwd")).toContain("app:x:10000:10000:app:/home/app:/bin/sh");
    expect(image.layer.entries.get("var/lib/app")).toMatchObject({ perms: "drwxr-x---", owner: "10000/10000" });
    expect(image.config.config.Volumes).toEqual({ "/var/lib/app": {}, "/data": {} });
    expect(image.config.config.Env).toEqual(expect.arrayContaining(["LANG=en_US.UTF-8", "SOURCE_DATE_EPOCH=0"]));
  });

  it("accounts: run-as root becomes uid 0, resolved in the image's /etc/passwd as apko does", () => {
    expect(image.config.config.User).toBe("0");
  });

  it("accounts: homes made 0700 for their user, /dev/null left alone, locked shadow entries for every user", () => {
    expect(image.layer.entries.get("home/app")).toMatchObject({ perms: "drwx------", owner: "10000/10000" });
    expect(image.layer.file("etc/passwd")).toContain("homeless:x:10001:10001:homeless:/dev/null:/bin/sh");
    expect([...image.layer.entries.keys()].filter((p) => p.startsWith("dev"))).toEqual([]);
    expect(image.layer.file("etc/shadow")).toBe("app:!:::::::\nhomeless:!:::::::\n");
  });

  it("entrypoint, cmd, stop-signal and work-dir land in the image config", () => {
    expect(image.config.config).toMatchObject({
      Entrypoint: ["/usr/bin/app", "--serve"],
      Cmd: ["--port", "8080"],
      StopSignal: "SIGQUIT",
      WorkingDir: "/srv/app",
    });
  });

  it("annotations: both files' on the (single-arch) manifest, values as strings", () => {
    const want = {
      "org.opencontainers.image.vendor": "kiln tests",
      "org.example.shared": "true",
      "org.opencontainers.image.title": "app",
      // apko's creation-time annotation: SOURCE_DATE_EPOCH (the test runs kiln with 1700000000).
      "org.opencontainers.image.created": "2023-11-14T22:13:20Z",
    };
    expect(image.manifest.annotations).toEqual(want);
  });

  it("certificates: the config's CA and the provider package's are appended to the bundle, the config's also as its own file", () => {
    const bundle = image.layer.file("etc/ssl/certs/ca-certificates.crt");
    expect(bundle).toBe(`${BUNDLE_HEAD}${CA_ONE}\n${CA_TWO}\n`);
    // Every block of the bundle is a certificate Node can read.
    const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/g)!;
    expect(blocks.map((b) => new X509Certificate(b).subject)).toEqual(["CN=kiln test CA one", "CN=kiln test CA two"]);
    const own = `usr/local/share/ca-certificates/corp-one-${CA_ONE_SHA256}.crt`;
    expect(image.layer.file(own)).toBe(CA_ONE);
    expect(image.layer.entries.get(own)).toMatchObject({ perms: "-rw-r--r--", owner: "0/0" });
    // The integrity baseline beside the bundle, in sha256sum's format.
    const sum = createHash("sha256").update(bundle).digest("hex");
    expect(image.layer.file("etc/ssl/certs/.ca-certificates.crt.sha256")).toBe(`${sum}  ca-certificates.crt\n`);
    expect(image.layer.entries.get("etc/ssl/certs/.ca-certificates.crt.sha256")?.perms).toBe("-r--r--r--");
  });

  it.skipIf(!HAVE_KEYTOOL)(
    "certificates: added to the Java truststore too, which keytool still opens with its password",
    () => {
      const dir = mkdtempSync(join(work, "jks-"));
      execFileSync("tar", ["-xzf", image.layerFile, "-C", dir, "etc/ssl/certs/java/cacerts"]);
      const store = join(dir, "etc/ssl/certs/java/cacerts");
      const list = execFileSync(
        "keytool",
        ["-list", "-keystore", store, "-storepass", "changeit", "-storetype", "JKS"],
        {
          encoding: "utf8",
        },
      );
      const aliases = [...list.matchAll(/^([^,\s]+), .*trustedCertEntry/gm)].map((m) => m[1]);
      expect(aliases).toEqual([`corp-one-${CA_ONE_SHA256}`, "distro-ca", `pkg-${fingerprint(CA_TWO)}`]);
      const sum = createHash("sha256").update(readFileSync(store)).digest("hex");
      expect(image.layer.file("etc/ssl/certs/java/.cacerts.sha256")).toBe(`${sum}  cacerts\n`);
      // The created time of the new entries is the build's (SOURCE_DATE_EPOCH), so the bytes are reproducible.
      const verbose = execFileSync(
        "keytool",
        ["-list", "-v", "-alias", `corp-one-${CA_ONE_SHA256}`, "-keystore", store, "-storepass", "changeit"],
        {
          encoding: "utf8",
          env: { ...process.env, TZ: "UTC", LC_ALL: "C" },
        },
      );
      expect(verbose).toMatch(/Creation date: Nov 14, 2023/);
    },
  );

  it("runtime repositories and keyring are in /etc/apk of the image, and were not used to build", () => {
    expect(image.layer.file("etc/apk/repositories")).toBe(`${repo}\nhttps://mirror.invalid/os\n`);
    expect(image.layer.file("etc/apk/keys/mirror.rsa.pub")).toBe(MIRROR_KEY);
    expect(image.layer.file("etc/apk/keys/test.rsa.pub")).toBe(readFileSync(key.publicPath, "utf8"));
  });

  it("paths: directory, empty-file, hardlink, symlink and permissions, with apko's ownership rules", () => {
    const e = image.layer.entries;
    expect(e.get("data")).toMatchObject({ perms: "drwx------", owner: "10000/10000" });
    // uid set, gid not: the gid is 0.
    expect(e.get("run/app.pid")).toMatchObject({ perms: "-rw-------", owner: "10000/0" });
    // One inode with two names: the mode and owner are the link's.
    expect(e.get("etc/app/app.conf")).toMatchObject({ perms: "-rw-r-----", owner: "10000/10000" });
    expect(e.get("etc/app/default.conf")).toMatchObject({ perms: "hrw-r-----", link: "etc/app/app.conf" });
    expect(image.layer.file("etc/app/app.conf")).toBe("listen 8080\n");
    expect(e.get("usr/local/bin/app")).toMatchObject({ perms: "lrwxrwxrwx", link: "/usr/bin/app" });
    // permissions without uid/gid leave the package's owner; recursive reaches the file inside.
    expect(e.get("srv/app")).toMatchObject({ perms: "drwxr-xr-x", owner: "1234/1234" });
    expect(e.get("srv/app/data")).toMatchObject({ perms: "-rwxr-xr-x", owner: "1234/1234" });
    expect(e.get("usr/bin/app")).toMatchObject({ perms: "-rwx------", owner: "0/10000" });
  });

  it("the same configs give the same digest", () => {
    const again = join(work, "one-oci-again");
    const r = kiln(["image", "build", join(work, "one/image.yaml"), again, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).digest).toBe(digest);
  });
});

describe("a service bundle", () => {
  it("s6 is installed, the entrypoint is s6-svscan /sv, and each service is an execline run script", () => {
    const f = write(
      "bundle.yaml",
      `contents: {repositories: [${repo}], keyring: [${key.publicPath}], packages: [baselayout, app]}
entrypoint:
  type: service-bundle
  services:
    app: /usr/bin/app --serve
    tick: sleep 60
archs: [x86_64]
`,
    );
    const out = join(work, "bundle-oci");
    const r = kiln(["image", "build", f, out]);
    expect(r.status, r.stderr).toBe(0);
    const { config, layer } = readImage(out);
    expect(config.config.Entrypoint).toEqual(["/bin/s6-svscan", "/sv"]);
    expect(layer.file("etc/apk/world")).toBe("app\nbaselayout\ns6\n");
    expect(layer.entries.get("bin/s6-svscan")).toBeUndefined(); // bin is baselayout's link to usr/bin
    expect(layer.entries.get("usr/bin/s6-svscan")?.perms).toBe("-rwxr-xr-x");
    expect(layer.file("sv/app/run")).toBe("#!/bin/execlineb\n/usr/bin/app --serve\n");
    expect(layer.file("sv/tick/run")).toBe("#!/bin/execlineb\nsleep 60\n");
    expect(layer.entries.get("sv/app/run")).toMatchObject({ perms: "-rwxr-xr-x", owner: "0/0" });
  });
});

describe("include paths and refusals: one clear error, nothing written", () => {
  function fails(args: string[], expected: RegExp, out: string) {
    const r = kiln(["image", "build", ...args, out]);
    expect(r.status, r.stdout).toBe(1);
    expect(r.stderr).toMatch(expected);
    expect(r.stderr).not.toMatch(/internal error| {4}at /);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((x) => x.startsWith(out.split("/").pop()!))).toEqual([]);
  }

  it("--include-paths names where else an include is looked for", () => {
    writeConfigs("shared");
    const f = write("elsewhere/image.yaml", "include: common/base.yaml\ncontents: {packages: [app]}\n");
    fails(
      [f],
      /elsewhere\/image\.yaml:1:10: include: include "common\/base\.yaml": no such file/,
      join(work, "inc-out"),
    );
    const out = join(work, "inc-ok");
    const r = kiln(["image", "build", f, out, "--include-paths", join(work, "shared")]);
    expect(r.status, r.stderr).toBe(0);
    expect(readImage(out).layer.file("etc/apk/world")).toBe("app\nbaselayout\nca-certificates-bundle\n");
  });

  it("an include that leaves the allowed directories is refused", () => {
    const outside = mkdtempSync(join(tmpdir(), "kiln-apko-outside-"));
    try {
      writeFileSync(join(outside, "x.yaml"), "cmd: x\n");
      const f = write("escape/image.yaml", `include: ${join(outside, "x.yaml")}\n`);
      fails([f], /include: include ".*x\.yaml" resolves to .*, outside the config's directory/, join(work, "esc-out"));
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it("a user with uid 0 is refused as apko refuses it, pointing at run-as: 0", () => {
    const f = write(
      "uid0.yaml",
      `contents: {repositories: [${repo}], keyring: [${key.publicPath}], packages: [baselayout]}\naccounts:\n  users: [{username: toor, uid: 0}]\n`,
    );
    fails(
      [f],
      /uid0\.yaml:3:33: accounts\.users\[0\]\.uid: uid 0 is refused .*use `run-as: 0`/,
      join(work, "uid0-out"),
    );
  });

  it("run-as naming a user the image does not have is refused at build", () => {
    const f = write(
      "nouser.yaml",
      `contents: {repositories: [${repo}], keyring: [${key.publicPath}], packages: [baselayout]}\naccounts: {run-as: ghost}\n`,
    );
    fails(
      [f],
      /nouser\.yaml: accounts\.run-as: "ghost" is not a user of the image's \/etc\/passwd \(users: root\)/,
      join(work, "nouser-out"),
    );
  });

  it("format erofs is refused, naming what kiln does not support (contents.baseimage is built: test/baseimage.test.ts)", () => {
    const base = `contents: {repositories: [${repo}], keyring: [${key.publicPath}], packages: [baselayout]}\n`;
    const e = write("erofs.yaml", base + "format: erofs\n");
    fails([e], /format erofs \(apko's experimental EROFS layers\) is not supported by kiln/, join(work, "erofs-out"));
  });

  it("a runtime key named like a key of the build keyring is refused, not overwritten", () => {
    const f = write(
      "clash.yaml",
      `contents:\n  repositories: [${repo}]\n  keyring: [${key.publicPath}]\n  packages: [baselayout]\n  runtime_keyring:\n    - name: test.rsa.pub\n      content: ${block(MIRROR_KEY, "        ")}`,
    );
    fails(
      [f],
      /runtime_keyring test\.rsa\.pub collides with an existing \/etc\/apk\/keys\/test\.rsa\.pub/,
      join(work, "clash-out"),
    );
  });
});
