import { describe, expect, it } from "vitest";
import type { PlanOverrides, PlanSettings, Role } from "../src/domain/policy.js";
import { decide, type PolicyQuestion } from "../src/policy/decide.js";
import { compilePolicy, effectiveSettings, explainPolicy, narrowToScopes, type KeyPolicyInput } from "../src/policy/effective.js";
import { isQueryError, parseQuery, type QueryNode } from "../src/policy/query.js";

const PLAN: PlanSettings = {
  allowed: ["read", "chat:*", "tool:Read", "tool:Grep"],
  blocked: ["tool:Bash", "chat:admin"],
  maxCostPerCall: 10,
  timeoutMs: 5_000,
  ipAllowlist: [],
};

const now = new Date(0);
const role = (name: string, permissions: string[]): Role => ({ tenantId: "acme", name, description: "", permissions, createdAt: now, updatedAt: now });
const ROLES = new Map([["editor", role("editor", ["files:write", "files:read"])], ["ops", role("ops", ["tool:Bash"])]]);

function key(overrides: Partial<KeyPolicyInput> = {}): KeyPolicyInput {
  return { tenantId: "acme", permissions: [], roles: [], plan: "free", policyOverrides: {}, ...overrides };
}

function q(text: string): QueryNode {
  const node = parseQuery(text);
  if (isQueryError(node)) throw new Error(node.message);
  return node;
}

function ask(k: KeyPolicyInput, question: Partial<PolicyQuestion> & { query?: QueryNode }, plan: PlanSettings | null = PLAN) {
  return decide(compilePolicy(k, plan ?? undefined, ROLES), { keyTenantId: "acme", targetTenantId: "", query: undefined, resource: "", cost: 0, clientIp: "", ...question });
}

describe("policy decision", () => {
  it("grants from plan, roles and the key itself", () => {
    expect(ask(key(), { query: q("chat:write AND tool:Read") }).code).toBe("ALLOWED");
    expect(ask(key({ roles: ["editor"] }), { query: q("files:write") }).code).toBe("ALLOWED");
    expect(ask(key({ permissions: ["billing:read"] }), { query: q("billing:read") }).code).toBe("ALLOWED");
  });

  it("reports exactly the missing permissions of the failing branches", () => {
    const d = ask(key(), { query: q("chat:write AND (files:read OR files:list) AND read") });
    expect(d).toMatchObject({ code: "INSUFFICIENT_PERMISSIONS", missing: ["files:read", "files:list"], blocked: [] });
  });

  it("lets a deny beat a grant from any source", () => {
    // tool:Bash granted by a role and directly, but the plan blocks it.
    const d = ask(key({ roles: ["ops"], permissions: ["tool:*"] }), { query: q("tool:Bash") });
    expect(d).toMatchObject({ code: "BLOCKED", blocked: ["tool:Bash"] });
    // chat:* grants chat:admin, but the deny names it.
    expect(ask(key(), { query: q("chat:admin") }).code).toBe("BLOCKED");
  });

  it("allows an OR whose other branch holds, and blocks when the denied branch was needed", () => {
    expect(ask(key(), { query: q("tool:Bash OR tool:Grep") }).code).toBe("ALLOWED");
    const d = ask(key(), { query: q("tool:Bash OR files:read") });
    expect(d).toMatchObject({ code: "BLOCKED", blocked: ["tool:Bash"], missing: ["files:read"] });
  });

  it("treats the resource as one more required permission, deny included", () => {
    expect(ask(key(), { query: q("chat:write"), resource: "tool:Grep" }).code).toBe("ALLOWED");
    expect(ask(key(), { resource: "tool:Bash" })).toMatchObject({ code: "BLOCKED", blocked: ["tool:Bash"] });
    expect(ask(key(), { resource: "agent:reviewer" })).toMatchObject({ code: "INSUFFICIENT_PERMISSIONS", missing: ["agent:reviewer"] });
  });

  it("confines a key to its own tenant unless the key itself holds tollgate:cross-tenant", () => {
    expect(ask(key(), { query: q("read"), targetTenantId: "acme" }).code).toBe("ALLOWED");
    expect(ask(key(), { query: q("read"), targetTenantId: "globex" }).code).toBe("TENANT_FORBIDDEN");
    expect(ask(key({ permissions: ["tollgate:cross-tenant"] }), { query: q("read"), targetTenantId: "globex" }).code).toBe("ALLOWED");
    // Neither a wildcard grant nor a plan nor a role confers it.
    expect(ask(key({ permissions: ["*"] }), { query: q("read"), targetTenantId: "globex" }).code).toBe("TENANT_FORBIDDEN");
    const rootPlan = { ...PLAN, allowed: ["tollgate:cross-tenant"] };
    expect(ask(key(), { query: q("read"), targetTenantId: "globex" }, rootPlan).code).toBe("TENANT_FORBIDDEN");
  });

  it("checks tenant before IP, IP before cost, cost before permissions", () => {
    const ipPlan = { ...PLAN, ipAllowlist: ["10.0.0.0/8"] };
    expect(ask(key(), { query: q("nope"), targetTenantId: "other", clientIp: "1.2.3.4", cost: 99 }, ipPlan).code).toBe("TENANT_FORBIDDEN");
    expect(ask(key(), { query: q("nope"), clientIp: "1.2.3.4", cost: 99 }, ipPlan).code).toBe("IP_NOT_ALLOWED");
    expect(ask(key(), { query: q("nope"), clientIp: "10.1.2.3", cost: 99 }, ipPlan).code).toBe("BLOCKED");
    expect(ask(key(), { query: q("nope"), clientIp: "10.1.2.3", cost: 10 }, ipPlan).code).toBe("INSUFFICIENT_PERMISSIONS");
    expect(ask(key(), { query: q("read"), clientIp: "", cost: 0 }, ipPlan).code).toBe("IP_NOT_ALLOWED");
    expect(ask(key(), { query: q("read"), clientIp: "::ffff:10.0.0.1" }, ipPlan).code).toBe("ALLOWED");
  });

  it("fails closed on an unknown plan: nothing granted, nothing capped, direct grants still count", () => {
    expect(ask(key(), { query: q("read") }, null).code).toBe("INSUFFICIENT_PERMISSIONS");
    expect(ask(key({ permissions: ["read"] }), { query: q("read"), cost: 1e9 }, null).code).toBe("ALLOWED");
  });
});

