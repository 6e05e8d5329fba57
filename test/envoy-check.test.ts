/**
 * Envoy ext_authz against a real server (real PostgreSQL, real argon2, grpc-js listener on port 0),
 * driven by an Envoy stand-in compiled from Envoy's official protos (test/support/envoy-harness.ts).
 */
import { execFile } from "node:child_process";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { createHasher } from "../src/keys/hasher.js";
import { createKeyAdmin } from "../src/keys/key-admin.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { envoyCheckRequest, envoyExtAuthz, envoyRateLimit, type EnvoyVerdict } from "./support/envoy-harness.js";
import { seedKey, startTestServer } from "./support/server.js";
import { grpcJsClient } from "./support/clients.js";
import { withPart } from "./support/tokens.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";

let db: TestDatabase;
let app: App;
let envoy: ReturnType<typeof envoyExtAuthz>;
let clock = Date.parse("2030-01-01T00:00:00Z");

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { now: () => clock });
  envoy = envoyExtAuthz(app.grpcPort, { timeoutMs: 2_000 });
  await envoy.check({}); // connect the channel, as Envoy's long-lived connection would be
});
afterAll(async () => {
  envoy?.close();
  await app?.stop();
  await db?.drop();
});

function allowed(v: EnvoyVerdict) {
  if (v.kind !== "allow") throw new Error(`expected allow, got ${JSON.stringify(v.kind === "error" ? v : { status: v.status, body: v.body })}`);
  return v;
}
function denied(v: EnvoyVerdict) {
  if (v.kind !== "deny") throw new Error(`expected deny, got ${v.kind}${v.kind === "error" ? ` ${v.grpcCode} ${v.message}` : ""}`);
  return { ...v, problem: JSON.parse(v.body) as { code: string; status: number; type: string; title: string } };
}

describe("Check allows a valid key", () => {
  it("authenticates a Bearer key and forwards identity headers, stripping the credential", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write", "files:read"], plan: "pro" });
    const v = allowed(await envoy.check({ path: "/v1/chat", headers: { authorization: `Bearer ${secret}`, "x-trace": "t1" } }));
    const h = v.upstream.headers;
    expect(h.get("x-tollgate-key-id")).toEqual([key.keyId]);
    expect(h.get("x-tollgate-tenant")).toEqual(["acme"]);
    expect(h.get("x-tollgate-plan")).toEqual(["pro"]);
    expect(h.get("x-tollgate-scopes")).toEqual(["chat:write files:read"]);
    expect(h.has("authorization")).toBe(false);
    expect(h.get("x-trace")).toEqual(["t1"]);
    expect(h.get(":path")).toEqual(["/v1/chat"]);
    expect(v.dynamicMetadata).toEqual({ decision: "VALID", key_id: key.keyId, tenant_id: "acme", plan: "pro", environment: "live" });
    expect(v.raw.status?.code).toBe(0);
  });

  it("overwrites identity headers a client tried to inject, because every header says OVERWRITE_IF_EXISTS_OR_ADD", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", plan: "" });
    const forged = { "x-tollgate-key-id": "forged", "x-tollgate-tenant": "other", "x-tollgate-plan": "enterprise", "x-tollgate-scopes": "*" };
    const v = allowed(await envoy.check({ headers: { "x-api-key": secret, ...forged } }));
    expect(v.upstream.headers.get("x-tollgate-key-id")).toEqual([key.keyId]);
    expect(v.upstream.headers.get("x-tollgate-tenant")).toEqual(["acme"]);
    // An empty value still replaces the forged one (keep_empty_value), instead of being skipped.
    expect(v.upstream.headers.get("x-tollgate-plan")).toEqual([""]);
    expect(v.upstream.headers.get("x-tollgate-scopes")).toEqual([""]);
    for (const option of v.raw.ok_response!.headers) {
      expect(option.append_action).toBe("OVERWRITE_IF_EXISTS_OR_ADD");
      expect(option.append).toBeNull();
    }
  });

  it("reads x-api-key and the api_key query parameter, and removes the parameter upstream", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    const byHeader = allowed(await envoy.check({ headers: { "x-api-key": secret } }));
    expect(byHeader.upstream.headers.has("x-api-key")).toBe(false);
    const byQuery = allowed(await envoy.check({ path: `/v1/files?limit=5&api_key=${secret}&q=a%20b` }));
    expect(byQuery.upstream.headers.get("x-tollgate-key-id")).toEqual([key.keyId]);
    expect(byQuery.upstream.path).toBe("/v1/files?limit=5&q=a+b");
    expect(byQuery.raw.ok_response?.query_parameters_to_remove).toEqual(["api_key"]);
  });

  it("uses the first configured source present, and a route can change the order", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const both = { authorization: "Bearer sk_live_garbage", "x-api-key": secret };
    expect(denied(await envoy.check({ headers: both })).problem.code).toBe("MALFORMED_CREDENTIAL");
    allowed(await envoy.check({ headers: both, contextExtensions: { credential_sources: "header:x-api-key,bearer" } }));
    // A non-Bearer Authorization header is not a credential source; the next source is used.
    allowed(await envoy.check({ headers: { authorization: "Basic dXNlcjpwYXNz", "x-api-key": secret } }));
  });

  it("reads raw headers when Envoy runs with encode_raw_headers", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    const v = allowed(await envoy.check({ headers: { authorization: `Bearer ${secret}` }, encodeRawHeaders: true }));
    expect(v.upstream.headers.get("x-tollgate-key-id")).toEqual([key.keyId]);
  });

  it("keeps the credential headers when the route says strip_credentials: false", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const v = allowed(await envoy.check({ headers: { authorization: `Bearer ${secret}` }, contextExtensions: { strip_credentials: "false" } }));
    expect(v.upstream.headers.get("authorization")).toEqual([`Bearer ${secret}`]);
  });
});

