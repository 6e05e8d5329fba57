import type { CliDatabase } from "./database.js";
import { createQuotaRepo, type UsageRow } from "../store/quota-repo.js";

const PERIODS = { hour: 3_600_000, day: 86_400_000, week: 7 * 86_400_000, month: 30 * 86_400_000 } as const;

/** Options of `tollgate usage …`. */
export interface UsageCliOptions {
  period?: string;
  tenant?: string;
  key?: string;
  json?: boolean;
}

/** A usage mistake in `tollgate usage`, reported with the usage text. */
export class UsageCliError extends Error {}

const line = (r: UsageRow, cols: Array<keyof UsageRow>) =>
  [...cols.map((c) => (c === "bucketStart" ? (r.bucketStart?.toISOString().slice(0, 16) ?? "") : String(r[c]))), r.limitName, r.admitted, r.denied, r.cost].join("\t");

/**
 * `tollgate usage summary|by-tenant|by-key [--period hour|day|week|month] [--tenant T] [--key K] [--json]`:
 * summary prints one row per roll-up bucket and limit over the period (hourly buckets for
 * `--period hour` and `day`, daily otherwise); by-tenant and by-key print sums over the period.
 * Usage is written in batches, so the last second or so may not show yet.
 */
export async function usageCommand(db: CliDatabase, sub: string | undefined, o: UsageCliOptions, nowMs = Date.now()): Promise<void> {
  const period = (o.period ?? "week") as keyof typeof PERIODS;
  if (!(period in PERIODS)) throw new UsageCliError("--period must be hour, day, week or month");
  const groupBy = sub === "summary" ? "total" : sub === "by-tenant" ? "tenant" : sub === "by-key" ? "key" : undefined;
  if (!groupBy) throw new UsageCliError(`unknown usage command "${sub ?? ""}" (summary, by-tenant, by-key)`);
  const perBucket = sub === "summary";
  const granularity = perBucket && (period === "hour" || period === "day") ? "hour" : "day";
  const rows = await createQuotaRepo(db.pool).usage({
    granularity, from: new Date(nowMs - PERIODS[period]), to: new Date(nowMs), tenantId: o.tenant, keyId: o.key, groupBy, perBucket, limit: 10_000,
  });
  if (o.json) return void console.log(JSON.stringify(rows));
  const cols: Array<keyof UsageRow> = perBucket ? ["bucketStart"] : groupBy === "tenant" ? ["tenantId"] : groupBy === "key" ? ["tenantId", "keyId"] : [];
  console.log([...cols.map((c) => (c === "bucketStart" ? "bucket" : c === "tenantId" ? "tenant" : "key")), "limit", "admitted", "denied", "cost"].join("\t"));
  for (const r of rows) console.log(line(r, cols));
  if (rows.length === 0) console.log(`(no usage in the last ${period})`);
}
