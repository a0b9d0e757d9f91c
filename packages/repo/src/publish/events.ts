// The events publish() and withdraw() report, and the options they share.

import type { IndexRecord, SigningKey } from "@kiln/apk";

export interface PublishEvent {
  kind: "package" | "index" | "html" | "key" | "retry" | "multipart" | "warning" | "withdrawn" | "deleted" | "plan";
  message: string;
  arch?: string;
  id?: string;
  action?: string;
}

export interface CommonOptions {
  signingKey: SigningKey;
  allowUnsatisfied?: boolean;
  /** Records of upstream repositories per arch, for dependency checks. */
  upstream?: (arch: string) => Promise<IndexRecord[]>;
  dryRun?: boolean;
  /** Index DESCRIPTION; the published one (or the local one) is kept when unset. */
  description?: string;
  sourceDateEpoch?: number;
  onEvent?: (e: PublishEvent) => void;
  /** Index convergence rounds before giving up. */
  maxRounds?: number;
}
