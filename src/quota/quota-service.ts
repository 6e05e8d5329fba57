import { unavailable, Violations } from "../domain/errors.js";
import type { QuotaRepo } from "../store/quota-repo.js";
import type { CatalogCache } from "./catalog-cache.js";
import { quotaHeaderParts, quotaHeaders, type RateLimitHeaderParts } from "./headers.js";
import { createIdempotencyCache } from "./idempotency.js";
import type { LeaseEngine, LimitOutcome } from "./lease-engine.js";
import { denialCode, type LimitCatalog, type LimitDefinition, type QuotaSubject } from "./limits.js";
import type { UsageRecorder } from "./usage.js";
import { isPromise, type MaybePromise } from "../domain/maybe-promise.js";

/** Bounds on ConsumeQuota input. */
export const QUOTA_INPUT = { maxCost: 1_000_000_000, maxLimits: 32, maxIdempotencyKeyLength: 128 } as const;

/** The state of one limit in an answer. Infinite durations are null (JSON has no Infinity). */
export interface LimitStatusValue {
  name: string;
  kind: LimitDefinition["kind"];
  limit: number;
  remaining: number;
  resetAtMs: number | null;
  windowSeconds: number;
  retryAfterMs: number | null;
  exceeded: boolean;
  shadow: boolean;
}

/** A quota decision: a "no" is a value, never an error. */
export interface QuotaDecision {
  allowed: boolean;
  code: "OK" | "RATE_LIMITED" | "QUOTA_EXCEEDED" | "BUDGET_EXCEEDED";
  limits: LimitStatusValue[];
  headers: Record<string, string>;
  /** The headers as parts, when they take the usual shape (see RateLimitHeaderParts); absent from stored answers. */
  headerParts?: RateLimitHeaderParts | undefined;
  /** This answer is the stored answer of an earlier call with the same idempotency key. */
  replayed: boolean;
}

/** End-client explanations of each quota outcome, shared by ConsumeQuota and Envoy's Check. */
export const QUOTA_MESSAGES: Record<QuotaDecision["code"], string> = {
  OK: "the call fits every limit",
  RATE_LIMITED: "too many requests; slow down",
  QUOTA_EXCEEDED: "the quota for this window is used up",
  BUDGET_EXCEEDED: "the budget is used up",
};

/** What a caller asks: limit names (empty = the key's auto-applied ones), cost, idempotency key, dry run. */
export interface QuotaRequest {
  limits: readonly string[];
  cost: number;
  idempotencyKey: string;
  dryRun: boolean;
}

export interface QuotaServiceDeps {
  repo: QuotaRepo;
  engine: LeaseEngine;
  catalog: CatalogCache;
  usage: UsageRecorder;
  now: () => number;
  idempotencyTtlMs?: number;
}

/** The quota domain: resolves limits, charges all-or-nothing, replays idempotent retries, records usage. */
export interface QuotaService {
  /** Answers synchronously when the limits are resolved and the tokens held locally (a warm key's usual case). */
  consume(subject: QuotaSubject, req: QuotaRequest): MaybePromise<QuotaDecision>;
}

/** Checks the request fields that need no catalog (cost, idempotency key, names' count). */
export function checkQuotaRequest(v: Violations, req: { limits: readonly string[]; cost: number; idempotencyKey: string }): void {
  if (!Number.isSafeInteger(req.cost) || req.cost < 0) v.add("cost", "must be a whole number, 0 or more");
  else if (req.cost > QUOTA_INPUT.maxCost) v.add("cost", `must be at most ${QUOTA_INPUT.maxCost}`);
  if (req.limits.length > QUOTA_INPUT.maxLimits) v.add("limits", `at most ${QUOTA_INPUT.maxLimits} names`);
  if (req.idempotencyKey.length > QUOTA_INPUT.maxIdempotencyKeyLength) v.add("idempotency_key", `must be at most ${QUOTA_INPUT.maxIdempotencyKeyLength} characters`);
  else if (/[\u0000-\u001f\u007f]/.test(req.idempotencyKey)) v.add("idempotency_key", "must not contain control characters");
}

