import { resolverBenchmarks } from "./resolver.mjs";
const rs = await resolverBenchmarks((l) => console.error("   " + l));
for (const r of rs) console.log(`${r.name.padEnd(57)}${r.kiln.padStart(12)}${r.peer.padStart(12)}${r.ratio.toFixed(3).padStart(8)}x  (${r.note})`);
