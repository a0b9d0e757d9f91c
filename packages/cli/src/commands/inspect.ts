import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { openPackage, readIndex, sniffKind } from "@kiln/apk";
import { opt } from "../options.js";
import { defineCommand } from "../program.js";

export const inspect = defineCommand({
  name: "inspect",
  summary: "show a package's metadata and files, or an index's records",
  args: ["FILE"],
  details: `For a package: signatures, .PKGINFO fields, C: identity, scripts and every data entry.
For an index: signatures, description and records.`,
  options: { json: opt.json.describe("print one JSON document") },
  async run(values, args, io) {
    const file = args[0]!;
    const kind = await sniffKind(file);
    if (kind === "index") {
      const idx = await readIndex(createReadStream(file), { subject: file });
      const doc = {
        kind,
        signatures: idx.signatures.map((s) => ({ type: s.type, keyName: s.keyName })),
        description: idx.description,
        records: idx.records,
      };
      if (values.json) io.out(JSON.stringify(doc, null, 2));
      else {
        io.out(
          `index ${file}: ${idx.records.length} records; signatures: ${doc.signatures.map((s) => `${s.type}:${s.keyName}`).join(", ") || "none"}`,
        );
        for (const r of idx.records)
          io.out(`  ${r.name}-${r.version} ${r.arch} ${r.fileSize ?? "?"} bytes ${r.checksum ?? ""}`);
      }
      return 0;
    }
    const size = (await stat(file)).size;
    const reader = await openPackage(createReadStream(file), { subject: file });
    try {
      const files = [];
      for await (const e of reader.entries()) {
        files.push({
          path: e.path,
          type: e.type,
          mode: "0" + e.mode.toString(8),
          uid: e.uid,
          gid: e.gid,
          size: e.size,
          ...(e.linkTarget !== undefined ? { target: e.linkTarget } : {}),
          ...(Object.keys(e.xattrs).length ? { xattrs: Object.keys(e.xattrs) } : {}),
        });
      }
      const h = reader.head;
      const doc = {
        kind,
        size,
        checksum: h.checksum,
        signatures: h.signatures.map((s) => ({ type: s.type, keyName: s.keyName })),
        info: h.info,
        controlFiles: [...h.controlFiles.keys()],
        files,
      };
      if (values.json) io.out(JSON.stringify(doc, null, 2));
      else {
        io.out(`package ${h.info.name}-${h.info.version} (${h.info.arch}), ${size} bytes, C:${h.checksum}`);
        io.out(`signatures: ${doc.signatures.map((s) => `${s.type}:${s.keyName}`).join(", ") || "none"}`);
        io.out(h.pkginfoText.trimEnd());
        if (doc.controlFiles.length) io.out(`control files: ${doc.controlFiles.join(" ")}`);
        for (const f of files)
          io.out(
            `${f.type.padEnd(8)} ${f.mode.padStart(5)} ${String(f.uid)}:${String(f.gid)} ${String(f.size).padStart(9)} ` +
              `${f.path}${f.target ? ` -> ${f.target}` : ""}`,
          );
      }
      return 0;
    } finally {
      await reader.close();
    }
  },
});
