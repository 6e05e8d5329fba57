import type { KeyRecord } from "../domain/key.js";

/** Parses durations such as `90s`, `15m`, `24h`, `30d`, `2w` into milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)(ms|s|m|h|d|w)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[m[2] as "ms"];
  return Number(m[1]) * unit;
}

/** A key as the CLI prints it in JSON: stable field names, ISO times, never the hash. */
export function keyJson(key: KeyRecord): Record<string, unknown> {
  const { secretHash: _hash, ...rest } = key;
  return rest;
}

/** One line per key for humans. */
export function keyLine(key: KeyRecord): string {
  const now = Date.now();
  const ended = (d: Date | null) => d !== null && d.getTime() <= now;
  const state = key.revokedAt ? "revoked" : ended(key.expiresAt) || ended(key.graceExpiresAt) ? "expired" : key.successorKeyId ? "rotating" : "active";
  return [key.keyId, key.tenantId, key.environment, `${key.prefix}_…${key.hint}`, key.plan, state, key.name].join("\t");
}
