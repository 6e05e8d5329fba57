import pg from "pg";
import { TollgateError, unavailable } from "../domain/errors.js";

/** A pool or a client inside a transaction: anything repositories can run statements on. */
export type Queryable = Pick<pg.PoolClient, "query">;

export interface DbOptions {
  connectionString: string;
  poolSize: number;
  /** Bounds connecting and every statement, so RPCs answer within their deadline when Postgres hangs. */
  timeoutMs: number;
  applicationName?: string;
}

// int8 (bigint) columns come back as JS numbers: every count we store fits in 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

/** Creates the connection pool. Idle-connection errors are reported, never allowed to crash the process. */
export function createPool(options: DbOptions, onError: (err: Error) => void): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.poolSize,
    connectionTimeoutMillis: options.timeoutMs,
    query_timeout: options.timeoutMs,
    statement_timeout: options.timeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: options.applicationName ?? "tollgate",
  });
  pool.on("error", onError);
  return pool;
}

/** True when a PostgreSQL answers at `url` within 2 s (used to choose between a server and the embedded one). */
export async function postgresReachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Runs `fn` in a transaction; commits on success, rolls back on any error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect().catch((err: unknown) => {
    throw mapDbError(err);
  });
  // A checked-out client has no pool listener: a connection dying while we hold it (even between
  // statements) would emit an unhandled 'error' and crash the process. The failure still reaches
  // us through the next statement; the dead client is then discarded instead of pooled.
  let broken = false;
  const onError = () => {
    broken = true;
  };
  client.on("error", onError);
  try {
    await client.query("BEGIN");
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw mapDbError(err);
  } finally {
    client.removeListener("error", onError);
    client.release(broken);
  }
}

/** SQLSTATEs the store interprets; the only place these codes appear. */
const SQLSTATE = {
  uniqueViolation: "23505",
  foreignKeyViolation: "23503",
  checkViolation: "23514",
  serializationFailure: "40001",
  queryCanceled: "57014",
  adminShutdown: "57P01",
  cannotConnectNow: "57P03",
} as const;

/**
 * Turns a driver or server error into a domain error. Constraint violations become
 * ALREADY_EXISTS / FAILED_PRECONDITION; everything else is a dependency failure (UNAVAILABLE).
 * The original error rides along as `cause` for the logs, never for the client.
 */
export function mapDbError(err: unknown): TollgateError {
  if (err instanceof TollgateError) return err;
  const code = (err as { code?: string } | undefined)?.code;
  switch (code) {
    case SQLSTATE.uniqueViolation:
      return new TollgateError("already_exists", "ALREADY_EXISTS", "a record with that id already exists", {}, { cause: err });
    case SQLSTATE.foreignKeyViolation:
      return new TollgateError("failed_precondition", "REFERENCED_RECORD_MISSING", "a referenced record does not exist", {}, { cause: err });
    case SQLSTATE.checkViolation:
      return new TollgateError("invalid_argument", "INVALID_ARGUMENT", "a value is outside its allowed range", {}, { cause: err });
    default:
      return unavailable("DATABASE_UNAVAILABLE", "the database is unavailable; try again", err);
  }
}

/** Runs one statement, mapping failures to domain errors. */
export async function query<R extends pg.QueryResultRow>(db: Queryable, text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
  try {
    return await db.query<R>(text, values);
  } catch (err) {
    throw mapDbError(err);
  }
}

export { SQLSTATE };
