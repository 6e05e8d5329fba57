import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code as RpcCode, ConnectError } from "@connectrpc/connect";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { create } from "@bufbuild/protobuf";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { AuthorizeRequestSchema } from "../src/gen/tollgate/v1/authorize_pb.js";
import { createAuthorize } from "../src/services/authorize.js";
import { PolicyService } from "../src/gen/tollgate/v1/policy_service_pb.js";
import type { App } from "../src/app.js";
import { generateKey } from "../src/keys/format.js";
import { withTransaction } from "../src/store/db.js";
import { keysRepo } from "../src/store/keys-repo.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";
import { startTcpProxy } from "./support/tcp-proxy.js";

let db: TestDatabase;
let app: App;
let client: ReturnType<typeof grpcClient<typeof AuthService>>;
let policy: ReturnType<typeof grpcClient<typeof PolicyService>>;
let rootHeaders: { authorization: string };

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
  client = grpcClient(AuthService, app.grpcPort);
  policy = grpcClient(PolicyService, app.grpcPort);
  const root = await seedKey(app, { tenantId: "root", admin: "root" });
  rootHeaders = { authorization: `Bearer ${root.secret}` };
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

/** A predicate for `rejects.toSatisfy`: the RPC failed with `code` and a message naming `text`. */
const rpcError = (code: RpcCode, text: string) => (e: ConnectError) => e.code === code && e.message.includes(text);

describe("Authorize: allowed", () => {
  it("allows what the plan grants, with the principal, the tenant and the plan's call limits", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    const res = await client.authorize({ credential: `Bearer ${secret}`, permissionQuery: "chat:write AND (files:read OR tool:Grep)" });
    expect(res).toMatchObject({ allowed: true, code: Code.ALLOWED, missingPermissions: [], blockedPermissions: [], tenantId: "acme" });
    expect(res.principal?.keyId).toBe(key.keyId);
    expect(res.clientResponse).toBeUndefined();
    // The seeded free plan caps a call at 10 cost units and 10 s.
    expect(res.limits?.maxCostPerCall).toBe(10n);
    expect(res.limits?.timeoutMs).toBe(10_000);
  });

  it("combines roles of the key's tenant with the plan", async () => {
    await policy.putRole({ role: { tenantId: "acme", name: "editor", permissions: ["files:*"] } }, { headers: rootHeaders });
    const { secret } = await seedKey(app, { tenantId: "acme", roles: ["editor"] });
    const res = await client.authorize({ credential: secret, permissionQuery: "files:write AND read" });
    expect(res.code).toBe(Code.ALLOWED);
  });
});

describe("Authorize: the warm path", () => {
  it("answers a warm key and policy synchronously (no promise, no microtask hop), a cold one with a promise", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const authorize = createAuthorize({ verifier: app.verifier, policies: app.policies, now: Date.now });
    const req = create(AuthorizeRequestSchema, { credential: `Bearer ${secret}`, permissionQuery: "chat:write" });
    const cold = authorize(req, {} as never); // the credential path needs nothing from the context
    expect(cold).toBeInstanceOf(Promise);
    expect(await cold).toMatchObject({ allowed: true, code: Code.ALLOWED });
    const warm = authorize(req, {} as never);
    expect(warm).not.toBeInstanceOf(Promise);
    expect(warm).toMatchObject({ allowed: true, code: Code.ALLOWED, tenantId: "acme" });
    expect(Object.isFrozen((warm as { limits?: object }).limits)).toBe(true); // shared by every answer, encoded once
    // An allowed answer is one frozen object per principal, policy and tenant: its bytes are encoded once.
    expect(Object.isFrozen(warm)).toBe(true);
    expect(authorize(create(AuthorizeRequestSchema, { credential: secret, permissionQuery: "chat:write OR admin:all" }), {} as never)).toBe(warm);
    // A refusal is built per call, with what was missing.
    expect(authorize(create(AuthorizeRequestSchema, { credential: secret, permissionQuery: "admin:all" }), {} as never)).toMatchObject({ allowed: false, missingPermissions: ["admin:all"] });
  });
});

