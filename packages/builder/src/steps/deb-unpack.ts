// The `deb-unpack` step: unpack a .deb from the workspace into a directory
// of the workspace (merged /usr), on the host.

import { excludePath, unpackDeb } from "../deb.js";
import { ensureDirUnder, fileUnder } from "../host-files.js";
import { hostStep, NativeStepError, workspaceRelative } from "./host.js";

export const debUnpackStep = hostStep("deb-unpack", async (w, wdRel, where, ctx) => {
  const exclude = (w.exclude ?? "").split(/\s+/).filter(Boolean);
  for (const e of exclude)
    if (excludePath(e) === undefined)
      throw new NativeStepError(
        `${where}: exclude: expected paths inside the package such as usr/bin/tool, got ${JSON.stringify(e)}`,
      );
  const deb = await fileUnder(ctx.workspace, workspaceRelative(wdRel, w.deb ?? "", `${where}: deb`), `${where}: deb`);
  const destRel = workspaceRelative(wdRel, w.directory || ".", `${where}: directory`);
  const dest = await ensureDirUnder(ctx.workspace, destRel, `${where}: directory`);
  await unpackDeb(deb, dest, { mergedUsr: true, exclude: exclude.map((e) => excludePath(e)!) });
  return {};
});
