// The recipe format (melange's YAML), as a zod schema: the single source of
// truth for its shape. Types come from it, and recipe.schema.json is generated
// from it (see recipeJsonSchema and the snapshot test). Unknown keys are
// rejected at every level except inside `update`'s monitor blocks, which
// belong to update bots and change often upstream.

import { z } from "zod";
import { zodToJsonSchema } from "zod-to-json-schema";
import { imageConfigSchema } from "@kiln/image";

export const PACKAGE_NAME_RE = /^[a-zA-Z\d][a-zA-Z\d+_.-]*$/;

/**
 * A YAML scalar that melange reads into a Go string: `strip-components: 1`,
 * `extract: false` and `version: 2.0` are all strings to it. loadRecipe
 * replaces numbers and booleans at these places by their source text.
 */
export const scalarSchema = z.union([z.string(), z.number(), z.boolean()], {
  errorMap: () => ({ message: "expected a string, number or boolean" }),
});
// Fresh instances per use, so the JSON Schema repeats small shapes inline
// instead of pointing into unrelated definitions.
const scalarMap = () => z.record(z.string(), scalarSchema);
const strings = () => z.array(z.string());

/** Go duration syntax (`1h30m`, `90s`), as melange's `timeout` accepts besides a number of seconds. */
export const DURATION_RE = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;

const copyrightBase = z
  .object({
    license: z.string().optional(),
    paths: strings().optional(),
    attestation: z.string().optional(),
    "license-path": z.string().optional(),
    "detection-override": z.string().optional(),
    operator: z.enum(["AND", "OR"]).optional(),
  })
  .strict();
export type Copyright = z.infer<typeof copyrightBase> & { licenses?: Copyright[] };
export const copyrightSchema: z.ZodType<Copyright, z.ZodTypeDef, unknown> = copyrightBase
  .extend({ licenses: z.lazy(() => z.array(copyrightSchema)).optional() })
  .strict();

export const dependenciesSchema = z
  .object({
    runtime: strings().optional(),
    provides: strings().optional(),
    replaces: strings().optional(),
    "provider-priority": z.union([z.string(), z.number().int()]).optional(),
    "replaces-priority": z.union([z.string(), z.number().int()]).optional(),
  })
  .strict();

export const packageOptionsSchema = z
  .object({
    "no-provides": z.boolean().optional(),
    "no-depends": z.boolean().optional(),
    "no-commands": z.boolean().optional(),
    "no-versioned-shlib-deps": z.boolean().optional(),
  })
  .strict();

export const scriptletsSchema = z
  .object({
    trigger: z.object({ script: z.string().optional(), paths: strings().optional() }).strict().optional(),
    "pre-install": z.string().optional(),
    "post-install": z.string().optional(),
    "pre-deinstall": z.string().optional(),
    "post-deinstall": z.string().optional(),
    "pre-upgrade": z.string().optional(),
    "post-upgrade": z.string().optional(),
  })
  .strict();

const checksSchema = () => z.object({ enabled: strings().optional(), disabled: strings().optional() }).strict();

const setcapSchema = () =>
  z.array(z.object({ path: z.string(), add: z.record(z.string(), z.string()), reason: z.string() }).strict());

const cpeSchema = z
  .object({
    part: z.string().optional(),
    vendor: z.string().optional(),
    product: z.string().optional(),
    edition: z.string().optional(),
    language: z.string().optional(),
    sw_edition: z.string().optional(),
    target_sw: z.string().optional(),
    target_hw: z.string().optional(),
    other: z.string().optional(),
  })
  .strict();

export const packageSchema = z
  .object({
    name: z.string().regex(PACKAGE_NAME_RE, `expected a package name matching ${PACKAGE_NAME_RE.source}`),
    version: z.union([z.string(), z.number()], { errorMap: () => ({ message: "expected a version string" }) }),
    epoch: z.number().int("expected a whole number").min(0, "expected a whole number ≥ 0").optional(),
    description: z.string().optional(),
    url: z.string().optional(),
    commit: z.string().optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    copyright: z.array(copyrightSchema).optional(),
    dependencies: dependenciesSchema.optional(),
    options: packageOptionsSchema.optional(),
    scriptlets: scriptletsSchema.optional(),
    "target-architecture": strings().optional(),
    timeout: z
      .union(
        [
          z.number().int().min(0),
          z.string().regex(DURATION_RE, "expected a number of seconds or a duration such as 1h30m"),
        ],
        {
          errorMap: (issue, ctx) =>
            issue.code === "invalid_union"
              ? { message: "expected a number of seconds or a duration such as 1h30m" }
              : { message: ctx.defaultError },
        },
      )
      .optional(),
    resources: z
      .object({
        cpu: z.union([z.string(), z.number()]).optional(),
        cpumodel: z.string().optional(),
        memory: z.string().optional(),
        disk: z.string().optional(),
      })
      .strict()
      .optional(),
    checks: checksSchema().optional(),
    cpe: cpeSchema.optional(),
    setcap: setcapSchema().optional(),
  })
  .strict();

const stepBase = z
  .object({
    name: z.string().optional(),
    uses: z.string().min(1).optional(),
    with: scalarMap().optional(),
    runs: scalarSchema.optional(),
    if: z.string().optional(),
    "working-directory": z.string().optional(),
    environment: scalarMap().optional(),
    needs: z.object({ packages: strings().optional() }).strict().optional(),
    label: z.string().optional(),
    assertions: z
      .object({ "required-steps": z.number().int().min(0).optional() })
      .strict()
      .optional(),
  })
  .strict();

