import type { KeyVerifier } from "../keys/verifier.js";
import { decide } from "../policy/decide.js";
import type { PolicyCache } from "../policy/policy-cache.js";
import { isQueryError, parseQuery, queryError, type QueryNode } from "../policy/query.js";
import { quotaSubjectOf } from "../quota/limits.js";
import { QUOTA_MESSAGES, type QuotaService } from "../quota/quota-service.js";
import type { Authorize, Consume, LimitState } from "./ports.js";

export interface EnvoyPortDeps {
  verifier: KeyVerifier;
  policies: PolicyCache;
  quota: QuotaService;
}

/** Most distinct route permission queries kept parsed; routes are few, so this is never reached in practice. */
const MAX_CACHED_QUERIES = 1_000;

/**
 * Connects the Envoy adapters to the same domain code Authorize and ConsumeQuota use: the cached
 * effective policy and the pure decision function, and the leasing quota service. A route's
 * permission query is parsed once and remembered; a malformed one is the route's error
 * (INVALID_ARGUMENT naming `context_extensions.permission`), never a silent allow.
 */
export function createEnvoyPorts(deps: EnvoyPortDeps): { authorize: Authorize; consume: Consume } {
  const queries = new Map<string, QueryNode>();
  const parsed = (text: string): QueryNode | undefined => {
    if (text === "") return undefined;
    const cached = queries.get(text);
    if (cached) return cached;
    const result = parseQuery(text);
    if (isQueryError(result)) throw queryError("context_extensions.permission", result);
    if (queries.size >= MAX_CACHED_QUERIES) queries.clear();
    queries.set(text, result);
    return result;
  };

  const authorize: Authorize = async ({ key, permissionQuery, resource, tenantId, clientIp }) => {
    const query = parsed(permissionQuery);
    const pending = deps.policies.policyFor(key);
    const policy = pending instanceof Promise ? await pending : pending;
    const d = decide(policy, { keyTenantId: key.tenantId, targetTenantId: tenantId, query, resource, cost: 0, clientIp });
    return { allowed: d.code === "ALLOWED", code: d.code, missingPermissions: d.missing, message: d.message };
  };

  const consume: Consume = async ({ keyId, key, limits, cost }) => {
    const record = key ?? (await deps.verifier.lookup(keyId));
    // An unknown key id (e.g. a forged descriptor) has no limits of ours: answer OK without one.
    if (!record) return { allowed: true, code: "OK", limits: [], headers: {}, message: QUOTA_MESSAGES.OK };
    const d = await deps.quota.consume(quotaSubjectOf(record), { limits, cost, idempotencyKey: "", dryRun: false });
    const states: LimitState[] = d.limits.map((l) => ({
      name: l.name,
      limit: l.limit,
      remaining: l.remaining,
      resetAtMs: l.resetAtMs ?? Number.POSITIVE_INFINITY,
      windowMs: l.windowSeconds * 1000,
      retryAfterMs: l.exceeded ? (l.retryAfterMs ?? Number.POSITIVE_INFINITY) : 0,
      exceeded: l.exceeded,
      shadow: l.shadow,
    }));
    return { allowed: d.allowed, code: d.code, limits: states, headers: d.headers, message: QUOTA_MESSAGES[d.code] };
  };

  return { authorize, consume };
}
