// Copies the SQL migrations next to the compiled store, where migrate.ts looks for them.
// Usage: node scripts/copy-assets.mjs [outDir]   (default dist, as `npm run build` compiles there)
import { cpSync } from "node:fs";
const outDir = process.argv[2] ?? "dist";
cpSync("src/store/migrations", `${outDir}/src/store/migrations`, { recursive: true });
