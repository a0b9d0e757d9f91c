// The native definitions of kiln:git-checkout and kiln:git-am (the inputs
// of melange's git-checkout and git-am, same names and defaults), and the
// checks of their values that `kiln lint` and the step itself share.

import type { PipelineDefinition, PipelineInput } from "../pipelines.js";
import { allowedProtocols, urlRefusal } from "./git-run.js";

const opt = (description: string, def?: string): PipelineInput =>
  def === undefined ? { description, required: false } : { description, default: def, required: false };

const CHECKOUT_INPUTS: Record<string, PipelineInput> = {
  repository: { description: "The repository to clone (https://, http:// or git://).", required: true },
  destination: opt("Where to put the checkout, relative to the working directory.", "."),
  depth: opt(
    "Clone depth; -1 for the whole history. Unset: 1, or -1 when branch and expected-commit are given.",
    "unset",
  ),
  branch: opt("The branch to check out (HEAD when neither branch nor tag is given)."),
  tag: opt("The tag to check out; branch and tag are mutually exclusive."),
  "expected-commit": opt("The commit the tag or branch must resolve to (40 hexadecimal digits)."),
  "expected-commit-is-branch-tip": opt(
    "true: expected-commit must be the branch's tip, not an older commit of it (needs branch).",
    "false",
  ),
  "recurse-submodules": opt("Check out the submodules too (true or false).", "false"),
  "shallow-submodules": opt("Clone submodules with depth 1 (with recurse-submodules).", "false"),
  "submodule-jobs": opt("Submodules fetched at once (with recurse-submodules).", "1"),
  "cherry-picks": opt("Commits to cherry-pick, one per line: [branch/]commit: why. Text after # is ignored."),
  "type-hint": opt("A hint for the SBOM about the kind of forge (gitlab)."),
  "sparse-paths": opt("Directories to check out alone (sparse checkout, cone mode), separated by whitespace."),
  "max-retries": opt("Retries of a failed clone.", "3"),
  "initial-backoff": opt("Seconds before the first retry.", "2"),
  "max-backoff": opt("Longest wait between retries, in seconds.", "60"),
  reason: opt("Why a mutable reference (a branch) is used."),
};

const noLocation = () => undefined;

export const GIT_NATIVE_PIPELINES: Record<string, PipelineDefinition> = {
  "kiln:git-checkout": {
    name: "kiln:git-checkout",
    title: "Check out a git repository at a verified commit (performed by kiln with host git)",
    file: "<kiln>",
    builtin: true,
    native: "git-checkout",
    needs: [],
    inputs: CHECKOUT_INPUTS,
    pipeline: [],
    locate: noLocation,
  },
  "kiln:git-am": {
    name: "kiln:git-am",
    title: "Apply mailbox patches from the source directory with git am (performed by kiln with host git)",
    file: "<kiln>",
    builtin: true,
    native: "git-am",
    needs: [],
    inputs: {
      patches: {
        description: "The patches, separated by whitespace, relative to the workspace root (the source directory).",
        required: true,
      },
    },
    pipeline: [],
    locate: noLocation,
  },
};

export interface CherryPick {
  /** The branch on origin holding the commit ("" when not given). */
  branch: string;
  commit: string;
  comment: string;
  line: number;
}

const BRANCH = /^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*@\{)[A-Za-z0-9._/+-]+(?<![./])$/;

/** A branch or tag name git accepts (check-ref-format's rules, roughly), never an option or a refspec. */
const REF_SHAPE = /^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*@\{)(?!.*\.lock$)[^\s:?*[\\^~]+(?<![./])$/;
const isRef = (s: string) =>
  REF_SHAPE.test(s) && ![...s].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f);

/** Parse the cherry-picks input; throws a message naming the line. */
export function parseCherryPicks(text: string): CherryPick[] {
  const out: CherryPick[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const colon = line.indexOf(":");
    if (colon < 0)
      throw new Error(`cherry-picks line ${i + 1}: expected "[branch/]commit: comment", got ${JSON.stringify(line)}`);
    const ref = line.slice(0, colon).trim();
    const comment = line.slice(colon + 1).trim();
    if (comment === "") throw new Error(`cherry-picks line ${i + 1}: ${JSON.stringify(ref)} has no comment saying why`);
    const slash = ref.lastIndexOf("/");
    const commit = ref.slice(slash + 1);
    const branch = slash < 0 ? "" : ref.slice(0, slash);
    if (!/^[0-9a-f]{7,40}$/i.test(commit))
      throw new Error(
        `cherry-picks line ${i + 1}: ${JSON.stringify(commit)} is not a commit id (7 to 40 hexadecimal digits)`,
      );
    if (branch !== "" && !BRANCH.test(branch))
      throw new Error(`cherry-picks line ${i + 1}: ${JSON.stringify(branch)} is not a branch name`);
    out.push({ branch, commit: commit.toLowerCase(), comment, line: i + 1 });
  });
  return out;
}

/** Problems with a git-checkout's values: [input or undefined, message]. Values holding ${{ }} are not judged. */
export function gitCheckoutProblems(w: Record<string, string>): Array<[string | undefined, string]> {
  const out: Array<[string | undefined, string]> = [];
  const has = (k: string) => (w[k] ?? "") !== "" && !(w[k] ?? "").includes("${{");
  const v = (k: string) => w[k] ?? "";
  for (const k of ["recurse-submodules", "shallow-submodules", "expected-commit-is-branch-tip"])
    if (has(k) && !["true", "false"].includes(v(k)))
      out.push([k, `${k} must be true or false, got ${JSON.stringify(v(k))}`]);
  if (has("depth") && !/^(unset|-1|[1-9]\d*)$/.test(v("depth")))
    out.push([
      "depth",
      `depth must be a positive whole number or -1 (the whole history), got ${JSON.stringify(v("depth"))}`,
    ]);
  for (const k of ["submodule-jobs"])
    if (has(k) && !/^[1-9]\d*$/.test(v(k)))
      out.push([k, `${k} must be a positive whole number, got ${JSON.stringify(v(k))}`]);
  for (const k of ["max-retries", "initial-backoff", "max-backoff"])
    if (has(k) && !/^\d+$/.test(v(k))) out.push([k, `${k} must be a whole number, got ${JSON.stringify(v(k))}`]);
  if (has("repository")) {
    const refused = urlRefusal(v("repository"), allowedProtocols());
    if (refused) out.push(["repository", `repository ${JSON.stringify(v("repository"))} is refused: ${refused}`]);
  }
  for (const k of ["branch", "tag"])
    if (has(k) && !isRef(v(k))) out.push([k, `${k} ${JSON.stringify(v(k))} is not a valid git ref name`]);
  if (v("branch") !== "" && v("tag") !== "")
    out.push([
      "tag",
      `branch and tag are mutually exclusive (branch ${JSON.stringify(v("branch"))}, tag ${JSON.stringify(v("tag"))})`,
    ]);
  if (v("expected-commit-is-branch-tip") === "true" && (v("branch") === "" || v("expected-commit") === ""))
    out.push(["expected-commit-is-branch-tip", "expected-commit-is-branch-tip needs branch and expected-commit"]);
  if (has("cherry-picks"))
    try {
      parseCherryPicks(v("cherry-picks"));
    } catch (e) {
      out.push(["cherry-picks", (e as Error).message]);
    }
  return out;
}
