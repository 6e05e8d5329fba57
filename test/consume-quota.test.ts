import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { runCli } from "../src/cli/main.js";
import net from "node:net";
import { Code as RpcCode, ConnectError, createHandlerContext } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ConsumeQuotaRequestSchema } from "../src/gen/tollgate/v1/quota_pb.js";
import { consumeQuota } from "../src/services/consume-quota.js";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { UsageService, UsageGroupBy } from "../src/gen/tollgate/v1/usage_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";
import { defineLimit, storedUsed } from "./support/quota.js";

let db: TestDatabase;
let app: App;
let client: ReturnType<typeof grpcClient<typeof AuthService>>;
let clock = Date.parse("2024-02-29T23:59:30Z");
const bearer = (secret: string) => ({ headers: { authorization: `Bearer ${secret}` } });
const invalid = (field: string) => (e: ConnectError) => e.code === RpcCode.InvalidArgument && e.message.includes(field);

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { now: () => clock, env: { TOLLGATE_QUOTA_FLUSH_MS: "100000" } });
  client = grpcClient(AuthService, app.grpcPort);
  await defineLimit(app.pool, { name: "minutely", scopeId: "qa", period: "minute", amount: 3, autoApply: true });
  await defineLimit(app.pool, { name: "tokens", scopeId: "qa", period: "hour", amount: 100 });
  await defineLimit(app.pool, { name: "shadowed", scopeId: "qa", period: "day", amount: 1, shadow: true });
  await defineLimit(app.pool, { name: "credits", scopeId: "qa", kind: "budget", period: "none", amount: 5 });
  await defineLimit(app.pool, { name: "bursty", scopeId: "qa", kind: "rate", amount: 2, refill: 1, period: "minute" });
  app.quota.catalog.invalidate();
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

