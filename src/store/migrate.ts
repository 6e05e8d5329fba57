import { readFile, readdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type pg from "pg";

/** The directory of numbered, forward-only SQL migrations (`NNN_name.sql`). */
export const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations/", import.meta.url));

/** A lock id shared by every replica: only one applies migrations at a time. */
const MIGRATION_LOCK_ID = 7_310_411_001;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Reads the migrations in version order; a gap or a duplicate number is a packaging bug. */
export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const version = Number(file.slice(0, 3));
    if (migrations.some((m) => m.version === version)) throw new Error(`duplicate migration number ${version}`);
    migrations.push({ version, name: file.slice(4, -4), sql: await readFile(dir + file, "utf8") });
  }
  return migrations;
}

/**
 * Applies every migration not yet recorded, each in its own transaction, under a session-level
 * advisory lock so that replicas starting together apply each migration exactly once.
 * Returns the versions applied by this call.
 */
export async function migrate(pool: pg.Pool, migrations?: Migration[]): Promise<number[]> {
  const all = migrations ?? (await loadMigrations());
  const client = await pool.connect();
  try {
    // Lock waits must not be cut short by the pool's statement timeout.
    await client.query("SET statement_timeout = 0");
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_ID]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const { rows } = await client.query<{ version: number }>("SELECT version FROM schema_migrations");
      const done = new Set(rows.map((r) => r.version));
      const applied: number[] = [];
      for (const m of all) {
        if (done.has(m.version)) continue;
        await client.query("BEGIN");
        try {
          await client.query(m.sql);
          await client.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK");
          throw new Error(`migration ${m.version}_${m.name} failed: ${(err as Error).message}`, { cause: err });
        }
        applied.push(m.version);
      }
      return applied;
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_ID]);
    }
  } finally {
    client.release();
  }
}
