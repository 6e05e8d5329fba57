/**
 * What a benchmark scenario is. Scenarios are plain data plus a few hooks, listed in
 * `scenarios.ts`; the runner measures every one the same way (throughput, latency percentiles,
 * server CPU per call, event-loop lag) and checks that the load really got the expected answers.
 */
import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { Transport } from "@connectrpc/connect";
import type { Sample } from "./metrics.js";
import type { BenchServer } from "./server.js";

/** Figures a scenario adds to its result beside the standard ones (counts, rates, milliseconds). */
export type Extra = Record<string, number>;

/** What scenarios get to prepare state and talk to the server. */
export interface BenchContext {
  server: BenchServer;
  /** A connect-node gRPC transport to the grpc-js listener (for samples and paced clients). */
  transport: Transport;
  /** Creates a tenant (if needed) and an API key directly through the domain; returns the full key. */
  seedKey(tenantId?: string): Promise<{ keyId: string; secret: string }>;
  /** Seeds `count` keys, two at a time (each costs an argon2 hash). */
  seedKeys(count: number, tenantId?: string): Promise<{ keyId: string; secret: string }[]>;
  /** Makes every replica forget the cached state of these keys (the same NOTIFY a key update sends). */
  invalidate(keyIds: string[]): Promise<void>;
  /** Measured seconds per run (BENCH_DURATION). */
  durationSec: number;
}

/** The fixed request a load scenario sends, and how to tell a correct answer. */
export interface Prepared<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage> {
  request: MessageInitShape<I>;
  /** Checks one answer (sent through connect-node before each run); returns a problem or undefined. */
  expect(response: MessageShape<O>): string | undefined;
  /** The decision every call must produce, checked against `tollgate_decisions_total{rpc,code}`. */
  decision?: { rpc: string; code: string };
}

/** Something running beside the load (a paced client, say); `stop` waits for it and returns its figures. */
export interface Background {
  stop(): Promise<Extra>;
}

/**
 * A load scenario: h2load sends the same unary request over and over (see MEASURING.md).
 * Add one to `scenarios.ts` with a name, a method, and a `setup` returning the request.
 */
export interface LoadScenario<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage> {
  kind: "load";
  /** Short id, used by BENCH_SCENARIOS and as the key in results.json. */
  name: string;
  /** One line for the table and README snippet. */
  title: string;
  method: DescMethodUnary<I, O>;
  /** Name of the scenario whose throughput this one is compared with (ratio printed). */
  baseline?: string;
  /** The least acceptable throughput ratio to the baseline (0.9 = 90 %); shown as the headline. */
  target?: number;
  /** Request headers besides content-type and te (e.g. the grpc-timeout Envoy sends). */
  headers?: Record<string, string>;
  /** Settings the server must run with for this scenario (merged for the one shared server). */
  serverEnv?: Record<string, string>;
  /** Paced load: `fraction` of the throughput scenario `of` reached earlier in the same round (for latency at a fixed rate). */
  fixedRate?: { of: string; fraction: number };
  setup(ctx: BenchContext): Promise<Prepared<I, O>>;
  /** Started when measuring begins, stopped when the load ends. */
  background?(ctx: BenchContext): Promise<Background>;
  /** Extra figures and checks from the server's counters over the measured window (`done` = calls h2load completed). */
  verify?(before: Sample[], after: Sample[], done: number): { problems: string[]; extra: Extra };
}

/** A scenario with its own client, for what h2load cannot do (a distinct request per call). */
export interface CustomScenario<S = unknown> {
  kind: "custom";
  name: string;
  title: string;
  /** As for load scenarios: the scenario this one is compared with in each round, and the least acceptable ratio. */
  baseline?: string;
  target?: number;
  serverEnv?: Record<string, string>;
  setup(ctx: BenchContext): Promise<S>;
  /** Prepares one round, outside the measured window (e.g. evicting caches). */
  beforeRound?(ctx: BenchContext, state: S): Promise<void>;
  /** Runs one round; returns its figures, and problems found in the answers (empty when all correct). */
  run(ctx: BenchContext, state: S): Promise<CustomRun>;
  /** Checks the server's counters over the round (scraped just before and after `run`). */
  verify?(before: Sample[], after: Sample[], state: S): { problems: string[]; extra: Extra };
}

/** What one round of a custom scenario measured. */
export interface CustomRun {
  calls: number;
  seconds: number;
  latenciesUs: number[];
  problems: string[];
  extra?: Extra;
}

export type Scenario = LoadScenario<any, any> | CustomScenario<any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Helper that keeps a load scenario's request and response types tied to its method. */
export function loadScenario<I extends DescMessage, O extends DescMessage>(s: Omit<LoadScenario<I, O>, "kind">): LoadScenario<I, O> {
  return { kind: "load", ...s };
}

/** Helper for custom scenarios, for symmetry with {@link loadScenario}. */
export function customScenario<S>(s: Omit<CustomScenario<S>, "kind">): CustomScenario<S> {
  return { kind: "custom", ...s };
}