describe("ConsumeQuota", () => {
  it("charges the key's auto-applied limits by default and sends the rate-limit headers", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    const res = await client.consumeQuota({ credential: secret });
    expect(res).toMatchObject({ allowed: true, code: Code.OK });
    expect(res.principal?.keyId).toBe(key.keyId);
    expect(res.limits.map((l) => [l.name, Number(l.limit), Number(l.remaining)])).toEqual([["minutely", 3, 2]]);
    expect(timestampMs(res.limits[0]!.resetAt!)).toBe(Date.parse("2024-03-01T00:00:00Z"));
    expect(res.headers).toEqual({
      "ratelimit-policy": '"minutely";q=3;w=60',
      ratelimit: '"minutely";r=2;t=30',
      "x-ratelimit-limit": "3",
      "x-ratelimit-remaining": "2",
      "x-ratelimit-reset": String(Date.parse("2024-03-01T00:00:00Z") / 1000),
    });
    expect(res.clientResponse).toBeUndefined();
  });

  it("denies with QUOTA_EXCEEDED, Retry-After and a 429 problem body once the window is used, and resets at the window end", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    clock = Date.parse("2024-02-29T23:59:30Z");
    for (let i = 0; i < 3; i++) expect((await client.consumeQuota({ credential: secret })).allowed).toBe(true);
    const denied = await client.consumeQuota({ credential: secret });
    expect(denied).toMatchObject({ allowed: false, code: Code.QUOTA_EXCEEDED });
    expect(denied.limits[0]).toMatchObject({ exceeded: true, remaining: 0n });
    expect(denied.headers["retry-after"]).toBe("30");
    expect(denied.clientResponse?.httpStatus).toBe(429);
    expect(denied.clientResponse?.headers["retry-after"]).toBe("30");
    expect(JSON.parse(denied.clientResponse!.body)).toMatchObject({ status: 429, code: "QUOTA_EXCEEDED", type: "https://tollgate.dev/problems/quota-exceeded" });
    clock = Date.parse("2024-03-01T00:00:00Z"); // leap day ends; a fresh window begins exactly here
    expect((await client.consumeQuota({ credential: secret })).allowed).toBe(true);
  });

  it("rate-limits with a token bucket: the burst, then RATE_LIMITED until a token refills", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    clock = Date.parse("2024-03-01T08:00:00Z");
    for (let i = 0; i < 2; i++) expect((await client.consumeQuota({ credential: secret, limits: ["bursty"] })).allowed).toBe(true);
    const denied = await client.consumeQuota({ credential: secret, limits: ["bursty"] });
    expect(denied).toMatchObject({ allowed: false, code: Code.RATE_LIMITED });
    expect(denied.headers["retry-after"]).toBe("60");
    expect(denied.headers["ratelimit-policy"]).toBe('"bursty";q=2;w=120');
    expect(denied.clientResponse?.httpStatus).toBe(429);
    clock += 60_000;
    expect((await client.consumeQuota({ credential: secret, limits: ["bursty"] })).allowed).toBe(true);
  });

  it("checks without charging at cost 0 and in a dry run", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    const check = await client.consumeQuota({ credential: secret, limits: ["tokens"], cost: 0n });
    expect(check).toMatchObject({ allowed: true });
    expect(check.limits[0]!.remaining).toBe(100n);
    const dry = await client.consumeQuota({ credential: secret, limits: ["tokens"], cost: 101n, dryRun: true });
    expect(dry).toMatchObject({ allowed: false, code: Code.QUOTA_EXCEEDED });
    const spent = await client.consumeQuota({ credential: secret, limits: ["tokens"], cost: 60n });
    expect(spent.limits[0]!.remaining).toBe(40n);
  });

  it("charges nothing when one of several limits denies (all or nothing)", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    const denied = await client.consumeQuota({ credential: secret, limits: ["tokens", "credits"], cost: 6n });
    expect(denied).toMatchObject({ allowed: false, code: Code.BUDGET_EXCEEDED });
    expect(denied.headers["retry-after"]).toBeUndefined(); // a one-off budget never refills
    const after = await client.consumeQuota({ credential: secret, limits: ["tokens"], cost: 0n });
    expect(after.limits[0]!.remaining).toBe(100n);
  });

  it("never charges twice for a retry with the same idempotency key", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    const first = await client.consumeQuota({ credential: secret, limits: ["tokens"], cost: 10n, idempotencyKey: "order-42" });
    const retries = await Promise.all(Array.from({ length: 5 }, () => client.consumeQuota({ credential: secret, limits: ["tokens"], cost: 10n, idempotencyKey: "order-42" })));
    expect(first.replayed).toBe(false);
    for (const r of retries) {
      expect(r).toMatchObject({ allowed: true, replayed: true, headers: first.headers });
      expect(r.limits).toEqual(first.limits); // the stored answer, statuses included (remaining 90 each time)
    }
    expect(first.limits[0]!.remaining).toBe(90n);
    const other = await client.consumeQuota({ credential: secret, limits: ["tokens"], cost: 10n, idempotencyKey: "order-43" });
    expect(other.limits[0]!.remaining).toBe(80n);
  });

  it("knows a limit defined a moment ago once its change is announced, instead of calling it unknown", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    expect((await client.consumeQuota({ credential: secret, limits: ["tokens"] })).allowed).toBe(true); // the catalog is loaded
    await defineLimit(app.pool, { name: "brand-new", scopeId: "qa", period: "day", amount: 5 });
    app.quota.catalog.invalidate(); // what the limits notification does; nothing has reloaded yet
    const res = await client.consumeQuota({ credential: secret, limits: ["brand-new"] });
    expect(res).toMatchObject({ allowed: true, code: Code.OK });
    expect(res.limits.map((l) => [l.name, Number(l.remaining)])).toEqual([["brand-new", 4]]);
    await expect(client.consumeQuota({ credential: secret, limits: ["never-defined"] })).rejects.toSatisfy(invalid("limits[0]"));
  });

  it("counts and reports a shadow limit without ever enforcing it", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    await client.consumeQuota({ credential: secret, limits: ["shadowed"] });
    const over = await client.consumeQuota({ credential: secret, limits: ["shadowed"] });
    expect(over).toMatchObject({ allowed: true, code: Code.OK });
    expect(over.limits[0]).toMatchObject({ name: "shadowed", exceeded: true, shadow: true });
    expect(over.headers).toEqual({}); // shadow limits are not advertised
  });

  it("rejects bad input as INVALID_ARGUMENT naming the field", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    await expect(client.consumeQuota({ credential: secret, cost: -1n })).rejects.toSatisfy(invalid("cost"));
    await expect(client.consumeQuota({ credential: secret, cost: 10n ** 15n })).rejects.toSatisfy(invalid("cost"));
    await expect(client.consumeQuota({ credential: secret, limits: ["nope"] })).rejects.toSatisfy(invalid("limits[0]"));
    await expect(client.consumeQuota({ credential: secret, limits: ["tokens", "chat"] })).rejects.toSatisfy(invalid("limits[1]")); // a free-plan limit
    await expect(client.consumeQuota({ credential: secret, limits: ["bad name!"] })).rejects.toSatisfy(invalid("limits[0]"));
    await expect(client.consumeQuota({ credential: secret, idempotencyKey: "k".repeat(129) })).rejects.toSatisfy(invalid("idempotency_key"));
    await expect(client.consumeQuota({ credential: secret, keyId: "0123456789abcdef" })).rejects.toSatisfy(invalid("key_id"));
  });

  it("answers a bad credential as a 401 value, and charges by key_id only for a quota-service key of the tenant", async () => {
    const { key } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    const missing = await client.consumeQuota({});
    expect(missing).toMatchObject({ allowed: false, code: Code.MISSING_CREDENTIAL });
    expect(missing.clientResponse?.httpStatus).toBe(401);
    expect((await client.consumeQuota({ credential: "sk_live_garbage" })).code).toBe(Code.MALFORMED_CREDENTIAL);

    await expect(client.consumeQuota({ keyId: key.keyId })).rejects.toSatisfy((e: ConnectError) => e.code === RpcCode.Unauthenticated);
    const plain = await seedKey(app, { tenantId: "acme" });
    await expect(client.consumeQuota({ keyId: key.keyId }, bearer(plain.secret))).rejects.toSatisfy((e: ConnectError) => e.code === RpcCode.PermissionDenied);
    const foreign = await seedKey(app, { tenantId: "other", permissions: ["tollgate:quota"] });
    await expect(client.consumeQuota({ keyId: key.keyId }, bearer(foreign.secret))).rejects.toSatisfy((e: ConnectError) => e.code === RpcCode.NotFound);
    const gateway = await seedKey(app, { tenantId: "acme", permissions: ["tollgate:quota"] });
    const res = await client.consumeQuota({ keyId: key.keyId, limits: ["tokens"], cost: 5n }, bearer(gateway.secret));
    expect(res).toMatchObject({ allowed: true });
    expect(res.principal?.keyId).toBe(key.keyId);
  });

  it("answers a warm key synchronously (no promise), by credential and by key_id, and loads a forgotten key through a promise", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", plan: "qa" });
    const gateway = await seedKey(app, { tenantId: "acme", permissions: ["tollgate:quota"] });
    // Warm both keys and lease a block of "tokens" for the key through the real server first.
    await client.consumeQuota({ credential: secret, limits: ["tokens"] });
    await client.consumeQuota({ keyId: key.keyId, limits: ["tokens"] }, bearer(gateway.secret));
    const deps = { verifier: app.verifier, quota: app.quota.service, now: () => clock };
    const ctx = (headers: Record<string, string> = {}) =>
      createHandlerContext({ service: AuthService, method: AuthService.method.consumeQuota, protocolName: "grpc", requestMethod: "POST", url: "http://x/", requestHeader: headers });
    const byCredential = consumeQuota(deps, create(ConsumeQuotaRequestSchema, { credential: secret, limits: ["tokens"] }), ctx());
    expect(byCredential).not.toBeInstanceOf(Promise);
    expect(byCredential).toMatchObject({ allowed: true, code: Code.OK, principal: { keyId: key.keyId } });
    const byId = consumeQuota(deps, create(ConsumeQuotaRequestSchema, { keyId: key.keyId, limits: ["tokens"] }), ctx({ authorization: `Bearer ${gateway.secret}` }));
    expect(byId).not.toBeInstanceOf(Promise);
    expect(byId).toMatchObject({ allowed: true, code: Code.OK, principal: { keyId: key.keyId } });
    // A refusal of the caller is a synchronous throw, typed as the RPC's error.
    expect(() => consumeQuota(deps, create(ConsumeQuotaRequestSchema, { keyId: key.keyId }), ctx())).toThrow(/authorization/);
    app.verifier.invalidate(key.keyId);
    const reloading = consumeQuota(deps, create(ConsumeQuotaRequestSchema, { keyId: key.keyId, limits: ["tokens"] }), ctx({ authorization: `Bearer ${gateway.secret}` }));
    expect(reloading).toBeInstanceOf(Promise);
    expect(await reloading).toMatchObject({ allowed: true, principal: { keyId: key.keyId } });
  });

  it("sums usage rows that repeat a key, limit and minute in one write, into minute, hour and day roll-ups", async () => {
    const minuteMs = Date.parse("2024-02-29T23:58:00Z");
    const row = { minuteMs, tenantId: "dup-t", keyId: "dup0000000000001", limitName: "tokens", admitted: 2, denied: 1, cost: 5 };
    await app.quota.repo.addUsage([row, { ...row, admitted: 3, denied: 0, cost: 7 }, { ...row, minuteMs: minuteMs + 60_000, admitted: 1, denied: 0, cost: 1 }]);
    await app.quota.repo.addUsage([{ ...row, admitted: 1, denied: 0, cost: 1 }]); // a later write adds to the stored rows
    const read = (granularity: "minute" | "hour" | "day") =>
      app.quota.repo.usage({ granularity, from: new Date(minuteMs), to: new Date(minuteMs + 60_000), keyId: row.keyId, groupBy: "key", perBucket: true, limit: 10 });
    expect((await read("minute")).map((r) => [r.bucketStart?.toISOString(), Number(r.admitted), Number(r.denied), Number(r.cost)])).toEqual([
      ["2024-02-29T23:58:00.000Z", 6, 1, 13],
      ["2024-02-29T23:59:00.000Z", 1, 0, 1],
    ]);
    for (const g of ["hour", "day"] as const) expect((await read(g)).map((r) => [Number(r.admitted), Number(r.denied), Number(r.cost)])).toEqual([[7, 1, 14]]);
  });

  it("reports usage through GetUsage to an admin, written in batches", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "usage-t", plan: "qa" });
    await client.consumeQuota({ credential: secret, limits: ["tokens"], cost: 7n });
    await client.consumeQuota({ credential: secret, limits: ["credits"], cost: 9n }); // denied
    await app.quota.flush();
    const admin = await seedKey(app, { tenantId: "usage-t", admin: "tenant" });
    const usage = grpcClient(UsageService, app.grpcPort);
    const res = await usage.getUsage({ groupBy: UsageGroupBy.KEY }, bearer(admin.secret));
    expect(res.rows.map((r) => [r.keyId, r.limitName, r.admitted, r.denied, r.cost])).toEqual([
      [key.keyId, "credits", 0n, 1n, 0n],
      [key.keyId, "tokens", 1n, 0n, 7n],
    ]);
    await expect(usage.getUsage({ tenantId: "acme" }, bearer(admin.secret))).rejects.toSatisfy((e: ConnectError) => e.code === RpcCode.PermissionDenied);
    await expect(usage.getUsage({})).rejects.toSatisfy((e: ConnectError) => e.code === RpcCode.Unauthenticated);
    await expect(usage.getUsage({ keyId: "short" }, bearer(admin.secret))).rejects.toSatisfy(invalid("key_id"));
    await expect(usage.getUsage({ startTime: { seconds: 2000000000n, nanos: 0 }, endTime: { seconds: 1000000000n, nanos: 0 } }, bearer(admin.secret))).rejects.toSatisfy(invalid("start_time"));
    await expect(usage.getUsage({ maxRows: 10_001 }, bearer(admin.secret))).rejects.toSatisfy(invalid("max_rows"));
  });
});

