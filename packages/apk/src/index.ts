// @kiln/apk: APK v2 packages, indexes, signatures, versions, dependencies and
// the installed database, as apk-tools 2.14 / 3.x read them.

export { ApkError, isApkError, type ApkErrorCode } from "./errors.js";
export { parsePkgInfo, formatPkgInfo, emptyPackageInfo, type PackageInfo } from "./pkginfo.js";
export {
  parseIndexText,
  formatIndexText,
  formatIndexFields,
  newIndexRecord,
  INDEX_FIELD_ORDER,
  type IndexRecord,
  type ParseIndexOptions,
} from "./index-text.js";
export { checkPackageName, checkArch, checkVersion } from "./names.js";
export {
  Keyring,
  generateKey,
  parseSigningKey,
  parsePublicKey,
  parseSignatureName,
  signatureEntryName,
  verifySignature,
  MIN_KEY_BITS,
  DEFAULT_KEY_BITS,
  type SignatureType,
  type SigningKey,
  type Signer,
  type GeneratedKey,
} from "./keys.js";
export {
  RsaSigner,
  publicKeyPem,
  resolveSigningKey,
  localKeyPath,
  DEFAULT_KEY_VARIABLE,
  LOCAL_KEY_DIR,
  LOCAL_KEY_FILE,
  type SigningKeyRequest,
  type ResolvedKey,
} from "./signer.js";
export { gunzipMembers, gzipMember, type GzipEvent, type GunzipOptions } from "./gzip.js";
export { parallelGzip, PGZIP_CHUNK, type ParallelGzipOptions } from "./pgzip.js";
export {
  encodeHeader,
  encodeHeaderInto,
  paxRecord,
  decodeHeader,
  isZeroBlock,
  parsePax,
  type TarHeader,
  type RawHeader as RawTarHeader,
  type EntryType,
} from "./tar.js";
export { normalizeEntryPath, checkSymlinkTarget } from "./paths.js";
export {
  openPackage,
  dataOffset,
  identityOf,
  SCRIPT_NAMES,
  DEFAULT_LIMITS,
  type PackageReader,
  type PackageHead,
  type DataEntry,
  type DataSummary,
  type SignatureEntry,
  type ReadLimits,
} from "./package-read.js";
export {
  writePackage,
  planEntries,
  entriesFromDirectory,
  validatePackageInfo,
  comparePaths,
  type EntrySpec,
  type WritePackageOptions,
  type WrittenPackage,
  type ScriptName,
} from "./package-write.js";
export {
  buildSignatureMember,
  checkSignature,
  chooseSignature,
  type Verdict,
  type SignatureCheck,
} from "./signature.js";
export {
  readIndex,
  openIndex,
  verifyIndex,
  buildIndex,
  buildIndexBody,
  signIndexBody,
  mergeIndexRecords,
  sortIndexRecords,
  validateIndexRecord,
  type IndexFile,
  type IndexHead,
  type ReadIndexOptions,
  type BuildIndexOptions,
  DEFAULT_MAX_INDEX_SIZE,
  DEFAULT_MAX_INDEX_RECORDS,
} from "./apkindex.js";
export {
  verifyFile,
  sniffKind,
  indexRecordForPackage,
  resignPackage,
  type VerifyReport,
  type FileKind,
} from "./verify.js";
export { indexRecordFromHead, indexRecordsFromHeads } from "./package-head.js";
export { isValidVersion, compareVersions, sortVersions, versionSatisfies } from "./version.js";
export {
  parseDependency,
  formatDependency,
  parseProvide,
  packageSatisfies,
  validateDependencyList,
  validateProvideList,
  type Dependency,
  type VersionOp,
} from "./dependency.js";
export {
  parseInstalledDb,
  formatInstalledDb,
  sortInstalled,
  installedFilePaths,
  parseWorld,
  formatWorld,
  parseRepositories,
  formatRepositories,
  type InstalledPackage,
  type InstalledDir,
  type InstalledFile,
  type Repository,
} from "./installed-db.js";
