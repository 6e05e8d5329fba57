import type { KeyRecord } from "../domain/key.js";
import { EMPTY_PLAN_SETTINGS, PLAN_FIELDS, type Plan, type PlanOverrides, type PlanSettings, type Role } from "../domain/policy.js";
import { CROSS_TENANT_PERMISSION } from "../keys/key-admin.js";
import { parseCidr, type Cidr } from "../keys/ip.js";
import { PermissionSet, type PermissionMatcher } from "./permissions.js";

/** The parts of a key that shape its policy. */
export type KeyPolicyInput = Pick<KeyRecord, "tenantId" | "permissions" | "roles" | "plan" | "policyOverrides">;

/**
 * Everything a decision needs about one key, compiled once and reused for every call until the
 * key, its plan or its tenant's roles change.
 */
export interface EffectivePolicy {
  /** The plan's fields with the key's overrides applied (an override replaces the whole field). */
  settings: PlanSettings;
  /** Direct key permissions ∪ the effective `allowed` list ∪ the permissions of the key's roles. */
  grants: PermissionMatcher;
  /** The effective `blocked` list. A match here beats every grant. */
  denies: PermissionSet;
  /** The effective plan-level IP allowlist, parsed; empty admits every address. */
  ipBlocks: Cidr[];
  /** The key itself (never a role or plan) holds the cross-tenant admin permission. */
  crossTenant: boolean;
}

const isList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === "string");
const isLimit = (v: unknown): v is number | null => v === null || (typeof v === "number" && Number.isSafeInteger(v) && v >= 0);

/**
 * Applies overrides to a plan. Precedence, highest first: the key's override of a field, the
 * plan's value, the empty plan (an unknown plan grants, denies and caps nothing: fail closed).
 * Overrides live in a jsonb column that operators can also edit by hand, so a malformed field is
 * ignored (the plan's value stands) rather than trusted.
 */
export function effectiveSettings(plan: PlanSettings | undefined, overrides: PlanOverrides): PlanSettings {
  const base = plan ?? EMPTY_PLAN_SETTINGS;
  return {
    allowed: isList(overrides.allowed) ? overrides.allowed : base.allowed,
    blocked: isList(overrides.blocked) ? overrides.blocked : base.blocked,
    maxCostPerCall: isLimit(overrides.maxCostPerCall) ? overrides.maxCostPerCall : base.maxCostPerCall,
    timeoutMs: isLimit(overrides.timeoutMs) ? overrides.timeoutMs : base.timeoutMs,
    ipAllowlist: isList(overrides.ipAllowlist) ? overrides.ipAllowlist : base.ipAllowlist,
  };
}

/** Compiles a key's effective policy from its plan (undefined when unknown) and its tenant's roles. */
export function compilePolicy(key: KeyPolicyInput, plan: PlanSettings | undefined, roles: ReadonlyMap<string, Role>): EffectivePolicy {
  const settings = effectiveSettings(plan, key.policyOverrides);
  const grants: string[] = [...key.permissions, ...settings.allowed];
  for (const name of key.roles) grants.push(...(roles.get(name)?.permissions ?? []));
  return {
    settings,
    grants: new PermissionSet(grants, true),
    denies: new PermissionSet(settings.blocked, false),
    ipBlocks: settings.ipAllowlist.map(parseCidr).filter((b): b is Cidr => b !== undefined),
    crossTenant: key.permissions.includes(CROSS_TENANT_PERMISSION),
  };
}

/** Most distinct scope sets remembered per policy (tokens of one key usually share a few). */
const MAX_SCOPE_SETS = 64;
const narrowedPolicies = new WeakMap<EffectivePolicy, Map<string, EffectivePolicy>>();

/**
 * The policy an access token acts under: its key's, with a grant holding only where one of the
 * token's scopes covers it too (by the policy engine's own matcher, so wildcards, implied
 * permissions and the reserved `tollgate:` prefix follow the same rules), and cross-tenant access
 * only when a scope names it. Deny lists, settings and IP blocks are the key's. Remembered per
 * policy object and scope set; a policy is replaced, never changed, when it changes.
 */
export function narrowToScopes(policy: EffectivePolicy, scopes: readonly string[]): EffectivePolicy {
  const id = scopes.join(" ");
  let bySet = narrowedPolicies.get(policy);
  if (!bySet) narrowedPolicies.set(policy, (bySet = new Map()));
  let narrowed = bySet.get(id);
  if (!narrowed) {
    const granted = new PermissionSet(scopes, true);
    narrowed = {
      ...policy,
      grants: { has: (permission) => policy.grants.has(permission) && granted.has(permission) },
      crossTenant: policy.crossTenant && scopes.includes(CROSS_TENANT_PERMISSION),
    };
    if (bySet.size >= MAX_SCOPE_SETS) bySet.clear();
    bySet.set(id, narrowed);
  }
  return narrowed;
}

/** One entry of an explained policy: a pattern and where it came from. */
export interface Sourced {
  permission: string;
  /** `key`, `override`, `plan:<name>` or `role:<name>`. */
  source: string;
}

/** A key's policy as an operator reads it: every grant and deny with its source. */
export interface ExplainedPolicy {
  plan: string;
  planFound: boolean;
  granted: Sourced[];
  blocked: Sourced[];
  settings: PlanSettings;
  /** For each plan field: `override` when the key replaces it, else `plan:<name>`. */
  settingSources: Record<keyof PlanSettings, string>;
  /** Roles the key names that its tenant does not define (they grant nothing). */
  unknownRoles: string[];
}

/** Explains a key's effective policy (for `tollgate keys permissions` and GetKeyPolicy). */
export function explainPolicy(key: KeyPolicyInput, plan: Plan | undefined, roles: ReadonlyMap<string, Role>): ExplainedPolicy {
  const overrides = key.policyOverrides;
  const settings = effectiveSettings(plan, overrides);
  const planSource = `plan:${key.plan}`;
  // A field counts as overridden only when the override is the value in force (malformed ones are not).
  const sourceOf = (field: keyof PlanSettings) => (overrides[field] !== undefined && settings[field] === overrides[field] ? "override" : planSource);
  const granted: Sourced[] = key.permissions.map((permission) => ({ permission, source: "key" }));
  granted.push(...settings.allowed.map((permission) => ({ permission, source: sourceOf("allowed") })));
  const unknownRoles: string[] = [];
  for (const name of key.roles) {
    const role = roles.get(name);
    if (!role) unknownRoles.push(name);
    else granted.push(...role.permissions.map((permission) => ({ permission, source: `role:${name}` })));
  }
  const settingSources = Object.fromEntries(PLAN_FIELDS.map((f) => [f, sourceOf(f)])) as Record<keyof PlanSettings, string>;
  return {
    plan: key.plan,
    planFound: plan !== undefined,
    granted,
    blocked: settings.blocked.map((permission) => ({ permission, source: sourceOf("blocked") })),
    settings,
    settingSources,
    unknownRoles,
  };
}