/** One pipeline step: `uses` + `with`, or `runs`, optionally with nested steps. */
export type Step = z.infer<typeof stepBase> & { pipeline?: Step[] };
export const stepSchema: z.ZodType<Step, z.ZodTypeDef, unknown> = stepBase
  .extend({ pipeline: z.lazy(() => z.array(stepSchema)).optional() })
  .strict();

export const testSchema = z
  .object({
    environment: imageConfigSchema.optional(),
    pipeline: z.array(stepSchema),
  })
  .strict();

export const subpackageSchema = z
  .object({
    name: z.string().min(1),
    if: z.string().optional(),
    range: z.string().optional(),
    pipeline: z.array(stepSchema).optional(),
    dependencies: dependenciesSchema.optional(),
    options: packageOptionsSchema.optional(),
    scriptlets: scriptletsSchema.optional(),
    description: z.string().optional(),
    url: z.string().optional(),
    commit: z.string().optional(),
    checks: checksSchema().optional(),
    test: testSchema.optional(),
    setcap: setcapSchema().optional(),
  })
  .strict();

// Monitor blocks belong to update bots and grow new keys upstream: typed where
// kiln reads them, open otherwise.
const updateSchema = z
  .object({
    enabled: z.boolean().optional(),
    manual: z.boolean().optional(),
    "require-sequential": z.boolean().optional(),
    shared: z.boolean().optional(),
    "version-separator": z.string().optional(),
    "ignore-regex-patterns": strings().optional(),
    "release-monitor": z.object({ identifier: z.number().int() }).passthrough().optional(),
    github: z
      .object({
        identifier: z.string(),
        "strip-prefix": z.string().optional(),
        "strip-suffix": z.string().optional(),
        "tag-filter": z.string().optional(),
        "use-tag": z.boolean().optional(),
      })
      .passthrough()
      .optional(),
    git: z
      .object({
        "strip-prefix": z.string().optional(),
        "strip-suffix": z.string().optional(),
        "tag-filter-prefix": z.string().optional(),
      })
      .passthrough()
      .optional(),
    "version-transform": z.array(z.object({ match: z.string(), replace: z.string() }).passthrough()).optional(),
    "exclude-reason": z.string().optional(),
    schedule: z.object({ reason: z.string().optional(), period: z.string().optional() }).passthrough().optional(),
    "enable-prerelease-tags": z.boolean().optional(),
  })
  .strict();

const buildOptionSchema = z
  .object({
    vars: scalarMap().optional(),
    environment: z
      .object({
        contents: z
          .object({
            packages: z.object({ add: strings().optional(), remove: strings().optional() }).strict().optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export const recipeSchema = z
  .object({
    package: packageSchema,
    environment: imageConfigSchema.optional(),
    pipeline: z.array(stepSchema).optional(),
    subpackages: z.array(subpackageSchema).optional(),
    test: testSchema.optional(),
    vars: scalarMap().optional(),
    "var-transforms": z
      .array(z.object({ from: z.string(), match: z.string(), replace: z.string(), to: z.string().min(1) }).strict())
      .optional(),
    data: z.array(z.object({ name: z.string().min(1), items: scalarMap() }).strict()).optional(),
    update: updateSchema.optional(),
    options: z.record(z.string(), buildOptionSchema).optional(),
    capabilities: z.object({ add: strings().optional(), drop: strings().optional() }).strict().optional(),
  })
  .strict();

/** A recipe as written (after schema validation). */
export type Recipe = z.infer<typeof recipeSchema>;
export type Subpackage = z.infer<typeof subpackageSchema>;
export type RecipeTest = z.infer<typeof testSchema>;

/** A named pipeline file (`uses: NAME` → NAME.yaml in a pipeline directory). */
export const pipelineInputSchema = z
  .object({
    description: z.string().optional(),
    default: scalarSchema.optional(),
    required: z.boolean().optional(),
  })
  .strict();
export const pipelineFileSchema = z
  .object({
    name: z.string().optional(),
    needs: z.object({ packages: strings().optional() }).strict().optional(),
    inputs: z.record(z.string(), pipelineInputSchema).optional(),
    pipeline: z.array(stepSchema),
  })
  .strict();
export type PipelineFile = z.infer<typeof pipelineFileSchema>;

/** The JSON Schema of recipes, generated from the zod schema (committed as recipe.schema.json). */
export function recipeJsonSchema(): Record<string, unknown> {
  const schema = zodToJsonSchema(recipeSchema, {
    name: "Recipe",
    $refStrategy: "root",
    definitions: {
      Scalar: scalarSchema,
      ImageConfig: imageConfigSchema,
      PipelineStep: stepSchema,
      Copyright: copyrightSchema,
      Dependencies: dependenciesSchema,
      PackageOptions: packageOptionsSchema,
      Scriptlets: scriptletsSchema,
      Test: testSchema,
    },
  }) as Record<string, unknown>;
  return { title: "kiln recipe (melange format)", ...schema };
}

/** recipe.schema.json's exact text. */
export function recipeJsonSchemaText(): string {
  return `${JSON.stringify(recipeJsonSchema(), null, 2)}\n`;
}
