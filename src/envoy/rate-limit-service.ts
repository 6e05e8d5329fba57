import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { TollgateError, Violations } from "../domain/errors.js";
import type { RateLimitDescriptor } from "../gen/envoy/extensions/common/ratelimit/v3/ratelimit_pb.js";
import {
  RateLimitResponse_Code as RlsCode,
  RateLimitResponse_RateLimit_Unit as Unit,
  RateLimitResponseSchema,
  type RateLimitResponse_DescriptorStatusSchema,
  type RateLimitService,
} from "../gen/envoy/service/ratelimit/v3/rls_pb.js";
import { clientResponseFor } from "../services/convert.js";
import { NAME_TOKEN_PATTERN } from "../services/validate.js";
import type { Consume, ConsumeOutcome, LimitState } from "./ports.js";
import { quotaHeaders } from "./quota-headers.js";

/**
 * Descriptor entries the rate-limit service understands. A descriptor maps to Tollgate limits
 * only when its entries are exactly `key_id` (required) and `limit` (optional), in any order:
 *
 *   [{key_id: <id>}]                 → the key's auto-applied limits
 *   [{key_id: <id>}, {limit: "rpm"}] → the key's limit named `rpm`
 *   [{key_id: <id>}, {limit: "a,b"}] → limits `a` and `b`, charged together or not at all
 *
 * `key_id` normally comes from ext_authz dynamic metadata (`envoy.filters.http.ext_authz`, path
 * `key_id`), so only authenticated requests are counted. Any other descriptor — another entry
 * key, a duplicate, no `key_id` — is not Tollgate's: it answers OK without a limit. The request
 * `domain` is required but not interpreted. A descriptor's `limit` override is ignored: limits are
 * configured in Tollgate.
 */
export const DESCRIPTOR_KEYS = { keyId: "key_id", limit: "limit" } as const;

/** The most descriptors one request may carry. */
export const MAX_DESCRIPTORS = 64;

const UINT32_MAX = 0xffff_ffff;

/** What the rate-limit service needs: the quota port and a clock for `duration_until_reset`. */
export interface RateLimitServiceDeps {
  /** ConsumeQuota; optional only until it is wired (then a known descriptor is FAILED_PRECONDITION). */
  consume?: Consume | undefined;
  now(): number;
  onDecision?(rpc: string, code: string): void;
}

type StatusInit = MessageInitShape<typeof RateLimitResponse_DescriptorStatusSchema>;

/**
 * `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` for Envoy's ratelimit filter.
 * `hits_addend` is the cost (0 means 1). Each descriptor is charged on its own, as in
 * envoyproxy/ratelimit, so one over-limit descriptor does not undo the others' charges; name
 * several limits in one descriptor to charge them all-or-nothing. The answer always sets
 * `overall_code` and carries one status per descriptor, in order.
 */
export function createRateLimitService(deps: RateLimitServiceDeps): ServiceImpl<typeof RateLimitService> {
  return {
    async shouldRateLimit(req) {
      const v = new Violations();
      if (req.domain === "") v.add("domain", "is required");
      if (req.descriptors.length === 0) v.add("descriptors", "must hold at least one descriptor");
      if (req.descriptors.length > MAX_DESCRIPTORS) v.add("descriptors", `at most ${MAX_DESCRIPTORS} descriptors`);
      v.throwIfAny();
      const cost = req.hitsAddend === 0 ? 1 : req.hitsAddend;
      const outcomes = await Promise.all(req.descriptors.map((d) => charge(d, cost, deps.consume)));
      const statuses = outcomes.map((o) => statusOf(o, deps.now()));
      const over = outcomes.findIndex((o) => o !== undefined && !o.allowed);
      const deciding = over >= 0 ? outcomes[over] : outcomes[tightest(statuses)];
      deps.onDecision?.("ShouldRateLimit", over >= 0 ? deciding!.code : "OK");
      return responseOf(statuses, over >= 0, deciding);
    },
  };
}

