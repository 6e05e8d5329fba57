import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { notFound, permissionDenied, unauthenticated, Violations } from "../domain/errors.js";
import type { KeyRecord } from "../domain/key.js";
import { isKeyId, MAX_CREDENTIAL_LENGTH } from "../keys/format.js";
import { CROSS_TENANT_PERMISSION, ADMIN_PERMISSION } from "../keys/key-admin.js";
import { keyStatus } from "../keys/key-status.js";
import type { KeyVerifier, Verification } from "../keys/verifier.js";
import { checkQuotaRequest, QUOTA_MESSAGES, type QuotaDecision, type QuotaService } from "../quota/quota-service.js";
import type { ConsumeQuotaRequest, ConsumeQuotaResponse } from "../gen/tollgate/v1/quota_pb.js";
import { ConsumeQuotaResponseSchema, LimitStatusSchema } from "../gen/tollgate/v1/quota_pb.js";
import { AUTH_MESSAGES, clientResponseFor, codeOf, principalFromKey } from "./convert.js";
import type { Principal } from "../gen/tollgate/v1/common_pb.js";
import { checkClientIp, checkCredential, NAME_TOKEN_PATTERN } from "./validate.js";
import { acceptsEncoded } from "../transport/encode.js";
import { encodeAdmitted } from "./consume-quota-wire.js";
import { quotaSubjectOf } from "../quota/limits.js";
import { isPromise, type MaybePromise } from "../domain/maybe-promise.js";
import { requestHeaderValue } from "../transport/quick-headers.js";

/**
 * Permission that lets a service charge *other* keys' quotas by `key_id` (a gateway that has
 * already authenticated the end client). Admin keys (`tollgate:admin`) may too. Either way the
 * charged key must be in the caller's tenant unless the caller holds `tollgate:cross-tenant`.
 */
export const QUOTA_SERVICE_PERMISSION = "tollgate:quota";

export interface ConsumeQuotaDeps {
  verifier: KeyVerifier;
  /** Memoized principals (see createPrincipalCache); built per call when absent. */
  principals?: (key: KeyRecord, nowMs: number) => Principal;
  quota: QuotaService;
  now: () => number;
  onDecision?: (rpc: string, code: string) => void;
}

const MAX_SAFE_COST = BigInt(Number.MAX_SAFE_INTEGER);

/** Validates every field at once; returns the cost (unset = 1). An int64 outside the safe range is reported, never truncated. */
function validate(req: ConsumeQuotaRequest): number {
  const v = new Violations();
  const safe = req.cost === undefined || (req.cost >= 0n && req.cost <= MAX_SAFE_COST);
  const cost = req.cost === undefined ? 1 : safe ? Number(req.cost) : req.cost < 0n ? -1 : Number.MAX_SAFE_INTEGER;
  checkCredential(v, "credential", req.credential);
  if (req.credential !== "" && req.keyId !== "") v.add("key_id", "set either credential or key_id, not both");
  else if (req.keyId !== "" && !isKeyId(req.keyId)) v.add("key_id", "must be a 16-character key id");
  checkClientIp(v, "client_ip", req.clientIp);
  req.limits.forEach((name, i) => {
    if (!NAME_TOKEN_PATTERN.test(name)) v.add(`limits[${i}]`, "must be 1-64 letters, digits, '_', '.', ':' or '-'");
  });
  checkQuotaRequest(v, { limits: req.limits, cost, idempotencyKey: req.idempotencyKey });
  v.throwIfAny();
  return cost;
}

/**
 * The `key_id` form is for trusted callers only: `authorization: Bearer <key>` must prove a key
 * holding `tollgate:quota` or `tollgate:admin`, in the charged key's tenant (or cross-tenant).
 * Synchronous when both keys are warm.
 */
function keyById(deps: ConsumeQuotaDeps, ctx: HandlerContext, keyId: string): MaybePromise<KeyRecord> {
  const header = requestHeaderValue(ctx, "authorization") ?? "";
  if (header.trim() === "" || header.length > MAX_CREDENTIAL_LENGTH) throw unauthenticated("MISSING_CREDENTIAL", "charging by key_id needs `authorization: Bearer <service or admin key>`");
  const verifying = deps.verifier.verify(header, "");
  return isPromise(verifying) ? verifying.then((v) => callerThenKey(deps, v, keyId)) : callerThenKey(deps, verifying, keyId);
}

function callerThenKey(deps: ConsumeQuotaDeps, { code, key: caller }: Verification, keyId: string): MaybePromise<KeyRecord> {
  if (code !== "VALID" || !caller) throw unauthenticated("INVALID_API_KEY", "the caller's key is not valid");
  const p = caller.permissions;
  if (!p.includes(QUOTA_SERVICE_PERMISSION) && !p.includes(ADMIN_PERMISSION)) {
    throw permissionDenied("NOT_A_QUOTA_SERVICE_KEY", `charging by key_id needs the ${QUOTA_SERVICE_PERMISSION} or ${ADMIN_PERMISSION} permission`);
  }
  const found = deps.verifier.lookup(keyId);
  return isPromise(found) ? found.then((key) => visibleTo(caller, keyId, key)) : visibleTo(caller, keyId, found);
}

