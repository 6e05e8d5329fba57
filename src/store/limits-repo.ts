import type pg from "pg";
import type { LimitDefinition } from "../quota/limits.js";
import { appendAudit } from "./audit-repo.js";
import { query, type Queryable } from "./db.js";

/** A limit as an operator defines it (no id yet). */
export type LimitInput = Omit<LimitDefinition, "limitId">;

/** A `quota_limits` row. */
export interface LimitRow {
  limit_id: number;
  name: string;
  scope: LimitDefinition["scope"];
  scope_id: string;
  per: LimitDefinition["per"];
  kind: LimitDefinition["kind"];
  amount: number;
  refill: number;
  period: LimitDefinition["period"];
  refill_mode: "set" | "add";
  cap: number | null;
  shadow: boolean;
  auto_apply: boolean;
}

/** The columns of a limit, in `LimitRow` form. */
export const LIMIT_COLUMNS = "limit_id, name, scope, scope_id, per, kind, amount, refill, period, refill_mode, cap, shadow, auto_apply";

/** Maps a row to the domain definition. */
export const toLimit = (r: LimitRow): LimitDefinition => ({
  limitId: r.limit_id, name: r.name, scope: r.scope, scopeId: r.scope_id, per: r.per, kind: r.kind, amount: r.amount,
  refill: r.refill, period: r.period, refillMode: r.refill_mode, cap: r.cap, shadow: r.shadow, autoApply: r.auto_apply,
});

/**
 * SQL for limit definitions (the admin side; the hot path reads them all once through the quota
 * catalog). A trigger on `quota_limits` notifies every replica, whose catalog then reloads.
 */
export const limitsRepo = {
  /** Creates the limit, or replaces the one with the same (scope, scope_id, name); counters are kept. */
  async putLimit(tx: pg.PoolClient, l: LimitInput, actor: string): Promise<LimitDefinition> {
    const { rows } = await query<LimitRow>(
      tx,
      `INSERT INTO quota_limits (name, scope, scope_id, per, kind, amount, refill, period, refill_mode, cap, shadow, auto_apply)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
       ON CONFLICT (scope, scope_id, name) DO UPDATE SET per = EXCLUDED.per, kind = EXCLUDED.kind, amount = EXCLUDED.amount,
         refill = EXCLUDED.refill, period = EXCLUDED.period, refill_mode = EXCLUDED.refill_mode, cap = EXCLUDED.cap,
         shadow = EXCLUDED.shadow, auto_apply = EXCLUDED.auto_apply
       RETURNING ${LIMIT_COLUMNS}`,
      [l.name, l.scope, l.scopeId, l.per, l.kind, l.amount, l.refill, l.period, l.refillMode, l.cap, l.shadow, l.autoApply],
    );
    const limit = toLimit(rows[0]!);
    await appendAudit(tx, { actor, action: "limit.put", targetType: "limit", targetId: String(limit.limitId),
      tenantId: l.scope === "tenant" ? l.scopeId : null, details: { ...l } });
    return limit;
  },

  async findLimit(db: Queryable, limitId: number): Promise<LimitDefinition | undefined> {
    const { rows } = await query<LimitRow>(db, `SELECT ${LIMIT_COLUMNS} FROM quota_limits WHERE limit_id = $1`, [limitId]);
    return rows[0] && toLimit(rows[0]);
  },

  async listLimits(db: Queryable, scope: string, scopeId: string): Promise<LimitDefinition[]> {
    const { rows } = await query<LimitRow>(
      db,
      `SELECT ${LIMIT_COLUMNS} FROM quota_limits WHERE ($1 = '' OR scope = $1) AND ($2 = '' OR scope_id = $2) ORDER BY scope, scope_id, name`,
      [scope, scopeId],
    );
    return rows.map(toLimit);
  },

  async deleteLimit(tx: pg.PoolClient, limit: LimitDefinition, actor: string): Promise<void> {
    await query(tx, "DELETE FROM quota_limits WHERE limit_id = $1", [limit.limitId]);
    await appendAudit(tx, { actor, action: "limit.delete", targetType: "limit", targetId: String(limit.limitId),
      tenantId: limit.scope === "tenant" ? limit.scopeId : null, details: { name: limit.name, scope: limit.scope, scopeId: limit.scopeId } });
  },
};
