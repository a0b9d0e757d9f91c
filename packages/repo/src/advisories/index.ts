// Security advisories: the distribution's advisories/NAME.yaml, the feeds made
// from them (secdb security.json, OSV) and matching installed packages.

export {
  ADVISORY_ID,
  NOT_AFFECTED_JUSTIFICATIONS,
  MAX_ADVISORIES,
  MAX_EVENTS,
  advisoryFileSchema,
  parseAdvisoryFile,
  loadAdvisories,
  rfc3339,
  type Advisory,
  type AdvisoryEvent,
  type AdvisoryFileInput,
} from "./schema.js";
export {
  OSV_SCHEMA_VERSION,
  SECDB_NAME,
  OSV_DIR,
  OSV_INDEX,
  secdbDocument,
  osvRecords,
  osvPrefix,
  feedFiles,
  writeFeed,
  type FeedOptions,
  type SecdbDocument,
  type OsvRecord,
  type OsvEvent,
  type FeedFiles,
  type WrittenFeed,
} from "./feeds.js";
export {
  FeedError,
  MAX_FEED_BYTES,
  FEED_TIMEOUT_MS,
  secdbRules,
  osvRules,
  feedRules,
  loadFeed,
  matchAdvisories,
  type FeedRule,
  type LoadFeedOptions,
  type ScannedPackage,
  type Finding,
} from "./match.js";
