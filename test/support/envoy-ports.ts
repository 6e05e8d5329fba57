/**
 * Small stand-ins for the Authorize and ConsumeQuota domain calls, used ONLY to test the Envoy
 * adapters' permission and 429 paths while the real implementations are built elsewhere. They
 * implement the ports in src/envoy/ports.ts honestly (a real fixed-window counter, a real
 * all-of permission check) so the adapters are exercised against meaningful answers; they are not
 * the product's policy or quota logic.
 */
import { unavailable } from "../../src/domain/errors.js";
import type { Authorize, AuthorizeInput, Consume, ConsumeInput, ConsumeOutcome, LimitState } from "../../src/envoy/ports.js";

/** Permission queries of the form `a AND b AND c`; a key needs every one. Tenants must match. */
export function fixedPolicy(): Authorize & { calls: AuthorizeInput[] } {
  const calls: AuthorizeInput[] = [];
  const authorize = async (input: AuthorizeInput) => {
    calls.push(input);
    if (input.tenantId !== input.key.tenantId && !input.key.permissions.includes("tollgate:cross-tenant")) {
      return { allowed: false, code: "TENANT_FORBIDDEN" as const, missingPermissions: [], message: "the key may not act in that tenant" };
    }
    const required = input.permissionQuery.split(/\s+AND\s+/).map((p) => p.trim()).filter(Boolean);
    const missing = required.filter((p) => !input.key.permissions.includes(p));
    return missing.length === 0
      ? { allowed: true, code: "ALLOWED" as const, missingPermissions: [], message: "" }
      : { allowed: false, code: "INSUFFICIENT_PERMISSIONS" as const, missingPermissions: missing, message: `missing ${missing.join(", ")}` };
  };
  return Object.assign(authorize, { calls });
}

/** A named fixed-window limit. */
export interface FixedLimit {
  limit: number;
  windowMs: number;
}

/**
 * Fixed-window counters per key and limit, charged all-or-nothing, on an injected clock. Unnamed
 * charges use `autoApplied`. Unknown limit names match nothing. `fail` makes every call throw
 * UNAVAILABLE; `hang` makes every call never answer (a dependency that stopped responding).
 */
export function fixedWindowQuota(limits: Record<string, FixedLimit>, now: () => number, autoApplied: string[] = Object.keys(limits)) {
  const used = new Map<string, number>();
  const calls: ConsumeInput[] = [];
  const state = { fail: false, hang: false };
  const consume: Consume = async (input) => {
    calls.push(input);
    if (state.fail) throw unavailable("QUOTA_STORE_UNAVAILABLE", "the quota store is unavailable");
    if (state.hang) return new Promise<never>(() => undefined);
    const t = now();
    const matched = (input.limits.length > 0 ? input.limits : autoApplied).filter((name) => limits[name]);
    const rows = matched.map((name) => {
      const { limit, windowMs } = limits[name]!;
      const windowStart = Math.floor(t / windowMs) * windowMs;
      const slot = `${input.keyId}/${name}/${windowStart}`;
      return { name, limit, windowMs, slot, count: used.get(slot) ?? 0, resetAtMs: windowStart + windowMs };
    });
    const allowed = rows.every((r) => r.count + input.cost <= r.limit);
    if (allowed) for (const r of rows) used.set(r.slot, r.count + input.cost);
    const states: LimitState[] = rows.map((r) => {
      const exceeded = r.count + input.cost > r.limit;
      const count = allowed ? r.count + input.cost : r.count;
      return { name: r.name, limit: r.limit, remaining: Math.max(0, r.limit - count), resetAtMs: r.resetAtMs, windowMs: r.windowMs, retryAfterMs: exceeded ? r.resetAtMs - t : 0, exceeded };
    });
    return outcome(allowed, states, t);
  };
  return Object.assign(consume, { calls, state });
}

function outcome(allowed: boolean, limits: LimitState[], nowMs: number): ConsumeOutcome {
  const tightest = limits.reduce<LimitState | undefined>((min, l) => (min === undefined || l.remaining < min.remaining ? l : min), undefined);
  const headers: Record<string, string> = {};
  if (tightest) {
    const resetSeconds = Math.ceil((tightest.resetAtMs - nowMs) / 1000);
    headers["RateLimit-Policy"] = `"${tightest.name}";q=${tightest.limit};w=${tightest.windowMs / 1000}`;
    headers["RateLimit"] = `"${tightest.name}";r=${tightest.remaining};t=${resetSeconds}`;
    headers["X-RateLimit-Limit"] = String(tightest.limit);
    headers["X-RateLimit-Remaining"] = String(tightest.remaining);
    headers["X-RateLimit-Reset"] = String(resetSeconds);
  }
  return { allowed, code: allowed ? "OK" : "QUOTA_EXCEEDED", limits, headers, message: allowed ? "" : "the quota is exhausted" };
}
