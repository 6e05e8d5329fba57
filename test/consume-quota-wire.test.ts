/**
 * The grpc-js listener sends admitted ConsumeQuota answers as bytes written by hand
 * (consume-quota-wire.ts); they must decode to exactly the message the generic path builds.
 */
import { equals, fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import type { KeyRecord } from "../src/domain/key.js";
import { ConsumeQuotaResponseSchema } from "../src/gen/tollgate/v1/quota_pb.js";
import type { LimitStatusValue, QuotaDecision } from "../src/quota/quota-service.js";
import type { LimitDefinition } from "../src/quota/limits.js";
import type { LimitOutcome } from "../src/quota/lease-engine.js";
import { quotaHeaderParts } from "../src/quota/headers.js";
import { encodeAdmitted } from "../src/services/consume-quota-wire.js";
import { toProto } from "../src/services/consume-quota.js";
import { principalFromKey } from "../src/services/convert.js";

const key: KeyRecord = {
  keyId: "0123456789abcdef", tenantId: "acme", name: "k", environment: "live", prefix: "sk_live", secretHash: "", hint: "wxyz",
  permissions: ["chat:write"], roles: ["reader"], plan: "pro", metadata: { team: "x" }, expiresAt: new Date(2_000_000_000_000), ipAllowlist: [], ownerId: "o1",
  revokedAt: null, revokedReason: null, predecessorKeyId: null, successorKeyId: null, graceExpiresAt: null, quotaSubject: "0123456789abcdef",
  policyOverrides: {}, createdAt: new Date(1_700_000_000_000), updatedAt: new Date(1_700_000_000_000),
};
const principal = Object.freeze(principalFromKey(key, 1_764_000_000_000));

const limit = (over: Partial<LimitStatusValue>): LimitStatusValue => ({
  name: "requests", kind: "quota", limit: 100, remaining: 99, resetAtMs: 1_764_460_800_000, windowSeconds: 3600, retryAfterMs: 0, exceeded: false, shadow: false, ...over,
});
const headers = { "ratelimit-policy": '"requests";q=100;w=3600', ratelimit: '"requests";r=99;t=60', "x-ratelimit-limit": "100", "x-ratelimit-remaining": "99", "x-ratelimit-reset": "1764460800" };

describe("admitted ConsumeQuota answers on the wire", () => {
  const shapes: LimitStatusValue[][] = [
    [],
    [limit({})],
    [limit({ name: "n".repeat(64), limit: 1_000_000_000_000, remaining: 2 ** 53 - 1, resetAtMs: 1_764_460_800_123 })],
    [limit({ kind: "budget", resetAtMs: null, windowSeconds: 0, remaining: 0 }), limit({ kind: "rate", name: "burst", limit: 10, remaining: 3, resetAtMs: 1_764_000_001_500, windowSeconds: 6 })],
    [limit({ shadow: true }), limit({ name: "month", windowSeconds: 2_678_400, resetAtMs: 1_767_225_600_000 })],
  ];

  it("decode to exactly the message the generic path builds", () => {
    for (const limits of shapes) {
      for (const h of [{}, headers, { long: "v".repeat(300) }] as Record<string, string>[]) {
        const decision: QuotaDecision = { allowed: true, code: "OK", limits, headers: h, replayed: false };
        const bytes = encodeAdmitted(decision, principal);
        expect(bytes).toBeDefined();
        expect(equals(ConsumeQuotaResponseSchema, fromBinary(ConsumeQuotaResponseSchema, bytes!), toProto(decision, principal))).toBe(true);
      }
    }
  });

  it("decode to the generic path's message when written from a one-limit answer's header parts (cached bytes)", () => {
    const def = (name: string, amount: number): LimitDefinition => ({
      limitId: 1, name, scope: "plan", scopeId: "pro", per: "key", kind: "quota", amount, refill: 0, period: "hour", refillMode: "set", cap: null, shadow: false, autoApply: true,
    });
    const nowMs = 1_764_460_000_000;
    const cases: Array<[LimitDefinition, number, number]> = [
      [def("requests", 100), 99, 1_764_460_800_000],
      [def("requests", 100), 0, 1_764_460_800_000], // remaining 0: a proto3 default, left out
      [def("requests", 100), 98, 1_764_464_400_000], // a new reset instant for the same limit
      [def("requests", 100), 97, nowMs], // resets now: t=0
      [def("n".repeat(64), 1_000_000_000_000), 2 ** 53 - 1, 1_764_460_800_123],
      [def("zähler", 5), 4, 1_764_460_800_000], // not ASCII: the general writer takes it
    ];
    for (const [d, remaining, resetAtMs] of cases) {
      const outcome: LimitOutcome = { def: d, limit: d.amount, remaining, resetAtMs, windowSeconds: 3600, retryAfterMs: 0, exceeded: false, charged: 1 };
      const parts = quotaHeaderParts([outcome], true, nowMs)!;
      expect(parts).toBeDefined();
      const decision: QuotaDecision = {
        allowed: true, code: "OK", replayed: false, headerParts: parts, headers: parts.toRecord(),
        limits: [limit({ name: d.name, limit: d.amount, remaining, resetAtMs, windowSeconds: 3600 })],
      };
      const bytes = encodeAdmitted(decision, principal);
      expect(bytes).toBeDefined();
      const decoded = fromBinary(ConsumeQuotaResponseSchema, bytes!);
      expect(equals(ConsumeQuotaResponseSchema, decoded, toProto(decision, principal))).toBe(true);
      expect(decoded.headers["x-ratelimit-remaining"]).toBe(String(remaining));
    }
  });

  it("are left to the generic path when denied, replayed, or a shadow limit is exceeded", () => {
    const denied: QuotaDecision = { allowed: false, code: "QUOTA_EXCEEDED", limits: [limit({ exceeded: true, remaining: 0, retryAfterMs: 5000 })], headers, replayed: false };
    expect(encodeAdmitted(denied, principal)).toBeUndefined();
    expect(encodeAdmitted({ allowed: true, code: "OK", limits: [limit({})], headers, replayed: true }, principal)).toBeUndefined();
    expect(encodeAdmitted({ allowed: true, code: "OK", limits: [limit({ shadow: true, exceeded: true, retryAfterMs: 10 })], headers, replayed: false }, principal)).toBeUndefined();
  });
});
