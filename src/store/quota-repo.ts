import type { LimitDefinition } from "../quota/limits.js";
import { query, type Queryable } from "./db.js";
import { LIMIT_COLUMNS, toLimit, type LimitRow } from "./limits-repo.js";

/** A lease request on a windowed counter (quota or budget). */
export interface WindowLease {
  limitId: number;
  subject: string;
  windowIndex: number;
  /** Cost units per window (for "add" budgets: the amount added per period). */
  amount: number;
  /** "add" budgets carry what the previous window left over, up to `cap`. */
  carryOver: boolean;
  cap: number | null;
  /** Grant nothing unless at least this much is left. */
  need: number;
  /** The block the replica would like. */
  want: number;
  /** Never grant more than 1/divisor of what is left (but at least `need`): blocks shrink to 1 near the limit. */
  divisor: number;
}

/** A lease request on a token bucket. */
export interface BucketLease {
  limitId: number;
  subject: string;
  burst: number;
  ratePerMs: number;
  nowMs: number;
  need: number;
  want: number;
  divisor: number;
}

/** Tokens handed back to a counter (window) or a bucket. */
export interface Release {
  limitId: number;
  subject: string;
  windowIndex: number;
  count: number;
  /** Buckets only: the capacity the level may not exceed. */
  burst?: number;
}

/** One key's use of one limit in one minute; the store adds it to that minute's, hour's and day's rows. */
export interface MinuteUsage {
  /** The minute's start, Unix milliseconds. */
  minuteMs: number;
  tenantId: string;
  keyId: string;
  limitName: string;
  admitted: number;
  denied: number;
  cost: number;
}

/** One row of a usage report. */
export interface UsageRow {
  bucketStart: Date | null;
  tenantId: string;
  keyId: string;
  limitName: string;
  admitted: number;
  denied: number;
  cost: number;
}

const grantOf = (left: string, need: string, want: string, divisor: string) =>
  `CASE WHEN ${left} >= ${need} THEN LEAST(${want}, ${left}, GREATEST(${need}, ${left} / ${divisor})) ELSE 0 END`;

// Window lease: one atomic upsert. In DO UPDATE every `c.` reference is the row *before* the
// update, so the grant is computed and applied under the row lock in the same statement.
const CARRY = `COALESCE((SELECT p.capacity - p.used + $4 * ($3 - p.window_index) FROM quota_counters p
  WHERE p.limit_id = $1 AND p.subject = $2 AND p.window_index < $3 ORDER BY p.window_index DESC LIMIT 1), $4)`;
const START_CAP = `(CASE WHEN $5 THEN LEAST(COALESCE($6::bigint, 9223372036854775807), ${CARRY}) ELSE $4 END)`;
const ROW_CAP = `(CASE WHEN $5 THEN c.capacity ELSE GREATEST($4::bigint, c.used) END)`;
const LEASE_WINDOW = `
  INSERT INTO quota_counters AS c (limit_id, subject, window_index, capacity, used, last_grant)
  SELECT $1, $2, $3, s.cap, s.g, s.g FROM (
    SELECT x.cap, ${grantOf("x.cap", "$7::bigint", "$8::bigint", "$9::bigint")} AS g FROM (SELECT ${START_CAP} AS cap) x) s
  ON CONFLICT (limit_id, subject, window_index) DO UPDATE SET
    capacity = ${ROW_CAP},
    last_grant = ${grantOf(`(${ROW_CAP} - c.used)`, "$7::bigint", "$8::bigint", "$9::bigint")},
    used = c.used + ${grantOf(`(${ROW_CAP} - c.used)`, "$7::bigint", "$8::bigint", "$9::bigint")},
    updated_at = now()
  RETURNING capacity, used, last_grant`;

