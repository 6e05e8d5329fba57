import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code as RpcCode, ConnectError } from "@connectrpc/connect";
import { PolicyService } from "../src/gen/tollgate/v1/policy_service_pb.js";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer, testEnv } from "./support/server.js";
import { startTcpProxy } from "./support/tcp-proxy.js";

let db: TestDatabase;
let app: App;
let policy: ReturnType<typeof grpcClient<typeof PolicyService>>;
let root: { headers: { authorization: string } };
let acmeAdmin: { headers: { authorization: string } };

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
  policy = grpcClient(PolicyService, app.grpcPort);
  root = { headers: { authorization: `Bearer ${(await seedKey(app, { tenantId: "root", admin: "root" })).secret}` } };
  acmeAdmin = { headers: { authorization: `Bearer ${(await seedKey(app, { tenantId: "acme", admin: "tenant" })).secret}` } };
  await seedKey(app, { tenantId: "globex" });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

const rpcError = (code: RpcCode, text: string) => (e: ConnectError) => e.code === code && e.message.includes(text);

describe("PolicyService plans", () => {
  it("ships free, pro and enterprise, readable by any admin", async () => {
    const { plans } = await policy.listPlans({}, acmeAdmin);
    expect(plans.map((p) => p.name)).toEqual(["enterprise", "free", "pro"]);
    const { plan } = await policy.getPlan({ name: "free" }, acmeAdmin);
    expect(plan).toMatchObject({ allowed: expect.arrayContaining(["tool:Read", "tool:Grep"]), blocked: expect.arrayContaining(["tool:Bash"]), maxCostPerCall: 10n, timeoutMs: 10_000 });
  });

  it("lets a root admin create, replace and delete a plan", async () => {
    const put = await policy.putPlan({ plan: { name: "startup", displayName: "Startup", allowed: ["chat:*"], maxCostPerCall: 50n } }, root);
    expect(put.plan).toMatchObject({ name: "startup", allowed: ["chat:*"], maxCostPerCall: 50n });
    expect(put.plan?.timeoutMs).toBeUndefined();
    const replaced = await policy.putPlan({ plan: { name: "startup", allowed: ["read"], timeoutMs: 2_000 } }, root);
    expect(replaced.plan).toMatchObject({ allowed: ["read"], timeoutMs: 2_000 });
    expect(replaced.plan?.maxCostPerCall).toBeUndefined();
    await policy.deletePlan({ name: "startup" }, root);
    await expect(policy.getPlan({ name: "startup" }, root)).rejects.toSatisfy(rpcError(RpcCode.NotFound, "startup"));
  });

  it("refuses to delete a plan keys still use", async () => {
    await seedKey(app, { tenantId: "acme", plan: "pro" });
    await expect(policy.deletePlan({ name: "pro" }, root)).rejects.toSatisfy(rpcError(RpcCode.FailedPrecondition, "used by"));
  });

  it("refuses plan changes from a tenant admin and from callers without a key", async () => {
    await expect(policy.putPlan({ plan: { name: "mine", allowed: ["*"] } }, acmeAdmin)).rejects.toSatisfy(rpcError(RpcCode.PermissionDenied, "root admin"));
    await expect(policy.deletePlan({ name: "free" }, acmeAdmin)).rejects.toSatisfy(rpcError(RpcCode.PermissionDenied, "root admin"));
    await expect(policy.listPlans({})).rejects.toSatisfy(rpcError(RpcCode.Unauthenticated, "authorization"));
    const plain = { headers: { authorization: `Bearer ${(await seedKey(app, { tenantId: "acme" })).secret}` } };
    await expect(policy.listPlans({}, plain)).rejects.toSatisfy(rpcError(RpcCode.PermissionDenied, "tollgate:admin"));
  });

  it.each([
    ["plan", {}],
    ["plan.name", { plan: { name: "" } }],
    ["plan.name", { plan: { name: "has space" } }],
    ["plan.allowed[0]", { plan: { name: "p", allowed: ["chat:wr*"] } }],
    ["plan.allowed[0]", { plan: { name: "p", allowed: ["tollgate:admin"] } }],
    ["plan.blocked[1]", { plan: { name: "p", blocked: ["ok", "::"] } }],
    ["plan.max_cost_per_call", { plan: { name: "p", maxCostPerCall: -1n } }],
    ["plan.timeout_ms", { plan: { name: "p", timeoutMs: 0 } }],
    ["plan.ip_allowlist[0]", { plan: { name: "p", ipAllowlist: ["10.0.0.0/99"] } }],
    ["plan.display_name", { plan: { name: "p", displayName: "x".repeat(300) } }],
  ])("rejects a bad %s as INVALID_ARGUMENT", async (field, req) => {
    await expect(policy.putPlan(req, root)).rejects.toSatisfy(rpcError(RpcCode.InvalidArgument, field));
  });
});

