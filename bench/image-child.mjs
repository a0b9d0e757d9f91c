// Runs one image build in a fresh process so its peak RSS can be read.
import { loadImageConfig, buildImage } from "@kiln/image";
const [cfgFile, out, cacheDir] = process.argv.slice(2);
const cfg = await loadImageConfig(cfgFile);
const t0 = performance.now();
const built = await buildImage(cfg, { cacheDir, sourceDateEpoch: 0 }, { out, format: "oci" });
const ms = performance.now() - t0;
process.stdout.write(
  JSON.stringify({
    ms,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    bytes: built.contentBytes,
    digest: built.result.digest,
  }),
);