describe("Check denies with the status, headers and body Envoy sends", () => {
  it("401 with www-authenticate and a JSON problem for missing, malformed and unknown keys", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const unknownId = secret.replace(/_([0-9A-Za-z]{16})_/, "_AAAAAAAAAAAAAAAA_");
    const cases: Array<[Record<string, string>, string]> = [
      [{}, "MISSING_CREDENTIAL"],
      [{ authorization: "Bearer " }, "MISSING_CREDENTIAL"],
      [{ "x-api-key": "sk_live_nonsense" }, "MALFORMED_CREDENTIAL"],
      [{ "x-api-key": unknownId }, "MALFORMED_CREDENTIAL"], // the checksum covers the id
    ];
    for (const [headers, code] of cases) {
      const v = denied(await envoy.check({ headers }));
      expect(v.status).toBe(401);
      expect(v.raw.status?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(v.headers.get("www-authenticate")).toMatch(/^Bearer realm="tollgate"/);
      expect(v.headers.get("content-type")).toBe("application/json");
      expect(v.problem).toMatchObject({ code, status: 401 });
      for (const option of v.raw.denied_response!.headers) expect(option.append_action).toBe("OVERWRITE_IF_EXISTS_OR_ADD");
    }
  });

  it("401 for a revoked key and for a key that has expired by the injected clock", async () => {
    const revoked = await seedKey(app, { tenantId: "acme" });
    const admin = createKeyAdmin({ pool: app.pool, hasher: createHasher({ params: app.config.argon2, concurrency: 1, queueLimit: 10 }), prefixes: app.config.prefixes });
    await admin.revokeKey({ actor: "test", tenantId: "acme", root: true }, revoked.key.keyId, "leaked");
    app.verifier.invalidate(revoked.key.keyId);
    const r = denied(await envoy.check({ headers: { "x-api-key": revoked.secret } }));
    expect([r.status, r.problem.code]).toEqual([401, "REVOKED_API_KEY"]);
    expect(r.dynamicMetadata).toMatchObject({ decision: "REVOKED_API_KEY", key_id: revoked.key.keyId });

    const expiring = await seedKey(app, { tenantId: "acme", expiresAt: new Date(clock + 60_000) });
    allowed(await envoy.check({ headers: { "x-api-key": expiring.secret } }));
    clock += 120_000;
    const e = denied(await envoy.check({ headers: { "x-api-key": expiring.secret } }));
    expect([e.status, e.problem.code]).toEqual([401, "EXPIRED_API_KEY"]);
  });

  it("403 when the source address is outside the key's allowlist; x-forwarded-for is not trusted by default", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", ipAllowlist: ["198.51.100.0/24"] });
    allowed(await envoy.check({ headers: { "x-api-key": secret }, sourceIp: "198.51.100.7" }));
    const v = denied(await envoy.check({ headers: { "x-api-key": secret, "x-forwarded-for": "198.51.100.7" }, sourceIp: "203.0.113.10" }));
    expect([v.status, v.problem.code, v.raw.status?.code]).toEqual([403, "IP_NOT_ALLOWED", grpc.status.PERMISSION_DENIED]);
    expect(v.headers.has("www-authenticate")).toBe(false);
  });
});