function statusOf(o: LimitOutcome): LimitStatusValue {
  return {
    name: o.def.name, kind: o.def.kind, limit: o.limit, remaining: o.remaining,
    resetAtMs: Number.isFinite(o.resetAtMs) ? o.resetAtMs : null, windowSeconds: o.windowSeconds,
    retryAfterMs: o.exceeded ? (Number.isFinite(o.retryAfterMs) ? o.retryAfterMs : null) : 0, exceeded: o.exceeded, shadow: o.def.shadow,
  };
}

/**
 * A charge's decision, with `limits` (one status object per limit) and `headers` built only when
 * read: an admitted Envoy Check never reads the limits, and writes the headers from
 * `headerParts`. Both are getters on the prototype, which a spread leaves out: `toJSON()` gives
 * the plain decision, and is what is stored or spread (JSON.stringify calls it too).
 */
class ChargeDecision implements QuotaDecision {
  readonly replayed = false;
  readonly headerParts: RateLimitHeaderParts | undefined;
  #limits: LimitStatusValue[] | undefined;
  #headers: Record<string, string> | undefined;

  constructor(
    readonly allowed: boolean,
    readonly code: QuotaDecision["code"],
    private readonly outcomes: readonly LimitOutcome[],
    private readonly nowMs: number,
  ) {
    this.headerParts = quotaHeaderParts(outcomes, allowed, nowMs);
  }