// Bucket lease: refill to now (continuous, capped at burst; a lagging replica clock adds nothing), then grant.
const LEVEL = `LEAST($3::float8, b.tokens + GREATEST(0, $5::bigint - b.refreshed_ms) * $4::float8)`;
const LEASE_BUCKET = `
  INSERT INTO quota_buckets AS b (limit_id, subject, tokens, refreshed_ms, last_grant)
  SELECT $1, $2, $3::float8 - s.g, $5, s.g FROM (SELECT ${grantOf("floor($3::float8)::bigint", "$6::bigint", "$7::bigint", "$8::bigint")} AS g) s
  ON CONFLICT (limit_id, subject) DO UPDATE SET
    tokens = ${LEVEL} - ${grantOf(`floor(${LEVEL})::bigint`, "$6::bigint", "$7::bigint", "$8::bigint")},
    last_grant = ${grantOf(`floor(${LEVEL})::bigint`, "$6::bigint", "$7::bigint", "$8::bigint")},
    refreshed_ms = GREATEST(b.refreshed_ms, $5::bigint)
  RETURNING tokens, last_grant`;

/**
 * SQL for quotas. Every statement goes through `run`, which counts it: `statements` is the figure
 * behind "Postgres statements per 1,000 admitted calls". The hot path (leases) uses only the
 * primary keys `quota_counters_pkey` and `quota_buckets_pkey`.
 */
