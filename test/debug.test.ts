// kiln run and kiln debug end to end: a shell-less image (busybox's sleep under
// another name, no /bin/sh) built with kiln from a signed repository, run
// detached under bubblewrap; a toolbox image built from the bootstrap
// repository's busybox started in its PID namespace sees its process and
// reads its files; the image is unchanged; bad targets are refused.

import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  cpSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPackage } from "@kiln/apk";
import { kiln } from "./helpers/cli.js";
import { KILN_BIN } from "./helpers/paths.js";
import { bootstrapToolchain, type Bootstrap } from "./helpers/bootstrap.js";
import { baseLayoutEntries, makeKey, makeRepo, type PkgSpec, type TestKey } from "./helpers/fixtures.js";

let work: string;
let key: TestKey;
let boot: Bootstrap;
let target: string;
let toolbox: string;
let state: string;
let env: NodeJS.ProcessEnv;
let runId = "";
let runPid = 0;
let targetPasswd = "";

/** usr/bin/busybox of the bootstrap repository's busybox-static package, written to DIR/busybox. */
async function staticBusybox(dir: string): Promise<string> {
  const apk = readdirSync(join(boot.repo, "x86_64")).find((n) => n.startsWith("busybox-static-"));
  if (!apk) throw new Error("the bootstrap repository has no busybox-static");
  const reader = await openPackage(createReadStream(join(boot.repo, "x86_64", apk)));
  try {
    for await (const e of reader.entries()) {
      if (e.path !== "usr/bin/busybox" || e.type !== "file") continue;
      const chunks: Buffer[] = [];
      for await (const c of e.content()) chunks.push(c);
      writeFileSync(join(dir, "busybox"), Buffer.concat(chunks), { mode: 0o755 });
      return join(dir, "busybox");
    }
  } finally {
    await reader.close();
  }
  throw new Error(`${apk} has no usr/bin/busybox`);
}

function layoutDigests(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const n of readdirSync(join(dir, rel))) {
      const r = rel ? `${rel}/${n}` : n;
      if (statSync(join(dir, r)).isDirectory()) walk(r);
      else
        out[r] = createHash("sha256")
          .update(readFileSync(join(dir, r)))
          .digest("hex");
    }
  };
  walk("");
  return out;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-debug-e2e-"));
  // The image's user (65532) runs bwrap, so it must be able to pass through to the run's root.
  chmodSync(work, 0o711);
  state = join(work, "state");
  env = { KILN_RUN_DIR: state };
  boot = await bootstrapToolchain();
  key = await makeKey(work);
  const bb = await staticBusybox(work);
  const repo = join(work, "repo");
  const pkgs: PkgSpec[] = [
    {
      name: "baselayout",
      entries: [
        ...baseLayoutEntries().filter((e) => !e.path.startsWith("etc/")),
        {
          path: "etc/passwd",
          type: "file",
          content: "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n",
        },
        { path: "etc/group", type: "file", content: "root:x:0:\nnonroot:x:65532:\n" },
        { path: "etc/app.conf", type: "file", content: "secret-of-the-target\n" },
      ],
    },
    // busybox dispatches on its name: called "sleep", it is only sleep.
    {
      name: "sleeper",
      entries: [{ path: "usr/libexec/sleeper/sleep", type: "file", mode: 0o755, content: { file: bb } }],
    },
  ];
  await makeRepo(repo, key.key, pkgs);
  // The same packages for aarch64 (never run), for a two-architecture layout.
  await makeRepo(repo, key.key, pkgs, "aarch64");
  writeFileSync(
    join(work, "target.yaml"),
    `contents:
  repositories: [${repo}]
  keyring: [${key.publicPath}]
  packages: [baselayout, sleeper]
accounts:
  users:
    - username: nonroot
      uid: 65532
      gid: 65532
  run-as: "65532"
# The user's home is 0700 and its own: the run (that uid on the host too) must be able to enter it.
work-dir: /home/nonroot
entrypoint:
  command: /usr/libexec/sleeper/sleep
cmd: "300"
archs: [x86_64]
`,
  );
  writeFileSync(
    join(work, "toolbox.yaml"),
    `contents:
  repositories: [${boot.repo}]
  keyring: [${boot.publicKey}]
  packages: [base-layout, busybox-static, busybox-links]
entrypoint:
  command: /bin/sh
archs: [x86_64]
`,
  );
  target = join(work, "target-oci");
  toolbox = join(work, "toolbox-oci");
  for (const [cfg, out] of [
    ["target.yaml", target],
    ["toolbox.yaml", toolbox],
  ] as const) {
    const r = kiln(["image", "build", join(work, cfg), out]);
    if (r.status !== 0) throw new Error(`kiln image build ${cfg}: ${r.stderr}`);
  }
}, 300_000);

