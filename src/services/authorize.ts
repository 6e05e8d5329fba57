import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { Violations } from "../domain/errors.js";
import type { KeyRecord } from "../domain/key.js";
import { isPromise, type MaybePromise } from "../domain/maybe-promise.js";
import { isKeyId } from "../keys/format.js";
import { keyStatus } from "../keys/key-status.js";
import type { AuthCode, KeyVerifier } from "../keys/verifier.js";
import { decide, type PolicyDecision } from "../policy/decide.js";
import type { EffectivePolicy } from "../policy/effective.js";
import { isConcretePermission } from "../policy/permissions.js";
import type { PolicyCache } from "../policy/policy-cache.js";
import { isQueryError, parseQuery, type QueryNode } from "../policy/query.js";
import { AuthorizeResponseSchema, CallLimitsSchema, type CallLimits, type AuthorizeRequest } from "../gen/tollgate/v1/authorize_pb.js";
import type { Principal } from "../gen/tollgate/v1/common_pb.js";
import { AUTH_MESSAGES, clientResponseFor, codeOf, createPrincipalCache } from "./convert.js";
import { authenticateTrustedCaller } from "./trusted-caller.js";
import { LIMITS, checkClientIp, checkCredential, checkTenantId } from "./validate.js";

export interface AuthorizeDeps {
  verifier: KeyVerifier;
  policies: PolicyCache;
  now: () => number;
  onDecision?: (rpc: string, code: string) => void;
  /** The shared per-key-record principals (see createPrincipalCache); a cache of its own when absent. */
  principals?: (key: KeyRecord, nowMs: number) => Principal;
}

type Response = MessageInitShape<typeof AuthorizeResponseSchema>;

/** Parsed queries by text. Gateways ask the same few questions, so parsing is paid once each. */
const QUERY_CACHE_MAX = 4096;
/** Costs are charged as JS numbers downstream, so they must stay exact. */
const MAX_COST = BigInt(Number.MAX_SAFE_INTEGER);

interface Question {
  query: QueryNode | undefined;
}

/** Validates every field at once; a query parse error names its position. */
function validate(req: AuthorizeRequest, queries: Map<string, QueryNode>): Question {
  const v = new Violations();
  checkCredential(v, "credential", req.credential);
  if (req.credential !== "" && req.keyId !== "") v.add("key_id", "set either credential or key_id, not both");
  else if (req.keyId !== "" && !isKeyId(req.keyId)) v.add("key_id", "must be a 16-character key id");
  if (req.resource !== "" && (req.resource.length > LIMITS.permissionLength || !isConcretePermission(req.resource))) {
    v.add("resource", "must be a concrete permission such as tool:Bash (no wildcards)");
  }
  checkTenantId(v, "tenant_id", req.tenantId, false);
  checkClientIp(v, "client_ip", req.clientIp);
  if (req.cost < 0n || req.cost > MAX_COST) v.add("cost", `must be between 0 and ${Number.MAX_SAFE_INTEGER}`);
  let query = queries.get(req.permissionQuery);
  if (!query && req.permissionQuery === "") {
    if (req.resource === "") v.add("permission_query", "is required unless resource is set");
  } else if (!query) {
    const parsed = parseQuery(req.permissionQuery);
    if (isQueryError(parsed)) v.add("permission_query", `${parsed.message} at position ${parsed.position}`);
    else {
      if (queries.size >= QUERY_CACHE_MAX) queries.clear();
      queries.set(req.permissionQuery, (query = parsed));
    }
  }
  v.throwIfAny();
  return { query };
}

/** Resolves the key behind the request: by credential (proof of possession) or by trusted key id. */
function resolveKey(deps: AuthorizeDeps, req: AuthorizeRequest, ctx: HandlerContext): MaybePromise<{ code: AuthCode; key?: KeyRecord | undefined }> {
  // A warm key is answered without a promise (see KeyVerifier.verify).
  if (req.keyId === "") return deps.verifier.verify(req.credential, req.clientIp);
  return resolveById(deps, req, ctx);
}

async function resolveById(deps: AuthorizeDeps, req: AuthorizeRequest, ctx: HandlerContext): Promise<{ code: AuthCode; key?: KeyRecord }> {
  const caller = await authenticateTrustedCaller(deps.verifier, ctx);
  const key = await deps.verifier.lookup(req.keyId);
  // A key outside the caller's tenant is reported exactly like an unknown one.
  if (!key || (!caller.crossTenant && key.tenantId !== caller.tenantId)) return { code: "INVALID_API_KEY" };
  return { code: keyStatus(key, deps.now(), req.clientIp), key };
}