describe("plan override precedence", () => {
  it("a key override replaces the plan's field; an absent override inherits it", () => {
    expect(effectiveSettings(PLAN, {})).toEqual(PLAN);
    const merged = effectiveSettings(PLAN, { blocked: [], maxCostPerCall: 500, timeoutMs: null });
    expect(merged).toEqual({ ...PLAN, blocked: [], maxCostPerCall: 500, timeoutMs: null });
  });

  it("an override of blocked unblocks, of allowed narrows, of max cost raises the cap", () => {
    expect(ask(key({ policyOverrides: { blocked: [] } }), { query: q("tool:Bash"), }).code).toBe("INSUFFICIENT_PERMISSIONS");
    expect(ask(key({ permissions: ["tool:Bash"], policyOverrides: { blocked: [] } }), { query: q("tool:Bash") }).code).toBe("ALLOWED");
    expect(ask(key({ policyOverrides: { allowed: ["read"] } }), { query: q("chat:write") }).code).toBe("INSUFFICIENT_PERMISSIONS");
    expect(ask(key(), { query: q("read"), cost: 11 }).code).toBe("BLOCKED");
    expect(ask(key({ policyOverrides: { maxCostPerCall: 11 } }), { query: q("read"), cost: 11 }).code).toBe("ALLOWED");
    expect(ask(key({ policyOverrides: { maxCostPerCall: null } }), { query: q("read"), cost: 1e12 }).code).toBe("ALLOWED");
    expect(ask(key({ policyOverrides: { ipAllowlist: ["192.0.2.0/24"] } }), { query: q("read"), clientIp: "198.51.100.1" }).code).toBe("IP_NOT_ALLOWED");
  });

  it("ignores malformed hand-edited overrides instead of trusting them", () => {
    const junk = { allowed: "chat:*", blocked: [1, 2], maxCostPerCall: -5, timeoutMs: "soon" } as unknown as PlanOverrides;
    expect(effectiveSettings(PLAN, junk)).toEqual(PLAN);
  });

  it("explains every grant and deny with its source", () => {
    const explained = explainPolicy(
      key({ permissions: ["billing:read"], roles: ["editor", "ghost"], policyOverrides: { blocked: ["files:write"], timeoutMs: 1 } }),
      { ...PLAN, name: "free", displayName: "", createdAt: now, updatedAt: now },
      ROLES,
    );
    expect(explained.granted).toEqual([
      { permission: "billing:read", source: "key" },
      ...PLAN.allowed.map((permission) => ({ permission, source: "plan:free" })),
      { permission: "files:write", source: "role:editor" },
      { permission: "files:read", source: "role:editor" },
    ]);
    expect(explained.blocked).toEqual([{ permission: "files:write", source: "override" }]);
    expect(explained.unknownRoles).toEqual(["ghost"]);
    expect(explained.settingSources).toEqual({ allowed: "plan:free", blocked: "override", maxCostPerCall: "plan:free", timeoutMs: "override", ipAllowlist: "plan:free" });
  });
});

describe("a policy narrowed to an access token's scopes", () => {
  const policy = compilePolicy(key({ permissions: ["files:*", "tollgate:cross-tenant"], roles: ["editor"] }), PLAN, ROLES);
  const question = (query: string) => ({ keyTenantId: "acme", targetTenantId: "", query: q(query), resource: "", cost: 0, clientIp: "" });

  it("grants only what both the key's policy and a scope cover, by the policy engine's wildcard rules; denies stay the key's", () => {
    const narrowed = narrowToScopes(policy, ["files:read", "chat:*"]);
    expect(decide(policy, question("files:write AND chat:write")).code).toBe("ALLOWED");
    expect(decide(narrowed, question("files:read AND chat:write")).code).toBe("ALLOWED");
    const refused = decide(narrowed, question("files:write"));
    expect([refused.code, refused.missing]).toEqual(["INSUFFICIENT_PERMISSIONS", ["files:write"]]);
    // The plan grants tool:Read, but no scope covers it.
    expect(decide(narrowed, question("tool:Read")).code).toBe("INSUFFICIENT_PERMISSIONS");
    // The plan's deny list still wins over a covering scope.
    expect(decide(narrowToScopes(policy, ["chat:*"]), question("chat:admin")).code).toBe("BLOCKED");
  });

  it("acts across tenants only when a scope names tollgate:cross-tenant, and is remembered per scope set", () => {
    const elsewhere = { ...question("files:read"), targetTenantId: "globex" };
    expect(decide(policy, elsewhere).code).toBe("ALLOWED");
    expect(decide(narrowToScopes(policy, ["files:read"]), elsewhere).code).toBe("TENANT_FORBIDDEN");
    expect(decide(narrowToScopes(policy, ["files:read", "tollgate:cross-tenant"]), elsewhere).code).toBe("ALLOWED");
    expect(narrowToScopes(policy, ["files:read"])).toBe(narrowToScopes(policy, ["files:read"]));
  });
});
