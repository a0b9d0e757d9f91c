// @kiln/image OCI output: deterministic OCI layouts, oci-archive and
// docker-archive tarballs, and pushing to registries (OCI distribution spec).

export { OciError, isOciError, type OciErrorCode } from "./errors.js";
export {
  MEDIA_TYPE,
  REF_NAME_ANNOTATION,
  canonicalJson,
  type Descriptor,
  type Platform,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
} from "./types.js";
export {
  writeOciImage,
  buildImageConfig,
  normalizeCreated,
  hostArch,
  type ArchImage,
  type BaseLayerBlob,
  type LayerSource,
  type LayerHistory,
  type OciImageSpec,
  type OciOutputFormat,
  type OciWriteResult,
  type WrittenLayer,
  type WrittenManifest,
} from "./write.js";
export { openOciLayout, readOciLayout, walkImage, type OciLayout, type ImageGraph } from "./layout.js";
export {
  pushOciImage,
  parseImageRef,
  formatImageRef,
  parseWwwAuthenticate,
  type ImageRef,
  type PushOptions,
  type PushEvent,
  type PushResult,
} from "./push.js";