/** Call limits per compiled policy: built once, shared by every answer (responses are never mutated). */
const limitsCache = new WeakMap<EffectivePolicy, CallLimits>();
function limitsOf(policy: EffectivePolicy): CallLimits {
  let limits = limitsCache.get(policy);
  if (!limits) {
    const { maxCostPerCall, timeoutMs } = policy.settings;
    // Frozen: shared by every answer, and the encoder then writes its cached bytes (see encode.ts).
    limits = Object.freeze(create(CallLimitsSchema, {
      ...(maxCostPerCall !== null ? { maxCostPerCall: BigInt(maxCostPerCall) } : {}),
      ...(timeoutMs !== null ? { timeoutMs } : {}),
    }));
    limitsCache.set(policy, limits);
  }
  return limits;
}

/** RFC 6750 §3: a 403 for missing permissions names the scope that would have sufficed. */
function insufficientScopeHeaders(decision: PolicyDecision): Record<string, string> {
  if (decision.code !== "INSUFFICIENT_PERMISSIONS") return {};
  return { "www-authenticate": `Bearer realm="tollgate", error="insufficient_scope", scope="${decision.missing.join(" ")}"` };
}

/**
 * The Authorize handler: validate, resolve the key (cached), compile or fetch its effective
 * policy (cached; no I/O on a warm cache), decide (pure), encode. Every "no" is a value with the
 * code, the missing or blocked permissions, the principal when the credential was proven, and
 * the 401/403 response a gateway should send.
 */
export function createAuthorize(deps: AuthorizeDeps) {
  const queries = new Map<string, QueryNode>();
  // Principals are frozen and shared per key record (Authenticate's), so their bytes are encoded once.
  const principals = deps.principals ?? createPrincipalCache();
  // An allowed answer depends only on the principal, the policy (its call limits) and the target
  // tenant: it is built once per combination and frozen, so a warm Authorize allocates no answer
  // and the grpc-js adapter reuses its encoded bytes. A changed key or policy is a new object.
  const allowedAnswers = new WeakMap<Principal, WeakMap<EffectivePolicy, Map<string, Response>>>();
  const MAX_TENANTS_PER_PRINCIPAL = 64;

  function allowedAnswer(principal: Principal, policy: EffectivePolicy, tenantId: string, decision: PolicyDecision): Response {
    let byPolicy = allowedAnswers.get(principal);
    if (!byPolicy) allowedAnswers.set(principal, (byPolicy = new WeakMap()));
    let byTenant = byPolicy.get(policy);
    if (!byTenant) byPolicy.set(policy, (byTenant = new Map()));
    let answer = byTenant.get(tenantId);
    if (!answer) {
      answer = Object.freeze(create(AuthorizeResponseSchema, {
        allowed: true, code: codeOf(decision.code), principal, message: decision.message, tenantId, limits: limitsOf(policy),
      }));
      if (byTenant.size >= MAX_TENANTS_PER_PRINCIPAL) byTenant.clear();
      byTenant.set(tenantId, answer);
    }
    return answer;
  }

  function decideFor(req: AuthorizeRequest, query: QueryNode | undefined, key: KeyRecord, principal: Principal, policy: EffectivePolicy): Response {
    const targetTenantId = req.tenantId || key.tenantId;
    const decision = decide(policy, {
      keyTenantId: key.tenantId, targetTenantId, query, resource: req.resource, cost: Number(req.cost), clientIp: req.clientIp,
    });
    deps.onDecision?.("Authorize", decision.code);
    const allowed = decision.code === "ALLOWED";
    if (allowed && decision.missing.length === 0 && decision.blocked.length === 0) return allowedAnswer(principal, policy, targetTenantId, decision);
    return {
      allowed,
      code: codeOf(decision.code),
      missingPermissions: decision.missing,
      blockedPermissions: decision.blocked,
      principal,
      message: decision.message,
      tenantId: targetTenantId,
      limits: allowed ? limitsOf(policy) : undefined,
      clientResponse: allowed ? undefined : clientResponseFor(decision.code, decision.message, insufficientScopeHeaders(decision)),
    };
  }

  function resolved(req: AuthorizeRequest, query: QueryNode | undefined, { code, key }: { code: AuthCode; key?: KeyRecord | undefined }): MaybePromise<Response> {
    if (code !== "VALID" || !key) {
      deps.onDecision?.("Authorize", code);
      const message = AUTH_MESSAGES[code] ?? "";
      // The principal is returned whenever the secret was proven (an expired or revoked key, say).
      return { allowed: false, code: codeOf(code), principal: key ? principals(key, deps.now()) : undefined, message, clientResponse: clientResponseFor(code, message) };
    }
    const principal = principals(key, deps.now());
    const policy = deps.policies.policyFor(key);
    return isPromise(policy) ? policy.then((p) => decideFor(req, query, key, principal, p)) : decideFor(req, query, key, principal, policy);
  }

  // A warm key and policy are answered without a promise: no microtask hop per step.
  return function authorize(req: AuthorizeRequest, ctx: HandlerContext): MaybePromise<Response> {
    const { query } = validate(req, queries);
    const key = resolveKey(deps, req, ctx);
    return isPromise(key) ? key.then((k) => resolved(req, query, k)) : resolved(req, query, key);
  };
}
