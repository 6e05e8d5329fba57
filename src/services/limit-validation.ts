import { Violations } from "../domain/errors.js";
import { isKeyId } from "../keys/format.js";
import type { LimitInput } from "../store/limits-repo.js";
import { NAME_TOKEN_PATTERN, TENANT_ID_PATTERN } from "./validate.js";

/** Where a limit can be attached. */
export const LIMIT_SCOPES = ["plan", "tenant", "owner", "key"] as const;
const PERS = ["key", "tenant", "owner"] as const;
const KINDS = ["rate", "quota", "budget"] as const;
const PERIODS = ["second", "minute", "hour", "day", "month", "none"] as const;
/** Largest amount, refill or cap: far beyond any real limit, well inside int64 and JS safe integers. */
const MAX_AMOUNT = 1_000_000_000_000_000;

const oneOf = <T extends string>(values: readonly T[], value: string): value is T => (values as readonly string[]).includes(value);

/** The fields of a limit as they arrive (strings and numbers), before validation. */
export interface LimitFields {
  name: string;
  scope: string;
  scopeId: string;
  per: string;
  kind: string;
  amount: number;
  refill: number;
  period: string;
  refillMode: string;
  cap: number;
  shadow: boolean;
  autoApply: boolean;
}

/**
 * Validates a limit definition, reporting every bad field at once with the same rules the table's
 * CHECK constraints enforce (so bad input is INVALID_ARGUMENT, never a constraint error).
 */
export function checkLimit(f: LimitFields, prefix = "limit."): LimitInput {
  const v = new Violations();
  if (!NAME_TOKEN_PATTERN.test(f.name)) v.add(`${prefix}name`, "must be 1-64 letters, digits, '_', '.', ':' or '-'");
  if (!oneOf(LIMIT_SCOPES, f.scope)) v.add(`${prefix}scope`, `must be one of ${LIMIT_SCOPES.join(", ")}`);
  if (f.scopeId === "" || f.scopeId.length > 128) v.add(`${prefix}scope_id`, "is required (at most 128 characters)");
  else if (f.scope === "tenant" && !TENANT_ID_PATTERN.test(f.scopeId)) v.add(`${prefix}scope_id`, "must be a tenant id");
  else if (f.scope === "key" && !isKeyId(f.scopeId)) v.add(`${prefix}scope_id`, "must be a 16-character key id");
  const per = f.per === "" ? "key" : f.per;
  if (!oneOf(PERS, per)) v.add(`${prefix}per`, `must be one of ${PERS.join(", ")}`);
  if (!oneOf(KINDS, f.kind)) v.add(`${prefix}kind`, `must be one of ${KINDS.join(", ")}`);
  if (!oneOf(PERIODS, f.period)) v.add(`${prefix}period`, `must be one of ${PERIODS.join(", ")}`);
  for (const [field, value, min] of [["amount", f.amount, 1], ["refill", f.refill, 0], ["cap", f.cap, 0]] as const) {
    if (!Number.isSafeInteger(value) || value < min || value > MAX_AMOUNT) v.add(`${prefix}${field}`, `must be a whole number from ${min} to ${MAX_AMOUNT}`);
  }
  if (f.kind === "rate" && (f.refill <= 0 || f.period === "none")) v.add(`${prefix}refill`, "a rate needs a refill above 0 per period (not `none`)");
  if (f.kind === "quota" && f.period === "none") v.add(`${prefix}period`, "a quota needs a window");
  const refillMode = f.refillMode === "" ? "set" : f.refillMode;
  if (refillMode !== "set" && refillMode !== "add") v.add(`${prefix}refill_mode`, "must be set or add");
  else if (refillMode === "add" && f.kind !== "budget") v.add(`${prefix}refill_mode`, "add applies to budgets only");
  v.throwIfAny();
  return {
    name: f.name, scope: f.scope as LimitInput["scope"], scopeId: f.scopeId, per: per as LimitInput["per"], kind: f.kind as LimitInput["kind"],
    amount: f.amount, refill: f.refill, period: f.period as LimitInput["period"], refillMode: refillMode as "set" | "add",
    cap: f.cap === 0 ? null : f.cap, shadow: f.shadow, autoApply: f.autoApply,
  };
}

