import type pg from "pg";
import type { LimitDefinition } from "../../src/quota/limits.js";

/** Inserts a limit definition directly (tests only; the shipped plans come from migration 003). */
export async function defineLimit(pool: pg.Pool, d: Partial<Omit<LimitDefinition, "limitId">> & { name: string; scopeId: string }): Promise<number> {
  const full = { scope: "plan", per: "key", kind: "quota", amount: 10, refill: 0, period: "day", refillMode: "set", cap: null, shadow: false, autoApply: false, ...d };
  const { rows } = await pool.query<{ limit_id: number }>(
    `INSERT INTO quota_limits (name, scope, scope_id, per, kind, amount, refill, period, refill_mode, cap, shadow, auto_apply)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING limit_id`,
    [full.name, full.scope, full.scopeId, full.per, full.kind, full.amount, full.refill, full.period, full.refillMode, full.cap, full.shadow, full.autoApply]);
  return Number(rows[0]!.limit_id);
}

/** What the store says is used (leased or admitted) on a window counter. */
export async function storedUsed(pool: pg.Pool, limitId: number): Promise<number> {
  const { rows } = await pool.query<{ used: string | null }>("SELECT sum(used) AS used FROM quota_counters WHERE limit_id = $1", [limitId]);
  return Number(rows[0]?.used ?? 0);
}
