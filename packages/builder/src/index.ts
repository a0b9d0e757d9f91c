// @kiln/builder: recipes (melange format) to signed packages — the recipe
// schema, substitutions, `if:` conditions, named pipelines and the compiler
// that resolves a recipe into the steps the builder runs.

export {
  recipeSchema,
  stepSchema,
  packageSchema,
  subpackageSchema,
  testSchema,
  pipelineFileSchema,
  recipeJsonSchema,
  recipeJsonSchemaText,
  PACKAGE_NAME_RE,
  type Recipe,
  type Step,
  type Subpackage,
  type RecipeTest,
  type Copyright,
  type PipelineFile,
} from "./recipe-schema.js";
export {
  substitute,
  substituteCollect,
  scanReferences,
  quoteString,
  archVariables,
  packageVariables,
  subpackageVariables,
  resolveWorkdir,
  goRegexp,
  goReplaceAll,
  SubstitutionError,
  RegexpError,
  KNOWN_ARCHS,
  WORKSPACE_DIR,
  OUT_DIR,
  type Variables,
  type Reference,
  type SubstituteResult,
} from "./substitute.js";
export {
  parseCondition,
  evaluateCondition,
  evaluateParsed,
  conditionVariables,
  ConditionError,
  type Condition,
  type Operand,
  type Lookup,
} from "./conditions.js";
export {
  loadPipelines,
  parsePipelineFile,
  PipelineRegistry,
  BUILTIN_PIPELINE_DIR,
  NATIVE_PIPELINES,
  type PipelineDefinition,
  type PipelineInput,
  type NativeKind,
} from "./pipelines.js";
export {
  parseRecipe,
  readRecipe,
  checkRecipe,
  loadRecipe,
  compileRecipe,
  recipeHash,
  canonicalJson,
  recipePackageVersion,
  environmentImageConfig,
  type LoadedRecipe,
  type CompileOptions,
  type CompiledRecipe,
  type CompiledStep,
  type CompiledPackage,
  type CompiledSubpackage,
  type CompiledTest,
  type CompiledDependencies,
  type CompiledPackageOptions,
  type CompiledScriptlets,
} from "./compile.js";
export { CompileCache, compilerFingerprint, type CompileCacheStats } from "./compile-cache.js";
export {
  buildRecipe,
  BuildError,
  listApks,
  type BuildOptions,
  type BuildResult,
  type BuildEvent,
  type BuildPhases,
  type OverheadParts,
  OVERHEAD_PARTS,
} from "./build.js";
export {
  runInSandbox,
  execInSandbox,
  launchBwrap,
  shellCommand,
  sandboxMounts,
  bwrapArgs,
  openLog,
  formatTail,
  SandboxError,
  GUEST_WORKSPACE,
  type SandboxConfig,
  type StepResult,
  type Mount,
  type BwrapExit,
} from "./sandbox.js";
export { BubblewrapRunner, defaultRunner, type Runner, type Pod, type PodConfig, type ExecOptions } from "./runner.js";
export {
  stepKindOf,
  stepKindNames,
  runStep,
  type StepKind,
  type StepContext,
  type StepOutcome,
} from "./steps/index.js";
export { DEFAULT_STEP_TIMEOUT_MS } from "./context.js";
export { removeAside, settleRemovals } from "./removal.js";
export { BuildLog, DEFAULT_LOG_LIMITS, type LogLimits } from "./log-capture.js";
export { assembleGuest, resolveGuest, guestKey, type Guest, type GuestSpec } from "./guest.js";
export { emitPackage, type EmitSpec, type EmittedPackage } from "./emit.js";
export {
  fetchSource,
  extractArchive,
  debianMirror,
  resolveMirror,
  substituteMirrors,
  aptMirrors,
  SourceError,
  addSource,
  listSources,
  verifySources,
  sourceCache,
  MAX_SEED_BYTES,
  type AddedSource,
  type CachedSource,
  type SourceCheck,
  type SourceCache,
  type SourceSpec,
  type FetchOptions,
  type MirrorOptions,
} from "./fetch-source.js";
export {
  addGitBundle,
  listGitBundles,
  normalizeRepository,
  type AddedBundle,
  type SeededBundle,
} from "./source/git-bundles.js";
export { readDeb, unpackDeb, debVersionToApk } from "./deb.js";
export { HostFileError, type FileRoot } from "./host-files.js";
export { NativeStepError } from "./native-steps.js";
export { detectDependencies, mergeDependencies } from "./detect-deps.js";
export { testRecipe } from "./build.js";
export { bumpRecipe, type BumpResult } from "./bump.js";
export * from "./update/index.js";
export {
  KILN_BUILD_TYPE,
  PROVENANCE_SUFFIX,
  SLSA_PROVENANCE_V1,
  STATEMENT_TYPE,
  kilnBuilderId,
  provenancePath,
  provenanceStatement,
  publicSource,
  recipeGit,
  sha256File,
  type GuestPackage,
  type ProvenanceInput,
  type PublicSource,
  type RecipeGit,
} from "./provenance.js";
export {
  MAX_PROVENANCE_BYTES,
  ProvenanceError,
  parseProvenance,
  provenanceSchema,
  verifyProvenance,
  type ProvenanceReport,
  type ProvenanceStatement,
} from "./provenance-verify.js";
export { IN_TOTO_PAYLOAD_TYPE, isEnvelope, pae, signEnvelope, verifiedSigners, type Envelope } from "./dsse.js";
export {
  CACHE_MAX_SIZE_ENV,
  CacheError,
  cacheCapFromEnv,
  cacheUsage,
  leaseGuest,
  listGuests,
  parseDuration,
  parseSize,
  readSize,
  SIZE_EXPECTED,
  type CacheUsage,
  type GuestInfo,
} from "./guest-cache.js";
export { pruneCache, type PruneEvent, type PruneOptions, type PruneResult } from "./guest-prune.js";
export { GuestStore, listStore, storeDir, sweepStore, verifyStore } from "./guest-store.js";
export { dedupGuests, type DedupResult } from "./guest-dedup.js";
