// Copies the SQL migrations next to the compiled store, where migrate.ts looks for them.
import { cpSync } from "node:fs";
cpSync("src/store/migrations", "dist/src/store/migrations", { recursive: true });
