// @kiln/distro: the distribution — distro.yaml, the graph over recipes and
// images, build keys and change detection, the build plan, the parallel
// runner, the nightly image rebuild, and the main job (job.ts) tying them together.

export {
  distroSchema,
  parseDistro,
  loadDistro,
  findDistroFile,
  mergeEnvironment,
  type Distro,
  type DistroInput,
  type SigningKeyRef,
  type PublishSettings,
} from "./config.js";
export {
  loadRecipes,
  listRecipeFiles,
  hashTree,
  displayPath,
  FileHashes,
  BUILD_KEY_VERSION,
  type RecipeNode,
  type RecipeOutput,
  type LoadedRecipes,
  type LoadRecipesOptions,
} from "./recipes.js";
export { loadImages, listImageFiles, imageName, imageConfigFor, type ImageNode } from "./images.js";
export { seedDistroSources, DistroSourcesError } from "./sources.js";
export {
  KeyStore,
  KEYS_FILE,
  identity,
  buildKey,
  parseKeyRecords,
  formatKeyRecords,
  type KeyRecord,
  type BuiltPackage,
} from "./keys.js";
export { placeStage0Packages, placementNeeded, stage0PackageNames, type Stage0Placement } from "./stage0-repo.js";
export {
  BOOTSTRAP_REPO_DIR,
  bootstrapRepoDir,
  loadRepoState,
  currentBuilds,
  localPackages,
  localRepoRef,
  readLocalIndex,
  readImageRecords,
  readKeys,
  IMAGES_FILE,
  type RepoState,
  type CurrentBuild,
  type ImageRecord,
  type LoadStateOptions,
} from "./state.js";
export {
  buildGraph,
  closure,
  cyclicComponents,
  dependentsOf,
  graphPool,
  realPackages,
  syntheticPackages,
  type DistroGraph,
  type GraphEdge,
  type CycleReport,
  type EnvPackage,
  type StandIn,
  type GraphInput,
} from "./graph.js";
export {
  planBuild,
  reasonText,
  diffIdentities,
  keyEnvironment,
  standInsOf,
  takenEpochs,
  chooseEpoch,
  versionsByName,
  type BuildPlan,
  type PlannedBuild,
  type PlannedImage,
  type Reason,
  type SinceChanges,
  type PlanOptions,
} from "./plan.js";
export {
  runPlan,
  localBuilder,
  type Builder,
  type BuildJob,
  type BuildOutcome,
  type RunEntry,
  type RunEvent,
  type RunOptions,
  type RunReport,
  type RunContext,
  type RunStatus,
  type LocalBuilderOptions,
} from "./run.js";
export { changedSince, GitError } from "./git.js";
export {
  graphToDot,
  graphToJson,
  renderRunReport,
  renderReportSection,
  overheadTotals,
  overheadText,
  sumOverhead,
  type BuildPhaseTimes,
  type OverheadTotals,
} from "./render.js";
export { runImages, testImage, type ImageResult, type ImageRunOptions, type ImageTestResult } from "./image-run.js";
export { analyzeDistro, saveAnalysisCaches, type DistroView, type AnalyzeOptions } from "./analyze.js";
export {
  runDistroBuild,
  buildDistro,
  rebuildImages,
  replanRounds,
  distroViews,
  distroPlans,
  narrowToChanged,
  importsOnly,
  distroSigningKey,
  DistroJobError,
  MAX_ROUNDS,
  newJobReport,
  type DistroJobEvent,
  type DistroJobListener,
  type DistroBuildOptions,
  type DistroBuildResult,
  type DistroJobOptions,
  type DistroJobResult,
  type ImagesOptions,
  type ImagesResult,
} from "./job.js";
export { advisoriesDir, loadDistroAdvisories, writeDistroFeed } from "./advisories.js";
export {
  renderJobReport,
  writeJobReport,
  imageReport,
  reportEntries,
  REPORT_FORMAT,
  type JobReport,
  type RoundReport,
  type ImageReport,
} from "./report.js";
export {
  moveSuperseded,
  checkMainIndex,
  KEEP_SUPERSEDED,
  SUPERSEDED_DIR,
  type IndexProblem,
  type SupersededMove,
} from "./index-policy.js";
export { bootstrapMap, bootstrapMapOf, bootstrapPool, bootstrapExcluded, type BootstrapMap } from "./bootstrap.js";
