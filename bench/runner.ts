/**
 * Runs one round of one scenario and measures it the same way every time: throughput, latency
 * percentiles, server CPU per call (from /proc/<pid>/stat), event-loop lag (the server's
 * `tollgate_event_loop_delay_p99_seconds`, reset by each scrape), and checks that the calls got
 * the answers they should — h2load only sees HTTP statuses, and gRPC errors are HTTP 200.
 */
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code as RpcCode, ConnectError } from "@connectrpc/connect";
import { percentile, runH2load, writeGrpcBody, type LoadShape } from "./h2load.js";
import { grpcPathOf } from "./raw-grpc.js";
import { argon2Figures, decisionCodes, rpcCodes, scrape, total, type Sample } from "./metrics.js";
import type { Background, BenchContext, CustomScenario, Extra, LoadScenario, Prepared } from "./scenario.js";
import { cpuMicros } from "./server.js";

/** The figures of one round of one scenario. */
export interface RoundResult {
  scenario: string;
  round: number;
  calls: number;
  callsPerSec: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  /** Server CPU (user + system, all threads) per call, in microseconds. */
  cpuUsPerCall: number;
  /** 99th percentile event-loop delay over the measured window, in milliseconds. */
  loopLagP99Ms: number;
  extra: Extra;
  /** Anything that shows the load did not get the answers it should; empty when correct. */
  problems: string[];
}

const loopLagMs = (samples: Sample[]) => total(samples, "tollgate_event_loop_delay_p99_seconds") * 1000;

/** A load scenario after setup: its request framed for h2load. */
export interface ReadyLoad {
  scenario: LoadScenario;
  prepared: Prepared;
  bodyPath: string;
}

/** Runs setup and writes the request body file. */
export async function prepareLoad(ctx: BenchContext, scenario: LoadScenario, outDir: string): Promise<ReadyLoad> {
  const prepared = await scenario.setup(ctx);
  const bodyPath = join(outDir, `${scenario.name}.grpc`);
  await writeGrpcBody(bodyPath, scenario.method.input, create(scenario.method.input, prepared.request));
  return { scenario, prepared, bodyPath };
}

/** One call through connect-node, checked: the sample that shows the load's request is answered correctly. */
async function sampleCall(ctx: BenchContext, ready: ReadyLoad): Promise<string[]> {
  try {
    const res = await ctx.transport.unary(ready.scenario.method, undefined, 5_000, undefined, ready.prepared.request);
    const problem = ready.prepared.expect(res.message);
    return problem ? [`sample call: ${problem}`] : [];
  } catch (err) {
    return [`sample call failed: ${RpcCode[ConnectError.from(err).code]}`];
  }
}

/** Compares what the server counted with what h2load sent. */
function checkCounters(ready: ReadyLoad, before: Sample[], after: Sample[], done: number, slack: number, extra: Extra): string[] {
  const { method } = ready.scenario;
  const problems: string[] = [];
  const codes = rpcCodes(before, after, method.parent.typeName, method.name);
  const instrumented = after.some((s) => s.name === "tollgate_rpc_total" && s.labels.method === method.name && s.labels.service === method.parent.typeName);
  // A background client may cause errors of its own (UNAVAILABLE when argon2 is saturated, say). A call
  // it gave up on (DEADLINE_EXCEEDED on its side) may still be counted under another code by the server,
  // so only errors beyond all of the background's failed calls are the load's.
  const allowed = Object.entries(extra).filter(([k]) => k.startsWith("outcome_rpc_")).reduce((sum, [, n]) => sum + n, 0);
  const errors = Object.entries(codes).filter(([code]) => code !== "OK");
  const errorCount = errors.reduce((sum, [, n]) => sum + n, 0);
  if (errorCount > allowed) problems.push(`server answered ${errorCount - allowed} ${method.name} calls with errors (${errors.map(([c, n]) => `${c} ${n}`).join(", ")})`);
  const decision = ready.prepared.decision;
  if (decision) {
    const decided = decisionCodes(before, after, decision.rpc)[decision.code] ?? 0;
    extra[`decisions_${decision.code}`] = decided;
    if (Math.abs(decided - done) > slack) problems.push(`h2load completed ${done} calls but the server decided ${decided} ${decision.code}`);
  } else if (instrumented && !ready.scenario.background) {
    if (Math.abs((codes.OK ?? 0) - done) > slack) problems.push(`h2load completed ${done} calls but the server answered ${codes.OK ?? 0} OK`);
  }
  return problems;
}