describe("Authorize: every code", () => {
  it("answers credential failures as values with a 401 and no principal", async () => {
    const unknown = generateKey(app.config.prefixes.live).full;
    const cases: Array<[string, Code]> = [["", Code.MISSING_CREDENTIAL], ["sk_live_nonsense", Code.MALFORMED_CREDENTIAL], [unknown, Code.INVALID_API_KEY]];
    for (const [credential, code] of cases) {
      const res = await client.authorize({ credential, permissionQuery: "read" });
      expect(res).toMatchObject({ allowed: false, code });
      expect(res.principal).toBeUndefined();
      expect(res.clientResponse?.httpStatus).toBe(401);
      expect(res.clientResponse?.headers["www-authenticate"]).toMatch(/^Bearer realm="tollgate"/);
    }
  });

  it("answers EXPIRED_API_KEY and REVOKED_API_KEY with 401 and the proven principal", async () => {
    const expired = await seedKey(app, { tenantId: "acme", expiresAt: new Date(Date.now() - 1_000) });
    const revoked = await seedKey(app, { tenantId: "acme" });
    await withTransaction(app.pool, (tx) => keysRepo.revokeKey(tx, revoked.key.keyId, "test", "test"));
    for (const [secret, code] of [[expired.secret, Code.EXPIRED_API_KEY], [revoked.secret, Code.REVOKED_API_KEY]] as const) {
      const res = await client.authorize({ credential: secret, permissionQuery: "read" });
      expect(res).toMatchObject({ allowed: false, code });
      expect(res.principal?.keyId).toBeTruthy();
      expect(res.clientResponse?.httpStatus).toBe(401);
    }
  });

  it("answers IP_NOT_ALLOWED with 403 for the key's allowlist and for the plan's", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", ipAllowlist: ["10.0.0.0/8"] });
    expect((await client.authorize({ credential: secret, permissionQuery: "read", clientIp: "10.9.9.9" })).code).toBe(Code.ALLOWED);
    const res = await client.authorize({ credential: secret, permissionQuery: "read", clientIp: "192.0.2.1" });
    expect(res).toMatchObject({ allowed: false, code: Code.IP_NOT_ALLOWED });
    expect(res.clientResponse?.httpStatus).toBe(403);

    await policy.putPlan({ plan: { name: "office", allowed: ["read"], ipAllowlist: ["192.0.2.0/24"] } }, { headers: rootHeaders });
    const office = await seedKey(app, { tenantId: "acme", plan: "office" });
    expect((await client.authorize({ credential: office.secret, permissionQuery: "read", clientIp: "192.0.2.7" })).code).toBe(Code.ALLOWED);
    const outside = await client.authorize({ credential: office.secret, permissionQuery: "read", clientIp: "198.51.100.7" });
    expect(outside).toMatchObject({ code: Code.IP_NOT_ALLOWED });
    expect(outside.clientResponse?.httpStatus).toBe(403);
  });

  it("answers INSUFFICIENT_PERMISSIONS with the missing permissions and an insufficient_scope 403", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const res = await client.authorize({ credential: secret, permissionQuery: "chat:write AND (files:read OR files:list)" });
    expect(res).toMatchObject({ allowed: false, code: Code.INSUFFICIENT_PERMISSIONS, missingPermissions: ["files:read", "files:list"] });
    expect(res.principal?.tenantId).toBe("acme");
    expect(res.clientResponse?.httpStatus).toBe(403);
    expect(res.clientResponse?.headers["www-authenticate"]).toBe('Bearer realm="tollgate", error="insufficient_scope", scope="files:read files:list"');
    expect(JSON.parse(res.clientResponse!.body)).toMatchObject({ status: 403, code: "INSUFFICIENT_PERMISSIONS" });
  });

  it("answers BLOCKED when a deny list matches, even over a direct grant, and when cost exceeds the cap", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", permissions: ["tool:*"] });
    const res = await client.authorize({ credential: secret, permissionQuery: "tool:Bash" });
    expect(res).toMatchObject({ allowed: false, code: Code.BLOCKED, blockedPermissions: ["tool:Bash"] });
    expect(res.clientResponse?.httpStatus).toBe(403);
    expect((await client.authorize({ credential: secret, permissionQuery: "read", resource: "tool:Bash" })).code).toBe(Code.BLOCKED);
    expect((await client.authorize({ credential: secret, permissionQuery: "read", cost: 10n })).code).toBe(Code.ALLOWED);
    const costly = await client.authorize({ credential: secret, permissionQuery: "read", cost: 11n });
    expect(costly).toMatchObject({ code: Code.BLOCKED });
    expect(costly.message).toContain("exceeds");
  });

  it("answers TENANT_FORBIDDEN for another tenant, unless the key holds tollgate:cross-tenant", async () => {
    const plain = await seedKey(app, { tenantId: "acme" });
    expect((await client.authorize({ credential: plain.secret, permissionQuery: "read", tenantId: "acme" })).code).toBe(Code.ALLOWED);
    const res = await client.authorize({ credential: plain.secret, permissionQuery: "read", tenantId: "globex" });
    expect(res).toMatchObject({ allowed: false, code: Code.TENANT_FORBIDDEN });
    expect(res.clientResponse?.httpStatus).toBe(403);
    const wildcard = await seedKey(app, { tenantId: "acme", permissions: ["*"] });
    expect((await client.authorize({ credential: wildcard.secret, permissionQuery: "read", tenantId: "globex" })).code).toBe(Code.TENANT_FORBIDDEN);
    const crossTenant = await seedKey(app, { tenantId: "acme", permissions: ["tollgate:cross-tenant"] });
    const ok = await client.authorize({ credential: crossTenant.secret, permissionQuery: "read", tenantId: "globex" });
    expect(ok).toMatchObject({ code: Code.ALLOWED, tenantId: "globex" });
  });
});

