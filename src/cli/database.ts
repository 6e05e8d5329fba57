import type pg from "pg";
import type { Config } from "../config/config.js";
import { createPool } from "../store/db.js";
import { startEmbeddedPostgres } from "../store/embedded.js";
import { migrate } from "../store/migrate.js";

/** A migrated pool for a CLI command, and how to let go of it. */
export interface CliDatabase {
  pool: pg.Pool;
  close(): Promise<void>;
}

/**
 * Opens `DATABASE_URL`, or the embedded PostgreSQL in the data dir (attaching to it when the
 * service already runs it, starting it for the duration of the command otherwise), and applies
 * pending migrations so that the CLI works on a brand-new machine too.
 */
export async function openCliDatabase(config: Config): Promise<CliDatabase> {
  const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres(config.dataDir);
  const connectionString = config.databaseUrl ?? embedded!.connectionString;
  const pool = createPool({ connectionString, poolSize: 2, timeoutMs: config.dbTimeoutMs, applicationName: "tollgate-cli" }, () => {});
  try {
    await migrate(pool);
  } catch (err) {
    await pool.end();
    await embedded?.stop();
    throw err;
  }
  return {
    pool,
    async close() {
      await pool.end();
      await embedded?.stop();
    },
  };
}
