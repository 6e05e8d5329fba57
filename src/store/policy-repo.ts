import type pg from "pg";
import type { Actor, KeyRecord } from "../domain/key.js";
import type { Plan, PlanOverrides, PlanSettings, Role } from "../domain/policy.js";
import { query, type Queryable } from "./db.js";
import { appendAudit } from "./audit-repo.js";
import { keysRepo } from "./keys-repo.js";

interface PlanRow {
  plan_name: string;
  display_name: string;
  allowed: string[];
  blocked: string[];
  max_cost_per_call: number | null;
  timeout_ms: number | null;
  ip_allowlist: string[];
  created_at: Date;
  updated_at: Date;
}

interface RoleRow {
  tenant_id: string;
  role_name: string;
  description: string;
  permissions: string[];
  created_at: Date;
  updated_at: Date;
}

const toPlan = (r: PlanRow): Plan => ({
  name: r.plan_name, displayName: r.display_name, allowed: r.allowed, blocked: r.blocked, maxCostPerCall: r.max_cost_per_call,
  timeoutMs: r.timeout_ms, ipAllowlist: r.ip_allowlist, createdAt: r.created_at, updatedAt: r.updated_at,
});

const toRole = (r: RoleRow): Role => ({
  tenantId: r.tenant_id, name: r.role_name, description: r.description, permissions: r.permissions, createdAt: r.created_at, updatedAt: r.updated_at,
});

/** A plan as an operator writes it. */
export type PlanInput = PlanSettings & { name: string; displayName: string };

/** A role as an operator writes it. */
export type RoleInput = Pick<Role, "tenantId" | "name" | "description" | "permissions">;

/** Roles a tenant may define; loading them all at once keeps the policy cache to one query. */
export const MAX_ROLES_PER_TENANT = 1000;

/** A change to a key's policy: each present field replaces the stored one. */
export interface KeyPolicyChange {
  plan?: string;
  permissions?: string[];
  overrides?: PlanOverrides;
}

/** SQL for plans, roles and key-level policy. Mutations append to the audit log in the same transaction. */
export const policyRepo = {
  /** Policy cache miss: primary key `plans_pkey`. */
  async findPlan(db: Queryable, name: string): Promise<Plan | undefined> {
    const { rows } = await query<PlanRow>(db, "SELECT * FROM plans WHERE plan_name = $1", [name]);
    return rows[0] && toPlan(rows[0]);
  },

  async listPlans(db: Queryable): Promise<Plan[]> {
    const { rows } = await query<PlanRow>(db, "SELECT * FROM plans ORDER BY plan_name");
    return rows.map(toPlan);
  },

  /** Creates or replaces a plan. */
  async putPlan(tx: pg.PoolClient, plan: PlanInput, actor: Actor): Promise<Plan> {
    const { rows } = await query<PlanRow>(
      tx,
      `INSERT INTO plans (plan_name, display_name, allowed, blocked, max_cost_per_call, timeout_ms, ip_allowlist)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (plan_name) DO UPDATE SET display_name = $2, allowed = $3, blocked = $4, max_cost_per_call = $5,
         timeout_ms = $6, ip_allowlist = $7, updated_at = now()
       RETURNING *`,
      [plan.name, plan.displayName, plan.allowed, plan.blocked, plan.maxCostPerCall, plan.timeoutMs, plan.ipAllowlist],
    );
    await appendAudit(tx, { actor, action: "plan.put", targetType: "plan", targetId: plan.name, details: { ...plan } });
    return toPlan(rows[0]!);
  },

  /** Keys naming the plan (index `api_keys_plan`). */
  async countKeysOnPlan(db: Queryable, name: string): Promise<number> {
    const { rows } = await query<{ n: number }>(db, "SELECT count(*)::int AS n FROM api_keys WHERE plan = $1", [name]);
    return rows[0]!.n;
  },

  async deletePlan(tx: pg.PoolClient, name: string, actor: Actor): Promise<boolean> {
    const { rowCount } = await query(tx, "DELETE FROM plans WHERE plan_name = $1", [name]);
    if (rowCount) await appendAudit(tx, { actor, action: "plan.delete", targetType: "plan", targetId: name });
    return (rowCount ?? 0) > 0;
  },

  /** Policy cache miss: every role of a tenant in one read of `roles_pkey`'s tenant prefix. */
  async listRoles(db: Queryable, tenantId: string): Promise<Role[]> {
    const { rows } = await query<RoleRow>(db, "SELECT * FROM roles WHERE tenant_id = $1 ORDER BY role_name LIMIT $2", [tenantId, MAX_ROLES_PER_TENANT]);
    return rows.map(toRole);
  },

  /** Roles of a tenant other than `except` (the cap check before a put). */
  async countOtherRoles(db: Queryable, tenantId: string, except: string): Promise<number> {
    const { rows } = await query<{ n: number }>(db, "SELECT count(*)::int AS n FROM roles WHERE tenant_id = $1 AND role_name <> $2", [tenantId, except]);
    return rows[0]!.n;
  },

  /** Creates or replaces a role. */
  async putRole(tx: pg.PoolClient, role: RoleInput, actor: Actor): Promise<Role> {
    const { rows } = await query<RoleRow>(
      tx,
      `INSERT INTO roles (tenant_id, role_name, description, permissions) VALUES ($1, $2, $3, $4)
       ON CONFLICT (tenant_id, role_name) DO UPDATE SET description = $3, permissions = $4, updated_at = now()
       RETURNING *`,
      [role.tenantId, role.name, role.description, role.permissions],
    );
    await appendAudit(tx, { actor, action: "role.put", targetType: "role", targetId: `${role.tenantId}/${role.name}`, tenantId: role.tenantId,
      details: { permissions: role.permissions } });
    return toRole(rows[0]!);
  },

  async deleteRole(tx: pg.PoolClient, tenantId: string, name: string, actor: Actor): Promise<boolean> {
    const { rowCount } = await query(tx, "DELETE FROM roles WHERE tenant_id = $1 AND role_name = $2", [tenantId, name]);
    if (rowCount) await appendAudit(tx, { actor, action: "role.delete", targetType: "role", targetId: `${tenantId}/${name}`, tenantId });
    return (rowCount ?? 0) > 0;
  },

  /** Locks a key row for a read-modify-write of its policy (no-op when the key does not exist). */
  async lockKey(tx: pg.PoolClient, keyId: string): Promise<void> {
    await query(tx, "SELECT 1 FROM api_keys WHERE key_id = $1 FOR UPDATE", [keyId]);
  },

  /** Changes a key's plan, direct permissions and overrides in one statement (the key trigger notifies). */
  async updateKeyPolicy(tx: pg.PoolClient, keyId: string, change: KeyPolicyChange, actor: Actor): Promise<KeyRecord | undefined> {
    const { rows } = await query<{ key_id: string; tenant_id: string }>(
      tx,
      `UPDATE api_keys SET
         plan = COALESCE($2, plan),
         permissions = COALESCE($3::text[], permissions),
         policy_overrides = COALESCE($4::jsonb, policy_overrides),
         updated_at = now()
       WHERE key_id = $1 RETURNING key_id, tenant_id`,
      [keyId, change.plan ?? null, change.permissions ?? null, change.overrides ? JSON.stringify(change.overrides) : null],
    );
    const row = rows[0];
    if (!row) return undefined;
    await appendAudit(tx, { actor, action: "key.policy", targetType: "key", targetId: keyId, tenantId: row.tenant_id, details: { ...change } });
    return keysRepo.findKey(tx, keyId);
  },
};