describe("Authorize by key id (trusted callers)", () => {
  it("lets a service key of the same tenant ask about a key by id, with the key's IP rules applied", async () => {
    const service = await seedKey(app, { tenantId: "acme", permissions: ["tollgate:authorize"] });
    const { key } = await seedKey(app, { tenantId: "acme", ipAllowlist: ["10.0.0.0/8"] });
    const headers = { authorization: `Bearer ${service.secret}` };
    expect((await client.authorize({ keyId: key.keyId, permissionQuery: "read", clientIp: "10.0.0.1" }, { headers })).code).toBe(Code.ALLOWED);
    expect((await client.authorize({ keyId: key.keyId, permissionQuery: "read", clientIp: "192.0.2.1" }, { headers })).code).toBe(Code.IP_NOT_ALLOWED);
    expect((await client.authorize({ keyId: key.keyId, permissionQuery: "files:read", clientIp: "10.0.0.1" }, { headers })).code).toBe(Code.INSUFFICIENT_PERMISSIONS);
  });

  it("answers INVALID_API_KEY for unknown ids and for keys of other tenants, unless the caller is cross-tenant", async () => {
    const service = await seedKey(app, { tenantId: "acme", permissions: ["tollgate:authorize"] });
    const other = await seedKey(app, { tenantId: "globex" });
    const headers = { authorization: `Bearer ${service.secret}` };
    const unknownId = generateKey("sk_live").keyId;
    expect((await client.authorize({ keyId: unknownId, permissionQuery: "read" }, { headers })).code).toBe(Code.INVALID_API_KEY);
    expect((await client.authorize({ keyId: other.key.keyId, permissionQuery: "read" }, { headers })).code).toBe(Code.INVALID_API_KEY);
    const res = await client.authorize({ keyId: other.key.keyId, permissionQuery: "read" }, { headers: rootHeaders });
    expect(res).toMatchObject({ code: Code.ALLOWED, tenantId: "globex" });
  });

  it("refuses callers without a valid service key: UNAUTHENTICATED or PERMISSION_DENIED", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    await expect(client.authorize({ keyId: key.keyId, permissionQuery: "read" })).rejects.toSatisfy(rpcError(RpcCode.Unauthenticated, "authorization"));
    const bogus = { authorization: `Bearer ${generateKey("sk_live").full}` };
    await expect(client.authorize({ keyId: key.keyId, permissionQuery: "read" }, { headers: bogus })).rejects.toSatisfy(rpcError(RpcCode.Unauthenticated, "not valid"));
    const plain = { authorization: `Bearer ${secret}` };
    await expect(client.authorize({ keyId: key.keyId, permissionQuery: "read" }, { headers: plain })).rejects.toSatisfy(rpcError(RpcCode.PermissionDenied, "tollgate:authorize"));
  });
});

