import { monitorEventLoopDelay } from "node:perf_hooks";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type CounterConfiguration, type LabelValues } from "prom-client";

/** The service's Prometheus metrics. Every label set is closed (method names, codes, outcomes). */
export interface Metrics {
  registry: Registry;
  /** Counts one decision (a plain addition; the count reaches the registry when it is collected). */
  decision(rpc: string, code: string): void;
  /** Counts one verified-key cache lookup by result (hit, miss, stale, negative, throttled). */
  keyCacheLookup(result: string): void;
  /** Records one finished RPC (count by final code, as `decision` does, and duration, with a cached label child). */
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

/**
 * Counts for a prom-client counter, kept as plain numbers: the hot path adds 1 to a number found
 * by its label values (up to three, looked up level by level, so no key string is built), and the
 * counts reach the counter when it is collected (a scrape): no call pays for prom-client hashing
 * its labels. Label sets are closed (methods × codes), so the maps stay small.
 */
class Tally<L extends string> {
  private readonly tree = new Map<string, Map<string, Map<string, TallyEntry<L>>>>();
  private readonly entries: TallyEntry<L>[] = [];

  constructor(private readonly names: readonly L[]) {}

  /** Adds 1 for these label values, in the order of the counter's label names. */
  add(a: string, b = "", c = ""): void {
    const entry = this.tree.get(a)?.get(b)?.get(c);
    if (entry) entry.count++;
    else this.create(a, b, c).count++;
  }

  private create(a: string, b: string, c: string): TallyEntry<L> {
    const values = [a, b, c];
    const labels = Object.fromEntries(this.names.map((name, i) => [name, values[i]!])) as LabelValues<L>;
    const entry = { labels, count: 0, reported: 0 };
    let level1 = this.tree.get(a);
    if (!level1) this.tree.set(a, (level1 = new Map()));
    let level2 = level1.get(b);
    if (!level2) level1.set(b, (level2 = new Map()));
    level2.set(c, entry);
    this.entries.push(entry);
    return entry;
  }

  /** Hands the counts added since the last report to the counter. */
  report(counter: Counter<L>): void {
    for (const entry of this.entries) {
      if (entry.count === entry.reported) continue;
      counter.inc(entry.labels, entry.count - entry.reported);
      entry.reported = entry.count;
    }
  }
}

interface TallyEntry<L extends string> {
  labels: LabelValues<L>;
  count: number;
  reported: number;
}

/** A counter fed by a tally, which it reads when collected. */
function talliedCounter<L extends string>(config: CounterConfiguration<L> & { labelNames: readonly L[] }): [Counter<L>, Tally<L>] {
  const tally = new Tally<L>(config.labelNames);
  const counter: Counter<L> = new Counter<L>({ ...config, collect: () => tally.report(counter) });
  return [counter, tally];
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
  const [rpcTotal, rpcTally] = talliedCounter({ name: "tollgate_rpc_total", help: "RPCs handled, by final status code", labelNames: ["service", "method", "code"], registers: [registry] });
  const rpcDuration = new Histogram({
    name: "tollgate_rpc_duration_seconds",
    help: "RPC handling time",
    labelNames: ["service", "method"],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const [decisions, decisionTally] = talliedCounter({ name: "tollgate_decisions_total", help: "Decisions answered, by code", labelNames: ["rpc", "code"], registers: [registry] });
  const [keyCache, cacheTally] = talliedCounter({ name: "tollgate_key_cache_total", help: "Verified-key cache lookups", labelNames: ["result"], registers: [registry] });
  // Label sets are closed (methods x codes), so this map stays small.
  const durationChildren = new Map<string, Map<string, { observe(v: number): void }>>();
  return {
    registry,
    decision(rpc, code) {
      decisionTally.add(rpc, code);
    },
    rpc(service, method, code, seconds) {
      rpcTally.add(service, method, code);
      let byMethod = durationChildren.get(service);
      if (!byMethod) durationChildren.set(service, (byMethod = new Map()));
      let duration = byMethod.get(method);
      if (!duration) byMethod.set(method, (duration = rpcDuration.labels({ service, method })));
      duration.observe(seconds);
    },
    keyCacheLookup(result) {
      cacheTally.add(result);
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
