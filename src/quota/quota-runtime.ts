import type pg from "pg";
import { Counter, type Registry } from "prom-client";
import type { Logger } from "../observability/logger.js";
import { createQuotaRepo, type QuotaRepo } from "../store/quota-repo.js";
import { createCatalogCache, type CatalogCache } from "./catalog-cache.js";
import { createLeaseEngine, type LeaseEngine, type LeasingOptions } from "./lease-engine.js";
import { createQuotaService, type QuotaService } from "./quota-service.js";
import { createUsageRecorder } from "./usage.js";

/** Quota settings from the configuration. */
export interface QuotaSettings {
  leasing: LeasingOptions;
  /** How often held tokens are checked for return. */
  flushMs: number;
  /**
   * How often usage counts are written. One row per key, limit and minute is written per flush,
   * so with many busy keys a longer interval writes fewer rows (a key's calls in the interval
   * share one); usage reports lag by up to this much. Default 5 s.
   */
  usageFlushMs?: number;
  /** How long limit definitions are trusted without a change notification. */
  catalogTtlMs: number;
}

/** Everything quota-related a replica runs, with one background flusher and a graceful stop. */
export interface QuotaRuntime {
  service: QuotaService;
  repo: QuotaRepo;
  engine: LeaseEngine;
  catalog: CatalogCache;
  /** Returns idle leases and writes usage now (also run every `flushMs`, usage every `usageFlushMs`). */
  flush(): Promise<void>;
  /** Stops the flusher, returns every held token and writes the last usage. */
  close(): Promise<void>;
}

/**
 * Wires the quota parts of one replica. The flusher runs every `flushMs`: it hands idle and
 * ended-window tokens back, writes usage every `usageFlushMs` (one statement per 1,000 keys and
 * limits), and sweeps expired idempotency records once a minute. Failures are logged and retried on the next tick.
 */
export function createQuotaRuntime(pool: pg.Pool, settings: QuotaSettings, now: () => number, logger: Logger, registry?: Registry): QuotaRuntime {
  const repo = createQuotaRepo(pool);
  if (registry) {
    // Read at scrape time: the bench divides this by admitted calls (target ≤ 20 per 1,000).
    let reported = 0;
    new Counter({
      name: "tollgate_quota_db_statements_total",
      help: "PostgreSQL statements sent by the quota store (leases, returns, usage, idempotency)",
      registers: [registry],
      collect() {
        this.inc(repo.statements - reported);
        reported = repo.statements;
      },
    });
  }
  const engine = createLeaseEngine(repo, now, settings.leasing);
  const catalog = createCatalogCache(() => repo.loadLimits(), now, settings.catalogTtlMs);
  const usage = createUsageRecorder((items) => repo.addUsage(items), now);
  const service = createQuotaService({ repo, engine, catalog, usage, now });
  let lastSweepMs = now();
  let lastUsageMs = now();

  /** Returns tokens; writes usage when `withUsage` (always on demand, on the timer every usageFlushMs). */
  async function flush(withUsage = true): Promise<void> {
    if (withUsage) lastUsageMs = now();
    const results = await Promise.allSettled([engine.flush(), withUsage ? usage.flush() : undefined]);
    if (now() - lastSweepMs >= 60_000) {
      lastSweepMs = now();
      results.push(...(await Promise.allSettled([repo.deleteExpiredIdempotency(new Date(now()))])));
    }
    for (const r of results) if (r.status === "rejected") logger.warn({ err: r.reason }, "quota flush failed; will retry");
  }

  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    running ??= flush(now() - lastUsageMs >= (settings.usageFlushMs ?? settings.flushMs)).finally(() => (running = undefined));
  }, settings.flushMs);
  timer.unref();

  return {
    service, repo, engine, catalog, flush: () => flush(true),
    async close() {
      clearInterval(timer);
      await running;
      const results = await Promise.allSettled([engine.close(), usage.flush()]);
      for (const r of results) if (r.status === "rejected") logger.warn({ err: r.reason }, "could not return leased quota at shutdown");
    },
  };
}
