/**
 * The fields a plan sets and a key may override. A plan is an operator-defined bundle (the
 * seeded `free`, `pro` and `enterprise`, or any other); rate limits and quotas attach to plans by
 * name in the quota store and are deliberately not part of this record.
 */
export interface PlanSettings {
  /** Permission patterns the plan grants, e.g. `tool:Read`, `chat:*`, `read`. */
  allowed: string[];
  /** Permission patterns the plan denies; a deny beats every grant, whatever its source. */
  blocked: string[];
  /** The largest cost one call may declare; null means no cap. */
  maxCostPerCall: number | null;
  /** The upstream timeout a gateway should apply to a call; null means the gateway's default. */
  timeoutMs: number | null;
  /** CIDR blocks calls must come from, on top of the key's own allowlist; empty means anywhere. */
  ipAllowlist: string[];
}

/** The plan fields, each of which a key may replace for itself; an absent field is inherited. */
export type PlanOverrides = Partial<PlanSettings>;

/** The names of the overridable fields, in a stable order (admin APIs and the CLI use them). */
export const PLAN_FIELDS = ["allowed", "blocked", "maxCostPerCall", "timeoutMs", "ipAllowlist"] as const satisfies readonly (keyof PlanSettings)[];

/** A stored plan. */
export interface Plan extends PlanSettings {
  name: string;
  displayName: string;
  createdAt: Date;
  updatedAt: Date;
}

/** A named permission set inside one tenant. Keys of that tenant name roles in their `roles`. */
export interface Role {
  tenantId: string;
  name: string;
  description: string;
  permissions: string[];
  createdAt: Date;
  updatedAt: Date;
}

/** A plan that grants, denies and caps nothing: what a key on an unknown plan gets (fail closed). */
export const EMPTY_PLAN_SETTINGS: Readonly<PlanSettings> = Object.freeze({
  allowed: [],
  blocked: [],
  maxCostPerCall: null,
  timeoutMs: null,
  ipAllowlist: [],
});
