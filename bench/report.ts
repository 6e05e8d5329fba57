/**
 * Turning rounds into figures: medians per scenario, throughput and CPU ratios against each
 * scenario's baseline (taken within rounds, whose order alternates; see `pairedRatio`), and the
 * three outputs — a table on stdout, results.json, and a Markdown snippet for the README.
 */
import type { RoundResult } from "./runner.js";
import type { Scenario } from "./scenario.js";

/** The medians of one scenario over its rounds. */
export interface Summary {
  scenario: string;
  title: string;
  rounds: number;
  callsPerSec: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  cpuUsPerCall: number;
  loopLagP99Ms: number;
  baseline?: string;
  /** The throughput ratio the scenario should reach. */
  target?: number;
  /** This calls/s ÷ baseline calls/s, within rounds, over pairs of rounds (see `pairedRatio`). */
  throughputRatio?: number;
  /** This CPU per call ÷ baseline CPU per call, as `throughputRatio`. */
  cpuRatio?: number;
  /** How many pairs of rounds `throughputRatio` comes from, and the middle half of their values (4 pairs or more). */
  pairs?: number;
  throughputMiddleHalf?: [number, number];
  extra: Record<string, number>;
  problems: string[];
}

/** Median of the finite values (NaN when none). */
export function median(values: number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/**
 * The ratio of `name` to `baseline` over the rounds: per round, then the two rounds of each pair
 * (1–2, 3–4, …) combined by geometric mean, then the median over pairs. Rounds alternate their
 * order (order.ts), so in each pair each scenario ran once in each position, and the pair's mean
 * cancels the position effect; a last round without a partner is left out (a one-round run keeps it).
 */
export function pairedRatio(results: RoundResult[], name: string, baseline: string, field: "callsPerSec" | "cpuUsPerCall"): number {
  return median(pairValues(results, name, baseline, field));
}

/** The per-pair values `pairedRatio` takes the median of (one per round when a run has a single round). */
export function pairValues(results: RoundResult[], name: string, baseline: string, field: "callsPerSec" | "cpuUsPerCall"): number[] {
  const byRound = (n: string) => new Map(results.filter((r) => r.scenario === n).map((r) => [r.round, r[field]]));
  const base = byRound(baseline);
  const perRound = new Map([...byRound(name)].map(([round, v]) => [round, v / (base.get(round) ?? NaN)]));
  if (perRound.size === 1) return [...perRound.values()];
  const pairs: number[] = [];
  for (const [round, ratio] of perRound) if (round % 2 === 1 && perRound.has(round + 1)) pairs.push(Math.sqrt(ratio * perRound.get(round + 1)!));
  return pairs.filter(Number.isFinite);
}

/** The middle half of `values`: first and third quartiles, interpolated between ranks; undefined for fewer than 4. */
export function middleHalf(values: number[]): [number, number] | undefined {
  const v = [...values].sort((a, b) => a - b);
  if (v.length < 4) return undefined;
  const at = (p: number) => {
    const h = (v.length - 1) * p;
    const lo = Math.floor(h);
    return v[lo]! + (h - lo) * (v[Math.min(lo + 1, v.length - 1)]! - v[lo]!);
  };
  return [at(0.25), at(0.75)];
}

function ratiosOf(results: RoundResult[], name: string, baseline: string) {
  const pairs = pairValues(results, name, baseline, "callsPerSec");
  const spread = middleHalf(pairs);
  return {
    baseline, throughputRatio: median(pairs), cpuRatio: pairedRatio(results, name, baseline, "cpuUsPerCall"), pairs: pairs.length,
    ...(spread ? { throughputMiddleHalf: spread } : {}),
  };
}

/** Medians and ratios of every scenario that ran. */
export function summarise(scenarios: Scenario[], results: RoundResult[]): Summary[] {
  return scenarios.map((s) => {
    const mine = results.filter((r) => r.scenario === s.name);
    const pick = (f: (r: RoundResult) => number) => median(mine.map(f));
    const extraKeys = new Set(mine.flatMap((r) => Object.keys(r.extra)));
    const extra = Object.fromEntries([...extraKeys].map((k) => [k, pick((r) => r.extra[k] ?? NaN)]));
    const { baseline, target } = s;
    return {
      scenario: s.name, title: s.title, rounds: mine.length,
      callsPerSec: pick((r) => r.callsPerSec), p50Us: pick((r) => r.p50Us), p99Us: pick((r) => r.p99Us), p999Us: pick((r) => r.p999Us),
      cpuUsPerCall: pick((r) => r.cpuUsPerCall), loopLagP99Ms: pick((r) => r.loopLagP99Ms),
      ...(target !== undefined ? { target } : {}),
      ...(baseline ? ratiosOf(results, s.name, baseline) : {}),
      extra, problems: [...new Set(mine.flatMap((r) => r.problems.map((p) => `round ${r.round}: ${p}`)))],
    };
  });
}

const ms = (us: number) => (Number.isFinite(us) ? (us / 1000).toFixed(us < 10_000 ? 2 : 1) : "–");
const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–");
const pct = (r: number | undefined) => (r === undefined || !Number.isFinite(r) ? "" : `${(r * 100).toFixed(0)} %`);

const HEADER = ["scenario", "calls/s", "vs baseline", "p50 ms", "p99 ms", "p99.9 ms", "CPU µs/call", "CPU vs base", "loop lag p99 ms", "correct"];

function row(s: Summary): string[] {
  return [s.scenario, int(s.callsPerSec), pct(s.throughputRatio), ms(s.p50Us), ms(s.p99Us), ms(s.p999Us), int(s.cpuUsPerCall), pct(s.cpuRatio), s.loopLagP99Ms.toFixed(1), s.problems.length ? "NO" : "yes"];
}

/** The table for the terminal, columns padded. */
export function textTable(summaries: Summary[]): string {
  const rows = [HEADER, ...summaries.map(row)];
  const widths = HEADER.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")).join("\n");
}

/** One decimal, rounded down: a ratio just under its target never reads as the target itself ("90 %: NOT met"). */
const headlinePct = (r: number) => `${(Math.floor(r * 1000 + 1e-9) / 10).toFixed(1)} %`;

/** The headline: each scenario with a target, its throughput as a share of its baseline's (when its baseline ran too). */
export function headline(summaries: Summary[]): string[] {
  return summaries
    .filter((s) => s.target !== undefined && Number.isFinite(s.throughputRatio))
    .map((s) => {
      const spread = s.throughputMiddleHalf ? ` (middle half of ${s.pairs} pairs of rounds: ${pct(s.throughputMiddleHalf[0])}–${pct(s.throughputMiddleHalf[1])})` : "";
      return `${s.scenario}: ${headlinePct(s.throughputRatio!)} of ${s.baseline} throughput${spread} (target ≥ ${pct(s.target)}: ${s.throughputRatio! >= s.target! ? "met" : "NOT met"}); CPU per call ${pct(s.cpuRatio)} of ${s.baseline}'s`;
    });
}

/** Figures beside the table: the extras of each scenario, one line each. */
export function extrasText(summaries: Summary[]): string[] {
  return summaries
    .filter((s) => Object.keys(s.extra).length > 0)
    .map((s) => `${s.scenario}: ${Object.entries(s.extra).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(1)}`).join(", ")}`);
}

/** The Markdown snippet for the README's performance section. */
export function markdown(summaries: Summary[], context: { date: string; durationSec: number; rounds: number; machine: string; database: string; load: string }): string {
  const lines = [
    `Measured ${context.date} with \`npm run bench\` on ${context.machine}; ${context.database}; load from ${context.load}.`,
    `Each figure is the median of ${context.rounds} interleaved round(s) of ${context.durationSec} s on one server; ratios are taken within a round, and combined over pairs of rounds run in opposite orders (bench/README.md).`,
    "",
    `| ${HEADER.join(" | ")} |`,
    `| ${HEADER.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...summaries.map((s) => `| ${row(s).join(" | ")} |`),
    "",
    ...summaries.map((s) => `- \`${s.scenario}\`: ${s.title}.`),
    ...headline(summaries).map((h) => `- **${h}**`),
    "",
    "Other figures (medians):",
    "",
    ...extrasText(summaries).map((e) => `- ${e}`),
  ];
  return `${lines.join("\n")}\n`;
}
