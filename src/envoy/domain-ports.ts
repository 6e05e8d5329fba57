import type { KeyVerifier } from "../keys/verifier.js";
import { decide } from "../policy/decide.js";
import type { PolicyCache } from "../policy/policy-cache.js";
import { isQueryError, parseQuery, queryError, type QueryNode } from "../policy/query.js";
import { quotaSubjectOf } from "../quota/limits.js";
import { QUOTA_MESSAGES, type QuotaDecision, type QuotaRequest, type QuotaService } from "../quota/quota-service.js";
import type { KeyRecord } from "../domain/key.js";
import type { RateLimitHeaderParts } from "../quota/headers.js";
import { isPromise, type MaybePromise } from "../domain/maybe-promise.js";
import { narrowToScopes, type EffectivePolicy } from "../policy/effective.js";
import type { Authorize, AuthorizeOutcome, Consume, ConsumeOutcome, LimitState } from "./ports.js";

export interface EnvoyPortDeps {
  verifier: KeyVerifier;
  policies: PolicyCache;
  quota: QuotaService;
}

/**
 * A quota decision in the Envoy adapters' terms. The per-limit states and the headers are built only when read
 * (a denial's `retry-after`, the rate-limit service's statuses): an allowed Check never needs them.
 */
class QuotaOutcome implements ConsumeOutcome {
  readonly allowed: boolean;
  readonly code: QuotaDecision["code"];
  readonly headerParts: RateLimitHeaderParts | undefined;
  /** quota/headers.ts writes lower-case names only. */
  readonly lowerCaseNames = true;
  readonly message: string;
  #limits: LimitState[] | undefined;

  constructor(private readonly decision: QuotaDecision) {
    this.allowed = decision.allowed;
    this.code = decision.code;
    this.headerParts = decision.headerParts;
    this.message = QUOTA_MESSAGES[decision.code];
  }

  /** Built when first read (an admitted Check writes `headerParts` instead). */
  get headers(): Record<string, string> {
    return this.decision.headers;
  }

  get limits(): LimitState[] {
    return (this.#limits ??= this.decision.limits.map((l) => ({
      name: l.name,
      limit: l.limit,
      remaining: l.remaining,
      resetAtMs: l.resetAtMs ?? Number.POSITIVE_INFINITY,
      windowMs: l.windowSeconds * 1000,
      retryAfterMs: l.exceeded ? (l.retryAfterMs ?? Number.POSITIVE_INFINITY) : 0,
      exceeded: l.exceeded,
      shadow: l.shadow,
    })));
  }
}

const outcomeOf = (d: QuotaDecision): ConsumeOutcome => new QuotaOutcome(d);

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

  const authorize: Authorize = ({ key, permissionQuery, resource, tenantId, clientIp, scopes }) => {
    const query = parsed(permissionQuery);
    const decideWith = (keyPolicy: EffectivePolicy): AuthorizeOutcome => {
      const policy = scopes ? narrowToScopes(keyPolicy, scopes) : keyPolicy;
      const d = decide(policy, { keyTenantId: key.tenantId, targetTenantId: tenantId, query, resource, cost: 0, clientIp });
      return { allowed: d.code === "ALLOWED", code: d.code, missingPermissions: d.missing, message: d.message };
    };
    const policy = deps.policies.policyFor(key);
    return isPromise(policy) ? policy.then(decideWith) : decideWith(policy);
  };

  // A route's limit list is one array for as long as its settings are cached: its quota request
  // (per cost) is built once too.
  const requests = new WeakMap<readonly string[], Map<number, QuotaRequest>>();
  const requestFor = (limits: readonly string[], cost: number): QuotaRequest => {
    let byCost = requests.get(limits);
    if (!byCost) requests.set(limits, (byCost = new Map()));
    let req = byCost.get(cost);
    if (!req) {
      if (byCost.size >= MAX_CACHED_QUERIES) byCost.clear();
      byCost.set(cost, (req = Object.freeze({ limits, cost, idempotencyKey: "", dryRun: false })));
    }
    return req;
  };

  const charge = (record: KeyRecord, limits: string[], cost: number): MaybePromise<ConsumeOutcome> => {
    const decision = deps.quota.consume(quotaSubjectOf(record), requestFor(limits, cost));
    return isPromise(decision) ? decision.then(outcomeOf) : outcomeOf(decision);
  };

  const consume: Consume = ({ keyId, key, limits, cost }) => {
    if (key) return charge(key, limits, cost);
    // An unknown key id (e.g. a forged descriptor) has no limits of ours: answer OK without one.
    const chargeFound = (record: KeyRecord | undefined): MaybePromise<ConsumeOutcome> =>
      record ? charge(record, limits, cost) : { allowed: true, code: "OK", limits: [], headers: {}, message: QUOTA_MESSAGES.OK };
    const record = deps.verifier.lookup(keyId);
    return isPromise(record) ? record.then(chargeFound) : chargeFound(record);
  };

  return { authorize, consume };
}