afterAll(() => {
  if (runPid) {
    try {
      process.kill(runPid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("kiln run and kiln debug", () => {
  let before: Record<string, string>;

  it("runs the shell-less image detached as its numeric user and records its init", () => {
    before = layoutDigests(target);
    const r = kiln(["run", "--detach", target], { env });
    expect(r.status, r.stderr).toBe(0);
    const m = /^kiln run: ([0-9a-f]{12}) \(pid (\d+)\); debug it with: kiln debug \1$/m.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    runId = m![1]!;
    runPid = Number(m![2]);
    const rootfs = join(state, runId, "bundle/rootfs");
    targetPasswd = readFileSync(join(rootfs, "etc/passwd"), "utf8");
    expect(existsSync(join(rootfs, "usr/libexec/sleeper/sleep"))).toBe(true);
    // Shell-less: nothing at /bin/sh (bin -> usr/bin) in the image's root.
    expect(existsSync(join(rootfs, "bin/sh"))).toBe(false);
    expect(existsSync(join(rootfs, "usr/bin/sh"))).toBe(false);
    const st = JSON.parse(readFileSync(join(state, runId, "state.json"), "utf8"));
    expect(st).toMatchObject({ id: runId, pid: runPid });
  }, 120_000);

  it("kiln debug ID -- ps sees the target's sleep as the namespace's own process, running as 65532", () => {
    const r = kiln(["debug", runId, "--image", toolbox, "--", "ps", "-o", "pid,user,args"], { env });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n");
    // bwrap's init is 1 in the target's namespace; its child is the image's entrypoint.
    expect(
      lines.some((l) => /^\s*2\s+65532\s+\/usr\/libexec\/sleeper\/sleep 300$/.test(l)),
      r.stdout,
    ).toBe(true);
    expect(
      lines.some((l) => /^\s*1\s/.test(l)),
      r.stdout,
    ).toBe(true);
  }, 120_000);

  it("kiln debug PID reads the target's files at /target and finds no shell there", () => {
    const r = kiln(
      ["debug", String(runPid), "--image", toolbox, "--", "cat", "/target/etc/app.conf", "/target/etc/passwd"],
      {
        env,
      },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`secret-of-the-target\n${targetPasswd}`);
    expect(targetPasswd).toContain("nonroot:x:65532:65532:");
    const sh = kiln(["debug", runId, "--image", toolbox, "--", "sh", "-c", "test -e /target/bin/sh; echo $?"], { env });
    expect(sh.stdout.trim(), sh.stderr).toBe("1");
  }, 120_000);

  it("the target has its own network namespace, a read-only root and the image's uid on the host too", () => {
    const r = kiln(
      [
        "debug",
        runId,
        "--image",
        toolbox,
        "--",
        "sh",
        "-c",
        "readlink /proc/2/ns/net; grep ^Uid: /proc/2/status; touch /target/x",
      ],
      { env },
    );
    expect(r.status).toBe(1);
    const [net, uid] = r.stdout.trim().split("\n");
    expect(net).toMatch(/^net:\[\d+\]$/);
    expect(net).not.toBe(readlinkSync("/proc/self/ns/net"));
    expect(uid).toMatch(/^Uid:\s+65532\s+65532\s+65532\s+65532$/);
    expect(r.stderr).toMatch(/touch: \/target\/x: Read-only file system/);
    expect(existsSync(join(state, runId, "bundle/rootfs/x"))).toBe(false);
  }, 60_000);

  it("with no CMD runs the toolbox's /bin/sh, reading commands from kiln's stdin", () => {
    const r = kiln(["debug", runId, "--image", toolbox], {
      env,
      input: "ls /target/usr/libexec/sleeper\necho done $$\n",
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sleep\ndone \d+\n$/);
  }, 60_000);

  it("leaves the target image's layout byte for byte as it was", () => {
    expect(layoutDigests(target)).toEqual(before);
  });

  it("refuses a malformed id, an unknown id, a PID that is not a run's and a missing toolbox", () => {
    const cases: Array<[string[], RegExp]> = [
      [["debug", "../../etc", "--image", toolbox], /"\.\.\/\.\.\/etc" is neither a run id \(12 hex digits\) nor a PID/],
      [["debug", "0123456789ab", "--image", toolbox], /no run 0123456789ab in /],
      [
        ["debug", String(process.pid), "--image", toolbox],
        new RegExp(`process ${process.pid} is not the init of a kiln run`),
      ],
      [["debug", runId, "--image", join(work, "nope")], /--image .*nope is not a directory/],
    ];
    for (const [args, re] of cases) {
      const r = kiln(args, { env, cwd: work });
      expect(r.status, args.join(" ")).toBe(1);
      expect(r.stderr).toMatch(re);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    const none = kiln(["debug", runId], { env, cwd: work });
    expect(none.status).toBe(1);
    expect(none.stderr.trim()).toBe(
      "kiln debug: no toolbox image: give --image DIR (a busybox-based OCI layout), or build the distribution's busybox image (out/images/busybox)",
    );
  });

  it("refuses a dead PID and a state file that is not a run's", () => {
    const gone = spawnSync("true");
    expect(gone.status).toBe(0);
    const dead = "00000000dead";
    mkdirSync(join(state, dead));
    const file = join(state, dead, "state.json");
    const base = { id: dead, image: target, pid: gone.pid, startTime: "1", supervisor: gone.pid };
    writeFileSync(file, JSON.stringify(base));
    let r = kiln(["debug", dead, "--image", toolbox], { env });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`kiln debug: run ${dead}: its process ${gone.pid} has ended`);
    writeFileSync(file, JSON.stringify({ ...base, id: "111111111111", pid: 1 }));
    r = kiln(["debug", dead, "--image", toolbox], { env });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`kiln debug: ${file}: not a kiln run state (id, pid, startTime, image, supervisor)`);
    rmSync(join(state, dead), { recursive: true });
  });

  it("refuses an image or toolbox whose blob does not match its digest, starting nothing", () => {
    for (const [name, args] of [
      ["bad-target", (d: string) => ["run", "--detach", d]],
      ["bad-toolbox", (d: string) => ["debug", runId, "--image", d, "--", "true"]],
    ] as const) {
      const copy = join(work, name);
      cpSync(name === "bad-target" ? target : toolbox, copy, { recursive: true });
      const blobs = join(copy, "blobs/sha256");
      const biggest = readdirSync(blobs).sort(
        (a, b) => statSync(join(blobs, b)).size - statSync(join(blobs, a)).size,
      )[0]!;
      const bytes = readFileSync(join(blobs, biggest));
      bytes[bytes.length - 1] ^= 1;
      writeFileSync(join(blobs, biggest), bytes);
      const before = readdirSync(state).sort();
      const r = kiln(args(copy), { env });
      expect(r.status, r.stdout).toBe(1);
      expect(r.stderr.trim()).toMatch(
        new RegExp(`blob sha256:${biggest} is corrupt \\(its content hashes to sha256:[0-9a-f]{64}\\)$`),
      );
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(readdirSync(state).sort()).toEqual(before);
    }
  });

  it("refuses a recycled PID: the state's start time no longer matches", () => {
    const file = join(state, runId, "state.json");
    const saved = readFileSync(file, "utf8");
    const st = JSON.parse(saved);
    writeFileSync(file, JSON.stringify({ ...st, startTime: String(Number(st.startTime) + 1) }));
    try {
      const r = kiln(["debug", runId, "--image", toolbox, "--", "true"], { env });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(`run ${runId}: process ${runPid} is not the run's any more .* PID was reused`),
      );
    } finally {
      writeFileSync(file, saved);
    }
  });

  it("removes the run's root when its process ends; the dead run is then unknown", async () => {
    const st = JSON.parse(readFileSync(join(state, runId, "state.json"), "utf8"));
    process.kill(st.supervisor, "SIGTERM");
    for (let i = 0; i < 100 && existsSync(join(state, runId)); i++) await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(join(state, runId))).toBe(false);
    expect(existsSync(`/proc/${runPid}`)).toBe(false);
    runPid = 0;
    const r = kiln(["debug", runId, "--image", toolbox], { env });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`kiln debug: no run ${runId} in ${state} (kiln run --detach prints the id)`);
  }, 60_000);

  it("runs in the foreground with CMD, prints the id and leaves no directory behind", () => {
    const r = kiln(["run", target, "--", "/usr/libexec/sleeper/sleep", "0"], { env });
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(state).filter((n) => /^[0-9a-f]{12}$/.test(n))).toEqual([]);
  }, 60_000);
});

describe("kiln run in the foreground", () => {
  it("on SIGINT ends the run and removes its root", async () => {
    const p = spawn(process.execPath, [KILN_BIN, "run", target], { env: { ...process.env, ...env } });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += d));
    const ended = new Promise<number | null>((r) => p.on("close", (c) => r(c)));
    let id = "";
    for (let i = 0; i < 300 && !id; i++) {
      id = /kiln run: ([0-9a-f]{12}) /.exec(stderr)?.[1] ?? "";
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(id, stderr).toMatch(/^[0-9a-f]{12}$/);
    expect(existsSync(join(state, id, "bundle/rootfs/usr/libexec/sleeper/sleep"))).toBe(true);
    p.kill("SIGINT");
    expect(await ended).toBe(137);
    expect(existsSync(join(state, id))).toBe(false);
  }, 60_000);
});

