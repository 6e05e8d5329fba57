import { create } from "@bufbuild/protobuf";
import type { Plan, PlanOverrides, PlanSettings, Role } from "../domain/policy.js";
import type { KeyPolicyView } from "../policy/policy-admin.js";
import { RESERVED_PREFIX, isPermissionPattern } from "../policy/permissions.js";
import {
  KeyPolicySchema, PlanOverridesSchema, PlanSchema, RoleSchema,
  type KeyPolicy, type Plan as PlanProto, type PlanOverrides as PlanOverridesProto, type Role as RoleProto,
} from "../gen/tollgate/v1/policy_pb.js";
import { ts } from "./convert.js";
import { LIMITS, Violations, checkCidrs } from "./validate.js";

/** Wire names of the plan fields, as `clear_overrides` and `setting_sources` spell them. */
export const FIELD_WIRE_NAMES: Record<keyof PlanSettings, string> = {
  allowed: "allowed", blocked: "blocked", maxCostPerCall: "max_cost_per_call", timeoutMs: "timeout_ms", ipAllowlist: "ip_allowlist",
};
const FIELD_BY_WIRE_NAME = new Map(Object.entries(FIELD_WIRE_NAMES).map(([k, v]) => [v, k as keyof PlanSettings]));

/** The plan field named `wire` (`max_cost_per_call`), or undefined. */
export const fieldOfWireName = (wire: string): keyof PlanSettings | undefined => FIELD_BY_WIRE_NAME.get(wire);

/** The longest timeout a plan may ask a gateway to apply: one day. */
export const MAX_TIMEOUT_MS = 86_400_000;

/**
 * Checks permission patterns for a plan, role or override list. The reserved `tollgate:`
 * namespace is refused: those permissions count only when granted directly on a key.
 */
export function checkPatterns(v: Violations, field: string, values: readonly string[]): void {
  if (values.length > LIMITS.permissions) v.add(field, `at most ${LIMITS.permissions} entries`);
  values.forEach((p, i) => {
    if (p.length > LIMITS.permissionLength || !isPermissionPattern(p)) v.add(`${field}[${i}]`, "must be a permission pattern such as `read`, `chat:write`, `chat:*` or `*:read`");
    else if (p.startsWith(RESERVED_PREFIX)) v.add(`${field}[${i}]`, `${RESERVED_PREFIX} permissions can only be granted directly on a key`);
  });
}

export function checkMaxCost(v: Violations, field: string, value: bigint | undefined): void {
  if (value !== undefined && (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER))) v.add(field, `must be between 0 and ${Number.MAX_SAFE_INTEGER}`);
}

export function checkTimeout(v: Violations, field: string, value: number | undefined): void {
  if (value !== undefined && (value < 1 || value > MAX_TIMEOUT_MS)) v.add(field, `must be between 1 and ${MAX_TIMEOUT_MS} milliseconds`);
}

/** Validates and converts an overrides message (field names prefixed with `prefix`). */
export function overridesFromProto(v: Violations, prefix: string, o: PlanOverridesProto | undefined): PlanOverrides {
  const out: PlanOverrides = {};
  if (!o) return out;
  if (o.allowed) checkPatterns(v, `${prefix}allowed`, (out.allowed = o.allowed.values));
  if (o.blocked) checkPatterns(v, `${prefix}blocked`, (out.blocked = o.blocked.values));
  if (o.ipAllowlist) checkCidrs(v, `${prefix}ip_allowlist`, (out.ipAllowlist = o.ipAllowlist.values));
  checkMaxCost(v, `${prefix}max_cost_per_call`, o.maxCostPerCall);
  if (o.maxCostPerCall !== undefined) out.maxCostPerCall = Number(o.maxCostPerCall);
  checkTimeout(v, `${prefix}timeout_ms`, o.timeoutMs);
  if (o.timeoutMs !== undefined) out.timeoutMs = o.timeoutMs;
  return out;
}

export function overridesToProto(o: PlanOverrides): PlanOverridesProto {
  const list = (values: string[] | undefined) => (values ? { values } : undefined);
  return create(PlanOverridesSchema, {
    allowed: list(o.allowed), blocked: list(o.blocked), ipAllowlist: list(o.ipAllowlist),
    ...(o.maxCostPerCall != null ? { maxCostPerCall: BigInt(o.maxCostPerCall) } : {}),
    ...(o.timeoutMs != null ? { timeoutMs: o.timeoutMs } : {}),
  });
}

export function planToProto(p: Plan): PlanProto {
  return create(PlanSchema, {
    name: p.name, displayName: p.displayName, allowed: p.allowed, blocked: p.blocked, ipAllowlist: p.ipAllowlist,
    ...(p.maxCostPerCall !== null ? { maxCostPerCall: BigInt(p.maxCostPerCall) } : {}),
    ...(p.timeoutMs !== null ? { timeoutMs: p.timeoutMs } : {}),
    createTime: ts(p.createdAt), updateTime: ts(p.updatedAt),
  });
}

export function roleToProto(r: Role): RoleProto {
  return create(RoleSchema, { tenantId: r.tenantId, name: r.name, description: r.description, permissions: r.permissions, createTime: ts(r.createdAt), updateTime: ts(r.updatedAt) });
}

export function keyPolicyToProto({ key, policy }: KeyPolicyView): KeyPolicy {
  const { settings } = policy;
  return create(KeyPolicySchema, {
    keyId: key.keyId, tenantId: key.tenantId, plan: policy.plan, planFound: policy.planFound,
    granted: policy.granted, blocked: policy.blocked, ipAllowlist: settings.ipAllowlist,
    ...(settings.maxCostPerCall !== null ? { maxCostPerCall: BigInt(settings.maxCostPerCall) } : {}),
    ...(settings.timeoutMs !== null ? { timeoutMs: settings.timeoutMs } : {}),
    settingSources: Object.fromEntries(Object.entries(policy.settingSources).map(([f, s]) => [FIELD_WIRE_NAMES[f as keyof PlanSettings], s])),
    overrides: overridesToProto(key.policyOverrides),
    unknownRoles: policy.unknownRoles,
  });
}
