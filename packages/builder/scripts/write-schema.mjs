// Regenerates recipe.schema.json from the zod schema (npm run -w @kiln/builder schema).
import { writeFileSync } from "node:fs";
import { recipeJsonSchemaText } from "../dist/index.js";

const out = new URL("../recipe.schema.json", import.meta.url);
writeFileSync(out, recipeJsonSchemaText());
console.log(`wrote ${out.pathname}`);