/** A key in another tenant is reported as absent to a caller that may not see it. */
function visibleTo(caller: KeyRecord, keyId: string, key: KeyRecord | undefined): KeyRecord {
  if (!key || (key.tenantId !== caller.tenantId && !caller.permissions.includes(CROSS_TENANT_PERMISSION))) throw notFound("key", keyId);
  return key;
}

/**
 * ConsumeQuota: authenticate (credential, or a trusted caller's key_id), then one quota decision.
 * A warm key whose tokens are held here is answered synchronously (no promise, as for Check); a
 * throw is the RPC's error either way.
 */
export function consumeQuota(deps: ConsumeQuotaDeps, req: ConsumeQuotaRequest, ctx: HandlerContext): MaybePromise<ConsumeQuotaResponse> {
  const cost = validate(req);
  // Each step runs at once when the one before answered synchronously; a closure only when it waits.
  if (req.keyId !== "") {
    const found = keyById(deps, ctx, req.keyId);
    return isPromise(found) ? found.then((key) => chargeById(deps, req, ctx, key, cost)) : chargeById(deps, req, ctx, found, cost);
  }
  const verifying = deps.verifier.verify(req.credential, req.clientIp);
  return isPromise(verifying) ? verifying.then((v) => chargeVerified(deps, req, ctx, v, cost)) : chargeVerified(deps, req, ctx, verifying, cost);
}

/** The `key_id` form: the key's own status (revoked, expired, IP) decides before the charge. */
function chargeById(deps: ConsumeQuotaDeps, req: ConsumeQuotaRequest, ctx: HandlerContext, key: KeyRecord, cost: number): MaybePromise<ConsumeQuotaResponse> {
  const status = keyStatus(key, deps.now(), req.clientIp);
  return status === "VALID" ? chargeKey(deps, req, ctx, key, cost) : refused(deps, status, key);
}

function chargeVerified(deps: ConsumeQuotaDeps, req: ConsumeQuotaRequest, ctx: HandlerContext, v: Verification, cost: number): MaybePromise<ConsumeQuotaResponse> {
  return v.code !== "VALID" || !v.key ? refused(deps, v.code, v.key) : chargeKey(deps, req, ctx, v.key, cost);
}

function chargeKey(deps: ConsumeQuotaDeps, req: ConsumeQuotaRequest, ctx: HandlerContext, key: KeyRecord, cost: number): MaybePromise<ConsumeQuotaResponse> {
  const deciding = deps.quota.consume(quotaSubjectOf(key), { limits: req.limits, cost, idempotencyKey: req.idempotencyKey, dryRun: req.dryRun });
  return isPromise(deciding) ? deciding.then((d) => answer(deps, ctx, key, d)) : answer(deps, ctx, key, deciding);
}

function answer(deps: ConsumeQuotaDeps, ctx: HandlerContext, key: KeyRecord, decision: QuotaDecision): ConsumeQuotaResponse {
  deps.onDecision?.("ConsumeQuota", decision.code);
  const principal = (deps.principals ?? principalFromKey)(key, deps.now());
  // On the grpc-js listener an admitted answer is written straight to wire bytes (see consume-quota-wire.ts).
  const encoded = acceptsEncoded(ctx) ? encodeAdmitted(decision, principal) : undefined;
  return encoded ? (encoded as unknown as ConsumeQuotaResponse) : toProto(decision, principal);
}

function refused(deps: ConsumeQuotaDeps, code: string, key: KeyRecord | undefined): ConsumeQuotaResponse {
  deps.onDecision?.("ConsumeQuota", code);
  return create(ConsumeQuotaResponseSchema, {
    allowed: false, code: codeOf(code as Parameters<typeof codeOf>[0]),
    principal: key ? principalFromKey(key, deps.now()) : undefined,
    clientResponse: clientResponseFor(code, AUTH_MESSAGES[code] ?? ""),
  });
}

// Window lengths and reset instants repeat across calls: share their (immutable) messages.
const windows = new Map<number, Duration>();
let lastReset: { ms: number; ts: Timestamp } | undefined;

function windowOf(seconds: number): Duration {
  let d = windows.get(seconds);
  if (!d) windows.set(seconds, (d = durationFromMs(seconds * 1000)));
  return d;
}

function resetOf(ms: number): Timestamp {
  if (lastReset?.ms !== ms) lastReset = { ms, ts: timestampFromMs(ms) };
  return lastReset.ts;
}

export function toProto(d: QuotaDecision, principal: Principal): ConsumeQuotaResponse {
  return create(ConsumeQuotaResponseSchema, {
    allowed: d.allowed,
    code: codeOf(d.code),
    limits: d.limits.map((l) => create(LimitStatusSchema, {
      name: l.name, limit: BigInt(l.limit), remaining: BigInt(l.remaining),
      resetAt: l.resetAtMs === null ? undefined : resetOf(l.resetAtMs),
      window: windowOf(l.windowSeconds),
      retryAfter: l.exceeded && l.retryAfterMs !== null ? durationFromMs(l.retryAfterMs) : undefined,
      exceeded: l.exceeded, shadow: l.shadow,
    })),
    headers: d.headers,
    clientResponse: d.allowed ? undefined : clientResponseFor(d.code, QUOTA_MESSAGES[d.code], d.headers),
    principal,
    replayed: d.replayed,
  });
}