export function createQuotaRepo(db: Queryable) {
  let statements = 0;
  const run = <R extends object>(text: string, values: unknown[]) => {
    statements++;
    return query<R & Record<string, unknown>>(db, text, values);
  };
  return {
    /** How many statements this repository has sent since it was created. */
    get statements() {
      return statements;
    },

    async loadLimits(): Promise<LimitDefinition[]> {
      const { rows } = await run<LimitRow>(`SELECT ${LIMIT_COLUMNS} FROM quota_limits ORDER BY limit_id`, []);
      return rows.map(toLimit);
    },

    /** Hot path (once per block): `quota_counters_pkey`. Returns the grant and the counter after it. */
    async leaseWindow(l: WindowLease): Promise<{ granted: number; used: number; capacity: number }> {
      const { rows } = await run<{ capacity: number; used: number; last_grant: number }>(LEASE_WINDOW,
        [l.limitId, l.subject, l.windowIndex, l.amount, l.carryOver, l.cap, l.need, l.want, l.divisor]);
      const r = rows[0]!;
      return { granted: r.last_grant, used: r.used, capacity: r.capacity };
    },

    /** Hot path (once per block): `quota_buckets_pkey`. Returns the grant and the level left after it. */
    async leaseBucket(l: BucketLease): Promise<{ granted: number; tokens: number }> {
      const { rows } = await run<{ tokens: number; last_grant: number }>(LEASE_BUCKET,
        [l.limitId, l.subject, l.burst, l.ratePerMs, l.nowMs, l.need, l.want, l.divisor]);
      const r = rows[0]!;
      return { granted: r.last_grant, tokens: r.tokens };
    },

    /** Hands unused leased tokens back, all windows in one statement and all buckets in another. */
    async release(items: readonly Release[]): Promise<void> {
      const windows = items.filter((i) => i.burst === undefined && i.count > 0);
      const buckets = items.filter((i) => i.burst !== undefined && i.count > 0);
      if (windows.length > 0) {
        await run(`UPDATE quota_counters c SET used = GREATEST(0, c.used - r.n), updated_at = now()
          FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[]) AS r(limit_id, subject, window_index, n)
          WHERE c.limit_id = r.limit_id AND c.subject = r.subject AND c.window_index = r.window_index`,
          [windows.map((w) => w.limitId), windows.map((w) => w.subject), windows.map((w) => w.windowIndex), windows.map((w) => w.count)]);
      }
      if (buckets.length > 0) {
        await run(`UPDATE quota_buckets b SET tokens = LEAST(r.burst, b.tokens + r.n)
          FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::float8[]) AS r(limit_id, subject, n, burst)
          WHERE b.limit_id = r.limit_id AND b.subject = r.subject`,
          [buckets.map((w) => w.limitId), buckets.map((w) => w.subject), buckets.map((w) => w.count), buckets.map((w) => w.burst)]);
      }
    },

    /** The stored answer of an earlier charged call with this idempotency key, unless expired. */
    async findIdempotent(keyId: string, idempotencyKey: string, now: Date): Promise<unknown> {
      const { rows } = await run<{ response: unknown }>(
        "SELECT response FROM quota_idempotency WHERE key_id = $1 AND idempotency_key = $2 AND expires_at > $3",
        [keyId, idempotencyKey, now]);
      return rows[0]?.response;
    },

    /** Records a charged call's answer; false when another call (on any replica) recorded one first. */
    async claimIdempotent(keyId: string, idempotencyKey: string, response: unknown, now: Date, expiresAt: Date): Promise<boolean> {
      const { rows } = await run(
        `INSERT INTO quota_idempotency AS q (key_id, idempotency_key, response, expires_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key_id, idempotency_key) DO UPDATE SET response = EXCLUDED.response, expires_at = EXCLUDED.expires_at
           WHERE q.expires_at <= $5
         RETURNING 1 AS claimed`, [keyId, idempotencyKey, JSON.stringify(response), expiresAt, now]);
      return rows.length === 1;
    },

    async deleteExpiredIdempotency(now: Date): Promise<void> {
      await run("DELETE FROM quota_idempotency WHERE expires_at <= $1", [now]);
    },

    /**
     * Adds minute counts to their minute, hour and day roll-ups (UTC) in one statement: the roll-up
     * happens here, so a flush sends one row per key, limit and minute instead of three. Rows that
     * share a (key, limit, minute) are summed. The rows go as one JSON array of arrays: JSON.stringify
     * of 1,000 rows took ~1 ms here against ~2 ms for pg's escaping of seven text arrays.
     */
    async addUsage(items: readonly MinuteUsage[]): Promise<void> {
      if (items.length === 0) return;
      const rows = JSON.stringify(items.map((i) => [i.minuteMs, i.tenantId, i.keyId, i.limitName, i.admitted, i.denied, i.cost]));
      await run(`INSERT INTO quota_usage AS u (granularity, bucket_start, tenant_id, key_id, limit_name, admitted, denied, cost)
        SELECT g.granularity, date_trunc(g.granularity, to_timestamp((r->>0)::float8 / 1000.0), 'UTC'), r->>1, r->>2, r->>3,
          sum((r->>4)::bigint), sum((r->>5)::bigint), sum((r->>6)::bigint)
        FROM json_array_elements($1::json) AS r
        CROSS JOIN (VALUES ('minute'), ('hour'), ('day')) AS g(granularity)
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (granularity, bucket_start, tenant_id, key_id, limit_name) DO UPDATE SET
          admitted = u.admitted + EXCLUDED.admitted, denied = u.denied + EXCLUDED.denied, cost = u.cost + EXCLUDED.cost`,
        [rows]);
    },

    /**
     * Usage of the roll-up buckets that overlap [from, to], grouped by `groupBy` (plus the bucket when `perBucket`), optionally
     * inside one tenant or for one key. Index `quota_usage_tenant` serves the tenant filter.
     */
    async usage(q: { granularity: "minute" | "hour" | "day"; from: Date; to: Date; tenantId?: string; keyId?: string; groupBy: "total" | "tenant" | "key"; perBucket: boolean; limit: number }): Promise<UsageRow[]> {
      const cols = q.groupBy === "total" ? ["limit_name"] : q.groupBy === "tenant" ? ["tenant_id", "limit_name"] : ["tenant_id", "key_id", "limit_name"];
      if (q.perBucket) cols.unshift("bucket_start");
      const { rows } = await run<Record<string, unknown>>(
        `SELECT ${cols.join(", ")}, sum(admitted)::bigint AS admitted, sum(denied)::bigint AS denied, sum(cost)::bigint AS cost
         FROM quota_usage WHERE granularity = $1 AND bucket_start > $2::timestamptz - ('1 ' || $1)::interval AND bucket_start <= $3
           AND ($4::text IS NULL OR tenant_id = $4) AND ($5::text IS NULL OR key_id = $5)
         GROUP BY ${cols.join(", ")} ORDER BY ${cols.join(", ")} LIMIT $6`,
        [q.granularity, q.from, q.to, q.tenantId ?? null, q.keyId ?? null, q.limit]);
      return rows.map((r) => ({
        bucketStart: (r.bucket_start as Date | undefined) ?? null, tenantId: (r.tenant_id as string | undefined) ?? "",
        keyId: (r.key_id as string | undefined) ?? "", limitName: r.limit_name as string,
        admitted: r.admitted as number, denied: r.denied as number, cost: r.cost as number,
      }));
    },
  };
}

/** The quota repository of one pool. */
export type QuotaRepo = ReturnType<typeof createQuotaRepo>;
