// The distribution's os-release is written by recipes/base-layout.yaml from
// its vars; distro.yaml says what the distribution is. The two must agree, so
// that a scanner reading an image's /etc/os-release (ID, ID_LIKE, VERSION_ID)
// finds the same distribution the advisory feed is published for (its OSV
// ecosystem and purl namespace are distro.yaml's id).

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadDistro } from "./config.js";

const ROOT = join(import.meta.dirname, "../../..");

describe("the distribution's os-release", () => {
  it("base-layout's vars are distro.yaml's id, id-like, name and version; its file names ID, ID_LIKE and VERSION_ID", async () => {
    const d = await loadDistro(join(ROOT, "distro.yaml"));
    const recipe = parse(await readFile(join(ROOT, "recipes/base-layout.yaml"), "utf8")) as {
      vars: Record<string, string>;
      pipeline: Array<{ runs?: string }>;
    };
    expect(d.idLike).toBeDefined();
    expect(recipe.vars).toMatchObject({
      "distro-id": d.id,
      "distro-id-like": d.idLike,
      "distro-name": d.name,
      "distro-version": d.version,
    });
    const script = recipe.pipeline.map((s) => s.runs ?? "").join("\n");
    for (const line of [
      "ID=${{vars.distro-id}}",
      "ID_LIKE=${{vars.distro-id-like}}",
      "VERSION_ID=${{vars.distro-version}}",
    ])
      expect(script).toContain(line);
  });

  it("distro.yaml's id-like must be os-release IDs", async () => {
    const { parseDistro } = await import("./config.js");
    expect(() => parseDistro("/x/distro.yaml", "name: X\nid: x\nid-like: Wolfi Linux\n")).toThrow(
      /distro\.yaml:3:10: id-like: expected os-release IDs separated by spaces/,
    );
    expect(parseDistro("/x/distro.yaml", "name: X\nid: x\nid-like: wolfi alpine\n").idLike).toBe("wolfi alpine");
  });
});