/** Runs one h2load round of a load scenario (and its background, if any) and checks it. */
export async function runLoadRound(ctx: BenchContext, ready: ReadyLoad, shape: LoadShape, round: number, outDir: string): Promise<RoundResult> {
  const problems = await sampleCall(ctx, ready);
  const { method } = ready.scenario;
  const url = `http://127.0.0.1:${ctx.server.grpcPort}${grpcPathOf(method)}`;
  let start: Promise<{ before: Sample[]; cpu0: number; background?: Background }> | undefined;
  const load = await runH2load(url, ready.bodyPath, join(outDir, `${ready.scenario.name}.tsv`), shape, () => {
    start = (async () => {
      const [before, cpu0] = await Promise.all([scrape(ctx.server.httpPort), cpuMicros(ctx.server.pid)]);
      const background = await ready.scenario.background?.(ctx);
      return { before, cpu0, ...(background ? { background } : {}) };
    })();
  }, ready.scenario.headers).catch(async (err: unknown) => {
    await (await start?.catch(() => undefined))?.background?.stop(); // don't leave a paced client running
    throw err;
  });
  if (!start) throw new Error("h2load finished before its warm-up ended");
  const { before, cpu0, background } = await start;
  const cpu1 = await cpuMicros(ctx.server.pid);
  const after = await scrape(ctx.server.httpPort);
  const extra: Extra = { ...(background ? await background.stop() : {}), ...argon2Figures(before, after) };
  if (load.failed + load.errored > 0) problems.push(`h2load: ${load.failed} failed, ${load.errored} errored`);
  if (load.non2xx > 0) problems.push(`h2load: ${load.non2xx} responses were not HTTP 2xx`);
  // Calls in flight at either edge, plus ~50 ms of calls: the window starts on a timer of ours,
  // which runs a little ahead of h2load's own (it starts counting once connected), and a scrape takes time.
  const slack = shape.connections * shape.streams * 2 + Math.ceil(load.rps * 0.05);
  problems.push(...checkCounters(ready, before, after, load.done, slack, extra));
  const verdict = ready.scenario.verify?.(before, after, load.done);
  if (verdict) {
    Object.assign(extra, verdict.extra);
    problems.push(...verdict.problems);
  }
  return {
    scenario: ready.scenario.name, round, calls: load.done, callsPerSec: load.rps,
    p50Us: load.p50Us, p99Us: load.p99Us, p999Us: load.p999Us,
    cpuUsPerCall: load.done > 0 ? (cpu1 - cpu0) / load.done : NaN,
    loopLagP99Ms: loopLagMs(after), extra, problems,
  };
}

/** Runs one round of a custom scenario, with the same CPU and event-loop measurements around it. */
export async function runCustomRound(ctx: BenchContext, scenario: CustomScenario, state: unknown, round: number): Promise<RoundResult> {
  await scenario.beforeRound?.(ctx, state);
  const [before, cpu0] = await Promise.all([scrape(ctx.server.httpPort), cpuMicros(ctx.server.pid)]);
  const run = await scenario.run(ctx, state);
  const cpu1 = await cpuMicros(ctx.server.pid);
  const after = await scrape(ctx.server.httpPort);
  const verdict = scenario.verify?.(before, after, state) ?? { problems: [], extra: {} };
  const sorted = [...run.latenciesUs].sort((a, b) => a - b);
  return {
    scenario: scenario.name, round, calls: run.calls, callsPerSec: run.calls / run.seconds,
    p50Us: percentile(sorted, 50), p99Us: percentile(sorted, 99), p999Us: percentile(sorted, 99.9),
    cpuUsPerCall: run.calls > 0 ? (cpu1 - cpu0) / run.calls : NaN,
    loopLagP99Ms: loopLagMs(after), extra: { ...argon2Figures(before, after), ...run.extra, ...verdict.extra }, problems: [...run.problems, ...verdict.problems],
  };
}

/**
 * Waits until the server has no argon2 work left: verifications queued for callers that already
 * gave up still run after a flood of wrong secrets stops, and would otherwise land in the next
 * scenario's window. Settled = the verify count did not move for 500 ms (at most 60 s).
 */
export async function settle(httpPort: number): Promise<void> {
  const count = async () => total(await scrape(httpPort), "tollgate_argon2_verify_seconds_count");
  const deadline = Date.now() + 60_000;
  let last = await count();
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    const now = await count();
    if (now === last) return;
    last = now;
  }
}
