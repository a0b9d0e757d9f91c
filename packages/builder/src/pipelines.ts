// Named pipelines (`uses: NAME`): the built-in ones shipped as YAML in
// packages/builder/pipelines, user pipeline directories overlaid on them, and
// the steps kiln performs itself rather than in the guest (`uses: kiln:fetch`,
// `uses: kiln:deb-unpack`).

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError, loadYaml } from "@kiln/core";
import { pipelineFileSchema, type PipelineFile, type Step } from "./recipe-schema.js";
import { goDecode, type IgnoredKey } from "./scalars.js";
import { GIT_NATIVE_PIPELINES } from "./steps/git-native.js";

export interface PipelineInput {
  description?: string;
  /** The default (may contain `${{ }}` references, substituted where the pipeline is used). */
  default?: string;
  required: boolean;
}

export type NativeKind = "fetch" | "deb-unpack" | "git-checkout" | "git-am";

export interface PipelineDefinition {
  /** The name recipes use: `autoconf/make`, `kiln:fetch`. */
  name: string;
  /** The file's own `name:` (a human description). */
  title?: string;
  /** Where it was read from (`<kiln>` for native steps). */
  file: string;
  builtin: boolean;
  /** Set for steps kiln performs on the host. */
  native?: NativeKind;
  needs: string[];
  inputs: Record<string, PipelineInput>;
  pipeline: Step[];
  /** Keys melange's decoder (and so kiln) ignores in the file: unknown to the pipeline format. */
  ignoredKeys?: Array<{ key: string; line: number; col: number }>;
  /** Position of a node in the pipeline's file. */
  locate(path: ReadonlyArray<string | number>): { line: number; col: number } | undefined;
}

/** The directory of the pipelines shipped with kiln. */
export const BUILTIN_PIPELINE_DIR = fileURLToPath(new URL("../pipelines/", import.meta.url));

const noLocation = () => undefined;

/**
 * The host-side steps. Their inputs are the contract with the code that runs
 * them: every value is a string, defaults applied, `${{ }}` substituted.
 */
export const NATIVE_PIPELINES: Record<string, PipelineDefinition> = {
  "kiln:fetch": {
    name: "kiln:fetch",
    title: "Fetch a file by URI, check its digest, optionally extract it (performed by kiln)",
    file: "<kiln>",
    builtin: true,
    native: "fetch",
    needs: [],
    inputs: {
      uri: {
        description: "The URI to fetch (http, https, file, or mirror://NAME/… resolved on the host).",
        required: true,
      },
      "expected-sha256": { description: "The expected SHA-256 of the file (hex).", required: false },
      "expected-sha512": { description: "The expected SHA-512 of the file (hex).", required: false },
      "expected-none": { description: "Set to skip checksum verification.", required: false },
      extract: { description: "Whether to extract the file as a tarball.", default: "true", required: false },
      "strip-components": {
        description: "Leading path components to strip while extracting.",
        default: "1",
        required: false,
      },
      directory: {
        description: "Directory to extract into, relative to the working directory.",
        default: ".",
        required: false,
      },
      delete: {
        description: "Whether to delete the fetched file after extracting.",
        default: "false",
        required: false,
      },
      "purl-name": { description: "Package URL name for the SBOM.", default: "${{package.name}}", required: false },
      "purl-version": {
        description: "Package URL version for the SBOM.",
        default: "${{package.version}}",
        required: false,
      },
      timeout: { description: "Connect/read timeout in seconds.", default: "5", required: false },
      "dns-timeout": { description: "DNS timeout in seconds.", default: "20", required: false },
      "retry-limit": { description: "Attempts before giving up.", default: "5", required: false },
    },
    pipeline: [],
    locate: noLocation,
  },
  "kiln:deb-unpack": {
    name: "kiln:deb-unpack",
    title: "Unpack a Debian binary package's data into a directory (performed by kiln)",
    file: "<kiln>",
    builtin: true,
    native: "deb-unpack",
    needs: [],
    inputs: {
      deb: { description: "Path of the .deb, relative to the working directory.", required: true },
      directory: {
        description: "Directory to unpack the data member into.",
        default: "${{targets.contextdir}}",
        required: false,
      },
      exclude: {
        description:
          "Paths left out (whitespace-separated, as installed under merged /usr), each with what is under it.",
        default: "",
        required: false,
      },
    },
    pipeline: [],
    locate: noLocation,
  },
  ...GIT_NATIVE_PIPELINES,
};

