// @kiln/image: image configs (apko format), installing resolved packages into
// a root, OCI layouts/archives and registry push, image SBOMs.

export {
  parseImageConfig,
  imageConfigFrom,
  readImageInput,
  imageConfigSchema,
  TRUST_NAME,
  shellWords,
  hostArch as hostApkArch,
  ARCH_ALIASES,
  OCI_PLATFORM,
  type ImageConfig,
  type ImageConfigInput,
  type PathMutation,
  type ConfigSource,
} from "./config.js";
export { loadImageConfig, mergeImageInput, MAX_INCLUDE_DEPTH, type LoadImageConfigOptions } from "./include.js";
export {
  parseCertificate,
  parseRuntimeKey,
  applyCertificates,
  applyRuntimeKeyring,
  CA_BUNDLES,
  LOCAL_CA_DIR,
  type TrustCertificate,
  type RuntimeKey,
} from "./trust.js";
// Config loading moved to @kiln/core; re-exported for existing importers.
export { loadYaml, ConfigError, formatProblem, dotted, type Problem, type LoadedYaml } from "@kiln/core";
export {
  ImageRoot,
  InstallError,
  writeDirAtomic,
  assertTreePath,
  type TreeNode,
  type NodeType,
  type ImageRootOptions,
  type PackageManifest,
  type ManifestEntry,
} from "./root.js";
export {
  DEFAULT_ROOT_CAP,
  ROOT_CAP_ENV,
  BudgetError,
  packageAllowance,
  parseSize,
  formatSize,
  rootCapFromEnv,
} from "./budget.js";
export { applyAccounts, applyPaths, applyOsRelease, applyServices } from "./mutate.js";
export { materializeRoot, removeTree, type MaterializeOptions } from "./materialize.js";
export { apkPurl, fileSha256s, imageSbom, packageDownloadLocation, spdxLicense, type SbomOptions } from "./sbom.js";
export { spdx23Problems, spdx23Schema } from "./spdx-check.js";
export {
  buildImage,
  resolveImage,
  makeLock,
  readLock,
  checkLockMatches,
  planLayers,
  ImageBuildError,
  type ImageContext,
  type LockFile,
  type LockEntry,
  type BuildImageOptions,
  type BuiltImage,
  type ResolvedImage,
} from "./build.js";
export * from "./oci/index.js";
export { loadBaseImage, BaseImageError, type BaseImage, type BaseImageOptions } from "./baseimage.js";
export * from "./sign/index.js";
