import type pg from "pg";
import { notFound, permissionDenied } from "../domain/errors.js";
import type { AdminCaller } from "../keys/key-admin.js";
import { withTransaction } from "../store/db.js";
import { keysRepo } from "../store/keys-repo.js";
import { limitsRepo, type LimitInput } from "../store/limits-repo.js";
import type { LimitDefinition } from "./limits.js";

/** Limit administration with scoping: plan and owner limits are root-only; a tenant admin manages its own tenant and its keys. */
export function createLimitAdmin(pool: pg.Pool) {
  async function mayManage(caller: AdminCaller, l: Pick<LimitDefinition, "scope" | "scopeId">, db: pg.Pool | pg.PoolClient): Promise<boolean> {
    if (caller.root) return true;
    if (l.scope === "tenant") return l.scopeId === caller.tenantId;
    if (l.scope === "key") return (await keysRepo.findKey(db, l.scopeId))?.tenantId === caller.tenantId;
    return false;
  }

  return {
    async putLimit(caller: AdminCaller, l: LimitInput): Promise<LimitDefinition> {
      return withTransaction(pool, async (tx) => {
        if (l.scope === "key" && !(await keysRepo.findKey(tx, l.scopeId))) throw notFound("key", l.scopeId);
        if (!(await mayManage(caller, l, tx))) throw permissionDenied("LIMIT_SCOPE_FORBIDDEN", `this admin key may not define ${l.scope} limits here`);
        return limitsRepo.putLimit(tx, l, caller.actor);
      });
    },

    async listLimits(caller: AdminCaller, scope: string, scopeId: string): Promise<LimitDefinition[]> {
      const all = await limitsRepo.listLimits(pool, scope, scopeId);
      if (caller.root) return all;
      // A tenant admin sees the plan limits that shape its keys, and its own tenant's and keys' limits.
      const visible: LimitDefinition[] = [];
      for (const l of all) if (l.scope === "plan" || (await mayManage(caller, l, pool))) visible.push(l);
      return visible;
    },

    async deleteLimit(caller: AdminCaller, limitId: number): Promise<void> {
      await withTransaction(pool, async (tx) => {
        const limit = await limitsRepo.findLimit(tx, limitId);
        if (!limit || !(await mayManage(caller, limit, tx))) throw notFound("limit", String(limitId));
        await limitsRepo.deleteLimit(tx, limit, caller.actor);
      });
    },
  };
}

export type LimitAdmin = ReturnType<typeof createLimitAdmin>;