function listYaml(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch (e) {
      throw new ConfigError([
        {
          file: dir,
          path: "",
          message: `pipeline directory: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such directory" : (e as Error).message}`,
        },
      ]);
    }
    for (const n of names) {
      const p = join(d, n);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (n.endsWith(".yaml")) out.set(relative(dir, p).slice(0, -".yaml".length).split(sep).join("/"), p);
    }
  };
  walk(dir);
  return out;
}

/** Parse one pipeline file; throws ConfigError with every problem. */
export function parsePipelineFile(name: string, file: string, text: string, builtin = false): PipelineDefinition {
  // melange decodes pipeline files without KnownFields: unknown keys are ignored, not refused.
  const ignored: IgnoredKey[] = [];
  const loaded = loadYaml<PipelineFile>(file, text, pipelineFileSchema, (doc, t) =>
    goDecode(doc, t, pipelineFileSchema, ignored),
  );
  const v = loaded.value;
  const inputs: Record<string, PipelineInput> = {};
  for (const [k, i] of Object.entries(v.inputs ?? {})) {
    const input: PipelineInput = { required: i.required ?? false };
    if (i.description !== undefined) input.description = i.description;
    if (i.default !== undefined) input.default = String(i.default);
    inputs[k] = input;
  }
  const def: PipelineDefinition = {
    name,
    file,
    builtin,
    needs: v.needs?.packages ?? [],
    inputs,
    pipeline: v.pipeline,
    locate: loaded.locate,
  };
  if (v.name !== undefined) def.title = v.name;
  if (ignored.length)
    def.ignoredKeys = ignored.map(({ key, offset }) => {
      const before = text.slice(0, offset);
      return { key, line: before.split("\n").length, col: offset - before.lastIndexOf("\n") };
    });
  return def;
}

const builtinCache = new Map<string, PipelineDefinition>();
let builtinFiles: Map<string, string> | undefined;

/**
 * The pipelines visible to recipes: kiln's native steps, then the user
 * directories (the first directory that has NAME.yaml wins), then the
 * built-ins. Files are parsed on first use.
 */
export class PipelineRegistry {
  private readonly parsed = new Map<string, PipelineDefinition>();

  constructor(
    /** name → file, for the user directories, already overlaid. */
    private readonly userFiles: ReadonlyMap<string, string>,
    private readonly builtins: ReadonlyMap<string, string>,
  ) {}

  /** Every name `uses:` can refer to, sorted. */
  names(): string[] {
    return [...new Set([...Object.keys(NATIVE_PIPELINES), ...this.userFiles.keys(), ...this.builtins.keys()])].sort();
  }

  has(name: string): boolean {
    return name in NATIVE_PIPELINES || this.userFiles.has(name) || this.builtins.has(name);
  }

  /** Where NAME comes from, without parsing it. */
  source(name: string): string | undefined {
    if (name in NATIVE_PIPELINES) return "<kiln>";
    return this.userFiles.get(name) ?? this.builtins.get(name);
  }

  /** The definition of NAME, or undefined if no such pipeline; throws ConfigError if its file is invalid. */
  get(name: string): PipelineDefinition | undefined {
    const native = NATIVE_PIPELINES[name];
    if (native) return native;
    const user = this.userFiles.get(name);
    if (user) {
      let d = this.parsed.get(name);
      if (!d) {
        d = parsePipelineFile(name, user, readFileSync(user, "utf8"));
        this.parsed.set(name, d);
      }
      return d;
    }
    const b = this.builtins.get(name);
    if (!b) return undefined;
    let d = builtinCache.get(name);
    if (!d) {
      d = parsePipelineFile(name, b, readFileSync(b, "utf8"), true);
      builtinCache.set(name, d);
    }
    return d;
  }
}

/** The built-in pipelines plus those in `dirs` (earlier directories take precedence). */
export function loadPipelines(dirs: readonly string[] = []): PipelineRegistry {
  builtinFiles ??= listYaml(BUILTIN_PIPELINE_DIR);
  const user = new Map<string, string>();
  for (const dir of dirs) {
    for (const [name, file] of listYaml(dir)) if (!user.has(name)) user.set(name, file);
  }
  return new PipelineRegistry(user, builtinFiles);
}
