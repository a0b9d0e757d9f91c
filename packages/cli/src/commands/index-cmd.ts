import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "@kiln/core";
import { buildIndex, indexRecordForPackage, mergeIndexRecords, readIndex, type IndexRecord } from "@kiln/apk";
import { help, loadSigningKey, parse, sourceDateEpoch, UserError, type Command } from "../util.js";

/** Write an index durably and atomically (@kiln/core's writeFileAtomic, fsynced). */
export async function writeAtomic(path: string, data: Uint8Array): Promise<void> {
  await writeFileAtomic(path, data, { fsync: true });
}

export const index: Command = {
  name: "index",
  summary: "build (or merge into) a signed APKINDEX.tar.gz from packages",
  usage: "kiln index [--merge] [--signing-key KEY] [--description TEXT] -o OUT FILE.apk...",
  async run(argv, io) {
    const { values, positionals } = parse(this, argv, {
      merge: { type: "boolean" },
      "signing-key": { type: "string" },
      description: { type: "string" },
      sha1: { type: "boolean" },
      output: { type: "string", short: "o" },
    });
    if (values.help)
      return help(
        this,
        io,
        `Reads each package completely (structure and datahash are checked), then writes an index
whose C: (control-member SHA-1), S: (file size) and fields come from the packages.
--merge keeps the records of an existing OUT; a package with the same name and version replaces its record.
Signed with RSA/SHA-256 unless --sha1. The file is replaced atomically.`,
      );
    if (!values.output) throw new UserError(`index: -o OUT is required\nusage: ${this.usage}`, 2);
    const key = values["signing-key"] ? await loadSigningKey(values["signing-key"]) : undefined;
    const incoming: IndexRecord[] = [];
    for (const p of positionals) incoming.push(await indexRecordForPackage(p));
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
    return 0;
  },
};

export const signIndex: Command = {
  name: "sign-index",
  summary: "replace the signatures of an APKINDEX.tar.gz",
  usage: "kiln sign-index --signing-key KEY [--sha1] APKINDEX.tar.gz",
  async run(argv, io) {
    const { values, positionals } = parse(this, argv, { "signing-key": { type: "string" }, sha1: { type: "boolean" } });
    if (values.help)
      return help(this, io, `Re-signs the index body as it is (records untouched); the file is replaced atomically.`);
    if (!values["signing-key"] || positionals.length !== 1) throw new UserError(`usage: ${this.usage}`, 2);
    const key = await loadSigningKey(values["signing-key"]);
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
};