function targetOf(descriptor: RateLimitDescriptor): { keyId: string; limits: string[] } | undefined {
  let keyId: string | undefined;
  let limit: string | undefined;
  for (const { key, value } of descriptor.entries) {
    if (key === DESCRIPTOR_KEYS.keyId && keyId === undefined) keyId = value;
    else if (key === DESCRIPTOR_KEYS.limit && limit === undefined) limit = value;
    else return undefined;
  }
  if (!keyId || keyId.length > 64) return undefined;
  const limits = limit === undefined ? [] : limit.split(",").map((n) => n.trim());
  if (limits.length > 32 || limits.some((n) => !NAME_TOKEN_PATTERN.test(n))) return undefined;
  return { keyId, limits };
}

async function charge(descriptor: RateLimitDescriptor, cost: number, consume: Consume | undefined): Promise<ConsumeOutcome | undefined> {
  const target = targetOf(descriptor);
  if (!target) return undefined;
  if (!consume) throw new TollgateError("failed_precondition", "QUOTA_NOT_AVAILABLE", "this server has no quota service wired");
  return consume({ keyId: target.keyId, limits: target.limits, cost, clientIp: "" });
}

/** The limit a descriptor reports: the refusing one, else the one with the least left. */
function reportedLimit(outcome: ConsumeOutcome): LimitState | undefined {
  const binding = outcome.limits.filter((l) => !l.shadow);
  if (!outcome.allowed) return binding.find((l) => l.exceeded) ?? binding[0];
  return binding.reduce<LimitState | undefined>((min, l) => (min === undefined || l.remaining < min.remaining ? l : min), undefined);
}

function statusOf(outcome: ConsumeOutcome | undefined, nowMs: number): StatusInit {
  const limit = outcome && reportedLimit(outcome);
  if (!outcome || !limit) return { code: outcome && !outcome.allowed ? RlsCode.OVER_LIMIT : RlsCode.OK };
  return {
    code: outcome.allowed ? RlsCode.OK : RlsCode.OVER_LIMIT,
    currentLimit: { name: limit.name, requestsPerUnit: clampU32(limit.limit), unit: unitOf(limit.windowMs) },
    limitRemaining: clampU32(limit.remaining),
    // A limit that never resets (a one-off budget) has no duration until reset.
    durationUntilReset: Number.isFinite(limit.resetAtMs) ? durationFromMs(Math.max(0, Math.ceil(limit.resetAtMs - nowMs))) : undefined,
  };
}

/** Index of the OK status with the fewest requests remaining (the one whose headers to send). */
function tightest(statuses: StatusInit[]): number {
  let best = -1;
  statuses.forEach((s, i) => {
    if (s.currentLimit && (best < 0 || (s.limitRemaining ?? 0) < (statuses[best]!.limitRemaining ?? 0))) best = i;
  });
  return best;
}

function responseOf(statuses: StatusInit[], over: boolean, deciding: ConsumeOutcome | undefined) {
  const headers = deciding ? quotaHeaders(deciding) : {};
  let rawBody = new Uint8Array();
  if (over && deciding) {
    const client = clientResponseFor(deciding.code, deciding.message);
    rawBody = new TextEncoder().encode(client.body);
    headers["content-type"] = "application/json";
  }
  return create(RateLimitResponseSchema, {
    overallCode: over ? RlsCode.OVER_LIMIT : RlsCode.OK,
    statuses,
    responseHeadersToAdd: Object.entries(headers).map(([key, value]) => ({ key, value })),
    rawBody,
  });
}

const clampU32 = (n: number) => Math.min(UINT32_MAX, Math.max(0, Math.floor(n)));

const DAY_MS = 86_400_000;

/** Envoy's unit for a window, when the window is exactly one unit; otherwise UNKNOWN. */
export function unitOf(windowMs: number): Unit {
  if (windowMs === 1000) return Unit.SECOND;
  if (windowMs === 60_000) return Unit.MINUTE;
  if (windowMs === 3_600_000) return Unit.HOUR;
  if (windowMs === DAY_MS) return Unit.DAY;
  if (windowMs >= 28 * DAY_MS && windowMs <= 31 * DAY_MS) return Unit.MONTH;
  if (windowMs === 365 * DAY_MS || windowMs === 366 * DAY_MS) return Unit.YEAR;
  return Unit.UNKNOWN;
}
