/**
 * ext_authz while PostgreSQL breaks under a running server: a TCP proxy sits between the server and
 * the real database, and is made to refuse connections or to swallow every byte.
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { envoyExtAuthz } from "./support/envoy-harness.js";
import { listenerConnected, seedKey, startTestServer } from "./support/server.js";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.js";
import { grpcJsClient } from "./support/clients.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";

let db: TestDatabase;
let proxy: TcpProxy;
let app: App;
let envoy: ReturnType<typeof envoyExtAuthz>;

beforeAll(async () => {
  db = await createTestDatabase();
  const target = new URL(db.url);
  proxy = await startTcpProxy(db.url);
  app = await startTestServer(proxy.url, { env: { TOLLGATE_DB_TIMEOUT_MS: "5000" } });
  envoy = envoyExtAuthz(app.grpcPort, { timeoutMs: 2_000 });
  await envoy.check({});
  await listenerConnected(app);
});
afterAll(async () => {
  envoy?.close();
  await proxy?.cut("refuse"); // fail the black-holed connections instead of waiting for them at shutdown
  await app?.stop();
  await proxy?.close();
  await db?.drop();
});

describe("Check with a broken database", () => {
  it("answers UNAVAILABLE for an uncached key when PostgreSQL refuses, keeps serving cached keys, and recovers", async () => {
    const cached = await seedKey(app, { tenantId: "acme" });
    const uncached = await seedKey(app, { tenantId: "acme" });
    expect((await envoy.check({ headers: { "x-api-key": cached.secret } })).kind).toBe("allow");

    await proxy.cut("refuse");
    const v = await envoy.check({ headers: { "x-api-key": uncached.secret } });
    expect(v).toMatchObject({ kind: "error", grpcCode: grpc.status.UNAVAILABLE, status: 403 });
    if (v.kind === "error") expect(v.message).not.toMatch(/ECONNREFUSED|postgres|127\.0\.0\.1|SELECT/i);
    const lenient = envoyExtAuthz(app.grpcPort, { failureModeAllow: true, timeoutMs: 2_000 });
    expect(await lenient.check({ headers: { "x-api-key": uncached.secret } })).toMatchObject({ kind: "error", status: 200 });
    lenient.close();
    // A key verified before the outage keeps working inside its cache window: no database needed.
    expect((await envoy.check({ headers: { "x-api-key": cached.secret } })).kind).toBe("allow");
    // Answers that need no database are still decisions.
    expect(await envoy.check({ headers: { "x-api-key": "sk_live_nonsense" } })).toMatchObject({ kind: "deny", status: 401 });

    await proxy.restore();
    await expect.poll(async () => (await envoy.check({ headers: { "x-api-key": uncached.secret } })).kind, { timeout: 10_000 }).toBe("allow");
  });

  it("answers UNAVAILABLE for an access token whose key row must be read while PostgreSQL refuses, and serves it again after", async () => {
    await listenerConnected(app); // the previous test's outage left it reconnecting
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write"] });
    const client = grpcJsClient(AuthService, app.grpcPort);
    const token = (await client.issueToken({ credential: secret, scopes: ["chat:write"] })).accessToken;
    client.close();
    const bearer = { headers: { authorization: `Bearer ${token}` } };
    expect((await envoy.check(bearer)).kind).toBe("allow");

    await proxy.cut("refuse");
    // Cached, the token needs no database (its signature and its key row are in memory).
    expect((await envoy.check(bearer)).kind).toBe("allow");
    app.verifier.invalidate(key.keyId); // the key row must now be read again
    const v = await envoy.check(bearer);
    expect(v).toMatchObject({ kind: "error", grpcCode: grpc.status.UNAVAILABLE, status: 403 });
    if (v.kind === "error") expect(v.message).not.toMatch(/ECONNREFUSED|postgres|127\.0\.0\.1|SELECT/i);

    await proxy.restore();
    await expect.poll(async () => (await envoy.check(bearer)).kind, { timeout: 10_000 }).toBe("allow");
  });

  it("answers UNAVAILABLE within Envoy's grpc-timeout when PostgreSQL stops answering", async () => {
    const silent = await seedKey(app, { tenantId: "acme" });
    await proxy.cut("blackhole");
    for (const timeoutMs of [200, 500]) {
      const started = performance.now();
      const v = await envoy.check({ headers: { "x-api-key": silent.secret }, timeoutMs });
      const elapsed = performance.now() - started;
      // The server's own answer (UNAVAILABLE) normally beats Envoy's timer; under a loaded test
      // process the two can cross, and Envoy then reports DEADLINE_EXCEEDED — never a decision,
      // never INTERNAL, and never later than Envoy's own timeout.
      expect(v.kind).toBe("error");
      if (v.kind === "error") expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(v.grpcCode);
      expect(elapsed).toBeLessThan(timeoutMs + 50);
      if (timeoutMs === 500) expect(v).toMatchObject({ grpcCode: grpc.status.UNAVAILABLE });
    }
  });
});
