/**
 * `npm run bench:ab`: this working tree against another revision, measured in one run. Four servers
 * — two of the base revision's build and two of this tree's, started base, candidate, candidate,
 * base — each answer the selected load scenarios, and every round runs each (server, scenario)
 * once, in an order that rotates and alternates from round to round. A change is then read as the median over rounds of candidate ÷ base for the same
 * scenario, measured seconds apart: two separate `npm run bench` runs minutes apart differ by more
 * than most changes on this machine (docs/performance.md, "What is left").
 *
 * Environment: BENCH_AB_BASE (git revision, default HEAD), BENCH_SCENARIOS (load scenarios,
 * default noop,check), BENCH_ROUNDS (default 16), BENCH_DURATION (default 2), BENCH_WARMUP
 * (default 0.5), BENCH_CONNECTIONS / BENCH_STREAMS as for `npm run bench`. The base is built
 * from `git archive` into bench/out/ab-base (inside the project, so node_modules resolve).
 */
import { execFileSync } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { contextFor, numberEnv } from "./context.js";
import type { LoadShape } from "./h2load.js";
import { median, middleHalf } from "./report.js";
import { prepareLoad, runLoadRound, type ReadyLoad } from "./runner.js";
import type { BenchContext, LoadScenario } from "./scenario.js";
import { scenarios } from "./scenarios.js";
import { compiledServer, startBenchServer, type BenchServer } from "./server.js";

const OUT_DIR = join(import.meta.dirname, "out");
const BASE_DIR = join(OUT_DIR, "ab-base");

/** Builds `revision` as production runs it (tsc, then the SQL assets), returning its entry point. */
async function buildBase(revision: string): Promise<string> {
  await rm(BASE_DIR, { recursive: true, force: true });
  await mkdir(BASE_DIR, { recursive: true });
  const archive = execFileSync("git", ["archive", revision, "src", "scripts", "tsconfig.json", "tsconfig.build.json"]);
  execFileSync("tar", ["-x", "-C", BASE_DIR], { input: archive });
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", join(BASE_DIR, "tsconfig.build.json"), "--outDir", join(BASE_DIR, "build"), "--sourceMap", "false"], { stdio: "inherit" });
  execFileSync(process.execPath, ["scripts/copy-assets.mjs", "build"], { cwd: BASE_DIR, stdio: "inherit" });
  return join(BASE_DIR, "build", "src", "main.js");
}

function loadScenarios(): LoadScenario[] {
  const names = (process.env.BENCH_SCENARIOS ?? "noop,check").split(",").map((s) => s.trim()).filter(Boolean);
  return names.map((name) => {
    const s = scenarios.find((c) => c.name === name);
    if (!s || s.kind !== "load" || s.fixedRate || s.background) throw new Error(`${name} is not a plain load scenario (known: ${scenarios.filter((c) => c.kind === "load" && !c.fixedRate && !c.background).map((c) => c.name).join(", ")})`);
    return s;
  });
}

/** The median of `values` and their middle half, as percentages. */
function spread(values: number[]): string {
  const half = middleHalf(values);
  const range = half ? `middle half ${(100 * half[0]).toFixed(0)}–${(100 * half[1]).toFixed(0)} %, ` : "";
  return `${(100 * median(values)).toFixed(1)} % (${range}${values.length} rounds)`;
}

async function main(): Promise<void> {
  const revision = process.env.BENCH_AB_BASE ?? "HEAD";
  const rounds = numberEnv("BENCH_ROUNDS", 16);
  const durationSec = numberEnv("BENCH_DURATION", 2);
  const shape: LoadShape = { threads: 1, connections: numberEnv("BENCH_CONNECTIONS", 4), streams: numberEnv("BENCH_STREAMS", 32), durationSec, warmUpSec: numberEnv("BENCH_WARMUP", 0.5) };
  const chosen = loadScenarios();
  const baseEntry = await buildBase(revision);
  const candidateEntry = compiledServer();
  const env = Object.assign({}, ...chosen.map((s) => s.serverEnv ?? {})) as Record<string, string>;
  // Two servers a side, started base, candidate, candidate, base: a server started earlier idles
  // longer before its first round, and that alone has made a server 5–15 % faster or slower here
  // (docs/performance.md), so each side gets one early and one late start.
  const servers: [string, BenchServer][] = [];
  try {
    for (const [label, entry] of [["base", baseEntry], ["candidate", candidateEntry], ["candidate", candidateEntry], ["base", baseEntry]] as const) {
      servers.push([`${label}#${servers.filter(([l]) => l.startsWith(label)).length + 1}`, await startBenchServer(env, entry)]);
    }
    const runs: { server: string; scenario: string; ctx: BenchContext; ready: ReadyLoad; dir: string }[] = [];
    for (const [label, server] of servers) {
      const ctx = contextFor(server, durationSec);
      for (const s of chosen) {
        const dir = join(OUT_DIR, "ab", label.replace("#", "-")); // each server's own request bodies (they carry its keys)
        await mkdir(dir, { recursive: true });
        process.stderr.write(`setting up ${s.name} on ${label} (pid ${server.pid})\n`);
        runs.push({ server: label, scenario: s.name, ctx, ready: await prepareLoad(ctx, s, dir), dir });
      }
    }
    const rates = new Map<string, number[]>();
    const problems: string[] = [];
    for (let round = 1; round <= rounds; round++) {
      const rotated = runs.map((_, i) => runs[(i + round) % runs.length]!);
      for (const run of round % 2 === 1 ? rotated : rotated.reverse()) {
        const r = await runLoadRound(run.ctx, run.ready, shape, round, run.dir);
        const key = `${run.server} ${run.scenario}`;
        (rates.get(key) ?? rates.set(key, []).get(key)!).push(r.callsPerSec);
        problems.push(...r.problems.map((p) => `${key} round ${round}: ${p}`));
        process.stderr.write(`round ${round} ${key}: ${Math.round(r.callsPerSec)} calls/s, ${Math.round(r.cpuUsPerCall)} µs CPU/call\n`);
      }
    }
    // A side's figure per round: the geometric mean of its two servers' calls/s.
    const side = (label: string, scenario: string) => rates.get(`${label}#1 ${scenario}`)!.map((v, i) => Math.sqrt(v * rates.get(`${label}#2 ${scenario}`)![i]!));
    const perRound = (a: number[], b: number[]) => a.map((v, i) => v / b[i]!);
    console.log(`\nbase ${revision} vs candidate (this working tree), two servers each, ${rounds} rounds of ${durationSec} s, each a rotation of every (server, scenario):`);
    for (const s of chosen) {
      const [base, candidate] = [side("base", s.name), side("candidate", s.name)];
      console.log(`  ${s.name}: candidate ${spread(perRound(candidate, base))} of base; calls/s medians ${Math.round(median(base))} → ${Math.round(median(candidate))}`);
      if (s.baseline && chosen.some((c) => c.name === s.baseline)) {
        for (const label of ["base", "candidate"]) console.log(`    ${label}: ${s.name} ${spread(perRound(side(label, s.name), side(label, s.baseline)))} of ${s.baseline}`);
      }
      const sameSide = perRound(rates.get(`base#2 ${s.name}`)!, rates.get(`base#1 ${s.name}`)!);
      console.log(`    (two servers of the same build, base#2 ÷ base#1: ${spread(sameSide)})`);
    }
    if (problems.length) {
      console.log(`\nThe load did NOT get the expected answers:\n  ${problems.join("\n  ")}`);
      process.exitCode = 1;
    }
  } finally {
    for (const [, server] of servers) await server.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:ab failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
