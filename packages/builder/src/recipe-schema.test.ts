import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { recipeJsonSchema, recipeJsonSchemaText, recipeSchema } from "./recipe-schema.js";

describe("recipe schema", () => {
  it("recipe.schema.json is generated from the zod schema (npm run -w @kiln/builder schema)", () => {
    const committed = readFileSync(join(import.meta.dirname, "../recipe.schema.json"), "utf8");
    expect(committed, "recipe.schema.json is out of date: run `npm run -w @kiln/builder schema`").toBe(
      recipeJsonSchemaText(),
    );
  });

  it("describes the top-level keys and rejects others", () => {
    const s = recipeJsonSchema() as {
      definitions: Record<
        string,
        { properties: Record<string, unknown>; additionalProperties: boolean; required: string[] }
      >;
    };
    const root = s.definitions.Recipe!;
    expect(Object.keys(root.properties).sort()).toEqual([
      "capabilities",
      "data",
      "environment",
      "options",
      "package",
      "pipeline",
      "subpackages",
      "test",
      "update",
      "var-transforms",
      "vars",
    ]);
    expect(root.additionalProperties).toBe(false);
    expect(root.required).toEqual(["package"]);
    expect(s.definitions.PipelineStep!.additionalProperties).toBe(false);
  });

  it("keeps update blocks open inside, strict at the top", () => {
    const ok = recipeSchema.safeParse({
      package: { name: "a", version: "1" },
      update: { enabled: true, github: { identifier: "o/r", "tag-filter-prefix": "v", someday: 1 } },
    });
    expect(ok.success).toBe(true);
    const bad = recipeSchema.safeParse({ package: { name: "a", version: "1" }, update: { enabled: true, nope: 1 } });
    expect(bad.success).toBe(false);
  });
});