  get limits(): LimitStatusValue[] {
    return (this.#limits ??= this.outcomes.map(statusOf));
  }

  get headers(): Record<string, string> {
    return (this.#headers ??= this.headerParts ? this.headerParts.toRecord() : quotaHeaders(this.outcomes, this.allowed, this.nowMs));
  }

  toJSON(): QuotaDecision {
    return { allowed: this.allowed, code: this.code, limits: this.limits, headers: this.headers, replayed: this.replayed };
  }
}

/** Creates the quota domain service. */
export function createQuotaService(deps: QuotaServiceDeps): QuotaService {
  const ttlMs = deps.idempotencyTtlMs ?? 86_400_000;
  const recent = createIdempotencyCache<QuotaDecision>(10_000, ttlMs, deps.now);

  // Resolved limit lists per subject (one object per key record, see quotaSubjectOf) and requested
  // names, for the catalog they were resolved in (a reload makes a new catalog object): the hot
  // path then finds its limits without building a key or allocating.
  const resolved = new WeakMap<QuotaSubject, { catalog: LimitCatalog; byNames: Map<string, LimitDefinition[]> }>();
  const MAX_NAME_SETS = 64;

  function resolve(subject: QuotaSubject, names: readonly string[]): MaybePromise<LimitDefinition[]> {
    const catalog = deps.catalog.peek();
    if (!catalog) return deps.catalog.get().then((loaded) => resolveFrom(loaded, subject, names));
    try {
      return resolveFrom(catalog, subject, names);
    } catch (err) {
      // A name unknown to a catalog that a change notification has made stale may be the change
      // itself (a limit defined a moment ago): ask the fresh catalog before refusing it.
      if (!deps.catalog.stale()) throw err;
      return deps.catalog.fresh().then((loaded) => resolveFrom(loaded, subject, names), () => Promise.reject(err));
    }
  }

  function resolveFrom(catalog: LimitCatalog, subject: QuotaSubject, names: readonly string[]): LimitDefinition[] {
    let memo = resolved.get(subject);
    if (!memo || memo.catalog !== catalog) resolved.set(subject, (memo = { catalog, byNames: new Map() }));
    const namesKey = names.length === 1 ? names[0]! : names.join("\u0000");
    const hit = memo.byNames.get(namesKey);
    if (hit) return hit;
    const defs = resolveIn(catalog, subject, names);
    if (memo.byNames.size >= MAX_NAME_SETS) memo.byNames.clear();
    memo.byNames.set(namesKey, defs);
    return defs;
  }

  function resolveIn(catalog: LimitCatalog, subject: QuotaSubject, names: readonly string[]): LimitDefinition[] {
    const applicable = catalog.applicable(subject);
    if (names.length === 0) return [...applicable.values()].filter((d) => d.autoApply);
    const v = new Violations();
    const defs: LimitDefinition[] = [];
    names.forEach((name, i) => {
      const def = applicable.get(name);
      if (def) {
        if (!defs.includes(def)) defs.push(def);
      } else v.add(`limits[${i}]`, catalog.names.has(name) ? `limit "${name.slice(0, 64)}" does not apply to this key` : `unknown limit "${name.slice(0, 64)}"`);
    });
    v.throwIfAny();
    return defs;
  }

  /** The decision of a charge; its per-limit statuses are built when first read (see ChargeDecision). */
  function decisionOf(outcomes: readonly LimitOutcome[]): ChargeDecision {
    let deniedBy: LimitOutcome | undefined;
    for (const o of outcomes) {
      if (o.exceeded && !o.def.shadow) {
        deniedBy = o;
        break;
      }
    }
    const allowed = deniedBy === undefined;
    return new ChargeDecision(allowed, deniedBy ? denialCode(deniedBy.def.kind) : "OK", outcomes, deps.now());
  }

  function recordUsage(subject: QuotaSubject, req: QuotaRequest, decision: QuotaDecision, outcomes: LimitOutcome[]): QuotaDecision {
    if (req.cost > 0 && !req.dryRun) for (const o of outcomes) deps.usage.record(subject, o.def.name, decision.allowed, o.charged);
    return decision;
  }

  function charge(subject: QuotaSubject, req: QuotaRequest, defs: LimitDefinition[]): MaybePromise<QuotaDecision> {
    const outcomes = deps.engine.charge(defs, subject, req.cost, req.dryRun);
    if (isPromise(outcomes)) return outcomes.then((o) => recordUsage(subject, req, decisionOf(o), o));
    return recordUsage(subject, req, decisionOf(outcomes), outcomes);
  }

  /** With an idempotency key: a retry gets the stored answer, and an admitted answer is stored before it counts. */
  async function consumeOnce(subject: QuotaSubject, req: QuotaRequest): Promise<QuotaDecision> {
    const seen = recent.get(subject.quotaSubject, req.idempotencyKey);
    if (seen) return { ...seen, replayed: true };
    const defs = await resolve(subject, req.limits);
    const outcomes = await deps.engine.charge(defs, subject, req.cost, req.dryRun);
    // Stored (as JSON) and replayed (spread): a plain object with its limits in it.
    const decision = decisionOf(outcomes).toJSON();
    if (decision.allowed) {
      const replay = await claim(subject, req.idempotencyKey, decision, outcomes, deps.now());
      if (replay) return replay;
    }
    return recordUsage(subject, req, decision, outcomes);
  }

  return {
    consume(subject, req) {
      if (req.cost > 0 && !req.dryRun && req.idempotencyKey !== "") return consumeOnce(subject, req);
      const defs = resolve(subject, req.limits);
      return isPromise(defs) ? defs.then((d) => charge(subject, req, d)) : charge(subject, req, defs);
    },
  };

  /**
   * Records the answer under the idempotency key; returns the earlier answer when another call got
   * there first (after putting this call's tokens back). The tokens are held until the outcome is
   * known, so no path admits a call that is neither charged nor replayed.
   */
  async function claim(subject: QuotaSubject, key: string, decision: QuotaDecision, outcomes: LimitOutcome[], nowMs: number): Promise<QuotaDecision | undefined> {
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        if (await deps.repo.claimIdempotent(subject.quotaSubject, key, decision, new Date(nowMs), new Date(nowMs + ttlMs))) {
          recent.set(subject.quotaSubject, key, decision);
          return undefined;
        }
        const stored = (await deps.repo.findIdempotent(subject.quotaSubject, key, new Date(nowMs))) as QuotaDecision | undefined;
        if (stored) {
          deps.engine.refund(outcomes, subject);
          recent.set(subject.quotaSubject, key, stored);
          return { ...stored, replayed: true };
        }
        // The earlier answer expired between the two statements: try to claim again.
      }
      throw unavailable("IDEMPOTENCY_CONTENDED", "the idempotency key is contended; try again");
    } catch (err) {
      deps.engine.refund(outcomes, subject); // not recorded, so not charged: a retry must be able to succeed
      throw err;
    }
  }
}
