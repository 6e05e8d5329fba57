/**
 * The Envoy adapters' permission, quota and rate-limit-service paths, with the real verifier
 * (real PostgreSQL, real argon2) and the real grpc-js transport and pipeline, but with the
 * test-only `fixedPolicy` / `fixedWindowQuota` in place of Authorize and ConsumeQuota, which are
 * being built elsewhere (see test/support/envoy-ports.ts).
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { createAuthorizationService } from "../src/envoy/authorization-service.js";
import { createEnvoyPorts } from "../src/envoy/domain-ports.js";
import { createRateLimitService } from "../src/envoy/rate-limit-service.js";
import { Authorization } from "../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { RateLimitService } from "../src/gen/envoy/service/ratelimit/v3/rls_pb.js";
import { createLogger } from "../src/observability/logger.js";
import { createMetrics } from "../src/observability/metrics.js";
import { mountOnGrpc } from "../src/transport/grpc-server.js";
import { instrument } from "../src/transport/pipeline.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { envoyExtAuthz, envoyRateLimit, type EnvoyVerdict } from "./support/envoy-harness.js";
import { fixedPolicy, fixedWindowQuota } from "./support/envoy-ports.js";
import { seedKey, startTestServer } from "./support/server.js";

const MINUTE = 60_000;
let db: TestDatabase;
let app: App;
let server: grpc.Server;
let clock = Date.parse("2030-01-01T00:00:10Z");
const now = () => clock;
let policy: ReturnType<typeof fixedPolicy>;
let quota: ReturnType<typeof fixedWindowQuota>;
let envoy: ReturnType<typeof envoyExtAuthz>;
let rls: ReturnType<typeof envoyRateLimit>;
let port: number;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { now });
  policy = fixedPolicy();
  quota = fixedWindowQuota({ rpm: { limit: 3, windowMs: MINUTE }, daily: { limit: 100, windowMs: 24 * 60 * MINUTE } }, now, ["rpm"]);
  const pipeline = { logger: createLogger("silent"), metrics: createMetrics(), deadlineMarginRatio: 0.1 };
  const deps = { authenticate: app.verifier.verify, authorize: policy, consume: quota, now, credentialSources: app.config.envoy.credentialSources, xffTrustedHops: 0 };
  server = new grpc.Server();
  mountOnGrpc(server, Authorization, instrument(Authorization, createAuthorizationService(deps), pipeline));
  mountOnGrpc(server, RateLimitService, instrument(RateLimitService, createRateLimitService(deps), pipeline));
  port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  envoy = envoyExtAuthz(port, { timeoutMs: 2_000 });
  // Generous deadlines: tests run two to a busy 2-core machine. The 20 ms default is exercised below.
  rls = envoyRateLimit(port, { timeoutMs: 1_000 });
  await envoy.check({});
  await rls.shouldRateLimit("warm", [[["generic_key", "x"]]], { timeoutMs: 2_000 });
});
afterAll(async () => {
  envoy?.close();
  rls?.close();
  server?.forceShutdown();
  await app?.stop();
  await db?.drop();
});
beforeEach(() => {
  clock += 24 * 60 * MINUTE; // a fresh day: every window starts empty
  quota.state.fail = false;
  quota.state.hang = false;
  policy.calls.length = 0;
  quota.calls.length = 0;
});

function problemOf(v: EnvoyVerdict) {
  if (v.kind !== "deny") throw new Error(`expected deny, got ${v.kind}${v.kind === "error" ? ` ${v.message}` : ""}`);
  return JSON.parse(v.body) as { code: string; status: number };
}

describe("Check: permissions", () => {
  it("asks Authorize with the route's permission, resource and the tenant from the route's header", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write", "files:read", "tollgate:cross-tenant"] });
    const ext = { permission: "chat:write AND files:read", resource: "files/1", tenant_header: "x-tenant-id" };
    const v = await envoy.check({ headers: { "x-api-key": secret, "x-tenant-id": "globex" }, contextExtensions: ext, sourceIp: "192.0.2.1" });
    expect(v.kind).toBe("allow");
    expect(policy.calls).toEqual([{ key: expect.objectContaining({ keyId: key.keyId }), permissionQuery: "chat:write AND files:read", resource: "files/1", tenantId: "globex", clientIp: "192.0.2.1" }]);
  });

  it("answers 403 with the reason and charges no quota when Authorize says no", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:read"] });
    const v = await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { permission: "chat:write" } });
    expect([v.kind === "deny" && v.status, problemOf(v).code]).toEqual([403, "INSUFFICIENT_PERMISSIONS"]);
    if (v.kind === "deny") {
      expect(v.raw.status?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(v.headers.get("content-type")).toBe("application/json");
    }
    expect(quota.calls).toEqual([]);
  });

  it("refuses another tenant (403 TENANT_FORBIDDEN), and a malformed tenant header without asking Authorize", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const ext = { tenant_header: "x-tenant-id" };
    expect(problemOf(await envoy.check({ headers: { "x-api-key": secret, "x-tenant-id": "globex" }, contextExtensions: ext })).code).toBe("TENANT_FORBIDDEN");
    policy.calls.length = 0;
    expect(problemOf(await envoy.check({ headers: { "x-api-key": secret, "x-tenant-id": "../Etc" }, contextExtensions: ext })).code).toBe("TENANT_FORBIDDEN");
    expect(policy.calls).toEqual([]);
  });
});

describe("Check: quota", () => {
  it("charges the key's limits and adds the rate-limit headers to the client's response", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    const v = await envoy.check({ headers: { authorization: `Bearer ${secret}` } });
    if (v.kind !== "allow") throw new Error(v.kind);
    expect(quota.calls).toEqual([{ keyId: key.keyId, key: expect.objectContaining({ keyId: key.keyId }), limits: [], cost: 1, clientIp: "203.0.113.10" }]);
    expect(v.responseHeaders.get("x-ratelimit-limit")).toBe("3");
    expect(v.responseHeaders.get("x-ratelimit-remaining")).toBe("2");
    expect(v.responseHeaders.get("ratelimit-policy")).toBe('"rpm";q=3;w=60');
    for (const option of v.raw.ok_response!.response_headers_to_add) expect(option.append_action).toBe("OVERWRITE_IF_EXISTS_OR_ADD");
  });

  it("answers 429 with retry-after from the injected clock, rate-limit headers and a problem body, charging nothing", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    clock = Math.floor(clock / MINUTE) * MINUTE + 45_000; // 15 s before the window resets
    for (let i = 0; i < 3; i++) expect((await envoy.check({ headers: { "x-api-key": secret } })).kind).toBe("allow");
    const v = await envoy.check({ headers: { "x-api-key": secret } });
    expect(problemOf(v)).toMatchObject({ code: "QUOTA_EXCEEDED", status: 429 });
    if (v.kind !== "deny") return;
    expect(v.status).toBe(429);
    expect(v.raw.status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(v.headers.get("retry-after")).toBe("15");
    expect(v.headers.get("x-ratelimit-remaining")).toBe("0");
    expect(v.headers.get("content-type")).toBe("application/json");
    expect(v.headers.has("www-authenticate")).toBe(false);
    clock += 15_000;
    const next = await envoy.check({ headers: { "x-api-key": secret } });
    expect(next.kind === "allow" && next.responseHeaders.get("x-ratelimit-remaining")).toBe("2");
  });

  it("passes the route's limits and cost; `limits: none` skips the quota step; cost 0 only checks", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { limits: "rpm, daily", cost: "2" } });
    expect(quota.calls.map((c) => [c.limits, c.cost])).toEqual([[["rpm", "daily"], 2]]);
    quota.calls.length = 0;
    expect((await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { limits: "none" } })).kind).toBe("allow");
    expect(quota.calls).toEqual([]);
    const probe = await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { cost: "0" } });
    expect(probe.kind === "allow" && probe.responseHeaders.get("x-ratelimit-remaining")).toBe("1");
    const again = await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { cost: "0" } });
    expect(again.kind === "allow" && again.responseHeaders.get("x-ratelimit-remaining")).toBe("1");
  });

  it("a failing quota store is UNAVAILABLE, so Envoy applies status_on_error or failure_mode_allow", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    await envoy.check({ headers: { "x-api-key": secret } }); // cache the key
    quota.state.fail = true;
    expect(await envoy.check({ headers: { "x-api-key": secret } })).toMatchObject({ kind: "error", grpcCode: grpc.status.UNAVAILABLE, status: 403 });
    const lenient = envoyExtAuthz(port, { failureModeAllow: true });
    expect(await lenient.check({ headers: { "x-api-key": secret } })).toMatchObject({ kind: "error", grpcCode: grpc.status.UNAVAILABLE, status: 200 });
    lenient.close();
  });

  it("a quota store that stops answering is UNAVAILABLE before Envoy's grpc-timeout expires", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    await envoy.check({ headers: { "x-api-key": secret } });
    quota.state.hang = true;
    // Client and server share one busy event loop here, so transit takes milliseconds each way;
    // a 500 ms deadline keeps the assertion about the server's answer, not about timer jitter.
    const started = performance.now();
    const v = await envoy.check({ headers: { "x-api-key": secret }, timeoutMs: 500 });
    expect(v).toMatchObject({ kind: "error", grpcCode: grpc.status.UNAVAILABLE, message: "a dependency did not answer within the call's deadline" });
    expect(performance.now() - started).toBeGreaterThan(400); // it waited for the dependency...
    expect(performance.now() - started).toBeLessThan(500); // ...and answered before Envoy gave up
  });
});

describe("ShouldRateLimit", () => {
  it("answers OK with one named status per descriptor: limit, unit, remaining and time to reset", async () => {
    clock = Math.floor(clock / MINUTE) * MINUTE + 20_000;
    const v = await rls.shouldRateLimit("edge", [[["key_id", "k1"]], [["limit", "daily"], ["key_id", "k1"]]]);
    if (v.kind === "error") throw new Error(v.message);
    expect(v.kind).toBe("pass");
    expect(v.raw.overall_code).toBe("OK");
    expect(v.raw.statuses).toEqual([
      { code: "OK", current_limit: { name: "rpm", requests_per_unit: 3, unit: "MINUTE" }, limit_remaining: 2, duration_until_reset: { seconds: "40", nanos: 0 }, quota: null },
      { code: "OK", current_limit: { name: "daily", requests_per_unit: 100, unit: "DAY" }, limit_remaining: 99, duration_until_reset: expect.objectContaining({ seconds: String(24 * 3600 - (clock % (24 * 3600_000)) / 1000) }), quota: null },
    ]);
    expect(v.headers.get("x-ratelimit-remaining")).toBe("2");
  });

  it("charges hits_addend, with 0 meaning 1", async () => {
    await rls.shouldRateLimit("edge", [[["key_id", "k2"]]], { hitsAddend: 0 });
    expect(quota.calls.map((c) => c.cost)).toEqual([1]);
    const v = await rls.shouldRateLimit("edge", [[["key_id", "k2"]]], { hitsAddend: 2 });
    expect(v.kind !== "error" && v.raw.statuses[0]?.limit_remaining).toBe(0);
  });

  it("is OVER_LIMIT (429) with the body and headers when a descriptor is over, statuses in request order", async () => {
    await rls.shouldRateLimit("edge", [[["key_id", "k3"]]], { hitsAddend: 3 });
    const v = await rls.shouldRateLimit("edge", [[["generic_key", "beta"]], [["key_id", "k3"]], [["key_id", "k3"], ["limit", "daily"]]]);
    if (v.kind === "error") throw new Error(v.message);
    expect([v.kind, v.status, v.raw.overall_code]).toEqual(["limited", 429, "OVER_LIMIT"]);
    expect(v.raw.statuses.map((s) => [s.code, s.current_limit?.name ?? null])).toEqual([["OK", null], ["OVER_LIMIT", "rpm"], ["OK", "daily"]]);
    expect(JSON.parse(v.body)).toMatchObject({ code: "QUOTA_EXCEEDED", status: 429 });
    expect(v.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(v.headers.get("content-type")).toBe("application/json");
  });

  it("charges the limits named in one descriptor all-or-nothing", async () => {
    await rls.shouldRateLimit("edge", [[["key_id", "k4"], ["limit", "rpm"]]], { hitsAddend: 3 });
    const v = await rls.shouldRateLimit("edge", [[["key_id", "k4"], ["limit", "daily,rpm"]]]);
    expect(v.kind).toBe("limited");
    const daily = await rls.shouldRateLimit("edge", [[["key_id", "k4"], ["limit", "daily"]]]);
    expect(daily.kind !== "error" && daily.raw.statuses[0]?.limit_remaining).toBe(99);
  });

  it("answers OK without a limit for descriptors that are not Tollgate's, without charging", async () => {
    const v = await rls.shouldRateLimit("edge", [[["remote_address", "10.0.0.1"]], [["key_id", "k5"], ["path", "/x"]], [["key_id", "k5"], ["key_id", "k6"]], [["key_id", ""]]]);
    if (v.kind === "error") throw new Error(v.message);
    expect(v.raw.overall_code).toBe("OK");
    expect(v.raw.statuses).toHaveLength(4);
    for (const s of v.raw.statuses) expect([s.code, s.current_limit]).toEqual(["OK", null]);
    expect(quota.calls).toEqual([]);
  });

  it("rejects a request without domain or descriptors as INVALID_ARGUMENT naming the field", async () => {
    for (const [domain, descriptors, field] of [["", [[["key_id", "k"]]], "domain"], ["edge", [], "descriptors"]] as const) {
      const v = await rls.shouldRateLimit(domain, descriptors as never, { timeoutMs: 2_000 });
      expect(v).toMatchObject({ kind: "error", grpcCode: grpc.status.INVALID_ARGUMENT, status: 200 });
      if (v.kind === "error") expect(v.message).toContain(field);
    }
  });

  it("a failing quota store is UNAVAILABLE, and Envoy lets the request through unless failure_mode_deny", async () => {
    quota.state.fail = true;
    expect(await rls.shouldRateLimit("edge", [[["key_id", "k7"]]])).toMatchObject({ kind: "error", grpcCode: grpc.status.UNAVAILABLE, status: 200 });
    const strict = envoyRateLimit(port, { failureModeDeny: true, timeoutMs: 1_000 });
    expect(await strict.shouldRateLimit("edge", [[["key_id", "k7"]]])).toMatchObject({ kind: "error", grpcCode: grpc.status.UNAVAILABLE, status: 500 });
    strict.close();
  });

  it("a silent quota store is UNAVAILABLE before the deadline, and never outlives Envoy's 20 ms", async () => {
    quota.state.hang = true;
    const started = performance.now();
    const v = await rls.shouldRateLimit("edge", [[["key_id", "k8"]]], { timeoutMs: 500 });
    expect(v).toMatchObject({ kind: "error", grpcCode: grpc.status.UNAVAILABLE, message: "a dependency did not answer within the call's deadline" });
    expect(performance.now() - started).toBeLessThan(500);
    // At 20 ms, client and server timers share this busy process and may cross: either way it is an
    // error that Envoy handles by failure_mode_deny, within its own timeout.
    const fast = performance.now();
    const w = await rls.shouldRateLimit("edge", [[["key_id", "k8"]]], { timeoutMs: 20 });
    expect(w.kind === "error" && [grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED].includes(w.grpcCode)).toBe(true);
    expect(performance.now() - fast).toBeLessThan(100);
  });
});

describe("the domain ports' quota requests", () => {
  it("carry each call's own limits and cost, even when one limit list comes with several costs", () => {
    const seen: { limits: readonly string[]; cost: number }[] = [];
    const quota = { consume: (_subject: unknown, req: { limits: readonly string[]; cost: number }) => (seen.push(req), { allowed: true, code: "OK" as const, limits: [], headers: {}, replayed: false }) };
    const ports = createEnvoyPorts({ verifier: {} as never, policies: {} as never, quota: quota as never });
    const key = { keyId: "0123456789abcdef", tenantId: "acme", quotaSubject: "0123456789abcdef" } as never;
    const limits = ["rpm"];
    for (const cost of [3, 2, 3, 0]) ports.consume({ keyId: "0123456789abcdef", key, limits, cost, clientIp: "" });
    ports.consume({ keyId: "0123456789abcdef", key, limits: ["daily"], cost: 3, clientIp: "" });
    expect(seen.map((r) => [r.limits, r.cost])).toEqual([[["rpm"], 3], [["rpm"], 2], [["rpm"], 3], [["rpm"], 0], [["daily"], 3]]);
  });
});
