/** What bench/run.ts and bench/ab.ts share: the scenarios' context on a server, and numeric settings. */
import { createGrpcTransport } from "@connectrpc/connect-node";
import { seedKey } from "../test/support/server.js";
import { INVALIDATION_CHANNEL } from "../src/store/notify.js";
import type { BenchContext } from "./scenario.js";
import type { BenchServer } from "./server.js";

export function numberEnv(name: string, def: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return n;
}

export function contextFor(server: BenchServer, durationSec: number): BenchContext {
  const app = { pool: server.pool, config: server.config };
  const one = async (tenantId = "bench") => {
    const { key, secret } = await seedKey(app, { tenantId, name: "bench key" });
    return { keyId: key.keyId, secret };
  };
  return {
    server,
    durationSec,
    transport: createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.grpcPort}` }),
    seedKey: one,
    async seedKeys(count, tenantId) {
      const keys: { keyId: string; secret: string }[] = [];
      for (let i = 0; i < count; i += 2) keys.push(...(await Promise.all(Array.from({ length: Math.min(2, count - i) }, () => one(tenantId)))));
      return keys;
    },
    async invalidate(keyIds) {
      await server.pool.query(`SELECT pg_notify('${INVALIDATION_CHANNEL}', 'key:' || id) FROM unnest($1::text[]) AS id`, [keyIds]);
    },
  };
}