describe("Check with malformed attributes answers a decision, never INTERNAL", () => {
  it("a request without http attributes (network filter, bare caller) is a missing credential", async () => {
    for (const message of [{}, { attributes: {} }, { attributes: { request: {} } }]) {
      const raw = await envoy.raw(message);
      expect(raw.status?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(raw.denied_response?.status?.code).toBe("Unauthorized");
    }
  });

  it("an unusable source address is unknown: allowlisted keys are refused, others allowed", async () => {
    const open = await seedKey(app, { tenantId: "acme" });
    const fenced = await seedKey(app, { tenantId: "acme", ipAllowlist: ["0.0.0.0/0", "::/0"] });
    for (const sourceIp of [null, "", "not-an-ip", "999.1.1.1", "x".repeat(10_000)]) {
      allowed(await envoy.check({ headers: { "x-api-key": open.secret }, sourceIp }));
      expect(denied(await envoy.check({ headers: { "x-api-key": fenced.secret }, sourceIp })).problem.code).toBe("IP_NOT_ALLOWED");
    }
    const pipe = envoyCheckRequest({ headers: { "x-api-key": fenced.secret } }) as { attributes: { source: unknown } };
    pipe.attributes.source = { address: { pipe: { path: "/var/run/envoy.sock" } } };
    expect((await envoy.raw(pipe)).status?.code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it("huge headers and a huge credential are answered, the credential as malformed", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const bulk: Record<string, string> = {};
    for (let i = 0; i < 300; i++) bulk[`x-filler-${i}`] = "v".repeat(2000);
    allowed(await envoy.check({ headers: { ...bulk, "x-api-key": secret } }));
    const v = denied(await envoy.check({ headers: { authorization: `Bearer ${"k".repeat(200_000)}` } }));
    expect([v.status, v.problem.code]).toEqual([401, "MALFORMED_CREDENTIAL"]);
  });

  it("bad route settings are INVALID_ARGUMENT naming the extension, so Envoy applies status_on_error", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const cases: Array<[Record<string, string>, string]> = [
      [{ permision: "chat:write" }, "attributes.context_extensions.permision"],
      [{ cost: "-1" }, "attributes.context_extensions.cost"],
      [{ cost: "lots" }, "attributes.context_extensions.cost"],
      [{ limits: "a b" }, "attributes.context_extensions.limits"],
      [{ credential_sources: "cookie:session" }, "attributes.context_extensions.credential_sources"],
      [{ strip_credentials: "yes" }, "attributes.context_extensions.strip_credentials"],
    ];
    for (const [contextExtensions, field] of cases) {
      const v = await envoy.check({ headers: { "x-api-key": secret }, contextExtensions });
      expect(v).toMatchObject({ kind: "error", grpcCode: grpc.status.INVALID_ARGUMENT, status: 403 });
      if (v.kind === "error") expect(v.message).toContain(field);
    }
  });

  it("a route's permission query is decided by the key's effective policy (403 with the missing permission)", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write"] });
    allowed(await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { permission: "chat:write" } }));
    const refused = denied(await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { permission: "chat:write AND files:delete" } }));
    expect(refused.status).toBe(403);
    expect(refused.problem.code).toBe("INSUFFICIENT_PERMISSIONS");
    // A malformed route query is the route's error, never a silent allow.
    const broken = await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { permission: "chat:write AND (" } });
    expect(broken).toMatchObject({ kind: "error", grpcCode: grpc.status.INVALID_ARGUMENT });
  });

  it("a route's named limit is charged through the quota service: the 11th call of a 10/min limit is a 429", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", plan: "free" });
    for (let i = 0; i < 10; i++) {
      const ok = allowed(await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { limits: "chat" } }));
      expect(ok.responseHeaders.get("x-ratelimit-remaining")).toBe(String(9 - i));
    }
    const limited = denied(await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { limits: "chat" } }));
    expect(limited.status).toBe(429);
    expect(limited.problem.code).toBe("RATE_LIMITED");
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(limited.headers.get("x-ratelimit-remaining")).toBe("0");
  });

  it("charges each route its own cost, however the routes interleave", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", plan: "free" });
    const remaining = async (cost: string) => allowed(await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { limits: "chat", cost } })).responseHeaders.get("x-ratelimit-remaining");
    expect([await remaining("3"), await remaining("2"), await remaining("3"), await remaining("1")]).toEqual(["7", "5", "2", "1"]);
  });
});

