// @kiln/repo: repositories as signed indexes reachable by URL — fetching,
// verifying and caching them, resolving requests against them, publishing.

export type { RepositoryRef, RepoPackage, Resolution } from "./types.js";
export {
  DefaultFetcher,
  FetchError,
  isLocal,
  localPath,
  joinUrl,
  readAll,
  type Fetcher,
  type FetchResult,
  type Validator,
  type HttpFetcherOptions,
} from "./fetch.js";
export {
  RepositoryError,
  defaultCacheDir,
  parseRepositoryRef,
  loadIndex,
  loadRepositories,
  checkPackageAgainstIndex,
  packageFileName,
  fetchPackage,
  fetchPackages,
  type RepoContext,
  type LoadedIndex,
} from "./repository.js";
export { resolve, ResolveError, Resolver, type ResolveOptions, type ResolveErrorCode } from "./resolver.js";
export {
  StoreError,
  isStoreError,
  storeKeySegments,
  type ObjectStore,
  type StoredObject,
  type StoreErrorCode,
  type WriteCondition,
  type WriteOptions,
  type WriteSource,
  type StoreEvent,
} from "./store/types.js";
export { LocalDirStore } from "./store/local.js";
export {
  S3Store,
  parseS3Url,
  makeS3Client,
  isTransient,
  DEFAULT_MULTIPART_THRESHOLD,
  DEFAULT_PART_SIZE,
  type S3Location,
  type S3Options,
} from "./store/s3.js";
export { S3Fetcher } from "./store/s3-fetcher.js";
export { PublishError, type PublishErrorCode } from "./publish/errors.js";
export { unsatisfiedDependencies, formatUnsatisfied, type Unsatisfied } from "./publish/deps.js";
export { renderArchIndexHtml } from "./publish/html.js";
export { readLocalRepository, type LocalArch, type LocalPackage } from "./publish/local-repo.js";
export {
  planPublish,
  targetRecords,
  type PublishPlan,
  type ArchPlan,
  type PlannedPackage,
  type PackageAction,
  type RemoteArchState,
} from "./publish/plan.js";
export { discoverArchs, recordFromBytes, INDEX_NAME, CACHE_IMMUTABLE, CACHE_NO_CACHE } from "./publish/remote.js";
export {
  TEMP_PREFIX as PUBLISH_TEMP_PREFIX,
  publish,
  withdraw,
  convergeIndex,
  syncHtml,
  readRemoteArch,
  type PublishOptions,
  type PublishResult,
  type PublishEvent,
  type ArchResult,
  type WithdrawOptions,
  type WithdrawResult,
} from "./publish/publish.js";
export {
  supersedeRecords,
  newestBuilds,
  originOf,
  duplicateProviders,
  formatDuplicateProvider,
  type Superseding,
  type DuplicateProvider,
} from "./index-policy.js";
export { checkRepository, type CheckOptions, type CheckReport, type ArchCheck } from "./publish/check.js";
export { makeTempDir, removeTempDir, cleanStaleTempDirs, isStaleTempDir, STALE_AFTER_MS } from "./publish/tempdir.js";
export * from "./advisories/index.js";
