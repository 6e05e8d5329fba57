import { Code as RpcCode } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../src/gen/grpc/health/v1/health_pb.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { KeyService } from "../src/gen/tollgate/v1/key_service_pb.js";
import { clientFor, reasonOf, rpcError, type TestClient } from "./support/clients.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.js";

const TTL_MS = 60_000;
const STALE_MS = 300_000;
let db: TestDatabase;
let proxy: TcpProxy;
let app: App;
let auth: TestClient<typeof AuthService>;
let health: ReturnType<typeof grpcClient<typeof Health>>;
let offsetMs = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  const direct = new URL(db.url);
  proxy = await startTcpProxy(Number(direct.port || 5432), direct.hostname);
  const viaProxy = new URL(db.url);
  viaProxy.port = String(proxy.port);
  app = await startTestServer(viaProxy.toString(), {
    env: { TOLLGATE_DB_TIMEOUT_MS: "300", TOLLGATE_KEY_CACHE_TTL_MS: String(TTL_MS), TOLLGATE_KEY_CACHE_STALE_MS: String(STALE_MS) },
    now: () => Date.now() + offsetMs,
  });
  auth = clientFor(AuthService, "grpc-js", app);
  health = grpcClient(Health, app.grpcPort);
});
afterAll(async () => {
  auth?.close();
  await app?.stop();
  await proxy?.close();
  await db?.drop();
});

async function readiness(): Promise<{ http: number; grpc: Serving }> {
  const http = (await fetch(`http://127.0.0.1:${app.httpPort}/readyz`)).status;
  return { http, grpc: (await health.check({ service: "" })).status };
}

async function until(check: () => Promise<boolean>, withinMs: number): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > withinMs) throw new Error(`not within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Authenticates with a 1 s deadline; returns the answer or error and how long it took. */
async function timed(credential: string) {
  const started = performance.now();
  const outcome = await auth.authenticate({ credential }, { timeoutMs: 1_000 }).then((res) => res.code, (err: unknown) => err as Awaited<ReturnType<typeof rpcError>>);
  return { outcome, ms: performance.now() - started };
}

describe("PostgreSQL outage", () => {
  it("keeps cached keys working, answers uncached ones UNAVAILABLE in time, and recovers without a restart", async () => {
    const warm = await seedKey(app, { tenantId: "acme" });
    const cold = await seedKey(app, { tenantId: "acme" });
    const admin = await seedKey(app, { tenantId: "acme", admin: "tenant" });
    const keys = clientFor(KeyService, "grpc-js", app, admin.secret);
    expect((await auth.authenticate({ credential: warm.secret })).code).toBe(Code.VALID);
    expect((await keys.listKeys({})).keys.length).toBe(3); // warms the admin key too
    await until(async () => (await readiness()).http === 200, 3_000);
    expect((await readiness()).grpc).toBe(Serving.SERVING);

    await proxy.cut("refuse");
    expect((await timed(warm.secret)).outcome).toBe(Code.VALID);
    const refused = await timed(cold.secret);
    expect((refused.outcome as { code: RpcCode }).code).toBe(RpcCode.Unavailable);
    expect(reasonOf(refused.outcome as Awaited<ReturnType<typeof rpcError>>)).toBe("DATABASE_UNAVAILABLE");
    expect(refused.ms).toBeLessThan(500);
    const adminErr = await rpcError(keys.listKeys({}, { timeoutMs: 1_000 }));
    expect(adminErr.code).toBe(RpcCode.Unavailable);
    expect(adminErr.message).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|select/i); // no driver or SQL text

    offsetMs = TTL_MS * 0.8; // refresh-ahead window: the background re-read fails, the call is answered from the cache at once
    expect((await timed(warm.secret)).outcome).toBe(Code.VALID);
    await new Promise((r) => setTimeout(r, 400)); // past TOLLGATE_DB_TIMEOUT_MS: that read has failed
    expect((await timed(warm.secret)).outcome).toBe(Code.VALID);
    offsetMs = TTL_MS + 1_000; // past the TTL: the refresh fails, the stale entry keeps serving
    expect((await timed(warm.secret)).outcome).toBe(Code.VALID);
    offsetMs = TTL_MS + STALE_MS + 1_000; // past the stale window: fail closed
    expect(((await timed(warm.secret)).outcome as { code: RpcCode }).code).toBe(RpcCode.Unavailable);
    offsetMs = 0;

    await until(async () => (await readiness()).http === 503, 3_000);
    expect((await readiness()).grpc).toBe(Serving.NOT_SERVING);

    await proxy.cut("blackhole"); // connections now hang instead of failing
    const hung = await timed(cold.secret);
    expect((hung.outcome as { code: RpcCode }).code).toBe(RpcCode.Unavailable);
    expect(hung.ms).toBeLessThan(900);

    await proxy.restore();
    await until(async () => (await readiness()).http === 200, 10_000);
    expect((await readiness()).grpc).toBe(Serving.SERVING);
    expect((await auth.authenticate({ credential: cold.secret })).code).toBe(Code.VALID);
    expect((await auth.authenticate({ credential: warm.secret })).code).toBe(Code.VALID);
    expect((await keys.listKeys({})).keys.length).toBe(3);
    keys.close();
  });
});
