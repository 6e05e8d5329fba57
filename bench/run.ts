/**
 * `npm run bench`: one real server in a child process, every selected scenario measured in
 * interleaved rounds on it (the order alternating from round to round; see order.ts), medians
 * and ratios printed, and results written to bench/out/.
 *
 * Environment: BENCH_DURATION (measured seconds per run, default 8), BENCH_ROUNDS (default 4: two pairs),
 * BENCH_SCENARIOS (comma-separated names; baselines are added automatically), BENCH_WARMUP
 * (seconds, default 2), BENCH_CONNECTIONS / BENCH_STREAMS (h2load -c / -m, default 4 / 32).
 */
import { execFileSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { contextFor, numberEnv } from "./context.js";
import type { LoadShape } from "./h2load.js";
import { roundOrder } from "./order.js";
import { extrasText, headline, markdown, summarise, textTable } from "./report.js";
import { prepareLoad, runCustomRound, runLoadRound, settle, type ReadyLoad, type RoundResult } from "./runner.js";
import type { Scenario } from "./scenario.js";
import { scenarios as allScenarios } from "./scenarios.js";
import { startBenchServer } from "./server.js";

const OUT_DIR = join(import.meta.dirname, "out");

/** The scenarios BENCH_SCENARIOS selects, plus the baselines they are compared with, in list order. */
function selectScenarios(): Scenario[] {
  const filter = process.env.BENCH_SCENARIOS?.split(",").map((s) => s.trim()).filter(Boolean);
  if (!filter?.length) return allScenarios;
  const unknown = filter.filter((f) => !allScenarios.some((s) => s.name === f));
  if (unknown.length) throw new Error(`unknown scenario(s) ${unknown.join(", ")}; known: ${allScenarios.map((s) => s.name).join(", ")}`);
  const wanted = new Set(filter);
  // BENCH_NO_BASELINES=1: only the named scenarios (to profile one alone); no ratios are printed then.
  if (process.env.BENCH_NO_BASELINES !== "1") for (const s of allScenarios) if (wanted.has(s.name) && s.baseline) wanted.add(s.baseline);
  return allScenarios.filter((s) => wanted.has(s.name));
}

/** The load shape of a scenario: paced at a fraction of another scenario's throughput this round, if it asks. */
function shapeFor(s: Scenario, shape: LoadShape, thisRound: Map<string, RoundResult>): LoadShape {
  if (s.kind !== "load" || !s.fixedRate) return shape;
  const reference = thisRound.get(s.fixedRate.of);
  if (!reference) throw new Error(`${s.name} is paced on ${s.fixedRate.of}, which must run before it`);
  const total = reference.callsPerSec * s.fixedRate.fraction;
  return { ...shape, rpsPerConnection: Math.max(1, Math.round(total / shape.connections)) };
}

function describeMachine(): string {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model.trim() ?? "CPU"}, Node ${process.version}, load average ${os.loadavg()[0]!.toFixed(2)} at start`;
}

async function main(): Promise<void> {
  const durationSec = numberEnv("BENCH_DURATION", 8);
  const rounds = numberEnv("BENCH_ROUNDS", 4);
  const shape: LoadShape = { threads: 1, connections: numberEnv("BENCH_CONNECTIONS", 4), streams: numberEnv("BENCH_STREAMS", 32), durationSec, warmUpSec: numberEnv("BENCH_WARMUP", 2) };
  const scenarios = selectScenarios();
  const machine = describeMachine();
  const h2loadVersion = execFileSync("h2load", ["--version"], { encoding: "utf8" }).trim();
  await mkdir(OUT_DIR, { recursive: true });

  const serverEnv = Object.assign({}, ...scenarios.map((s) => s.serverEnv ?? {})) as Record<string, string>;
  const server = await startBenchServer(serverEnv);
  process.stderr.write(`server pid ${server.pid} on gRPC :${server.grpcPort}, HTTP :${server.httpPort}; ${server.database}\n`);
  const results: RoundResult[] = [];
  try {
    const ctx = contextFor(server, durationSec);
    const ready = new Map<string, ReadyLoad | unknown>();
    for (const s of scenarios) {
      process.stderr.write(`setting up ${s.name}\n`);
      ready.set(s.name, s.kind === "load" ? await prepareLoad(ctx, s, OUT_DIR) : await s.setup(ctx));
    }
    for (let round = 1; round <= rounds; round++) {
      const thisRound = new Map<string, RoundResult>();
      for (const s of roundOrder(scenarios, round)) {
        const r = s.kind === "load" ? await runLoadRound(ctx, ready.get(s.name) as ReadyLoad, shapeFor(s, shape, thisRound), round, OUT_DIR) : await runCustomRound(ctx, s, ready.get(s.name), round);
        results.push(r);
        thisRound.set(s.name, r);
        await settle(server.httpPort);
        process.stderr.write(`round ${round} ${s.name}: ${Math.round(r.callsPerSec)} calls/s, p99 ${(r.p99Us / 1000).toFixed(2)} ms, ${Math.round(r.cpuUsPerCall)} µs CPU/call, loop lag p99 ${r.loopLagP99Ms.toFixed(1)} ms${r.problems.length ? `, PROBLEMS: ${r.problems.join("; ")}` : ""}\n`);
      }
    }
  } finally {
    await server.stop();
  }

  const summaries = summarise(scenarios, results);
  const load = `h2load (${h2loadVersion}) -t${shape.threads} -c${shape.connections} -m${shape.streams}, ${shape.warmUpSec} s warm-up`;
  const date = new Date().toISOString();
  const snippet = markdown(summaries, { date: date.slice(0, 10), durationSec, rounds, machine, database: server.database, load });
  await writeFile(join(OUT_DIR, "results.json"), JSON.stringify({ date, machine, database: server.database, load, durationSec, rounds, summaries, results }, null, 2));
  await writeFile(join(OUT_DIR, "README-snippet.md"), snippet);

  console.log(`\n${textTable(summaries)}\n`);
  for (const line of extrasText(summaries)) console.log(line);
  console.log("");
  for (const line of headline(summaries)) console.log(`>>> ${line}`);
  const problems = summaries.flatMap((s) => s.problems.map((p) => `${s.scenario} ${p}`));
  if (problems.length) {
    console.log(`\nThe load did NOT get the expected answers:\n  ${problems.join("\n  ")}`);
    process.exitCode = 1;
  }
  console.log(`\n${machine}. Results: bench/out/results.json, bench/out/README-snippet.md`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
