// `environment.accounts.run-as` in a recipe (Wolfi writes `run-as: root`),
// honoured by a real build in the bubblewrap sandbox: the build steps run as
// the uid:gid it names, and as the build user 1000 when it is unset. The
// packaged files stay owned by root either way.

import { createReadStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPackage } from "@kiln/apk";
import { bootstrapToolchain, upstreamArgs, type Bootstrap } from "./helpers/bootstrap.js";
import { kilnAsync } from "./helpers/cli.js";

let work: string;
let boot: Bootstrap;

const recipe = (name: string, runAs: string | undefined) => `
package:
  name: ${name}
  version: 1.0.0
  epoch: 0
  description: who the build steps run as
  copyright:
    - license: MIT
environment:
  contents:
    packages:
      - busybox-links
      - base-layout
      - busybox-static
${runAs === undefined ? "" : `  accounts:\n    run-as: ${runAs}\n`}pipeline:
  - runs: |
      mkdir -p "\${{targets.destdir}}/usr/share/who"
      echo "$(id -u):$(id -g)" > "\${{targets.destdir}}/usr/share/who/ids"
`;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kiln-run-as-"));
  boot = await bootstrapToolchain();
}, 900_000);
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

async function buildAndRead(name: string, runAs: string | undefined) {
  const file = join(work, `${name}.yaml`);
  writeFileSync(file, recipe(name, runAs));
  const out = join(work, `out-${name}`);
  mkdirSync(out);
  const r = await kilnAsync(["build", file, "--out", out, "--no-test", ...upstreamArgs(boot)]);
  if (r.status !== 0) return { status: r.status, stderr: r.stderr };
  const pkg = await openPackage(createReadStream(join(out, "x86_64", `${name}-1.0.0-r0.apk`)));
  let ids: string | undefined;
  let owner: number[] | undefined;
  for await (const e of pkg.entries()) {
    if (e.path !== "usr/share/who/ids") continue;
    const chunks: Uint8Array[] = [];
    for await (const c of e.content()) chunks.push(c);
    ids = Buffer.concat(chunks).toString().trim();
    owner = [e.uid, e.gid];
  }
  await pkg.close();
  return { status: r.status, stderr: r.stderr, ids, owner };
}

describe("run-as in a recipe's environment, in a real build", () => {
  it("root runs the steps as 0:0, a uid as that uid, unset as the build user 1000:1000", async () => {
    const root = await buildAndRead("who-root", "root");
    expect(root.status, root.stderr).toBe(0);
    expect(root.ids).toBe("0:0");
    const zero = await buildAndRead("who-zero", "0");
    expect(zero.ids).toBe("0:0");
    const unset = await buildAndRead("who-default", undefined);
    expect(unset.ids).toBe("1000:1000");
    for (const r of [root, zero, unset]) expect(r.owner).toEqual([0, 0]);
  }, 600_000);
});