describe("Authorize: bad input", () => {
  const valid = { credential: "sk_live_x", permissionQuery: "read" };
  it.each([
    ["credential", { credential: "x".repeat(5000) }],
    ["key_id", { keyId: "abc" }],
    ["key_id", { keyId: generateKey("sk_live").keyId }], // together with a credential
    ["permission_query", { permissionQuery: "read AND (write" }],
    ["permission_query", { permissionQuery: "" }],
    ["permission_query", { permissionQuery: "(".repeat(100_000) + "read" + ")".repeat(100_000) }],
    ["permission_query", { permissionQuery: "(".repeat(1000) + "read" + ")".repeat(1000) }],
    ["resource", { resource: "tool:*" }],
    ["resource", { resource: "x".repeat(200) }],
    ["tenant_id", { tenantId: "Not A Tenant" }],
    ["client_ip", { clientIp: "300.1.1.1" }],
    ["cost", { cost: -1n }],
  ])("rejects a bad %s as INVALID_ARGUMENT naming it", async (field, patch) => {
    await expect(client.authorize({ ...valid, ...patch })).rejects.toSatisfy(rpcError(RpcCode.InvalidArgument, field));
  });

  it("reports the position of a query parse error", async () => {
    await expect(client.authorize({ ...valid, permissionQuery: "read OR OR write" })).rejects.toSatisfy(rpcError(RpcCode.InvalidArgument, "at position 9"));
  });

  it("reports every bad field at once", async () => {
    const err = await client.authorize({ credential: "x", permissionQuery: "(", tenantId: "BAD", clientIp: "nope" }).catch((e: ConnectError) => e);
    expect(err).toBeInstanceOf(ConnectError);
    for (const field of ["permission_query", "tenant_id", "client_ip"]) expect((err as ConnectError).message).toContain(field);
  });
});

describe("Authorize: dependency failure", () => {
  it("answers from memory on a warm cache while the database is down, and UNAVAILABLE for anything it must read", async () => {
    const proxy = await startTcpProxy(db.url);
    const replica = await startTestServer(proxy.url);
    try {
      const c = grpcClient(AuthService, replica.grpcPort);
      const warm = await seedKey(replica, { tenantId: "acme" });
      const keyOnly = await seedKey(replica, { tenantId: "acme", plan: "pro" });
      const cold = await seedKey(replica, { tenantId: "acme" });
      expect((await c.authorize({ credential: warm.secret, permissionQuery: "read" })).code).toBe(Code.ALLOWED);
      // Key cached by Authenticate, but its plan ("pro") never loaded on this replica.
      expect((await c.authenticate({ credential: keyOnly.secret })).code).toBe(Code.VALID);
      await proxy.stop();
      expect((await c.authorize({ credential: warm.secret, permissionQuery: "read" })).code).toBe(Code.ALLOWED);
      await expect(c.authorize({ credential: keyOnly.secret, permissionQuery: "read" })).rejects.toSatisfy(rpcError(RpcCode.Unavailable, "database"));
      await expect(c.authorize({ credential: cold.secret, permissionQuery: "read" })).rejects.toSatisfy(rpcError(RpcCode.Unavailable, "database"));
    } finally {
      await replica.stop();
      await proxy.stop();
    }
  });
});
