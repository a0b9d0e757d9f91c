// The compiler's vocabulary: a loaded recipe (with positions), the options,
// and the compiled recipe — plain JSON that the builder runs and that is
// hashed for change detection.

import type { Problem } from "@kiln/core";
import type { ImageConfigInput } from "@kiln/image";
import type { NativeKind, PipelineRegistry } from "../pipelines.js";
import type { Copyright, Recipe } from "../recipe-schema.js";

export type Path = ReadonlyArray<string | number>;

/** A recipe read from a file, with what is needed to point at its lines. */
export interface LoadedRecipe {
  file: string;
  recipe: Recipe;
  locate(path: Path): { line: number; col: number } | undefined;
  /** Raw source text of the scalar at `path`. */
  source(path: Path): string | undefined;
  /** Non-fatal findings of the last check (missing license, …). */
  warnings: Problem[];
}

export interface CompileOptions {
  /** apk architecture (aliases such as amd64 accepted); default: the host's. */
  arch?: string;
  /** User pipeline directories, overlaid on the built-ins (earlier wins). */
  pipelineDirs?: readonly string[];
  /** A registry to use instead of loading `pipelineDirs` (faster for many recipes). */
  pipelines?: PipelineRegistry;
  /** The directory copied into the workspace (patches…); used to check that files named by `patch` exist. */
  sourceDir?: string;
  /** melange build options (`options:` entries) to enable. */
  buildOptions?: readonly string[];
  /**
   * Extra `${{ name }}` variables. `${{mirror.NAME}}` defaults to `mirror://NAME`
   * (resolved when fetching); pass `mirror.NAME` here to resolve it now.
   */
  variables?: Readonly<Record<string, string>>;
}

/** One step as the builder runs it: a shell script, or a step kiln performs itself. */
export interface CompiledStep {
  /** The step's name, else the pipeline it came from, else its path. */
  name: string;
  /** Where it came from: the recipe path, then `› PIPELINE path` for steps expanded from named pipelines. */
  origin: string;
  /** The innermost named pipeline this step came from. */
  uses?: string;
  /** The script, run as `/bin/sh -c` with `set -e` ("" for native steps). */
  runs: string;
  /** Absolute guest path. */
  workingDirectory: string;
  /** The step's own variables (inherited from enclosing steps), on top of the environment's. */
  environment: Record<string, string>;
  /** Set for steps kiln performs on the host instead of in the guest. */
  native?: NativeKind;
  /** The inputs of a native step: every input, defaults applied, substituted. */
  with?: Record<string, string>;
  label?: string;
}

export interface CompiledDependencies {
  runtime: string[];
  provides: string[];
  replaces: string[];
  providerPriority?: number;
  replacesPriority?: number;
}

export interface CompiledPackageOptions {
  noProvides: boolean;
  noDepends: boolean;
  noCommands: boolean;
  noVersionedShlibDeps: boolean;
}

/** melange's install scriptlets, in the order apk's control member lists them (the trigger is apart). */
export const SCRIPTLET_KEYS = [
  "pre-install",
  "post-install",
  "pre-deinstall",
  "post-deinstall",
  "pre-upgrade",
  "post-upgrade",
] as const;

export type CompiledScriptlets = { trigger?: { script: string; paths: string[] } } & {
  [K in (typeof SCRIPTLET_KEYS)[number]]?: string;
};

export interface CompiledTest {
  /** The test guest: the test's environment plus the package under test and what the test steps need. */
  environment: ImageConfigInput;
  pipeline: CompiledStep[];
}

export interface CompiledPackage {
  name: string;
  version: string;
  epoch: number;
  /** `VERSION-rEPOCH`. */
  fullVersion: string;
  description: string;
  url?: string;
  commit?: string;
  /** SPDX expression built from `copyright` ("" if none). */
  license: string;
  copyright: Copyright[];
  dependencies: CompiledDependencies;
  options: CompiledPackageOptions;
  scriptlets: CompiledScriptlets;
  /** apk architectures, or ["all"]. */
  targetArchitecture: string[];
  timeoutSeconds?: number;
  resources?: Record<string, string>;
  /** `package.test-resources`: what a scheduler should give the test run (recorded, not enforced). */
  testResources?: Record<string, string>;
  checks?: { enabled?: string[]; disabled?: string[] };
  annotations?: Record<string, string>;
  setcap?: Array<{ path: string; add: Record<string, string>; reason: string }>;
}

export interface CompiledSubpackage {
  name: string;
  description: string;
  url?: string;
  commit?: string;
  dependencies: CompiledDependencies;
  options: CompiledPackageOptions;
  scriptlets: CompiledScriptlets;
  checks?: { enabled?: string[]; disabled?: string[] };
  annotations?: Record<string, string>;
  setcap?: Array<{ path: string; add: Record<string, string>; reason: string }>;
  pipeline: CompiledStep[];
  test?: CompiledTest;
}

/** A recipe resolved for one architecture: plain JSON. */
export interface CompiledRecipe {
  arch: string;
  /** False when `package.target-architecture` excludes `arch` (the build is skipped). */
  supportsArch: boolean;
  package: CompiledPackage;
  /** The build guest, in image-config (apko) form: the recipe's environment, the build user, and every step's needs. */
  environment: ImageConfigInput;
  pipeline: CompiledStep[];
  /** Subpackages after `range` expansion, minus those whose `if:` is false, in recipe order. */
  subpackages: CompiledSubpackage[];
  test?: CompiledTest;
  /** `vars.*` after var-transforms. */
  vars: Record<string, string>;
  update?: NonNullable<Recipe["update"]>;
  capabilities?: { add: string[]; drop: string[] };
}
