import { verifyFile, type Keyring } from "@kiln/apk";
import { opt } from "../options.js";
import { defineCommand, string, usageError } from "../program.js";
import { loadKeyring, type Io } from "../util.js";

/** `--provenance [FILE]`: commander gives true, or the next word, which may be the first package. */
function provenanceArgs(
  value: string | boolean | undefined,
  files: string[],
): { files: string[]; provenance?: string } | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return { files };
  if (value.endsWith(".apk")) return { files: [value, ...files] };
  return { files, provenance: value };
}

async function verifyProvenances(
  files: string[],
  provenance: string | undefined,
  opts: { json: boolean; keys?: Keyring },
  io: Io,
): Promise<number> {
  const json = opts.json;
  if (files.length === 0) throw usageError("verify", "--provenance: give the package (PKG.apk)");
  if (provenance !== undefined && files.length > 1)
    throw usageError("verify", "--provenance FILE names the provenance of one package; give one PKG.apk");
  const { verifyProvenance } = await import("@kiln/builder");
  const reports = [];
  for (const f of files) {
    const r = await verifyProvenance(f, provenance, opts.keys ? { keys: opts.keys } : {});
    reports.push(r);
    if (json) continue;
    io.out(`${f}: OK provenance ${r.provenance} (sha256 ${r.sha256})`);
    io.out(`  builder: ${r.builder.id}`);
    if (r.signature)
      io.out(
        `  signed by: ${r.signature.keyids.join(", ")} ${r.signature.verified ? `(verified: ${r.signature.verified.join(", ")})` : "(not checked: give --keys-dir)"}`,
      );
    else io.out(`  signed by: nobody (a bare statement)`);
    if (r.recipe)
      io.out(
        `  recipe: ${r.recipe.path} sha256 ${r.recipe.sha256}${r.recipe.commit ? ` at ${r.recipe.commit}${r.recipe.dirty ? " (modified)" : ""}` : ""}`,
      );
    for (const s of r.sources)
      io.out(
        `  source: ${s.uri ?? s.name ?? "?"}${
          s.digest
            ? " " +
              Object.entries(s.digest)
                .map(([k, v]) => `${k}:${v}`)
                .join(" ")
            : ""
        }`,
      );
    io.out(`  guest: ${r.guest.length} packages${r.guest.length ? ` (${r.guest.join(" ")})` : ""}`);
  }
  if (json) io.out(JSON.stringify(reports, null, 2));
  return 0;
}

export const verify = defineCommand({
  name: "verify",
  summary: "check packages and indexes as apk verify does, or a package against its provenance",
  args: ["[FILE...]"],
  usage: "kiln verify --keys-dir DIR FILE... | kiln verify --provenance [PROVENANCE] PKG.apk...",
  details: `Prints one line per file: FILE: OK | UNTRUSTED | BAD signature | BAD archive, with the reason.
A signature is checked with the key of the same file name in the keys directory (as /etc/apk/keys);
packages are also checked against their datahash. Exit status 1 if any file is not OK.
With --provenance, each package is checked against its SLSA provenance (PROVENANCE, default
PKG.apk.intoto.json beside it, as kiln build writes it): the statement must parse, name the
package file as its subject and give its sha256; the builder, recipe, sources and guest
packages are printed. A tampered package or another package's provenance is an error (exit 1).
kiln build writes it as a DSSE envelope signed with the repository's key: with --keys-dir, the
package's signature and the envelope's must verify with a key there.`,
  options: {
    keysDir: opt.keysDir,
    provenance: string("--provenance [PROVENANCE]", "check the package against its SLSA provenance"),
    json: opt.json,
  },
  async run(values, files, io) {
    const prov = provenanceArgs(values.provenance as string | boolean | undefined, files);
    if (!prov && values.keysDir.length === 0) throw usageError("verify", "give --keys-dir DIR (or --provenance)");
    const targets = prov?.files ?? files;
    if (targets.length === 0) throw usageError("verify", "give the files to check");
    let bad = 0;
    const ring = values.keysDir.length > 0 ? await loadKeyring(values.keysDir) : undefined;
    if (ring) {
      const reports = [];
      for (const f of targets) {
        const r = await verifyFile(f, ring);
        if (r.verdict !== "OK") bad++;
        reports.push(r);
        if (!values.json) io.out(`${f}: ${r.verdict} (${r.reason})`);
      }
      if (values.json && !prov) io.out(JSON.stringify(reports, null, 2));
    }
    if (bad) return 1;
    if (prov)
      return verifyProvenances(
        prov.files,
        prov.provenance,
        { json: !!values.json, ...(ring ? { keys: ring } : {}) },
        io,
      );
    return 0;
  },
});
