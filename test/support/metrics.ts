/** Reads the Prometheus text exposition from a server's `/metrics` route. */
export async function scrape(httpPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

/** Sums every sample of `name` (all label sets) whose labels contain each of `labels`. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labelText = m[2] ?? "";
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) total += Number(m[3]);
  }
  return total;
}

/** How many argon2 verifications the server behind `httpPort` has run so far. */
export async function argon2Verifications(httpPort: number): Promise<number> {
  return sample(await scrape(httpPort), "tollgate_argon2_verify_seconds_count");
}
