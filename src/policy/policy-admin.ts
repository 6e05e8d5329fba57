import type pg from "pg";
import { TollgateError, notFound, permissionDenied } from "../domain/errors.js";
import type { KeyRecord } from "../domain/key.js";
import type { Plan, PlanOverrides, PlanSettings, Role } from "../domain/policy.js";
import { CROSS_TENANT_PERMISSION, type AdminCaller } from "../keys/key-admin.js";
import { withTransaction, type Queryable } from "../store/db.js";
import { keysRepo } from "../store/keys-repo.js";
import { MAX_ROLES_PER_TENANT, policyRepo, type PlanInput, type RoleInput } from "../store/policy-repo.js";
import { tenantsRepo } from "../store/tenants-repo.js";
import { explainPolicy, type ExplainedPolicy } from "./effective.js";
import type { PolicyCache } from "./policy-cache.js";

export interface PolicyAdminDeps {
  pool: pg.Pool;
  /** Present in the service (it drops this replica's cache at once); absent in the CLI. */
  policies?: PolicyCache;
}

/** A change to one key's policy; every part is optional. */
export interface KeyPolicyEdit {
  setPlan?: string;
  add?: string[];
  remove?: string[];
  setOverrides?: PlanOverrides;
  clearOverrides?: (keyof PlanSettings)[];
}

/** A key and its explained effective policy. */
export interface KeyPolicyView {
  key: KeyRecord;
  policy: ExplainedPolicy;
}

/** The most direct permissions a key may hold (the same bound KeyService enforces). */
const MAX_KEY_PERMISSIONS = 256;

/**
 * Admin operations on plans, roles and key policies, with the scoping rules in one place: plans
 * are platform-wide (read by any admin, written by root admins only); roles and keys belong to a
 * tenant, and a tenant admin reaches only its own (others' keys look missing). Every mutation is
 * audited in its own transaction; the NOTIFY triggers then refresh every replica's caches.
 */
export function createPolicyAdmin(deps: PolicyAdminDeps) {
  const requireRoot = (caller: AdminCaller) => {
    if (!caller.root) throw permissionDenied("ROOT_ADMIN_REQUIRED", "only a root admin key may change plans");
  };
  const targetTenant = (caller: AdminCaller, requested: string) => {
    const tenantId = requested || caller.tenantId;
    if (tenantId !== caller.tenantId && !caller.root) throw permissionDenied("TENANT_FORBIDDEN", "this admin key may act only inside its own tenant");
    return tenantId;
  };

  async function explain(db: Queryable, key: KeyRecord): Promise<KeyPolicyView> {
    const [plan, roles] = await Promise.all([policyRepo.findPlan(db, key.plan), key.roles.length ? policyRepo.listRoles(db, key.tenantId) : []]);
    return { key, policy: explainPolicy(key, plan, new Map(roles.map((r) => [r.name, r]))) };
  }

  async function visibleKey(db: Queryable, caller: AdminCaller, keyId: string): Promise<KeyRecord> {
    const key = await keysRepo.findKey(db, keyId);
    if (!key || (!caller.root && key.tenantId !== caller.tenantId)) throw notFound("key", keyId);
    return key;
  }

  return {
    async getPlan(name: string): Promise<Plan> {
      const plan = await policyRepo.findPlan(deps.pool, name);
      if (!plan) throw notFound("plan", name);
      return plan;
    },

    listPlans: (): Promise<Plan[]> => policyRepo.listPlans(deps.pool),

    async putPlan(caller: AdminCaller, input: PlanInput): Promise<Plan> {
      requireRoot(caller);
      const plan = await withTransaction(deps.pool, (tx) => policyRepo.putPlan(tx, input, caller.actor));
      deps.policies?.handleInvalidation(`plan:${plan.name}`);
      return plan;
    },

    async deletePlan(caller: AdminCaller, name: string): Promise<void> {
      requireRoot(caller);
      await withTransaction(deps.pool, async (tx) => {
        const inUse = await policyRepo.countKeysOnPlan(tx, name);
        if (inUse > 0) throw new TollgateError("failed_precondition", "PLAN_IN_USE", `plan "${name}" is used by ${inUse} key(s); move them first`);
        if (!(await policyRepo.deletePlan(tx, name, caller.actor))) throw notFound("plan", name);
      });
      deps.policies?.handleInvalidation(`plan:${name}`);
    },

    async listRoles(caller: AdminCaller, tenantId: string): Promise<Role[]> {
      return policyRepo.listRoles(deps.pool, targetTenant(caller, tenantId));
    },

    async putRole(caller: AdminCaller, input: RoleInput): Promise<Role> {
      const tenantId = targetTenant(caller, input.tenantId);
      const role = await withTransaction(deps.pool, async (tx) => {
        if (!(await tenantsRepo.findTenant(tx, tenantId))) throw notFound("tenant", tenantId);
        if ((await policyRepo.countOtherRoles(tx, tenantId, input.name)) >= MAX_ROLES_PER_TENANT) {
          throw new TollgateError("resource_exhausted", "TOO_MANY_ROLES", `a tenant may define at most ${MAX_ROLES_PER_TENANT} roles`);
        }
        return policyRepo.putRole(tx, { ...input, tenantId }, caller.actor);
      });
      deps.policies?.handleInvalidation(`roles:${tenantId}`);
      return role;
    },

    async deleteRole(caller: AdminCaller, tenantId: string, name: string): Promise<void> {
      const target = targetTenant(caller, tenantId);
      const deleted = await withTransaction(deps.pool, (tx) => policyRepo.deleteRole(tx, target, name, caller.actor));
      if (!deleted) throw notFound("role", name);
      deps.policies?.handleInvalidation(`roles:${target}`);
    },

    async getKeyPolicy(caller: AdminCaller, keyId: string): Promise<KeyPolicyView> {
      return explain(deps.pool, await visibleKey(deps.pool, caller, keyId));
    },

    async updateKeyPolicy(caller: AdminCaller, keyId: string, edit: KeyPolicyEdit): Promise<KeyPolicyView> {
      if (!caller.root && edit.add?.includes(CROSS_TENANT_PERMISSION)) {
        throw permissionDenied("GRANT_FORBIDDEN", `only a root admin may grant ${CROSS_TENANT_PERMISSION}`);
      }
      return withTransaction(deps.pool, async (tx) => {
        await policyRepo.lockKey(tx, keyId);
        const key = await visibleKey(tx, caller, keyId);
        if (edit.setPlan && !(await policyRepo.findPlan(tx, edit.setPlan))) throw notFound("plan", edit.setPlan);
        const removed = new Set(edit.remove ?? []);
        const permissions = [...new Set([...key.permissions, ...(edit.add ?? [])])].filter((p) => !removed.has(p));
        if (permissions.length > MAX_KEY_PERMISSIONS) throw new TollgateError("invalid_argument", "INVALID_ARGUMENT", `a key may hold at most ${MAX_KEY_PERMISSIONS} permissions`);
        const overrides: PlanOverrides = { ...key.policyOverrides, ...edit.setOverrides };
        for (const field of edit.clearOverrides ?? []) delete overrides[field];
        const updated = await policyRepo.updateKeyPolicy(tx, keyId, { plan: edit.setPlan || undefined, permissions, overrides }, caller.actor);
        if (!updated) throw notFound("key", keyId);
        return explain(tx, updated);
      });
    },
  };
}

export type PolicyAdmin = ReturnType<typeof createPolicyAdmin>;
