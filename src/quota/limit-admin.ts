import type pg from "pg";
import { notFound, permissionDenied, Violations } from "../domain/errors.js";
import type { AdminCaller } from "../keys/key-admin.js";
import { isKeyId } from "../keys/format.js";
import { withTransaction } from "../store/db.js";
import { keysRepo } from "../store/keys-repo.js";
import { limitsRepo, type LimitInput } from "../store/limits-repo.js";
import type { LimitDefinition } from "./limits.js";

const SCOPES = ["plan", "tenant", "owner", "key"] as const;
const PERS = ["key", "tenant", "owner"] as const;
const KINDS = ["rate", "quota", "budget"] as const;
const PERIODS = ["second", "minute", "hour", "day", "month", "none"] as const;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const TENANT = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Largest amount, refill or cap: far beyond any real limit, well inside int64 and JS safe integers. */
const MAX_AMOUNT = 1_000_000_000_000_000;

const oneOf = <T extends string>(values: readonly T[], value: string): value is T => (values as readonly string[]).includes(value);

/** The fields of a limit as they arrive (strings and numbers), before validation. */
export interface LimitFields {
  name: string;
  scope: string;
  scopeId: string;
  per: string;
  kind: string;
  amount: number;
  refill: number;
  period: string;
  refillMode: string;
  cap: number;
  shadow: boolean;
  autoApply: boolean;
}

/**
 * Validates a limit definition, reporting every bad field at once with the same rules the table's
 * CHECK constraints enforce (so bad input is INVALID_ARGUMENT, never a constraint error).
 */
export function checkLimit(f: LimitFields, prefix = "limit."): LimitInput {
  const v = new Violations();
  if (!NAME.test(f.name)) v.add(`${prefix}name`, "must be 1-64 letters, digits, '_', '.', ':' or '-'");
  if (!oneOf(SCOPES, f.scope)) v.add(`${prefix}scope`, `must be one of ${SCOPES.join(", ")}`);
  if (f.scopeId === "" || f.scopeId.length > 128) v.add(`${prefix}scope_id`, "is required (at most 128 characters)");
  else if (f.scope === "tenant" && !TENANT.test(f.scopeId)) v.add(`${prefix}scope_id`, "must be a tenant id");
  else if (f.scope === "key" && !isKeyId(f.scopeId)) v.add(`${prefix}scope_id`, "must be a 16-character key id");
  const per = f.per === "" ? "key" : f.per;
  if (!oneOf(PERS, per)) v.add(`${prefix}per`, `must be one of ${PERS.join(", ")}`);
  if (!oneOf(KINDS, f.kind)) v.add(`${prefix}kind`, `must be one of ${KINDS.join(", ")}`);
  if (!oneOf(PERIODS, f.period)) v.add(`${prefix}period`, `must be one of ${PERIODS.join(", ")}`);
  for (const [field, value, min] of [["amount", f.amount, 1], ["refill", f.refill, 0], ["cap", f.cap, 0]] as const) {
    if (!Number.isSafeInteger(value) || value < min || value > MAX_AMOUNT) v.add(`${prefix}${field}`, `must be a whole number from ${min} to ${MAX_AMOUNT}`);
  }
  if (f.kind === "rate" && (f.refill <= 0 || f.period === "none")) v.add(`${prefix}refill`, "a rate needs a refill above 0 per period (not `none`)");
  if (f.kind === "quota" && f.period === "none") v.add(`${prefix}period`, "a quota needs a window");
  const refillMode = f.refillMode === "" ? "set" : f.refillMode;
  if (refillMode !== "set" && refillMode !== "add") v.add(`${prefix}refill_mode`, "must be set or add");
  else if (refillMode === "add" && f.kind !== "budget") v.add(`${prefix}refill_mode`, "add applies to budgets only");
  v.throwIfAny();
  return {
    name: f.name, scope: f.scope as LimitInput["scope"], scopeId: f.scopeId, per: per as LimitInput["per"], kind: f.kind as LimitInput["kind"],
    amount: f.amount, refill: f.refill, period: f.period as LimitInput["period"], refillMode: refillMode as "set" | "add",
    cap: f.cap === 0 ? null : f.cap, shadow: f.shadow, autoApply: f.autoApply,
  };
}

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