describe("kiln run of a two-architecture layout", () => {
  it("unpacks and runs the host's image", () => {
    const cfg = readFileSync(join(work, "target.yaml"), "utf8").replace("archs: [x86_64]", "archs: [x86_64, aarch64]");
    writeFileSync(join(work, "multi.yaml"), cfg);
    const multi = join(work, "multi-oci");
    const b = kiln(["image", "build", join(work, "multi.yaml"), multi]);
    expect(b.status, b.stderr).toBe(0);
    const index = JSON.parse(readFileSync(join(multi, "index.json"), "utf8"));
    expect(index.manifests[0].mediaType).toBe("application/vnd.oci.image.index.v1+json");
    // Long enough for the run to find and record its init before it ends (a run that ends at once prints no id).
    const r = kiln(["run", multi, "--", "/usr/libexec/sleeper/sleep", "2"], { env });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^kiln run: [0-9a-f]{12} \(pid \d+\); debug it with: kiln debug [0-9a-f]{12}$/m);
  }, 120_000);
});

describe("kiln debug --kubernetes", () => {
  it("prints the kubectl debug command exactly", () => {
    const r = kiln(["debug", "--kubernetes", "web-0", "--target", "app", "--image", "registry.example/busybox:latest"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      "kubectl debug -it web-0 --image registry.example/busybox:latest --target app --profile=general -- sh\n",
    );
    const q = kiln([
      "debug",
      "--kubernetes",
      "web-0",
      "--namespace",
      "prod",
      "--target",
      "app",
      "--image",
      "r/bb@sha256:00",
      "--",
      "sh",
      "-c",
      "ls /proc/1/root",
    ]);
    expect(q.stdout).toBe(
      "kubectl debug -it web-0 --namespace prod --image r/bb@sha256:00 --target app --profile=general -- sh -c 'ls /proc/1/root'\n",
    );
  });

  it("prints the ephemeralContainers patch exactly", () => {
    const r = kiln(["debug", "--kubernetes", "web-0", "--target", "app", "--image", "r/bb:1", "--patch"]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      spec: {
        ephemeralContainers: [
          {
            name: "debugger-app",
            image: "r/bb:1",
            command: ["sh"],
            stdin: true,
            tty: true,
            targetContainerName: "app",
            securityContext: { capabilities: { add: ["SYS_PTRACE"] } },
          },
        ],
      },
    });
  });

  it("refuses a pod name, container or image that would not be one", () => {
    for (const [args, re] of [
      [
        ["--kubernetes", "Web_0", "--target", "app", "--image", "r/bb"],
        /--kubernetes POD "Web_0": expected a pod name/,
      ],
      [["--kubernetes", "web", "--image", "r/bb"], /--kubernetes needs --target CONTAINER/],
      [
        ["--kubernetes", "web", "--target", "app", "--image", "r/bb; rm -rf /"],
        /--image REF "r\/bb; rm -rf \/": expected/,
      ],
    ] as const) {
      const r = kiln(["debug", ...args]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(re);
    }
  });
});
