/**
 * Driving load with h2load (nghttp2-client): one thread sends ~10k gRPC calls/s here, so the
 * load generator is not the bottleneck. The request is a pre-framed gRPC message in a file.
 */
import { execFile } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { grpcFrame } from "./raw-grpc.js";

/** How h2load drives one run. */
export interface LoadShape {
  /** h2load threads (-t). */
  threads: number;
  /** Connections (-c). */
  connections: number;
  /** Concurrent streams per connection (-m). */
  streams: number;
  /** Measured seconds (-D). */
  durationSec: number;
  /** Seconds of load before measuring starts (--warm-up-time). */
  warmUpSec: number;
  /** Open-loop pacing: requests per second per connection (--rps); unset = as fast as possible. */
  rpsPerConnection?: number;
}

/** What one h2load run measured. */
export interface LoadResult {
  /** Requests per second over the measured period, as h2load reports it. */
  rps: number;
  /** Calls answered with HTTP 200 in the measured period. */
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  /** Responses with an HTTP status other than 2xx (gRPC answers errors with 200 + grpc-status). */
  non2xx: number;
  /** Latency percentiles of the status-200 rows of the log file, in microseconds. */
  p50Us: number;
  p99Us: number;
  p999Us: number;
}

/** Writes a gRPC length-prefixed frame (uncompressed) of `message` to `path`. */
export async function writeGrpcBody<D extends DescMessage>(path: string, schema: D, message: MessageShape<D>): Promise<void> {
  await writeFile(path, grpcFrame(schema, message));
}

/** The p-th percentile (0–100) of sorted values, nearest-rank. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  // The small epsilon keeps float error (99.9 / 100 × 1000 = 999.0000000000001) from skipping a rank.
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p * sorted.length) / 100 - 1e-9) - 1));
  return sorted[rank]!;
}

function grab(text: string, pattern: RegExp): number {
  const m = pattern.exec(text);
  if (!m) throw new Error(`h2load output did not match ${pattern}:\n${text}`);
  return Number(m[1]);
}

/**
 * Reads the per-request log (start µs since epoch, HTTP status, elapsed µs) and returns the
 * latencies of the status-200 rows of the measured period, sorted. The log also holds the warm-up
 * calls, so rows that started more than `durationSec` before the last one are left out.
 */
export async function latencies(logPath: string, durationSec: number): Promise<number[]> {
  const rows = (await readFile(logPath, "utf8")).split("\n").map((line) => line.split("\t").map(Number)).filter((r) => r.length === 3);
  const lastStart = rows.reduce((max, r) => Math.max(max, r[0]!), 0);
  const from = lastStart - durationSec * 1e6;
  return rows.filter((r) => r[1] === 200 && r[0]! >= from).map((r) => r[2]!).sort((a, b) => a - b);
}

/** Runs h2load against `url` with the framed body in `bodyPath`; `onMeasuring` fires when warm-up ends. */
export async function runH2load(url: string, bodyPath: string, logPath: string, shape: LoadShape, onMeasuring?: () => void, headers: Record<string, string> = {}): Promise<LoadResult> {
  const args = [
    `-t${shape.threads}`, `-c${shape.connections}`, `-m${shape.streams}`,
    "-D", String(shape.durationSec), `--warm-up-time=${Math.round(shape.warmUpSec * 1000)}ms`,
    "-d", bodyPath, "-H", "content-type: application/grpc", "-H", "te: trailers",
    ...Object.entries(headers).flatMap(([name, value]) => ["-H", `${name}: ${value}`]),
    `--log-file=${logPath}`, url,
  ];
  if (shape.rpsPerConnection) args.unshift(`--rps=${shape.rpsPerConnection}`);
  await rm(logPath, { force: true });
  const timer = onMeasuring ? setTimeout(onMeasuring, shape.warmUpSec * 1000) : undefined;
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile("h2load", args, { maxBuffer: 16 * 1024 * 1024 }, (err, out, errOut) => (err ? reject(new Error(`h2load failed: ${err.message}\n${errOut}`)) : resolve(out)));
  }).finally(() => clearTimeout(timer));
  await writeFile(logPath.replace(/\.tsv$/, ".h2load.txt"), stdout);
  const sorted = await latencies(logPath, shape.durationSec);
  const done = grab(stdout, /requests: \d+ total, \d+ started, (\d+) done/);
  const status2xx = grab(stdout, /status codes: (\d+) 2xx/);
  // Calls still in flight when h2load stops count as done with no status; they are not errors.
  const statusOther = grab(stdout, /2xx, (\d+) 3xx/) + grab(stdout, /3xx, (\d+) 4xx/) + grab(stdout, /4xx, (\d+) 5xx/);
  return {
    rps: grab(stdout, /finished in [\d.]+\w*, ([\d.]+) req\/s/) * (done > 0 ? status2xx / done : 1),
    done: status2xx,
    succeeded: grab(stdout, /(\d+) succeeded/),
    failed: grab(stdout, /(\d+) failed/),
    errored: grab(stdout, /(\d+) errored/),
    non2xx: statusOther,
    p50Us: percentile(sorted, 50),
    p99Us: percentile(sorted, 99),
    p999Us: percentile(sorted, 99.9),
  };
}
