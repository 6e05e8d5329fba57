import { isDeepStrictEqual } from "node:util";
import type { KeyRecord } from "../domain/key.js";
import type { Plan, Role } from "../domain/policy.js";
import { REFRESH_AHEAD_AT, SingleFlight, TtlCache } from "../keys/ttl-cache.js";
import { compilePolicy, type EffectivePolicy } from "./effective.js";

/**
 * One cached value and when it was read from the store. Its identity changes when a reload
 * brings a different value; a reload that brings the same value keeps the entry (and what is
 * compiled from it), with `loadedAt` moved on.
 */
interface Entry<V> {
  value: V;
  loadedAt: number;
}

/**
 * A read-through cache with the verifier's freshness rules: an entry is served from memory for
 * `ttlMs`, then re-read; while the store is down an old entry keeps serving until
 * `ttlMs + staleMs`, after which the read fails (UNAVAILABLE from the store). An entry in use is
 * re-read in the background near its TTL (REFRESH_AHEAD_AT, as the key cache does), so a plan or
 * tenant in use never makes a call wait. An invalidation bumps a generation so that
 * a read already in flight cannot cache pre-change data.
 */
class ReadThrough<V> {
  private readonly entries: TtlCache<string, Entry<V>>;
  private readonly flights = new SingleFlight<string, V>();
  private readonly generations = new Map<string, number>();

  constructor(
    private readonly load: (id: string) => Promise<V>,
    private readonly now: () => number,
    private readonly ttlMs: number,
    private readonly staleMs: number,
    maxEntries: number,
  ) {
    this.entries = new TtlCache(maxEntries, now);
  }

  /** The entry when it is fresh, without any I/O; undefined otherwise. Near its TTL, starts a background re-read. */
  peek(id: string): Entry<V> | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    const age = this.now() - entry.loadedAt;
    if (age >= this.ttlMs) return undefined;
    if (age >= this.ttlMs * REFRESH_AHEAD_AT && !this.flights.has(id)) this.reload(id, entry).catch(() => undefined); // a failure changes nothing
    return entry;
  }

  async get(id: string): Promise<Entry<V>> {
    const fresh = this.peek(id);
    if (fresh) return fresh;
    const stale = this.entries.get(id);
    try {
      return await this.reload(id, stale);
    } catch (err) {
      if (stale) return stale;
      throw err;
    }
  }

  /** Reads `id` and caches it; the cached entry is kept (its time moved on) when the value is unchanged. */
  private async reload(id: string, cached: Entry<V> | undefined): Promise<Entry<V>> {
    const generation = this.generations.get(id) ?? 0;
    const value = await this.flights.run(id, () => this.load(id));
    const now = this.now();
    let entry: Entry<V>;
    if (cached && isDeepStrictEqual(cached.value, value)) {
      entry = cached;
      entry.loadedAt = now;
    } else entry = { value, loadedAt: now };
    if (generation === (this.generations.get(id) ?? 0)) this.entries.set(id, entry, this.ttlMs + this.staleMs);
    return entry;
  }

  invalidate(id: string): void {
    this.entries.delete(id);
    this.generations.set(id, (this.generations.get(id) ?? 0) + 1);
  }

  invalidateAll(): void {
    for (const id of this.generations.keys()) this.generations.set(id, (this.generations.get(id) ?? 0) + 1);
    this.entries.clear();
  }
}

export interface PolicyCacheDeps {
  /** Loads a plan by name; undefined when no such plan exists. Throws UNAVAILABLE when the store is down. */
  loadPlan(name: string): Promise<Plan | undefined>;
  /** Loads every role of a tenant. Throws UNAVAILABLE when the store is down. */
  loadRoles(tenantId: string): Promise<Role[]>;
  now: () => number;
  ttlMs: number;
  staleMs: number;
  maxEntries: number;
}

/** Plans, roles and compiled per-key policies, in memory, invalidated by NOTIFY. One per process. */
export interface PolicyCache {
  /**
   * The effective policy of a key. Synchronous (no I/O, no promise) when the key's plan and its
   * tenant's roles are cached and fresh; a promise that reads the store otherwise.
   */
  policyFor(key: KeyRecord): EffectivePolicy | Promise<EffectivePolicy>;
  plan(name: string): Promise<Plan | undefined>;
  roles(tenantId: string): Promise<ReadonlyMap<string, Role>>;
  /** Routes a `plan:<name>` or `roles:<tenant>` invalidation; false for payloads of other kinds. */
  handleInvalidation(payload: string): boolean;
  /** Drops everything (after the listener reconnects, when notifications may have been lost). */
  invalidateAll(): void;
}

type RoleMap = ReadonlyMap<string, Role>;
const NO_ROLES: Entry<RoleMap> = { value: new Map(), loadedAt: Number.POSITIVE_INFINITY };

/**
 * Creates the policy cache. A compiled policy is remembered per key record (records are replaced
 * whenever the verifier re-reads a key) together with the plan and roles entries it was built
 * from, so it is rebuilt exactly when one of the three changes.
 */
export function createPolicyCache(deps: PolicyCacheDeps): PolicyCache {
  const plans = new ReadThrough<Plan | undefined>(deps.loadPlan, deps.now, deps.ttlMs, deps.staleMs, deps.maxEntries);
  const roles = new ReadThrough<RoleMap>(
    async (tenantId) => new Map((await deps.loadRoles(tenantId)).map((r) => [r.name, r])),
    deps.now, deps.ttlMs, deps.staleMs, deps.maxEntries,
  );
  const compiled = new WeakMap<KeyRecord, { plan: Entry<Plan | undefined>; roles: Entry<RoleMap>; policy: EffectivePolicy }>();

  function build(key: KeyRecord, plan: Entry<Plan | undefined>, roleEntry: Entry<RoleMap>): EffectivePolicy {
    const hit = compiled.get(key);
    if (hit && hit.plan === plan && hit.roles === roleEntry) return hit.policy;
    const policy = compilePolicy(key, plan.value, roleEntry.value);
    compiled.set(key, { plan, roles: roleEntry, policy });
    return policy;
  }

  async function slow(key: KeyRecord): Promise<EffectivePolicy> {
    const [plan, roleEntry] = await Promise.all([plans.get(key.plan), key.roles.length > 0 ? roles.get(key.tenantId) : NO_ROLES]);
    return build(key, plan, roleEntry);
  }

  return {
    policyFor(key) {
      const plan = plans.peek(key.plan);
      const roleEntry = key.roles.length > 0 ? roles.peek(key.tenantId) : NO_ROLES;
      return plan && roleEntry ? build(key, plan, roleEntry) : slow(key);
    },
    async plan(name) {
      return (await plans.get(name)).value;
    },
    async roles(tenantId) {
      return (await roles.get(tenantId)).value;
    },
    handleInvalidation(payload) {
      if (payload.startsWith("plan:")) plans.invalidate(payload.slice(5));
      else if (payload.startsWith("roles:")) roles.invalidate(payload.slice(6));
      else return false;
      return true;
    },
    invalidateAll() {
      plans.invalidateAll();
      roles.invalidateAll();
    },
  };
}
