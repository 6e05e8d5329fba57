import { monitorEventLoopDelay } from "node:perf_hooks";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** The service's Prometheus metrics. Every label set is closed (method names, codes, outcomes). */
export interface Metrics {
  registry: Registry;
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
  return {
    registry,
    rpcTotal: new Counter({ name: "tollgate_rpc_total", help: "RPCs handled, by final status code", labelNames: ["service", "method", "code"], registers: [registry] }),
    rpcDuration: new Histogram({
      name: "tollgate_rpc_duration_seconds",
      help: "RPC handling time",
      labelNames: ["service", "method"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    decisions: new Counter({ name: "tollgate_decisions_total", help: "Decisions answered, by code", labelNames: ["rpc", "code"], registers: [registry] }),
    keyCache: new Counter({ name: "tollgate_key_cache_total", help: "Verified-key cache lookups", labelNames: ["result"], registers: [registry] }),
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
