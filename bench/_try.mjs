import { readIndex } from "@kiln/apk";
import { readFileSync } from "node:fs";
import { resolve, Resolver } from "../packages/repo/dist/resolver.js";
const t0 = performance.now();
const idx = await readIndex(readFileSync("/work/shared/testdata/apk-real/alpine-3.16/APKINDEX.tar.gz"));
const t1 = performance.now();
const repo = { url: "alpine" };
const avail = idx.records.map((record) => ({ record, repo, url: `alpine/${record.arch}/${record.name}-${record.version}.apk` }));
console.log("parse", (t1 - t0).toFixed(1));
for (const req of [["alpine-base"], ["build-base"], ["python3"], ["git"], ["nginx"], ["curl", "bash", "jq"], ["lua"], ["postgresql"], ["alpine-base","docs","openrc"], ["vim","gvim"], ["dnsmasq"], ["cmd:psql"]]) {
  const s = performance.now();
  try {
    const r = resolve(req, avail, { arch: "x86_64" });
    console.log(req.join(" "), r.packages.length, (performance.now() - s).toFixed(1) + "ms", r.packages.map((p) => p.record.name).join(" ").slice(0, 400));
  } catch (e) { console.log(req.join(" "), "ERR", e.message, (performance.now() - s).toFixed(1)); }
}
const R = new Resolver(avail);
for (let i = 0; i < 3; i++) { const s = performance.now(); R.resolve(["build-base"]); console.log("warm", (performance.now()-s).toFixed(2)); }