describe("Check with an access token (IssueToken's JWT) as the Bearer credential", () => {
  async function issue(secret: string, scopes: string[], ttlSeconds = 3600): Promise<string> {
    const client = grpcJsClient(AuthService, app.grpcPort);
    try {
      return (await client.issueToken({ credential: secret, scopes, ttl: { seconds: BigInt(ttlSeconds) } })).accessToken;
    } finally {
      client.close();
    }
  }

  it("allows the token for its key, tells the upstream the token's scopes, strips it, and charges the key's quota", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write", "files:read"], plan: "free" });
    const token = await issue(secret, ["chat:write"]);
    const v = allowed(await envoy.check({ headers: { authorization: `Bearer ${token}` }, contextExtensions: { permission: "chat:write", limits: "chat" } }));
    expect(v.upstream.headers.get("x-tollgate-key-id")).toEqual([key.keyId]);
    expect(v.upstream.headers.get("x-tollgate-scopes")).toEqual(["chat:write"]);
    expect(v.upstream.headers.has("authorization")).toBe(false);
    expect(v.dynamicMetadata).toMatchObject({ decision: "VALID", key_id: key.keyId, credential_type: "access_token" });
    expect(v.responseHeaders.get("x-ratelimit-remaining")).toBe("9");
    // The key and its tokens spend one quota.
    const byKey = allowed(await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { limits: "chat" } }));
    expect(byKey.responseHeaders.get("x-ratelimit-remaining")).toBe("8");
    expect(byKey.upstream.headers.get("x-tollgate-scopes")).toEqual(["chat:write files:read"]);
    expect(byKey.dynamicMetadata).not.toHaveProperty("credential_type");
  });

  it("refuses what the token's scopes leave out even though its key holds it (403), and a scope the key has since lost", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write", "files:read"] });
    const token = await issue(secret, ["chat:write"]);
    allowed(await envoy.check({ headers: { "x-api-key": secret }, contextExtensions: { permission: "files:read" } }));
    const narrowed = denied(await envoy.check({ headers: { authorization: `Bearer ${token}` }, contextExtensions: { permission: "files:read" } }));
    expect([narrowed.status, narrowed.problem.code]).toEqual([403, "INSUFFICIENT_PERMISSIONS"]);
    // A route that asks for no permission admits any valid token.
    allowed(await envoy.check({ headers: { authorization: `Bearer ${token}` } }));

    // (The free plan grants chat:write to every key of it, so the lost grant is a files: one.)
    const wide = await seedKey(app, { tenantId: "acme", permissions: ["files:*"] });
    const wideToken = await issue(wide.secret, ["files:*"]);
    allowed(await envoy.check({ headers: { authorization: `Bearer ${wideToken}` }, contextExtensions: { permission: "files:delete" } }));
    await app.pool.query("UPDATE api_keys SET permissions = '{files:read}' WHERE key_id = $1", [wide.key.keyId]);
    app.verifier.invalidate(wide.key.keyId);
    allowed(await envoy.check({ headers: { authorization: `Bearer ${wideToken}` }, contextExtensions: { permission: "files:read" } }));
    const lost = denied(await envoy.check({ headers: { authorization: `Bearer ${wideToken}` }, contextExtensions: { permission: "files:delete" } }));
    expect([lost.status, lost.problem.code]).toEqual([403, "INSUFFICIENT_PERMISSIONS"]);
  });

  it("401 for a tampered token, an expired one, and one whose key was revoked", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write"] });
    const token = await issue(secret, ["chat:write"], 60);
    allowed(await envoy.check({ headers: { authorization: `Bearer ${token}` } }));

    const tampered = denied(await envoy.check({ headers: { authorization: `Bearer ${withPart(token, 2, "AAAA")}` } }));
    expect([tampered.status, tampered.problem.code]).toEqual([401, "INVALID_ACCESS_TOKEN"]);
    expect(tampered.headers.get("www-authenticate")).toContain('error="invalid_token"');

    const saved = clock;
    clock += 10 * 60_000;
    try {
      const expired = denied(await envoy.check({ headers: { authorization: `Bearer ${token}` } }));
      expect([expired.status, expired.problem.code]).toEqual([401, "EXPIRED_ACCESS_TOKEN"]);
    } finally {
      clock = saved;
    }

    const admin = createKeyAdmin({ pool: app.pool, hasher: createHasher({ params: app.config.argon2, concurrency: 1, queueLimit: 10 }), prefixes: app.config.prefixes });
    await admin.revokeKey({ actor: "test", tenantId: "acme", root: true }, key.keyId, "leaked");
    app.verifier.invalidate(key.keyId);
    const dead = denied(await envoy.check({ headers: { authorization: `Bearer ${token}` } }));
    expect([dead.status, dead.problem.code]).toEqual([401, "INVALID_ACCESS_TOKEN"]);
  });
});

