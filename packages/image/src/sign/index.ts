// cosign-compatible image signatures and attestations.

export { SignError, type SignErrorCode } from "./errors.js";
export { generateSigningKey, loadSigningKey, loadVerifyKey, type SigningKeyPair } from "./keys.js";
export { SigningRegistry, sha256Digest } from "./registry.js";
export {
  attestImage,
  cosignTag,
  dsseEnvelope,
  dssePae,
  envelopeSignedBy,
  resolveSubject,
  signImage,
  simpleSigningPayload,
  type AttachResult,
  type Descriptor as SignedDescriptor,
} from "./cosign.js";
export {
  APK_CHECKSUM_DIGEST,
  cyclonedxSbom,
  imageStatements,
  slsaProvenance,
  spdxSbom,
  type AttestedImage,
  type Statement,
} from "./statements.js";
export { attestationInputs, signAndAttest, type SignAndAttestResult } from "./flow.js";