describe("PolicyService roles", () => {
  it("lets a tenant admin manage roles of its own tenant only", async () => {
    const { role } = await policy.putRole({ role: { name: "support", permissions: ["tickets:*"], description: "helpdesk" } }, acmeAdmin);
    expect(role).toMatchObject({ tenantId: "acme", name: "support", permissions: ["tickets:*"] });
    expect((await policy.listRoles({}, acmeAdmin)).roles.map((r) => r.name)).toContain("support");
    await expect(policy.putRole({ role: { tenantId: "globex", name: "x", permissions: [] } }, acmeAdmin)).rejects.toSatisfy(rpcError(RpcCode.PermissionDenied, "own tenant"));
    await expect(policy.listRoles({ tenantId: "globex" }, acmeAdmin)).rejects.toSatisfy(rpcError(RpcCode.PermissionDenied, "own tenant"));
    await policy.deleteRole({ name: "support" }, acmeAdmin);
    await expect(policy.deleteRole({ name: "support" }, acmeAdmin)).rejects.toSatisfy(rpcError(RpcCode.NotFound, "support"));
  });

  it("reports an unknown tenant as NOT_FOUND and bad fields as INVALID_ARGUMENT", async () => {
    await expect(policy.putRole({ role: { tenantId: "nowhere", name: "r" } }, root)).rejects.toSatisfy(rpcError(RpcCode.NotFound, "nowhere"));
    await expect(policy.putRole({}, root)).rejects.toSatisfy(rpcError(RpcCode.InvalidArgument, "role"));
    await expect(policy.putRole({ role: { name: "r", permissions: ["tollgate:cross-tenant"] } }, root)).rejects.toSatisfy(rpcError(RpcCode.InvalidArgument, "role.permissions[0]"));
    await expect(policy.putRole({ role: { tenantId: "BAD", name: "" } }, root)).rejects.toSatisfy(
      (e: ConnectError) => e.code === RpcCode.InvalidArgument && e.message.includes("role.tenant_id") && e.message.includes("role.name"),
    );
    await expect(policy.deleteRole({ tenantId: "acme", name: "" }, root)).rejects.toSatisfy(rpcError(RpcCode.InvalidArgument, "name"));
  });
});

describe("PolicyService key policies", () => {
  it("shows effective permissions with their sources and applies plan, grants and overrides", async () => {
    await policy.putRole({ role: { tenantId: "acme", name: "editor", permissions: ["files:write"] } }, root);
    const { key } = await seedKey(app, { tenantId: "acme", permissions: ["billing:read"], roles: ["editor", "ghost"] });
    const { policy: before } = await policy.getKeyPolicy({ keyId: key.keyId }, acmeAdmin);
    expect(before).toMatchObject({ plan: "free", planFound: true, maxCostPerCall: 10n, unknownRoles: ["ghost"] });
    expect(before!.granted).toContainEqual(expect.objectContaining({ permission: "billing:read", source: "key" }));
    expect(before!.granted).toContainEqual(expect.objectContaining({ permission: "tool:Read", source: "plan:free" }));
    expect(before!.granted).toContainEqual(expect.objectContaining({ permission: "files:write", source: "role:editor" }));

    const { policy: after } = await policy.updateKeyPolicy({
      keyId: key.keyId, setPlan: "pro", addPermissions: ["reports:read"], removePermissions: ["billing:read"],
      setOverrides: { maxCostPerCall: 7n, blocked: { values: ["files:delete"] } },
    }, acmeAdmin);
    expect(after).toMatchObject({ plan: "pro", maxCostPerCall: 7n, timeoutMs: 60_000 });
    expect(after!.settingSources).toMatchObject({ max_cost_per_call: "override", blocked: "override", timeout_ms: "plan:pro" });
    expect(after!.granted.filter((g) => g.source === "key").map((g) => g.permission)).toEqual(["reports:read"]);
    expect(after!.blocked).toEqual([expect.objectContaining({ permission: "files:delete", source: "override" })]);

    const { policy: cleared } = await policy.updateKeyPolicy({ keyId: key.keyId, clearOverrides: ["max_cost_per_call", "blocked"] }, acmeAdmin);
    expect(cleared).toMatchObject({ maxCostPerCall: 100n, settingSources: expect.objectContaining({ max_cost_per_call: "plan:pro" }) });
    expect(cleared!.blocked.map((b) => b.permission)).toEqual(["tool:Bash"]);
  });

  it("hides other tenants' keys from a tenant admin and refuses cross-tenant grants", async () => {
    const { key: other } = await seedKey(app, { tenantId: "globex" });
    await expect(policy.getKeyPolicy({ keyId: other.keyId }, acmeAdmin)).rejects.toSatisfy(rpcError(RpcCode.NotFound, other.keyId));
    await expect(policy.updateKeyPolicy({ keyId: other.keyId, addPermissions: ["read"] }, acmeAdmin)).rejects.toSatisfy(rpcError(RpcCode.NotFound, other.keyId));
    const { key } = await seedKey(app, { tenantId: "acme" });
    await expect(policy.updateKeyPolicy({ keyId: key.keyId, addPermissions: ["tollgate:cross-tenant"] }, acmeAdmin)).rejects.toSatisfy(rpcError(RpcCode.PermissionDenied, "root admin"));
    await expect(policy.updateKeyPolicy({ keyId: key.keyId, setPlan: "no-such-plan" }, acmeAdmin)).rejects.toSatisfy(rpcError(RpcCode.NotFound, "no-such-plan"));
  });

  it.each([
    ["key_id", { keyId: "short" }],
    ["set_plan", { setPlan: "bad plan" }],
    ["add_permissions[0]", { addPermissions: ["no spaces"] }],
    ["set_overrides.allowed[0]", { setOverrides: { allowed: { values: ["a:b*"] } } }],
    ["set_overrides.max_cost_per_call", { setOverrides: { maxCostPerCall: -5n } }],
    ["set_overrides.timeout_ms", { setOverrides: { timeoutMs: 100_000_000 } }],
    ["set_overrides.ip_allowlist[0]", { setOverrides: { ipAllowlist: { values: ["nope"] } } }],
    ["clear_overrides[0]", { clearOverrides: ["plan"] }],
  ])("rejects a bad %s as INVALID_ARGUMENT", async (field, patch) => {
    const { key } = await seedKey(app, { tenantId: "acme" });
    await expect(policy.updateKeyPolicy({ keyId: key.keyId, ...patch }, root)).rejects.toSatisfy(rpcError(RpcCode.InvalidArgument, field));
  });

  it("answers UNAVAILABLE when the database is unreachable", async () => {
    const proxy = await startTcpProxy(db.url);
    const replica = await startTestServer(proxy.url);
    try {
      const c = grpcClient(PolicyService, replica.grpcPort);
      const { key } = await seedKey(replica, { tenantId: "acme" });
      await c.getKeyPolicy({ keyId: key.keyId }, root);
      await proxy.stop();
      await expect(c.getKeyPolicy({ keyId: key.keyId }, root)).rejects.toSatisfy(rpcError(RpcCode.Unavailable, "database"));
      await expect(c.putPlan({ plan: { name: "x" } }, root)).rejects.toSatisfy(rpcError(RpcCode.Unavailable, "database"));
    } finally {
      await replica.stop();
      await proxy.stop();
    }
  });
});

