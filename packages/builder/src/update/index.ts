// kiln update: recipes against the Debian archive's newest suites.
export {
  checkUpdates,
  defaultSuites,
  DEFAULT_SUITES,
  type UpdateReport,
  type UpdateCandidate,
  type UpdateStatus,
  type CheckOptions,
} from "./check.js";
export { applyUpdate, type ApplyResult } from "./apply.js";
export { parseSources, readSuiteIndex, INDEX_LIMITS, type IndexedSource, type IndexedFile } from "./sources-index.js";
export { debianUpstream, upstreamRelease, refusedBy, transformVersion } from "./versions.js";
