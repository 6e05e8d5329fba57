import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code as RpcCode } from "@connectrpc/connect";
import type { App } from "../src/app.js";
import { LimitService } from "../src/gen/tollgate/v1/limit_service_pb.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { rpcFailure } from "./support/rpc-errors.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";
import { startTcpProxy } from "./support/tcp-proxy.js";

let db: TestDatabase;
let app: App;
let limits: ReturnType<typeof grpcClient<typeof LimitService>>;
let auth: ReturnType<typeof grpcClient<typeof AuthService>>;
let root: string;
let acmeAdmin: string;
beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
  limits = grpcClient(LimitService, app.grpcPort);
  auth = grpcClient(AuthService, app.grpcPort);
  root = (await seedKey(app, { tenantId: "root", admin: "root" })).secret;
  acmeAdmin = (await seedKey(app, { tenantId: "acme", admin: "tenant" })).secret;
  await seedKey(app, { tenantId: "globex" });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

const as = (secret: string) => ({ headers: { authorization: `Bearer ${secret}` } });
const quota = (over: Record<string, unknown> = {}) => ({ name: "exports", scope: "tenant", scopeId: "acme", kind: "quota", amount: 3n, period: "day", ...over });

describe("LimitService", () => {
  it("a tenant admin's new limit is enforced by ConsumeQuota on every key of the tenant within a second", async () => {
    const { limit } = await limits.putLimit({ limit: quota() }, as(acmeAdmin));
    expect(limit).toMatchObject({ name: "exports", scope: "tenant", scopeId: "acme", per: "key", kind: "quota", amount: 3n, refillMode: "set" });
    const { secret } = await seedKey(app, { tenantId: "acme" });
    await new Promise((r) => setTimeout(r, 500)); // the limits NOTIFY reloads the catalog
    const codes: Code[] = [];
    for (let i = 0; i < 4; i++) codes.push((await auth.consumeQuota({ credential: secret, limits: ["exports"] })).code);
    expect(codes).toEqual([Code.OK, Code.OK, Code.OK, Code.QUOTA_EXCEEDED]);

    // Replacing it (same scope, id and name) raises the limit for the same counter.
    await limits.putLimit({ limit: quota({ amount: 5n }) }, as(acmeAdmin));
    await new Promise((r) => setTimeout(r, 500));
    expect((await auth.consumeQuota({ credential: secret, limits: ["exports"] })).code).toBe(Code.OK);
    const listed = await limits.listLimits({ scope: "tenant", scopeId: "acme" }, as(acmeAdmin));
    expect(listed.limits.map((l) => [l.name, l.amount])).toEqual([["exports", 5n]]);
  });

  it("rejects bad definitions as INVALID_ARGUMENT naming every field", async () => {
    const bad = await rpcFailure(limits.putLimit({ limit: { name: "bad name", scope: "galaxy", scopeId: "", kind: "rate", amount: 0n, period: "fortnight", refillMode: "add" } }, as(root)));
    expect(bad.code).toBe(RpcCode.InvalidArgument);
    expect(bad.fields).toEqual(expect.arrayContaining(["limit.name", "limit.scope", "limit.scope_id", "limit.amount", "limit.period", "limit.refill_mode"]));
    expect((await rpcFailure(limits.putLimit({}, as(root)))).fields).toEqual(["limit"]);
    expect((await rpcFailure(limits.putLimit({ limit: quota({ period: "none" }) }, as(root)))).fields).toContain("limit.period");
    expect((await rpcFailure(limits.putLimit({ limit: quota({ amount: 2n ** 62n }) }, as(root)))).fields).toContain("limit.amount");
    expect((await rpcFailure(limits.deleteLimit({ limitId: 0n }, as(root)))).fields).toEqual(["limit_id"]);
  });

  it("needs an admin key, and keeps tenant admins to their own tenant and its keys", async () => {
    expect((await rpcFailure(limits.listLimits({}))).code).toBe(RpcCode.Unauthenticated);
    const user = (await seedKey(app, { tenantId: "acme" })).secret;
    expect((await rpcFailure(limits.listLimits({}, as(user)))).code).toBe(RpcCode.PermissionDenied);
    for (const limit of [quota({ scopeId: "globex" }), quota({ scope: "plan", scopeId: "free" }), quota({ scope: "owner", scopeId: "alice" })]) {
      expect((await rpcFailure(limits.putLimit({ limit }, as(acmeAdmin)))).reason).toBe("LIMIT_SCOPE_FORBIDDEN");
    }
    const { key: globexKey } = await seedKey(app, { tenantId: "globex" });
    expect((await rpcFailure(limits.putLimit({ limit: quota({ scope: "key", scopeId: globexKey.keyId }) }, as(acmeAdmin)))).code).toBe(RpcCode.PermissionDenied);
    const { limit } = await limits.putLimit({ limit: quota({ scopeId: "globex", name: "globex-only" }) }, as(root));
    // Another tenant's limit is invisible to a tenant admin: absent from lists, NOT_FOUND to delete.
    expect((await limits.listLimits({}, as(acmeAdmin))).limits.some((l) => l.name === "globex-only")).toBe(false);
    expect((await rpcFailure(limits.deleteLimit({ limitId: limit!.limitId }, as(acmeAdmin)))).code).toBe(RpcCode.NotFound);
    await limits.deleteLimit({ limitId: limit!.limitId }, as(root));
    expect((await limits.listLimits({ scopeId: "globex" }, as(root))).limits.some((l) => l.name === "globex-only")).toBe(false);
    // Plan limits (shipped defaults) are visible to tenant admins: they shape their keys.
    expect((await limits.listLimits({ scope: "plan", scopeId: "free" }, as(acmeAdmin))).limits.length).toBeGreaterThan(0);
  });

  it("answers UNAVAILABLE when PostgreSQL is unreachable", async () => {
    const proxy = await startTcpProxy(db.url);
    const replica = await startTestServer(proxy.url, { env: { TOLLGATE_DB_TIMEOUT_MS: "500" } });
    try {
      const client = grpcClient(LimitService, replica.grpcPort);
      await client.listLimits({}, as(root)); // warms the admin key
      await proxy.cut("refuse");
      expect((await rpcFailure(client.putLimit({ limit: quota({ name: "later" }) }, as(root)))).code).toBe(RpcCode.Unavailable);
    } finally {
      await replica.stop();
      await proxy.close();
    }
  });
});

describe("tollgate limits (CLI)", () => {
  const cli = async (...args: string[]) => {
    const { execFile } = await import("node:child_process");
    return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, ["bin/tollgate.js", "limits", ...args], { env: { ...process.env, DATABASE_URL: db.url } }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
    );
  };

  it("sets, lists and deletes a limit, and refuses a bad one with the field named", async () => {
    const set = await cli("set", "reports", "--scope", "plan", "--scope-id", "pro", "--kind", "quota", "--amount", "70", "--period", "day", "--json");
    expect(set.code, set.stderr).toBe(0);
    const created = JSON.parse(set.stdout) as { limitId: number; amount: number; scope: string };
    expect(created).toMatchObject({ amount: 70, scope: "plan" });
    const listed = await cli("list", "--scope", "plan", "--scope-id", "pro", "--json");
    expect((JSON.parse(listed.stdout) as Array<{ name: string }>).map((l) => l.name)).toContain("reports");
    expect((await cli("delete", String(created.limitId))).code).toBe(0);
    const bad = await cli("set", "reports", "--scope", "plan", "--scope-id", "pro", "--kind", "rate", "--amount", "5", "--period", "day");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("--refill");
  });
});
