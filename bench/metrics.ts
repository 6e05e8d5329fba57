/**
 * A tiny Prometheus text-format reader for the server's `/metrics`: enough to take deltas of
 * counters around a run and to read the event-loop delay gauge (which the server resets on scrape).
 */

/** One sample: metric name, its labels, and its value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus exposition text (no escapes inside label values are expected from us). */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** Fetches and parses the server's metrics. Scraping also resets the event-loop delay window. */
export async function scrape(httpPort: number): Promise<Sample[]> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}

/** Sum of every sample of `name` whose labels include all of `labels`. */
export function total(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

/** Counter increase between two scrapes, for the samples matching `labels`. */
export function delta(before: Sample[], after: Sample[], name: string, labels: Record<string, string> = {}): number {
  return total(after, name, labels) - total(before, name, labels);
}

/** Per-code increase of `tollgate_rpc_total` for one method, e.g. `{ OK: 51234 }`. */
export function rpcCodes(before: Sample[], after: Sample[], service: string, method: string): Record<string, number> {
  const codes = new Set(after.filter((s) => s.name === "tollgate_rpc_total" && s.labels.service === service && s.labels.method === method).map((s) => s.labels.code!));
  const out: Record<string, number> = {};
  for (const code of codes) {
    const d = delta(before, after, "tollgate_rpc_total", { service, method, code });
    if (d > 0) out[code] = d;
  }
  return out;
}

/** Per-code increase of `tollgate_decisions_total` for one RPC, e.g. `{ VALID: 51234 }`. */
export function decisionCodes(before: Sample[], after: Sample[], rpc: string): Record<string, number> {
  const codes = new Set(after.filter((s) => s.name === "tollgate_decisions_total" && s.labels.rpc === rpc).map((s) => s.labels.code!));
  const out: Record<string, number> = {};
  for (const code of codes) {
    const d = delta(before, after, "tollgate_decisions_total", { rpc, code });
    if (d > 0) out[code] = d;
  }
  return out;
}

/** argon2 verifications the server ran between two scrapes and their mean duration; empty when none. */
export function argon2Figures(before: Sample[], after: Sample[]): Record<string, number> {
  const count = delta(before, after, "tollgate_argon2_verify_seconds_count");
  if (count === 0) return {};
  return { argon2Verifies: count, argon2MeanMs: (delta(before, after, "tollgate_argon2_verify_seconds_sum") / count) * 1000 };
}
