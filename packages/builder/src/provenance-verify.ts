// Checking a package against its SLSA provenance: the statement is read
// (bounded), parsed with a schema (every problem names its field), and the
// package file's name and sha256 must be the statement's subject. A tampered
// package, or a provenance written for another package, is one clear error.

import type { Keyring } from "@kiln/apk";
import { KilnError } from "@kiln/core";
import { open } from "node:fs/promises";
import { basename } from "node:path";
import { z } from "zod";
import { IN_TOTO_PAYLOAD_TYPE, isEnvelope, verifiedSigners } from "./dsse.js";
import { provenancePath, sha256File, SLSA_PROVENANCE_V1, STATEMENT_TYPE } from "./provenance.js";

export type ProvenanceErrorCode = "INVALID" | "MISMATCH" | "MISSING" | "UNTRUSTED";

export class ProvenanceError extends KilnError {
  readonly code: ProvenanceErrorCode;
  constructor(code: ProvenanceErrorCode, message: string) {
    super(message);
    this.name = "ProvenanceError";
    this.code = code;
  }
}

/** A provenance statement larger than this is refused unread (a real one is a few KiB per hundred guest packages). */
export const MAX_PROVENANCE_BYTES = 16 * 1024 * 1024;

const hex = (n: number) => z.string().regex(new RegExp(`^[0-9a-f]{${n}}$`), `expected ${n} lowercase hex digits`);
const digestSet = z.record(z.string().min(1), z.string().min(1));
const descriptor = z
  .object({
    name: z.string().optional(),
    uri: z.string().optional(),
    digest: digestSet.optional(),
    annotations: z.record(z.string(), z.unknown()).optional(),
  })
  .refine((d) => d.name !== undefined || d.uri !== undefined || d.digest !== undefined, {
    message: "a resource needs a name, uri or digest",
  });

export const provenanceSchema = z.object({
  _type: z.literal(STATEMENT_TYPE),
  subject: z.array(z.object({ name: z.string().min(1), digest: z.object({ sha256: hex(64) }).passthrough() })).min(1),
  predicateType: z.literal(SLSA_PROVENANCE_V1),
  predicate: z.object({
    buildDefinition: z.object({
      buildType: z.string().url(),
      externalParameters: z
        .object({
          recipe: z
            .object({
              path: z.string(),
              digest: z.object({ sha256: hex(64) }),
              git: z.object({ commit: z.string().regex(/^[0-9a-f]{40,64}$/), dirty: z.boolean() }).optional(),
            })
            .optional(),
        })
        .passthrough(),
      internalParameters: z.record(z.string(), z.unknown()).optional(),
      resolvedDependencies: z.array(descriptor).optional(),
    }),
    runDetails: z.object({
      builder: z.object({ id: z.string().url(), version: z.record(z.string(), z.string()).optional() }),
      metadata: z.record(z.string(), z.unknown()).optional(),
    }),
  }),
});

export type ProvenanceStatement = z.infer<typeof provenanceSchema>;

async function readBounded(file: string): Promise<Buffer> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ProvenanceError("MISSING", `${file}: cannot read the provenance (${code ?? (e as Error).message})`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ProvenanceError("INVALID", `${file}: not a regular file`);
    if (st.size > MAX_PROVENANCE_BYTES)
      throw new ProvenanceError("INVALID", `${file}: ${st.size} bytes, over the ${MAX_PROVENANCE_BYTES}-byte limit`);
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Parse a provenance statement; problems name the file and each field (e.g. `predicate.runDetails.builder.id`). */
export function parseProvenance(text: string, file: string): ProvenanceStatement {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ProvenanceError("INVALID", `${file}: not JSON (${(e as Error).message})`);
  }
  const r = provenanceSchema.safeParse(json);
  if (!r.success) {
    const lines = r.error.issues.slice(0, 10).map((i) => `  ${i.path.join(".") || "(top level)"}: ${i.message}`);
    throw new ProvenanceError(
      "INVALID",
      `${file}: not an in-toto Statement v1 with SLSA provenance v1:\n${lines.join("\n")}`,
    );
  }
  return r.data;
}

