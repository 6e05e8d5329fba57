import { Code as RpcCode } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { KeyService } from "../src/gen/tollgate/v1/key_service_pb.js";
import { TenantService } from "../src/gen/tollgate/v1/tenant_service_pb.js";
import { clientFor, rpcError, type TestClient } from "./support/clients.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { seedKey, startTestServer } from "./support/server.js";

let db: TestDatabase;
let app: App;
let actor: string;
let keys: TestClient<typeof KeyService>;
let tenants: TestClient<typeof TenantService>;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
  const admin = await seedKey(app, { tenantId: "root", admin: "root" });
  actor = `key:${admin.key.keyId}`;
  keys = clientFor(KeyService, "grpc-js", app, admin.secret);
  tenants = clientFor(TenantService, "grpc-js", app, admin.secret);
});
afterAll(async () => {
  keys?.close();
  tenants?.close();
  await app?.stop();
  await db?.drop();
});

async function auditRows(targetId: string) {
  const { rows } = await app.pool.query<{ actor: string; action: string; target_type: string; tenant_id: string; details: Record<string, unknown> }>(
    "SELECT actor, action, target_type, tenant_id, details FROM audit_log WHERE target_id = $1 ORDER BY audit_id",
    [targetId],
  );
  return rows;
}

describe("audit log", () => {
  it("records every admin mutation with its actor, action and target", async () => {
    await tenants.createTenant({ tenantId: "audited", displayName: "Audited" });
    const created = await keys.createKey({ tenantId: "audited", name: "k" });
    const keyId = created.key!.keyId;
    await keys.updateKey({ key: { keyId, name: "k2", plan: "pro" }, updateMask: { paths: ["name", "plan"] } });
    await keys.revokeKey({ keyId, reason: "done" });
    await keys.getKey({ keyId });
    await keys.listKeys({ tenantId: "audited" });

    expect(await auditRows("audited")).toEqual([{ actor, action: "tenant.create", target_type: "tenant", tenant_id: "audited", details: {} }]);
    const rows = await auditRows(keyId);
    expect(rows.map((r) => [r.actor, r.action, r.target_type, r.tenant_id])).toEqual([
      [actor, "key.create", "key", "audited"],
      [actor, "key.update", "key", "audited"],
      [actor, "key.revoke", "key", "audited"],
    ]);
    expect(rows[1]!.details).toEqual({ fields: ["name", "plan"] });
    expect(rows[2]!.details).toEqual({ reason: "done" });
    expect(JSON.stringify(rows)).not.toContain(created.secret.slice(-20));
  });

  it("writes nothing for a refused mutation", async () => {
    const before = (await app.pool.query("SELECT count(*)::int AS n FROM audit_log")).rows[0].n as number;
    await rpcError(keys.createKey({ tenantId: "no-such-tenant" }));
    await rpcError(keys.revokeKey({ keyId: "0000000000000000" }));
    await rpcError(keys.createKey({ tenantId: "root", ipAllowlist: ["x"] }));
    expect((await app.pool.query("SELECT count(*)::int AS n FROM audit_log")).rows[0].n).toBe(before);
  });

  it("commits a change and its audit row together: a failing audit insert rolls the change back", async () => {
    const { key } = await seedKey(app, { tenantId: "root", name: "original" });
    await app.pool.query(`CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit disk full'; END $$;
      CREATE TRIGGER audit_log_fail BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION fail_audit();`);
    try {
      const attempts = [
        () => keys.updateKey({ key: { keyId: key.keyId, name: "changed" }, updateMask: { paths: ["name"] } }),
        () => keys.revokeKey({ keyId: key.keyId, reason: "x" }),
        () => keys.createKey({ tenantId: "root", name: "ghost" }),
        () => tenants.createTenant({ tenantId: "ghost-tenant" }),
      ];
      for (const attempt of attempts) {
        const err = await rpcError(attempt());
        expect(err.code).toBe(RpcCode.Unavailable);
        expect(err.message).not.toContain("audit disk full"); // database text never reaches a client
      }
    } finally {
      await app.pool.query("DROP TRIGGER audit_log_fail ON audit_log; DROP FUNCTION fail_audit()");
    }
    const after = (await keys.getKey({ keyId: key.keyId })).key!;
    expect(after.name).toBe("original");
    expect(after.revokedAt).toBeUndefined();
    expect((await app.pool.query("SELECT count(*)::int AS n FROM api_keys WHERE name = 'ghost'")).rows[0].n).toBe(0);
    expect((await app.pool.query("SELECT count(*)::int AS n FROM tenants WHERE tenant_id = 'ghost-tenant'")).rows[0].n).toBe(0);
  });

  it("is append-only", async () => {
    await expect(app.pool.query("UPDATE audit_log SET actor = 'someone else'")).rejects.toThrow(/append-only/);
    await expect(app.pool.query("DELETE FROM audit_log")).rejects.toThrow(/append-only/);
  });
});
