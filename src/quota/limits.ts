import type { KeyRecord } from "../domain/key.js";
import type { Period } from "./windows.js";

/** What a limit counts: a token bucket, a windowed quota, or a budget of cost units. */
export type LimitKind = "rate" | "quota" | "budget";
/** What a limit is attached to. */
export type LimitScope = "plan" | "key" | "tenant" | "owner";
/** Whose calls share one counter. */
export type LimitPer = "key" | "tenant" | "owner";

/** A named limit definition as stored in `quota_limits`. */
export interface LimitDefinition {
  limitId: number;
  name: string;
  scope: LimitScope;
  scopeId: string;
  per: LimitPer;
  kind: LimitKind;
  /** rate: burst (bucket capacity); quota: cost units per window; budget: credits per refill. */
  amount: number;
  /** rate: tokens added per `period`. */
  refill: number;
  period: Period;
  /** budget: "set" replaces the balance each period, "add" adds to what is left (up to `cap`). */
  refillMode: "set" | "add";
  cap: number | null;
  /** Counted and reported, never enforced. */
  shadow: boolean;
  /** Charged when a call names no limits. */
  autoApply: boolean;
}

/** The parts of a key that select its limits and their counters. */
export interface QuotaSubject {
  keyId: string;
  /**
   * The counting identity of the key's rotation lineage (`api_keys.quota_subject`): a key and its
   * successors share it, so rotating a key can never reset or double its counters.
   */
  quotaSubject: string;
  tenantId: string;
  plan: string;
  ownerId: string | null;
}

const subjects = new WeakMap<KeyRecord, QuotaSubject>();

/**
 * The quota subject of a key, one frozen object per key record (a changed key gets a new record),
 * so the quota hot path can remember per subject what it resolved instead of rebuilding string keys.
 */
export function quotaSubjectOf(key: KeyRecord): QuotaSubject {
  let subject = subjects.get(key);
  if (!subject) {
    subject = Object.freeze({ keyId: key.keyId, quotaSubject: key.quotaSubject, tenantId: key.tenantId, plan: key.plan, ownerId: key.ownerId });
    subjects.set(key, subject);
  }
  return subject;
}

/** Attachments from most to least specific: a key's own limit overrides its owner's, tenant's and plan's of the same name. */
const PRECEDENCE: LimitScope[] = ["key", "owner", "tenant", "plan"];

/** An in-memory index of every definition, rebuilt whenever the table changes. */
export interface LimitCatalog {
  /** Every limit name defined anywhere (to tell an unknown name from one that does not apply). */
  names: ReadonlySet<string>;
  /** The limits that apply to a key, one per name, the most specific attachment winning. */
  applicable(subject: QuotaSubject): Map<string, LimitDefinition>;
}

/** Builds the catalog from the stored definitions. */
export function buildCatalog(definitions: readonly LimitDefinition[]): LimitCatalog {
  const byScope = new Map<string, LimitDefinition[]>();
  for (const d of definitions) {
    const k = `${d.scope}\u0000${d.scopeId}`;
    let list = byScope.get(k);
    if (!list) byScope.set(k, (list = []));
    list.push(d);
  }
  const names = new Set(definitions.map((d) => d.name));
  return {
    names,
    applicable(subject) {
      // A limit attached to any key of the lineage applies to the whole lineage; the key's own id wins.
      const ids: Record<LimitScope, Array<string | null>> = {
        key: [subject.keyId, subject.quotaSubject], owner: [subject.ownerId], tenant: [subject.tenantId], plan: [subject.plan],
      };
      const out = new Map<string, LimitDefinition>();
      for (const scope of PRECEDENCE) {
        for (const id of ids[scope]) {
          if (id === null) continue;
          for (const d of byScope.get(`${scope}\u0000${id}`) ?? []) if (!out.has(d.name)) out.set(d.name, d);
        }
      }
      return out;
    },
  };
}

/** The counter a call charges for a limit: per key, per tenant, or per owner (a key without an owner counts alone). */
export function counterSubject(def: LimitDefinition, subject: QuotaSubject): string {
  if (def.per === "tenant") return `tenant:${subject.tenantId}`;
  if (def.per === "owner" && subject.ownerId) return `owner:${subject.ownerId}`;
  return `key:${subject.quotaSubject}`;
}

/** The decision code a denial by this kind of limit carries. */
export function denialCode(kind: LimitKind): "RATE_LIMITED" | "QUOTA_EXCEEDED" | "BUDGET_EXCEEDED" {
  return kind === "rate" ? "RATE_LIMITED" : kind === "quota" ? "QUOTA_EXCEEDED" : "BUDGET_EXCEEDED";
}
