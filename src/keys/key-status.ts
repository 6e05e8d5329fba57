import type { KeyRecord } from "../domain/key.js";
import { ipAllowed, parseCidr, parseIp, type Cidr } from "./ip.js";

/** Outcomes of checking a proven key's status, in the order they are checked. */
export type KeyStatusCode = "VALID" | "REVOKED_API_KEY" | "EXPIRED_API_KEY" | "IP_NOT_ALLOWED";

const cidrCache = new WeakMap<readonly string[], Cidr[]>();

function blocksOf(allowlist: readonly string[]): Cidr[] {
  let blocks = cidrCache.get(allowlist);
  if (!blocks) {
    blocks = allowlist.map(parseCidr).filter((b): b is Cidr => b !== undefined);
    cidrCache.set(allowlist, blocks);
  }
  return blocks;
}

/**
 * Decides whether a key whose secret was proven may be used now, from this address.
 * Order: revoked, expired (own expiry, then the end of a rotation grace period), IP allowlist.
 * An empty allowlist admits every address; a non-empty one refuses a call with no address.
 */
export function keyStatus(key: KeyRecord, nowMs: number, clientIp: string): KeyStatusCode {
  if (key.revokedAt && key.revokedAt.getTime() <= nowMs) return "REVOKED_API_KEY";
  if (key.expiresAt && key.expiresAt.getTime() <= nowMs) return "EXPIRED_API_KEY";
  if (key.graceExpiresAt && key.graceExpiresAt.getTime() <= nowMs) return "EXPIRED_API_KEY";
  if (key.ipAllowlist.length > 0) {
    const ip = clientIp ? parseIp(clientIp) : undefined;
    if (!ip || !ipAllowed(ip, blocksOf(key.ipAllowlist))) return "IP_NOT_ALLOWED";
  }
  return "VALID";
}
