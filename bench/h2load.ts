/**
 * Driving load with h2load (nghttp2-client): one thread sends ~10k gRPC calls/s here, so the
 * load generator is not the bottleneck. The request is a pre-framed gRPC message in a file.
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

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
}

/** What one h2load run measured. */
export interface LoadResult {
  /** Requests per second over the measured period, as h2load reports it. */
  rps: number;
  /** Requests completed in the measured period. */
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  /** Responses with an HTTP status other than 200 (gRPC answers errors with 200 + grpc-status). */
  non2xx: number;
  /** Latency percentiles of the status-200 rows of the log file, in microseconds. */
  p50Us: number;
  p99Us: number;
  p999Us: number;
}

/** Writes a gRPC length-prefixed frame (uncompressed) of `message` to `path`. */
export async function writeGrpcBody<D extends DescMessage>(path: string, schema: D, message: MessageShape<D>): Promise<void> {
  const bytes = toBinary(schema, message);
  const frame = Buffer.alloc(5 + bytes.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(bytes.length, 1);
  frame.set(bytes, 5);
  await writeFile(path, frame);
}

/** The p-th percentile (0–100) of sorted values, nearest-rank. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

function grab(text: string, pattern: RegExp): number {
  const m = pattern.exec(text);
  if (!m) throw new Error(`h2load output did not match ${pattern}:\n${text}`);
  return Number(m[1]);
}

/** Reads the per-request log (start µs, HTTP status, elapsed µs) and returns status-200 latencies, sorted. */
async function latencies(logPath: string): Promise<number[]> {
  const out: number[] = [];
  for (const line of (await readFile(logPath, "utf8")).split("\n")) {
    const [, status, elapsed] = line.split("\t");
    if (status === "200" && elapsed !== undefined) out.push(Number(elapsed));
  }
  return out.sort((a, b) => a - b);
}

/** Runs h2load against `url` with the framed body in `bodyPath`; `onMeasuring` fires when warm-up ends. */
export async function runH2load(url: string, bodyPath: string, logPath: string, shape: LoadShape, onMeasuring?: () => void): Promise<LoadResult> {
  const args = [
    `-t${shape.threads}`, `-c${shape.connections}`, `-m${shape.streams}`,
    "-D", String(shape.durationSec), `--warm-up-time=${shape.warmUpSec}`,
    "-d", bodyPath, "-H", "content-type: application/grpc", "-H", "te: trailers",
    `--log-file=${logPath}`, url,
  ];
  const timer = onMeasuring ? setTimeout(onMeasuring, shape.warmUpSec * 1000) : undefined;
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile("h2load", args, { maxBuffer: 16 * 1024 * 1024 }, (err, out, errOut) => (err ? reject(new Error(`h2load failed: ${err.message}\n${errOut}`)) : resolve(out)));
  }).finally(() => clearTimeout(timer));
  const sorted = await latencies(logPath);
  const status2xx = grab(stdout, /status codes: (\d+) 2xx/);
  return {
    rps: grab(stdout, /finished in [\d.]+\w*, ([\d.]+) req\/s/),
    done: grab(stdout, /requests: \d+ total, \d+ started, (\d+) done/),
    succeeded: grab(stdout, /(\d+) succeeded/),
    failed: grab(stdout, /(\d+) failed/),
    errored: grab(stdout, /(\d+) errored/),
    non2xx: grab(stdout, /requests: \d+ total, \d+ started, (\d+) done/) - status2xx,
    p50Us: percentile(sorted, 50),
    p99Us: percentile(sorted, 99),
    p999Us: percentile(sorted, 99.9),
  };
}