describe("tollgate usage CLI", () => {
  it("prints a weekly summary and sums by tenant and by key from the roll-ups", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "cli-t", plan: "qa" });
    clock = Date.now(); // the CLI reads the wall clock
    await client.consumeQuota({ credential: secret, limits: ["tokens"], cost: 11n });
    await app.quota.flush();
    const printed: string[] = [];
    const log = vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => void printed.push(args.join(" ")));
    const saved = process.env.DATABASE_URL;
    process.env.DATABASE_URL = db.url;
    try {
      expect(await runCli(["usage", "by-key", "--tenant", "cli-t"])).toBe(0);
      expect(printed).toContain(["cli-t", key.keyId, "tokens", 1, 0, 11].join("\t"));
      expect(await runCli(["usage", "by-tenant", "--period", "day"])).toBe(0);
      expect(printed).toContain(["cli-t", "tokens", 1, 0, 11].join("\t"));
      expect(await runCli(["usage", "summary", "--period", "week", "--tenant", "cli-t", "--json"])).toBe(0);
      expect(JSON.parse(printed.at(-1)!)).toEqual([expect.objectContaining({ limitName: "tokens", admitted: 1, cost: 11 })]);
      expect(await runCli(["usage", "summary", "--period", "fortnight"])).toBe(2);
    } finally {
      log.mockRestore();
      process.env.DATABASE_URL = saved;
    }
  });
});

