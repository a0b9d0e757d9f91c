// The recipe format (melange's YAML), as a zod schema: the single source of
// truth for its shape. Types come from it, and recipe.schema.json is generated
// from it (see recipeJsonSchema and the snapshot test). The keys and types
// are melange's (pkg/config): unknown keys are rejected at every level, as
// melange's decoder does for recipes. Values are read by goDecode (scalars.ts)
// the way melange's Go YAML decoder reads them: a number or boolean written
// where a string is taken is its text, null is the zero value.

import { z } from "zod";
import { createRequire } from "node:module";
import { imageConfigSchema } from "@kiln/image";

export const PACKAGE_NAME_RE = /^[a-zA-Z\d][a-zA-Z\d+_.-]*$/;

/**
 * A YAML scalar that melange reads into a Go string: `strip-components: 1`,
 * `extract: false` and `version: 2.0` are all strings to it. goDecode gives
 * every string field the scalar's text, so the parsed value is a string; the
 * JSON Schema says what may be written.
 */
export const scalarSchema = z.union([z.string(), z.number(), z.boolean()], {
  errorMap: () => ({ message: "expected a string, number or boolean" }),
});
/** A Go string field: what goDecode yields for any scalar written there. */
const goString = () => z.string();
// Fresh instances per use, so the JSON Schema repeats small shapes inline
// instead of pointing into unrelated definitions.
const scalarMap = () => z.record(z.string(), scalarSchema);
const strings = () => z.array(z.string());

/** Go duration syntax (`1h30m`, `90s`), as melange's `timeout` accepts besides a number of seconds. */
export const DURATION_RE = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;
const TIMEOUT_RE = new RegExp(`^\\d+$|${DURATION_RE.source}`);

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
    "provider-priority": goString().optional(),
    "replaces-priority": goString().optional(),
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

const resourcesSchema = () =>
  z
    .object({
      cpu: goString().optional(),
      cpumodel: z.string().optional(),
      memory: z.string().optional(),
      disk: z.string().optional(),
    })
    .strict();

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
    version: goString(),
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
    // A Go duration (`1h30m`); kiln also takes a whole number of seconds, which melange's decoder refuses.
    timeout: z.string().regex(TIMEOUT_RE, "expected a number of seconds or a duration such as 1h30m").optional(),
    resources: resourcesSchema().optional(),
    // What a scheduler should give the test run; kiln records it (see compile).
    "test-resources": resourcesSchema().optional(),
    checks: checksSchema().optional(),
    cpe: cpeSchema.optional(),
    setcap: setcapSchema().optional(),
  })
  .strict();

/** One input of a pipeline (a pipeline file's, or a recipe step's own). */
export const pipelineInputSchema = z
  .object({
    description: z.string().optional(),
    default: scalarSchema.optional(),
    required: z.boolean().optional(),
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
    // A step's own inputs: their defaults are ${{inputs.NAME}} in it and its children (melange's validateWith).
    inputs: z.record(z.string(), pipelineInputSchema).optional(),
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
    pipeline: z.array(stepSchema).default([]),
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
    annotations: z.record(z.string(), z.string()).optional(),
    url: z.string().optional(),
    commit: z.string().optional(),
    checks: checksSchema().optional(),
    test: testSchema.optional(),
    setcap: setcapSchema().optional(),
  })
  .strict();

// The update block is read by update bots, not by builds; its keys are
// melange's, checked as strictly as melange checks them.
const monitorBase = {
  "strip-prefix": z.string().optional(),
  "strip-suffix": z.string().optional(),
  "tag-filter-prefix": z.string().optional(),
  "tag-filter-contains": z.string().optional(),
};
const updateSchema = z
  .object({
    enabled: z.boolean().optional(),
    manual: z.boolean().optional(),
    "require-sequential": z.boolean().optional(),
    shared: z.boolean().optional(),
    "version-separator": z.string().optional(),
    "ignore-regex-patterns": strings().optional(),
    "release-monitor": z
      .object({
        identifier: z.number().int(),
        "strip-prefix": z.string().optional(),
        "strip-suffix": z.string().optional(),
        "version-filter-contains": z.string().optional(),
        "version-filter-prefix": z.string().optional(),
      })
      .strict()
      .optional(),
    github: z
      .object({
        identifier: z.string(),
        ...monitorBase,
        "tag-filter": z.string().optional(),
        "use-tag": z.boolean().optional(),
      })
      .strict()
      .optional(),
    git: z.object(monitorBase).strict().optional(),
    oci: z
      .object({ identifier: z.string(), ...monitorBase })
      .strict()
      .optional(),
    version_data: z
      .object({
        version_format: z.string().optional(),
        sources: z
          .array(
            z
              .object({
                name: z.string().optional(),
                stream: z.string().optional(),
                ignore: strings().optional(),
                commit_source: z.string().optional(),
                use_release: z.boolean().optional(),
              })
              .strict(),
          )
          .optional(),
      })
      .strict()
      .optional(),
    "version-transform": z.array(z.object({ match: z.string(), replace: z.string() }).strict()).optional(),
    "exclude-reason": z.string().optional(),
    schedule: z.object({ reason: z.string().optional(), period: z.string().optional() }).strict().optional(),
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
/** A step inside a pipeline file: Wolfi's carry a `description`, which melange's decoder ignores there (and kiln too). */
type FileStep = Step & { description?: string; pipeline?: FileStep[] };
const fileStepSchema: z.ZodType<FileStep, z.ZodTypeDef, unknown> = stepBase
  .extend({ description: z.string().optional(), pipeline: z.lazy(() => z.array(fileStepSchema)).optional() })
  .strict();
export const pipelineFileSchema = z
  .object({
    name: z.string().optional(),
    // Wolfi's pipelines describe themselves; melange ignores the key, and so does kiln.
    description: z.string().optional(),
    needs: z.object({ packages: strings().optional() }).strict().optional(),
    inputs: z.record(z.string(), pipelineInputSchema).optional(),
    pipeline: z.array(fileStepSchema),
  })
  .strict();
export type PipelineFile = z.infer<typeof pipelineFileSchema>;

/** The JSON Schema of recipes, generated from the zod schema (committed as recipe.schema.json). */
export function recipeJsonSchema(): Record<string, unknown> {
  // Loaded on first use: only schema generation needs it, not every kiln command's start-up.
  const { zodToJsonSchema } = createRequire(import.meta.url)(
    "zod-to-json-schema",
  ) as typeof import("zod-to-json-schema");
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