export interface ProvenanceReport {
  package: string;
  provenance: string;
  sha256: string;
  builder: { id: string; version?: Record<string, string> };
  buildType: string;
  recipe?: { path: string; sha256: string; commit?: string; dirty?: boolean };
  sources: Array<{ name?: string; uri?: string; digest?: Record<string, string> }>;
  guest: string[];
  /** The DSSE envelope's signers (key names); `verified` those a trusted key checked (absent when no keys were given). */
  signature?: { keyids: string[]; verified?: string[] };
}

/** A provenance file: a DSSE envelope around the statement (as kiln build writes it) or the bare statement. */
function openProvenance(
  text: string,
  file: string,
  keys: Keyring | undefined,
): { statement: ProvenanceStatement; signature?: ProvenanceReport["signature"] } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ProvenanceError("INVALID", `${file}: not JSON (${(e as Error).message})`);
  }
  if (!isEnvelope(json)) return { statement: parseProvenance(text, file) };
  if (json.payloadType !== IN_TOTO_PAYLOAD_TYPE)
    throw new ProvenanceError(
      "INVALID",
      `${file}: payloadType: expected ${IN_TOTO_PAYLOAD_TYPE}, got ${JSON.stringify(json.payloadType)}`,
    );
  const keyids = json.signatures.map((s) => s.keyid);
  let verified: string[] | undefined;
  if (keys) {
    verified = verifiedSigners(json, keys);
    if (verified.length === 0)
      throw new ProvenanceError(
        "UNTRUSTED",
        `${file}: no signature verifies with a trusted key (signed by ${keyids.join(", ") || "nobody"}; trusted: ${keys.names().join(", ") || "none"})`,
      );
  }
  const statement = parseProvenance(Buffer.from(json.payload, "base64").toString("utf8"), `${file} (payload)`);
  return { statement, signature: { keyids, ...(verified ? { verified } : {}) } };
}

/**
 * Check PKG against its provenance (default: PKG.intoto.json beside it);
 * throws ProvenanceError unless the package is the statement's subject and,
 * with `keys`, the envelope is signed by one of them.
 */
export async function verifyProvenance(
  pkg: string,
  provenance = provenancePath(pkg),
  opts: { keys?: Keyring } = {},
): Promise<ProvenanceReport> {
  const opened = openProvenance((await readBounded(provenance)).toString("utf8"), provenance, opts.keys);
  const stmt = opened.statement;
  const name = basename(pkg);
  const subject = stmt.subject.find((s) => s.name === name);
  if (!subject)
    throw new ProvenanceError(
      "MISMATCH",
      `${provenance}: is the provenance of ${stmt.subject.map((s) => s.name).join(", ")}, not of ${name}`,
    );
  let sha256: string;
  try {
    sha256 = await sha256File(pkg);
  } catch (e) {
    throw new ProvenanceError("MISSING", `${pkg}: cannot read the package (${(e as Error).message})`);
  }
  if (sha256 !== subject.digest.sha256)
    throw new ProvenanceError(
      "MISMATCH",
      `${pkg}: sha256 ${sha256} differs from the provenance's ${subject.digest.sha256} (${provenance}): the package is not the one that build wrote`,
    );
  const def = stmt.predicate.buildDefinition;
  const deps = def.resolvedDependencies ?? [];
  const kind = (d: (typeof deps)[number]) => d.annotations?.kind;
  const recipe = def.externalParameters.recipe;
  return {
    package: pkg,
    provenance,
    sha256,
    builder: stmt.predicate.runDetails.builder,
    buildType: def.buildType,
    ...(recipe
      ? {
          recipe: {
            path: recipe.path,
            sha256: recipe.digest.sha256,
            ...(recipe.git ? { commit: recipe.git.commit, dirty: recipe.git.dirty } : {}),
          },
        }
      : {}),
    sources: deps
      .filter((d) => kind(d) !== "guest-package")
      .map((d) => ({
        ...(d.name !== undefined ? { name: d.name } : {}),
        ...(d.uri !== undefined ? { uri: d.uri } : {}),
        ...(d.digest ? { digest: d.digest } : {}),
      })),
    guest: deps.filter((d) => kind(d) === "guest-package").map((d) => d.name ?? d.uri ?? "?"),
    ...(opened.signature ? { signature: opened.signature } : {}),
  };
}
