import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "@kiln/core/base";
import {
  buildIndex,
  indexRecordForPackage,
  indexRecordsFromHeads,
  mergeIndexRecords,
  readIndex,
  type IndexRecord,
} from "@kiln/apk";
// The index policy alone: @kiln/repo as a whole loads the S3 client.
import { duplicateProviders, formatDuplicateProvider } from "@kiln/repo/index-policy";
import { opt } from "../options.js";
import { defineCommand, flag } from "../program.js";
import { loadSigningKey, sourceDateEpoch } from "../util.js";

/** Write an index durably and atomically (@kiln/core's writeFileAtomic, fsynced). */
export async function writeAtomic(path: string, data: Uint8Array): Promise<void> {
  await writeFileAtomic(path, data, { fsync: true });
}

export const index = defineCommand({
  name: "index",
  summary: "build (or merge into) a signed APKINDEX.tar.gz from packages",
  args: ["[FILE.apk...]"],
  details: `Reads the signature and control members of each package (as apk index does: the data member
is not inflated), then writes an index whose C: (control-member SHA-1), S: (file size) and fields come
from the packages. --check-data reads each package completely and checks its data against the datahash.
A so:/cmd: name that two packages provide without a provider_priority each is a warning.
Signed with RSA/SHA-256 unless --sha1; unsigned without --signing-key. The file is replaced atomically.`,
  options: {
    output: opt.output.describe("the index to write").required(),
    merge: flag(
      "--merge",
      "keep the records of an existing OUT; a package with the same name and version replaces its record",
    ),
    checkData: flag("--check-data", "read each package whole and check its data against its datahash"),
    signingKey: opt.signingKey,
    description: opt.description,
    sha1: opt.sha1,
  },
  async run(values, positionals, io) {
    const key = values.signingKey ? await loadSigningKey(values.signingKey) : undefined;
    let incoming: IndexRecord[] = [];
    if (values.checkData) for (const p of positionals) incoming.push(await indexRecordForPackage(p));
    else incoming = await indexRecordsFromHeads(positionals);
    let existing: IndexRecord[] = [];
    let description = values.description;
    if (values.merge) {
      const old = await readFile(values.output).catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return undefined;
        throw e;
      });
      if (old) {
        const idx = await readIndex(old, { subject: values.output });
        existing = idx.records;
        description ??= idx.description;
      }
    }
    const records = mergeIndexRecords(existing, incoming);
    const out = buildIndex(records, {
      description: description ?? "",
      signingKeys: key ? [key] : [],
      type: values.sha1 ? "RSA" : "RSA256",
      sourceDateEpoch: sourceDateEpoch(io.env),
    });
    await writeAtomic(values.output, out);
    io.out(`${values.output}: ${records.length} packages${key ? `, signed by ${key.name}` : ", unsigned"}`);
    for (const d of duplicateProviders(records)) io.err(`warning: ${formatDuplicateProvider(d)}`);
    return 0;
  },
});

export const signIndex = defineCommand({
  name: "sign-index",
  summary: "replace the signatures of an APKINDEX.tar.gz",
  args: ["APKINDEX.tar.gz"],
  details: `Re-signs the index body as it is (records untouched); the file is replaced atomically.`,
  options: { signingKey: opt.signingKey.required(), sha1: opt.sha1 },
  async run(values, positionals, io) {
    const key = await loadSigningKey(values.signingKey);
    const path = positionals[0]!;
    const idx = await readIndex(await readFile(path), { subject: path });
    const { signIndexBody } = await import("@kiln/apk");
    await writeAtomic(
      path,
      signIndexBody(idx.body, [key], {
        type: values.sha1 ? "RSA" : "RSA256",
        sourceDateEpoch: sourceDateEpoch(io.env),
      }),
    );
    io.out(`${path}: signed by ${key.name}`);
    return 0;
  },
});