describe("tollgate keys permissions (CLI)", () => {
  const cli = (...args: string[]) =>
    promisify(execFile)(process.execPath, ["bin/tollgate.js", ...args], { env: { ...process.env, ...testEnv(db.url) } });

  it("prints effective permissions with sources, and changes plan, grants and max cost", async () => {
    const { key } = await seedKey(app, { tenantId: "acme", permissions: ["billing:read"] });
    const shown = await cli("keys", "permissions", key.keyId);
    expect(shown.stdout).toContain(`key ${key.keyId} in tenant acme, plan free`);
    expect(shown.stdout).toMatch(/billing:read\s+key/);
    expect(shown.stdout).toMatch(/tool:Bash\s+plan:free/);
    expect(shown.stdout).toContain("max cost per call: 10 (plan:free)");

    const changed = await cli("keys", "permissions", key.keyId, "--set-plan", "pro", "--add", "reports:read", "--remove", "billing:read,tool:Read", "--max-cost", "42", "--json");
    const json = JSON.parse(changed.stdout) as { plan: string; granted: Array<{ permission: string; source: string }>; settings: { maxCostPerCall: number }; settingSources: Record<string, string> };
    expect(json.plan).toBe("pro");
    expect(json.granted.filter((g) => g.source === "key").map((g) => g.permission)).toEqual(["reports:read"]);
    expect(json.settings.maxCostPerCall).toBe(42);
    expect(json.settingSources.maxCostPerCall).toBe("override");
    expect(changed.stderr).toContain("tool:Read is still granted by plan:pro");
  });

  it("creates and edits plans and roles; a plan set keeps the fields it does not name", async () => {
    await cli("plans", "set", "cli-plan", "--allowed", "read,chat:*", "--max-cost", "3");
    const edited = await cli("plans", "set", "cli-plan", "--blocked", "chat:admin", "--json");
    expect(JSON.parse(edited.stdout)).toMatchObject({ name: "cli-plan", allowed: ["read", "chat:*"], blocked: ["chat:admin"], maxCostPerCall: 3 });
    expect((await cli("plans", "list")).stdout).toMatch(/^cli-plan\tallowed=read,chat:\*/m);
    await cli("roles", "set", "auditor", "--tenant", "acme", "--permissions", "audit:read");
    expect((await cli("roles", "list", "--tenant", "acme")).stdout).toContain("auditor\taudit:read");
    await expect(cli("plans", "set", "cli-plan", "--allowed", "tollgate:admin")).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining("--allowed[0]") });
    await cli("plans", "delete", "cli-plan");
    await expect(cli("plans", "get", "cli-plan")).rejects.toMatchObject({ code: 1 });
  });

  it("fails with a usage error for a bad --max-cost and an error for an unknown key", async () => {
    const { key } = await seedKey(app, { tenantId: "acme" });
    await expect(cli("keys", "permissions", key.keyId, "--max-cost", "-3")).rejects.toMatchObject({ code: 2 });
    await expect(cli("keys", "permissions", "AAAAAAAAAAAAAAAA")).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining("not found") });
  });
});