describe("graceful shutdown", () => {
  it("hands every leased but unused token back to PostgreSQL when the server stops", async () => {
    const replica = await startTestServer(db.url, { now: () => clock, env: { TOLLGATE_QUOTA_MIN_BLOCK: "40" } });
    const { key, secret } = await seedKey(replica, { tenantId: "acme", plan: "qa" });
    const limitId = await defineLimit(replica.pool, { name: "stopper", scope: "key", scopeId: key.keyId, period: "day", amount: 1000 });
    replica.quota.catalog.invalidate();
    const c = grpcClient(AuthService, replica.grpcPort);
    for (let i = 0; i < 3; i++) expect((await c.consumeQuota({ credential: secret, limits: ["stopper"] })).allowed).toBe(true);
    expect(await storedUsed(app.pool, limitId)).toBe(40); // one block leased
    const metrics = await (await fetch(`http://127.0.0.1:${replica.httpPort}/metrics`)).text();
    expect(Number(/^tollgate_quota_db_statements_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    await replica.stop();
    expect(await storedUsed(app.pool, limitId)).toBe(3);
  });
});

describe("ConsumeQuota when PostgreSQL goes away", () => {
  it("answers UNAVAILABLE within the deadline when a lease is needed, and serves what it holds", async () => {
    // A TCP proxy in front of PostgreSQL that can be cut.
    const target = new URL(db.url);
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((c) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname);
      for (const s of [c, upstream]) {
        sockets.add(s);
        s.on("error", () => undefined);
      }
      c.pipe(upstream).pipe(c);
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const proxied = new URL(db.url);
    proxied.port = String((proxy.address() as net.AddressInfo).port);
    const replica = await startTestServer(proxied.toString(), { now: () => clock, env: { TOLLGATE_DB_TIMEOUT_MS: "300", TOLLGATE_QUOTA_MIN_BLOCK: "5" } });
    try {
      const c = grpcClient(AuthService, replica.grpcPort);
      const { secret } = await seedKey(replica, { tenantId: "acme", plan: "qa" });
      const admin = await seedKey(replica, { tenantId: "acme", admin: "tenant" });
      const usage = grpcClient(UsageService, replica.grpcPort);
      await usage.getUsage({}, bearer(admin.secret)); // caches the admin key
      expect((await c.consumeQuota({ credential: secret, limits: ["tokens"] })).allowed).toBe(true); // leases a block of 5
      proxy.close();
      for (const s of sockets) s.destroy();
      expect((await c.consumeQuota({ credential: secret, limits: ["tokens"] })).allowed).toBe(true); // from memory
      const started = Date.now();
      await expect(c.consumeQuota({ credential: secret, limits: ["tokens"], cost: 50n }, { timeoutMs: 2000 })).rejects.toSatisfy(
        (e: ConnectError) => e.code === RpcCode.Unavailable,
      );
      expect(Date.now() - started).toBeLessThan(2000);
      await expect(usage.getUsage({}, { ...bearer(admin.secret), timeoutMs: 2000 })).rejects.toSatisfy((e: ConnectError) => e.code === RpcCode.Unavailable);
    } finally {
      await replica.stop();
    }
  });
});