describe("ShouldRateLimit on the server as wired", () => {
  it("charges key_id descriptors to the key's named limit, in order, and answers other descriptors OK", async () => {
    const { key } = await seedKey(app, { tenantId: "acme", plan: "free" });
    const rls = envoyRateLimit(app.grpcPort);
    try {
      const ok = await rls.shouldRateLimit("edge", [[["remote_address", "10.1.1.1"]], [["generic_key", "beta"]]], { timeoutMs: 2_000 });
      expect(ok.kind !== "error" && ok.raw.statuses.map((s) => [s.code, s.current_limit])).toEqual([["OK", null], ["OK", null]]);
      const descriptors: Array<Array<[string, string]>> = [[["generic_key", "beta"]], [["key_id", key.keyId], ["limit", "chat"]]];
      const first = await rls.shouldRateLimit("edge", descriptors, { timeoutMs: 2_000, hitsAddend: 4 });
      if (first.kind === "error") throw new Error(first.message);
      expect(first.raw.overall_code).toBe("OK");
      expect(first.raw.statuses[0]!.current_limit).toBeNull();
      expect(first.raw.statuses[1]).toMatchObject({ code: "OK", limit_remaining: 6, current_limit: { name: "chat", requests_per_unit: 10, unit: "MINUTE" } });
      const over = await rls.shouldRateLimit("edge", descriptors, { timeoutMs: 2_000, hitsAddend: 7 });
      if (over.kind === "error") throw new Error(over.message);
      expect(over.raw.overall_code).toBe("OVER_LIMIT");
      expect(over.raw.statuses.map((st) => st.code)).toEqual(["OK", "OVER_LIMIT"]);
      // An unknown key id has no Tollgate limits: OK, without a limit.
      const unknown = await rls.shouldRateLimit("edge", [[["key_id", "0000000000000000"]]], { timeoutMs: 2_000 });
      expect(unknown.kind !== "error" && unknown.raw.statuses.map((st) => [st.code, st.current_limit])).toEqual([["OK", null]]);
    } finally {
      rls.close();
    }
  });
});

describe("Check through buf curl, with the schema from server reflection", () => {
  const buf = fileURLToPath(new URL("../node_modules/.bin/buf", import.meta.url));
  const curl = (...args: string[]) => promisify(execFile)(buf, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], { cwd: tmpdir(), timeout: 20_000 }).then((r) => r.stdout);

  // Through the connect-node listener here; test/cli-and-buf-curl.test.ts covers the grpc-js one.
  it("lists both Envoy services and answers a Check", async () => {
    const url = `http://127.0.0.1:${app.httpPort}`;
    const services = (await curl("--list-services", url)).trim().split("\n");
    expect(services).toEqual(expect.arrayContaining(["envoy.service.auth.v3.Authorization", "envoy.service.ratelimit.v3.RateLimitService"]));
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const body = {
      attributes: {
        source: { address: { socketAddress: { address: "203.0.113.10", portValue: 5000 } } },
        request: { http: { id: "42", method: "GET", path: "/v1/x", headers: { ":path": "/v1/x", "x-api-key": secret } } },
        contextExtensions: { cost: "1" },
      },
    };
    const allow = JSON.parse(await curl(`${url}/envoy.service.auth.v3.Authorization/Check`, "-d", JSON.stringify(body)));
    expect(allow.okResponse.headers[0]).toMatchObject({ header: { key: "x-tollgate-key-id" }, appendAction: "OVERWRITE_IF_EXISTS_OR_ADD" });
    body.attributes.request.http.headers["x-api-key"] = "nope";
    const deny = JSON.parse(await curl(`${url}/envoy.service.auth.v3.Authorization/Check`, "-d", JSON.stringify(body)));
    expect(deny.status.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(deny.deniedResponse.status.code).toBe("Unauthorized");
  });
});
