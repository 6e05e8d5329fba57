import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { latencies, percentile } from "../bench/h2load.js";
import { decisionCodes, parseMetrics, rpcCodes, total } from "../bench/metrics.js";
import { roundOrder } from "../bench/order.js";
import { headline, median, middleHalf, pairedRatio, summarise } from "../bench/report.js";
import type { RoundResult } from "../bench/runner.js";
import type { Scenario } from "../bench/scenario.js";

const dir = await mkdtemp(join(tmpdir(), "bench-helpers-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("bench helpers", () => {
  it("reads counters and gauges from Prometheus text, per label set", () => {
    const before = parseMetrics(['# HELP x y', 'tollgate_rpc_total{service="a.S",method="M",code="OK"} 10', 'tollgate_decisions_total{rpc="M",code="VALID"} 10'].join("\n"));
    const after = parseMetrics([
      'tollgate_rpc_total{service="a.S",method="M",code="OK"} 110',
      'tollgate_rpc_total{service="a.S",method="M",code="Unavailable"} 3',
      'tollgate_decisions_total{rpc="M",code="VALID"} 105',
      "tollgate_event_loop_delay_p99_seconds 0.0125",
    ].join("\n"));
    expect(rpcCodes(before, after, "a.S", "M")).toEqual({ OK: 100, Unavailable: 3 });
    expect(decisionCodes(before, after, "M")).toEqual({ VALID: 95 });
    expect(total(after, "tollgate_event_loop_delay_p99_seconds")).toBe(0.0125);
  });

  it("takes percentiles by nearest rank and medians of finite values only", () => {
    const sorted = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect([percentile(sorted, 50), percentile(sorted, 99), percentile(sorted, 99.9)]).toEqual([500, 990, 999]);
    expect(median([3, NaN, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });

  it("keeps only status-200 rows of the measured window from an h2load log", async () => {
    const log = join(dir, "lat.tsv");
    // Two warm-up rows more than 1 s before the last start, one in-flight row stopped with status 0.
    await writeFile(log, ["1000000\t200\t900", "1500000\t200\t800", "2600000\t200\t300", "2700000\t0\t5", "3000000\t200\t100"].join("\n"));
    expect(await latencies(log, 1)).toEqual([100, 300]);
  });

  it("compares throughput with the baseline within rounds, pairs of rounds by geometric mean, then the median", () => {
    const scenarios = [
      { kind: "load", name: "noop", title: "", method: undefined as never, setup: async () => undefined as never },
      { kind: "load", name: "auth", title: "", baseline: "noop", target: 0.9, method: undefined as never, setup: async () => undefined as never },
    ] as Scenario[];
    const r = (scenario: string, round: number, callsPerSec: number): RoundResult => ({ scenario, round, calls: 1, callsPerSec, p50Us: 1, p99Us: 1, p999Us: 1, cpuUsPerCall: callsPerSec, loopLagP99Ms: 1, extra: {}, problems: [] });
    // Machine speed drifts between rounds; per-round ratios 0.9, 0.9 | 0.8, 0.8 | 1.0, 1.0 | 0.5 (no partner: left out).
    const ratios = [0.9, 0.9, 0.8, 0.8, 1.0, 1.0, 0.5];
    const speeds = [1000, 500, 2000, 800, 1200, 700, 900];
    const results = ratios.flatMap((q, i) => [r("noop", i + 1, speeds[i]!), r("auth", i + 1, speeds[i]! * q)]);
    const [, auth] = summarise(scenarios, results);
    expect(auth!.throughputRatio).toBeCloseTo(0.9);
    expect(auth!.cpuRatio).toBeCloseTo(0.9);
    expect(auth!.callsPerSec).toBe(700); // the median of its own rounds
  });

  it("cancels a position effect: what runs second in a round is 8 % slower, and the rounds alternate", () => {
    const r = (scenario: string, round: number, callsPerSec: number): RoundResult => ({ scenario, round, calls: 1, callsPerSec, p50Us: 1, p99Us: 1, p999Us: 1, cpuUsPerCall: 1, loopLagP99Ms: 1, extra: {}, problems: [] });
    // True ratio 0.85; odd rounds run noop first (auth pays the 8 %), even rounds auth first (noop pays it).
    const results = [1, 2, 3, 4, 5].flatMap((round) => (round % 2 === 1 ? [r("noop", round, 1000), r("auth", round, 850 * 0.92)] : [r("auth", round, 850), r("noop", round, 1000 * 0.92)]));
    expect(pairedRatio(results, "auth", "noop", "callsPerSec")).toBeCloseTo(0.85, 2);
    // The plain median of per-round ratios lands on the side with more rounds: 0.85 × 0.92.
    expect(median(results.filter((x) => x.scenario === "auth").map((x) => x.callsPerSec / results.find((y) => y.scenario === "noop" && y.round === x.round)!.callsPerSec))).toBeCloseTo(0.85 * 0.92, 3);
  });

  it("states how many pairs of rounds a ratio rests on and the middle half of their values", () => {
    const [q1, q3] = middleHalf([0.9, 0.7, 1.1, 0.8, 1.0, 0.85, 0.95, 0.75])!;
    expect(q1).toBeCloseTo(0.7875); // three quarters of the way from the 2nd value (0.75) to the 3rd (0.8)
    expect(q3).toBeCloseTo(0.9625);
    expect(middleHalf([0.9, 0.8, 1.0])).toBeUndefined();
    const scenarios = [
      { kind: "load", name: "noop", title: "", method: undefined as never, setup: async () => undefined as never },
      { kind: "load", name: "check", title: "", baseline: "noop", target: 0.9, method: undefined as never, setup: async () => undefined as never },
    ] as Scenario[];
    const r = (scenario: string, round: number, callsPerSec: number): RoundResult => ({ scenario, round, calls: 1, callsPerSec, p50Us: 1, p99Us: 1, p999Us: 1, cpuUsPerCall: 1, loopLagP99Ms: 1, extra: {}, problems: [] });
    // Both rounds of each pair at the same ratio: pairs 0.7, 0.8, 0.85, 0.9.
    const results = [0.7, 0.7, 0.8, 0.8, 0.85, 0.85, 0.9, 0.9].flatMap((q, i) => [r("noop", i + 1, 1000), r("check", i + 1, 1000 * q)]);
    const [, check] = summarise(scenarios, results);
    expect(check!.pairs).toBe(4);
    expect(check!.throughputMiddleHalf![0]).toBeCloseTo(0.775);
    expect(check!.throughputMiddleHalf![1]).toBeCloseTo(0.8625);
    expect(check!.throughputRatio).toBeCloseTo(0.825);
    expect(headline([check!])).toEqual(["check: 82.5 % of noop throughput (middle half of 4 pairs of rounds: 78 %–86 %) (target ≥ 90 %: NOT met); CPU per call 100 % of noop's"]);
  });

  it("alternates the order of a round's scenarios, keeping a paced scenario right after the one it is paced on", () => {
    const load = (name: string, extra: object = {}) => ({ kind: "load", name, title: "", method: undefined as never, setup: async () => undefined as never, ...extra }) as Scenario;
    const list = [load("noop"), load("auth", { baseline: "noop" }), load("check", { baseline: "noop" }), load("check-half", { fixedRate: { of: "check", fraction: 0.5 } }), load("token")];
    const names = (round: number) => roundOrder(list, round).map((s) => s.name);
    expect(names(1)).toEqual(["noop", "auth", "check", "check-half", "token"]);
    expect(names(2)).toEqual(["token", "check", "check-half", "auth", "noop"]);
    expect(names(3)).toEqual(names(1));
    // Paced on a scenario that was not selected: still run (its own error says why), never dropped.
    expect(roundOrder([load("noop"), load("check-half", { fixedRate: { of: "check", fraction: 0.5 } })], 2).map((s) => s.name)).toEqual(["noop", "check-half"]);
  });

  it("shows a ratio just under its target rounded down to one decimal, so the verdict reads plainly", () => {
    const scenarios = [
      { kind: "load", name: "noop", title: "", method: undefined as never, setup: async () => undefined as never },
      { kind: "load", name: "auth", title: "", baseline: "noop", target: 0.9, method: undefined as never, setup: async () => undefined as never },
    ] as Scenario[];
    const r = (scenario: string, callsPerSec: number): RoundResult => ({ scenario, round: 1, calls: 1, callsPerSec, p50Us: 1, p99Us: 1, p999Us: 1, cpuUsPerCall: 1, loopLagP99Ms: 1, extra: {}, problems: [] });
    expect(headline(summarise(scenarios, [r("noop", 10_000), r("auth", 8_996)]))).toEqual(["auth: 89.9 % of noop throughput (target ≥ 90 %: NOT met); CPU per call 100 % of noop's"]);
    expect(headline(summarise(scenarios, [r("noop", 10_000), r("auth", 8_940)]))).toEqual(["auth: 89.4 % of noop throughput (target ≥ 90 %: NOT met); CPU per call 100 % of noop's"]);
  });

  it("states a target only for a scenario whose baseline ran in the same run", () => {
    const scenarios = [
      { kind: "load", name: "auth", title: "", baseline: "noop", target: 0.9, method: undefined as never, setup: async () => undefined as never },
      { kind: "load", name: "authz", title: "", baseline: "auth", target: 0.9, method: undefined as never, setup: async () => undefined as never },
    ] as Scenario[];
    const r = (scenario: string, callsPerSec: number): RoundResult => ({ scenario, round: 1, calls: 1, callsPerSec, p50Us: 1, p99Us: 1, p999Us: 1, cpuUsPerCall: 1, loopLagP99Ms: 1, extra: {}, problems: [] });
    // "noop" did not run (BENCH_SCENARIOS=authz adds only authz's own baseline): no verdict for auth.
    expect(headline(summarise(scenarios, [r("auth", 1000), r("authz", 950)]))).toEqual([
      "authz: 95.0 % of auth throughput (target ≥ 90 %: met); CPU per call 100 % of auth's",
    ]);
  });
});
