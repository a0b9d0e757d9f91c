import { readIndex, parseProvide } from "@kiln/apk";
import { readFileSync } from "node:fs";
import { Resolver } from "../packages/repo/dist/resolver.js";
const idx = await readIndex(readFileSync("/work/shared/testdata/apk-real/alpine-3.16/APKINDEX.tar.gz"));
const repo = { url: "alpine" };
const avail = idx.records.map((record) => ({ record, repo, url: `x` }));
let n=0; for (const r of idx.records) n+=r.provides.length; console.log("provides", n);
for (let i=0;i<5;i++){ let s=performance.now(); for (const r of idx.records) for (const p of r.provides) try { parseProvide(p) } catch {} const a=performance.now()-s;
 s=performance.now(); const R=new Resolver(avail); const b=performance.now()-s; s=performance.now(); R.resolve(["build-base"]); const c=performance.now()-s;
 s=performance.now(); R.resolve(["python3","git","nginx"]); const d=performance.now()-s; console.log("parseProvide", a.toFixed(1), "ctor", b.toFixed(1), "first resolve", c.toFixed(1), "second", d.toFixed(1)); }
