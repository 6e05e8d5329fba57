import { Code as RpcCode } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { KeyService } from "../src/gen/tollgate/v1/key_service_pb.js";
import { TenantService } from "../src/gen/tollgate/v1/tenant_service_pb.js";
import { generateKey, parseKey } from "../src/keys/format.js";
import { CROSS_TENANT_PERMISSION } from "../src/keys/key-admin.js";
import { clientFor, reasonOf, rpcError, STACKS, type Stack } from "./support/clients.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { seedKey, startTestServer } from "./support/server.js";

let db: TestDatabase;
let app: App;
let root: { secret: string };
let acme: { secret: string };
let globex: { secret: string };

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
  root = await seedKey(app, { tenantId: "root", admin: "root" });
  acme = await seedKey(app, { tenantId: "acme", admin: "tenant" });
  globex = await seedKey(app, { tenantId: "globex", admin: "tenant" });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

describe.each(STACKS)("admin authentication over %s", (stack: Stack) => {
  const call = (secret: string | undefined, headers: Record<string, string> = {}) => {
    const keys = clientFor(KeyService, stack, app, secret);
    return rpcError(keys.listKeys({}, { headers })).finally(() => keys.close());
  };

  it("refuses a call without credentials as UNAUTHENTICATED / MISSING_CREDENTIAL, before looking at the request", async () => {
    const keys = clientFor(KeyService, stack, app);
    try {
      for (const request of [() => keys.listKeys({}), () => keys.createKey({ tenantId: "NOT A TENANT", ipAllowlist: ["nope"] }), () => keys.getKey({ keyId: "bad" })]) {
        const err = await rpcError(request());
        expect(err.code).toBe(RpcCode.Unauthenticated);
        expect(reasonOf(err)).toBe("MISSING_CREDENTIAL");
      }
    } finally {
      keys.close();
    }
  });

  it("refuses malformed, unknown and wrong-secret admin keys as UNAUTHENTICATED", async () => {
    const parsed = parseKey(acme.secret)!;
    const cases: Array<[Record<string, string>, string]> = [
      [{ authorization: "Bearer sk_live_garbage" }, "MALFORMED_CREDENTIAL"],
      [{ authorization: `Bearer ${generateKey("sk_live").full}` }, "INVALID_API_KEY"],
      [{ authorization: `Bearer ${generateKey("sk_live", parsed.keyId).full}` }, "INVALID_API_KEY"],
      [{ authorization: "Basic dXNlcjpwYXNz" }, "MALFORMED_CREDENTIAL"],
    ];
    for (const [headers, reason] of cases) {
      const err = await call(undefined, headers);
      expect(err.code).toBe(RpcCode.Unauthenticated);
      expect(reasonOf(err)).toBe(reason);
      expect(err.message).not.toContain(parsed.secret);
    }
  });

  it("refuses a valid key without tollgate:admin as PERMISSION_DENIED", async () => {
    const plain = await seedKey(app, { tenantId: "acme", permissions: ["tollgate:admin:extra", "*"] });
    const err = await call(plain.secret);
    expect(err.code).toBe(RpcCode.PermissionDenied);
    expect(reasonOf(err)).toBe("NOT_AN_ADMIN_KEY");
  });

  it("refuses revoked and expired admin keys as UNAUTHENTICATED", async () => {
    const expired = await seedKey(app, { tenantId: "acme", admin: "tenant", expiresAt: new Date(Date.now() - 1_000) });
    expect((await call(expired.secret)).code).toBe(RpcCode.Unauthenticated);

    const doomed = await seedKey(app, { tenantId: "acme", admin: "tenant" });
    const keys = clientFor(KeyService, stack, app, doomed.secret);
    try {
      expect((await keys.listKeys({})).keys.length).toBeGreaterThan(0); // warm its cache entry
      const rootKeys = clientFor(KeyService, stack, app, root.secret);
      await rootKeys.revokeKey({ keyId: doomed.key.keyId, reason: "rotated out" });
      rootKeys.close();
      const started = Date.now();
      for (;;) {
        const outcome = await keys.listKeys({}).then(() => undefined, (e: unknown) => e);
        if (outcome !== undefined) {
          const err = outcome as Awaited<ReturnType<typeof rpcError>>;
          expect(err.code).toBe(RpcCode.Unauthenticated);
          expect(reasonOf(err)).toBe("INVALID_API_KEY");
          break;
        }
        expect(Date.now() - started).toBeLessThan(1_000);
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      keys.close();
    }
  });
});

describe.each(STACKS)("tenant isolation over %s", (stack: Stack) => {
  it("a tenant admin cannot see or alter another tenant's keys, and cannot tell they exist", async () => {
    const victim = await seedKey(app, { tenantId: "globex", name: "globex prod" });
    const keyId = victim.key.keyId;
    const keys = clientFor(KeyService, stack, app, acme.secret);
    try {
      const notFound = [
        () => keys.getKey({ keyId }),
        () => keys.revokeKey({ keyId, reason: "hostile" }),
        () => keys.updateKey({ key: { keyId, name: "pwned" }, updateMask: { paths: ["name"] } }),
      ];
      for (const attempt of notFound) {
        const err = await rpcError(attempt());
        expect(err.code).toBe(RpcCode.NotFound);
        expect(reasonOf(err)).toBe("KEY_NOT_FOUND");
      }
      for (const attempt of [() => keys.createKey({ tenantId: "globex", name: "implant" }), () => keys.listKeys({ tenantId: "globex" })]) {
        const err = await rpcError(attempt());
        expect(err.code).toBe(RpcCode.PermissionDenied);
        expect(reasonOf(err)).toBe("TENANT_FORBIDDEN");
      }
      expect((await keys.listKeys({ pageSize: 500 })).keys.every((k) => k.tenantId === "acme")).toBe(true);
      for (const attempt of [
        () => keys.createKey({ permissions: [CROSS_TENANT_PERMISSION] }),
        () => keys.updateKey({ key: { keyId: parseKey(acme.secret)!.keyId, permissions: ["tollgate:admin", CROSS_TENANT_PERMISSION] }, updateMask: { paths: ["permissions"] } }),
      ]) {
        const err = await rpcError(attempt());
        expect(err.code).toBe(RpcCode.PermissionDenied);
        expect(reasonOf(err)).toBe("GRANT_FORBIDDEN");
      }
    } finally {
      keys.close();
    }
    const rootKeys = clientFor(KeyService, stack, app, root.secret);
    try {
      const untouched = (await rootKeys.getKey({ keyId })).key!;
      expect(untouched).toMatchObject({ tenantId: "globex", name: "globex prod", revokedReason: "" });
      expect(untouched.revokedAt).toBeUndefined();
    } finally {
      rootKeys.close();
    }
  });

  it("a root admin acts in every tenant", async () => {
    const victim = await seedKey(app, { tenantId: "globex" });
    const keys = clientFor(KeyService, stack, app, root.secret);
    try {
      const created = await keys.createKey({ tenantId: "globex", name: "by root", permissions: [CROSS_TENANT_PERMISSION] });
      expect(created.key?.tenantId).toBe("globex");
      expect((await keys.listKeys({ tenantId: "globex", pageSize: 500 })).keys.map((k) => k.keyId)).toContain(created.key!.keyId);
      expect((await keys.getKey({ keyId: victim.key.keyId })).key?.tenantId).toBe("globex");
      const renamed = await keys.updateKey({ key: { keyId: victim.key.keyId, name: "renamed" }, updateMask: { paths: ["name"] } });
      expect(renamed.key?.name).toBe("renamed");
      expect((await keys.revokeKey({ keyId: victim.key.keyId, reason: "root" })).key?.revokedReason).toBe("root");
      const err = await rpcError(keys.createKey({ tenantId: "no-such-tenant" }));
      expect(err.code).toBe(RpcCode.NotFound);
      expect(reasonOf(err)).toBe("TENANT_NOT_FOUND");
    } finally {
      keys.close();
    }
  });

  it("TenantService: only root creates and lists tenants; a tenant admin reads only its own", async () => {
    const tenantId = `t-${stack}`;
    const asRoot = clientFor(TenantService, stack, app, root.secret);
    const asAcme = clientFor(TenantService, stack, app, acme.secret);
    const anonymous = clientFor(TenantService, stack, app);
    try {
      expect((await asRoot.createTenant({ tenantId, displayName: "T" })).tenant?.tenantId).toBe(tenantId);
      expect((await rpcError(asRoot.createTenant({ tenantId }))).code).toBe(RpcCode.AlreadyExists);
      expect((await asRoot.getTenant({ tenantId })).tenant?.displayName).toBe("T");
      const all = (await asRoot.listTenants({ pageSize: 500 })).tenants.map((t) => t.tenantId);
      expect(all).toEqual(expect.arrayContaining(["acme", "globex", "root", tenantId]));

      expect((await asAcme.getTenant({ tenantId: "acme" })).tenant?.tenantId).toBe("acme");
      expect((await rpcError(asAcme.getTenant({ tenantId: "globex" }))).code).toBe(RpcCode.NotFound);
      expect((await rpcError(asAcme.createTenant({ tenantId: `x-${stack}` }))).code).toBe(RpcCode.PermissionDenied);
      expect((await rpcError(asAcme.listTenants({}))).code).toBe(RpcCode.PermissionDenied);
      expect((await rpcError(anonymous.listTenants({}))).code).toBe(RpcCode.Unauthenticated);
      expect((await rpcError(asRoot.getTenant({ tenantId: `x-${stack}` }))).code).toBe(RpcCode.NotFound); // acme's attempt left nothing
    } finally {
      for (const c of [asRoot, asAcme, anonymous]) c.close();
    }
  });
});

describe("TenantService pagination", () => {
  it("pages tenants in id order and rejects foreign page tokens", async () => {
    const tenants = clientFor(TenantService, "grpc-js", app, root.secret);
    const keys = clientFor(KeyService, "grpc-js", app, root.secret);
    try {
      const all = (await tenants.listTenants({ pageSize: 500 })).tenants.map((t) => t.tenantId);
      const seen: string[] = [];
      let pageToken = "";
      do {
        const page = await tenants.listTenants({ pageSize: 2, pageToken });
        seen.push(...page.tenants.map((t) => t.tenantId));
        pageToken = page.nextPageToken;
      } while (pageToken);
      expect(seen).toEqual(all);
      expect(seen).toEqual([...all].sort());
      const keyToken = (await keys.listKeys({ tenantId: "acme", pageSize: 1 })).nextPageToken;
      expect(keyToken).not.toBe("");
      expect((await rpcError(tenants.listTenants({ pageToken: keyToken }))).code).toBe(RpcCode.InvalidArgument);
      expect((await rpcError(tenants.listTenants({ pageSize: 100_000 }))).code).toBe(RpcCode.InvalidArgument);
    } finally {
      tenants.close();
      keys.close();
    }
  });
});
