// @kiln/repo: repositories as signed indexes reachable by URL — fetching,
// verifying and caching them, resolving requests against them, publishing.

export type { RepositoryRef, RepoPackage, Resolution } from "./types.js";
export { DefaultFetcher, FetchError, isLocal, localPath, joinUrl, readAll, type Fetcher, type FetchResult, type Validator, type HttpFetcherOptions } from "./fetch.js";
export {
  RepositoryError,
  defaultCacheDir,
  parseRepositoryRef,
  loadIndex,
  loadRepositories,
  checkPackageAgainstIndex,
  fetchPackage,
  fetchPackages,
  type RepoContext,
  type LoadedIndex,
} from "./repository.js";
export { resolve, ResolveError, Resolver, type ResolveOptions, type ResolveErrorCode } from "./resolver.js";
