import { monitorEventLoopDelay } from "node:perf_hooks";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** The service's Prometheus metrics. Every label set is closed (method names, codes, outcomes). */
export interface Metrics {
  registry: Registry;
  /** Counts one decision; label children are cached, so the hot path does not hash labels per call. */
  decision(rpc: string, code: string): void;
  /** Counts one verified-key cache lookup by result (hit, miss, stale, negative, throttled). */
  keyCacheLookup(result: string): void;
  /** Records one finished RPC (count by final code, and duration), with cached label children. */
  rpc(service: string, method: string, code: string, seconds: number): void;
  rpcTotal: Counter<"service" | "method" | "code">;
  rpcDuration: Histogram<"service" | "method">;
  decisions: Counter<"rpc" | "code">;
  keyCache: Counter<"result">;
  argon2Duration: Histogram<"outcome">;
  argon2Queue: Gauge;
  dbErrors: Counter<"operation">;
  stop(): void;
}

/** Creates a fresh registry, so that several servers in one process (tests) do not collide. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  new Gauge({
    name: "tollgate_event_loop_delay_p99_seconds",
    help: "99th percentile event-loop delay since the last scrape",
    registers: [registry],
    collect() {
      this.set(loopDelay.percentile(99) / 1e9);
      loopDelay.reset();
    },
  });
  const rpcTotal = new Counter({ name: "tollgate_rpc_total", help: "RPCs handled, by final status code", labelNames: ["service", "method", "code"], registers: [registry] });
  const rpcDuration = new Histogram({
    name: "tollgate_rpc_duration_seconds",
    help: "RPC handling time",
    labelNames: ["service", "method"],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const decisions = new Counter({ name: "tollgate_decisions_total", help: "Decisions answered, by code", labelNames: ["rpc", "code"], registers: [registry] });
  // Label sets are closed (methods x codes), so these maps stay small.
  const keyCache = new Counter({ name: "tollgate_key_cache_total", help: "Verified-key cache lookups", labelNames: ["result"], registers: [registry] });
  const decisionChildren = new Map<string, { inc(): void }>();
  const cacheChildren = new Map<string, { inc(): void }>();
  const rpcChildren = new Map<string, { inc(): void }>();
  const durationChildren = new Map<string, { observe(v: number): void }>();
  return {
    registry,
    decision(rpc, code) {
      const k = `${rpc}/${code}`;
      let child = decisionChildren.get(k);
      if (!child) decisionChildren.set(k, (child = decisions.labels({ rpc, code })));
      child.inc();
    },
    rpc(service, method, code, seconds) {
      const m = `${service}/${method}`;
      const k = `${m}/${code}`;
      let count = rpcChildren.get(k);
      if (!count) rpcChildren.set(k, (count = rpcTotal.labels({ service, method, code })));
      count.inc();
      let duration = durationChildren.get(m);
      if (!duration) durationChildren.set(m, (duration = rpcDuration.labels({ service, method })));
      duration.observe(seconds);
    },
    keyCacheLookup(result) {
      let child = cacheChildren.get(result);
      if (!child) cacheChildren.set(result, (child = keyCache.labels({ result })));
      child.inc();
    },
    rpcTotal,
    rpcDuration,
    decisions,
    keyCache,
    argon2Duration: new Histogram({
      name: "tollgate_argon2_verify_seconds",
      help: "argon2id verification time",
      labelNames: ["outcome"],
      buckets: [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 1],
      registers: [registry],
    }),
    argon2Queue: new Gauge({ name: "tollgate_argon2_queue_depth", help: "argon2 verifications waiting for a slot", registers: [registry] }),
    dbErrors: new Counter({ name: "tollgate_db_errors_total", help: "Database operations that failed", labelNames: ["operation"], registers: [registry] }),
    stop: () => loopDelay.disable(),
  };
}
