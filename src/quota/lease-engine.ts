import type { QuotaRepo, Release } from "../store/quota-repo.js";
import { counterSubject, type LimitDefinition, type QuotaSubject } from "./limits.js";
import type { MaybePromise } from "../domain/maybe-promise.js";
import { levelAt, msUntil, msUntilFull, ratePerMs, type BucketShape } from "./token-bucket.js";
import { periodSeconds, windowAt } from "./windows.js";

/** Tuning of the leasing engine; every field has a safe default (see DEFAULT_LEASING). */
export interface LeasingOptions {
  /** Smallest block asked for (the store still shrinks it to 1 near the limit). */
  minBlock: number;
  /** Largest block asked for. */
  maxBlock: number;
  /** A block should last about this long at the rate this replica observes. */
  targetLeaseMs: number;
  /** A grant never exceeds 1/divisor of what is left, so blocks shrink geometrically near the limit. */
  divisor: number;
  /** Tokens unused for this long go back to the store, so that other replicas can have them. */
  idleReturnMs: number;
  /** Bucket tokens older than this go back: a leased rate token must be used soon after it was taken. */
  bucketLeaseMs: number;
  /** While a counter is known to be exhausted, denials are answered from memory for this long. */
  recheckMs: number;
}

/** Defaults: see the README's "Quotas" section for the resulting bounds. */
export const DEFAULT_LEASING: LeasingOptions = { minBlock: 50, maxBlock: 1000, targetLeaseMs: 1000, divisor: 4, idleReturnMs: 60_000, bucketLeaseMs: 1000, recheckMs: 1000 };

/** The state of one limit for one call, as answered to the caller. */
export interface LimitOutcome {
  def: LimitDefinition;
  /** The limit's capacity: cost units per window, budget balance, or bucket burst. */
  limit: number;
  remaining: number;
  resetAtMs: number;
  /** The window (or, for a bucket, the time to fill from empty) in seconds; 0 for one-off budgets. */
  windowSeconds: number;
  /** Set when the call did not fit: how long until it would. Infinity when it never will (cost above the capacity, one-off budget). */
  retryAfterMs: number;
  exceeded: boolean;
  /** Tokens this call took (0 on denial, check, dry run or shadow overflow). */
  charged: number;
}

/** One replica's memory of one counter: the tokens it holds and what it last learned of the store. */
interface Slot {
  def: LimitDefinition;
  subject: string;
  windowIndex: number;
  windowStartMs: number;
  windowEndMs: number;
  local: number;
  /** Expired bucket tokens waiting for the next flush to go back. */
  toReturn: number;
  /** What the store had left after our last lease (bucket: its level then). */
  storeLeft: number;
  capacity: number;
  learnedAtMs: number;
  leasedAtMs: number;
  lastUsedMs: number;
  /** Observed demand, tokens per ms (exponentially weighted). */
  rate: number;
  /** Cost charged since `lastUsedMs`'s tick, not yet in `rate` (see observe). */
  unobserved: number;
  inflight?: Promise<void>;
  /** No early lease (refillAhead) before this instant: the last one failed. */
  aheadAfterMs?: number;
  /** Set when the slot leaves the engine's map (window ended, idle, shutdown): a remembered reference must not be used. */
  retired?: boolean;
}

/** Lease round trips' weight in their running average (leaseRoundTripMs). */
const ROUND_TRIP_WEIGHT = 0.25;
/** Lease ahead while held tokens still cover this many round trips (aheadBelow). */
const AHEAD_ROUND_TRIPS = 2;

const isBucket = (def: LimitDefinition) => def.kind === "rate";
const bucketShape = (def: LimitDefinition): BucketShape => ({ burst: def.amount, refill: def.refill, periodMs: periodSeconds(def.period, 0) * 1000 });

/** The leasing engine of one replica. */
export interface LeaseEngine {
  /**
   * Charges `cost` to every limit, all or nothing: when a non-shadow limit cannot afford it, the
   * tokens already taken for the others go back to local memory and the call is charged nothing.
   * Shadow limits are charged when they can afford it and reported as exceeded when not, but never deny.
   * With `dryRun` (or cost 0) nothing is taken; the answer says whether the cost would fit (cost 0: whether anything is left).
   * When every limit's tokens are already held here, the answer is synchronous (no promise).
   */
  charge(defs: readonly LimitDefinition[], subject: QuotaSubject, cost: number, dryRun: boolean): MaybePromise<LimitOutcome[]>;
  /** Puts tokens a call took back into local memory (an idempotent retry lost the race to record its answer). */
  refund(outcomes: readonly LimitOutcome[], subject: QuotaSubject): void;
  /** Returns tokens of ended windows, idle counters and stale bucket leases to the store. */
  flush(): Promise<void>;
  /** Returns every held token to the store (graceful shutdown). */
  close(): Promise<void>;
  /** Tokens this replica holds, over every counter (for tests and metrics). */
  held(): number;
}

/**
 * Creates the engine. Invariant: tokens only enter local memory as grants of one atomic store
 * statement that never lets `used` pass `capacity` (or a bucket go below zero), and each token is
 * admitted at most once, so across replicas and crashes admitted cost never exceeds the limit.
 * A crash loses at most the blocks the crashed replica held (under-admission, never over).
 */
export function createLeaseEngine(repo: QuotaRepo, now: () => number, options: Partial<LeasingOptions> = {}): LeaseEngine {
  const o = { ...DEFAULT_LEASING, ...options };
  const slots = new Map<string, Slot>();
  /**
   * The slots a subject used last, by limit id: a warm call finds its counter here without
   * building the map key. Subjects are one object per key record (quotaSubjectOf); a reference
   * is used only while its slot is live, in its window, and for the same definition object.
   */
  const recent = new WeakMap<QuotaSubject, Map<number, Slot>>();
  /** How long a window lease takes to come back, store and event loop included (ms, exponentially weighted; 0 until one has). */
  let leaseRoundTripMs = 0;

  function slotOf(def: LimitDefinition, subject: QuotaSubject, nowMs: number): Slot {
    let mine = recent.get(subject);
    const known = mine?.get(def.limitId);
    if (known && known.def === def && !known.retired && nowMs < known.windowEndMs && nowMs >= known.windowStartMs) return known;
    const slot = slotFor(def, counterSubject(def, subject), nowMs);
    if (!mine) recent.set(subject, (mine = new Map()));
    mine.set(def.limitId, slot);
    return slot;
  }

  function slotFor(def: LimitDefinition, subject: string, nowMs: number): Slot {
    const w = isBucket(def) ? { index: 0, startMs: Number.NEGATIVE_INFINITY, endMs: Number.POSITIVE_INFINITY } : windowAt(def.period, nowMs);
    const key = `${def.limitId}\u0000${subject}\u0000${w.index}`;
    let slot = slots.get(key);
    if (slot) {
      // Definitions are reloaded as new objects; the counter's state stays. When an operator changed
      // the amount, ask the store again at once (no denial from memory), and give back tokens leased
      // under a higher limit so that a lowered limit binds from the next call.
      if (slot.def !== def && (slot.def.amount !== def.amount || slot.def.cap !== def.cap)) {
        slot.learnedAtMs = Number.NEGATIVE_INFINITY;
        if (def.amount < slot.def.amount) {
          slot.toReturn += slot.local;
          slot.local = 0;
        }
      }
      slot.def = def;
      return slot;
    }
    const capacity = def.kind === "budget" && def.refillMode === "add" ? (def.cap ?? def.amount) : def.amount;
    slot = { def, subject, windowIndex: w.index, windowStartMs: w.startMs, windowEndMs: w.endMs, local: 0, toReturn: 0, storeLeft: capacity, capacity,
      learnedAtMs: Number.NEGATIVE_INFINITY, leasedAtMs: nowMs, lastUsedMs: nowMs, rate: 0, unobserved: 0 };
    slots.set(key, slot);
    return slot;
  }

  /** What the store is believed to have left now (a bucket refills since we learned its level). */
  function storeLeftNow(slot: Slot, nowMs: number): number {
    if (!isBucket(slot.def)) return slot.storeLeft;
    return Math.floor(levelAt(bucketShape(slot.def), { tokens: slot.storeLeft, atMs: slot.learnedAtMs }, nowMs));
  }

  /** One atomic lease statement; returns how many tokens it granted into local memory. */
  async function lease(slot: Slot, need: number, want: number): Promise<number> {
    const nowMs = now();
    if (isBucket(slot.def)) {
      const shape = bucketShape(slot.def);
      const r = await repo.leaseBucket({ limitId: slot.def.limitId, subject: slot.subject, burst: shape.burst, ratePerMs: ratePerMs(shape), nowMs, need, want, divisor: o.divisor });
      slot.storeLeft = r.tokens;
      slot.local += r.granted;
      if (r.granted > 0) slot.leasedAtMs = nowMs;
      slot.learnedAtMs = nowMs;
      return r.granted;
    } else {
      const d = slot.def;
      const r = await repo.leaseWindow({ limitId: d.limitId, subject: slot.subject, windowIndex: slot.windowIndex, amount: d.amount,
        carryOver: d.kind === "budget" && d.refillMode === "add", cap: d.cap, need, want, divisor: o.divisor });
      const tookMs = Math.max(0, now() - nowMs);
      leaseRoundTripMs = leaseRoundTripMs === 0 ? tookMs : leaseRoundTripMs * (1 - ROUND_TRIP_WEIGHT) + tookMs * ROUND_TRIP_WEIGHT;
      slot.capacity = r.capacity;
      slot.storeLeft = r.capacity - r.used;
      slot.local += r.granted;
      slot.learnedAtMs = nowMs;
      return r.granted;
    }
  }

  /**
   * Whether `cost` can be taken from tokens this replica holds, without asking the store. Bucket
   * tokens held longer than `bucketLeaseMs` may not be spent (acquire returns them).
   */
  function holds(slot: Slot, cost: number): boolean {
    return slot.local >= cost && !(isBucket(slot.def) && now() - slot.leasedAtMs >= o.bucketLeaseMs);
  }

  /** Takes `cost` tokens already held by this replica, if it holds them (and they may still be spent). */
  function takeLocal(slot: Slot, cost: number): boolean {
    if (!holds(slot, cost)) return false;
    slot.local -= cost;
    return true;
  }

  /**
   * Takes `cost` from local memory, leasing from the store first if needed; false when the store
   * cannot grant it (answered from memory while that is known). The take happens synchronously
   * with the check, so concurrent calls never spend the same token.
   */
  async function acquire(slot: Slot, cost: number): Promise<boolean> {
    for (;;) {
      if (isBucket(slot.def) && slot.local > 0 && now() - slot.leasedAtMs >= o.bucketLeaseMs) {
        // A rate token must be spent soon after it left the bucket, or the bucket's burst bound would stretch.
        slot.toReturn += slot.local;
        slot.local = 0;
      }
      if (slot.local >= cost) {
        slot.local -= cost;
        return true;
      }
      const need = cost - slot.local;
      const fresh = now() < slot.learnedAtMs + o.recheckMs;
      if (fresh && need > storeLeftNow(slot, now())) return false;
      if (slot.inflight) {
        await slot.inflight;
        continue;
      }
      const want = Math.max(need, blockFor(slot));
      const granted = lease(slot, need, want);
      slot.inflight = settled(granted, slot);
      // The store granted nothing: it is exhausted for this cost (anything granted goes round the loop again).
      if ((await granted) === 0 && slot.local < cost) return false;
    }
  }

  /** The block a lease asks for: enough for `targetLeaseMs` at the observed rate, within the bounds. */
  function blockFor(slot: Slot): number {
    return Math.min(o.maxBlock, Math.max(o.minBlock, Math.ceil(slot.rate * o.targetLeaseMs)));
  }

  /**
   * Starts the next lease before the held tokens run out, so that a hot counter keeps answering
   * from memory: without it, once per block every call of that counter waited for the store's
   * answer together. When what is held would last less than two lease round trips at the
   * observed rate (`aheadBelow`), one block is asked for in the background (at most one lease per
   * counter is in flight). Its failure is not reported here: the call that finds nothing held
   * leases again and reports it; no early lease is tried again for `recheckMs`, so a store that is
   * down is not asked once per call. Window counters only — a bucket's leased tokens must be spent
   * within `bucketLeaseMs` of the lease, and a lease renews that for everything held.
   */
  function refillAhead(slot: Slot, nowMs: number): void {
    if (slot.inflight || slot.retired || isBucket(slot.def) || nowMs < (slot.aheadAfterMs ?? 0)) return;
    const block = blockFor(slot);
    if (slot.local >= aheadBelow(slot, block)) return;
    if (nowMs < slot.learnedAtMs + o.recheckMs && storeLeftNow(slot, nowMs) < 1) return; // known to be spent
    const granted = lease(slot, 1, block);
    granted.catch(() => (slot.aheadAfterMs = now() + o.recheckMs));
    slot.inflight = settled(granted, slot);
  }

  /**
   * How few held tokens start the next lease: what two lease round trips spend at the observed
   * rate, at least a quarter of a block and at most a block. A quarter of a block alone was too
   * few on a busy server: at ~10k calls/s a 1,000-token block's last quarter lasts ~25 ms, while a
   * lease came back in 20–60 ms (the event loop is busy answering calls), so 15 % of a hot
   * counter's calls waited for it. The cap keeps what a replica holds under two blocks.
   */
  function aheadBelow(slot: Slot, block: number): number {
    return Math.min(block, Math.max(block / 4, slot.rate * AHEAD_ROUND_TRIPS * leaseRoundTripMs));
  }

  /** Brings what this replica knows of the store up to date when it is stale (checks and dry runs). */
  async function refresh(slot: Slot): Promise<void> {
    if (now() < slot.learnedAtMs + o.recheckMs) return;
    if (slot.inflight) return slot.inflight;
    const learned = lease(slot, 1, 0);
    slot.inflight = settled(learned, slot);
    await learned;
  }

  /**
   * Adds a call to the counter's observed rate. Calls within one clock tick (a millisecond) are
   * summed and enter the average at the next tick, over the time that passed: counting each as if
   * a millisecond apart capped the estimate at one token per ms, so a key charged 10,000 times a
   * second was believed to run at 1,000, and its blocks and lease-ahead margin were sized for that.
   */
  function observe(slot: Slot, cost: number, nowMs: number): void {
    slot.unobserved += cost;
    const dt = nowMs - slot.lastUsedMs;
    if (dt <= 0) return;
    const alpha = Math.min(1, dt / 1000);
    slot.rate = slot.rate * (1 - alpha) + (slot.unobserved / dt) * alpha;
    slot.unobserved = 0;
    slot.lastUsedMs = nowMs;
  }

  function outcome(slot: Slot, cost: number, fits: boolean, charged: number, nowMs: number): LimitOutcome {
    const remaining = Math.max(0, slot.local + storeLeftNow(slot, nowMs));
    const d = slot.def;
    if (isBucket(d)) {
      const shape = bucketShape(d);
      return { def: d, limit: d.amount, remaining, resetAtMs: nowMs + msUntilFull(shape, remaining), windowSeconds: Math.ceil((d.amount / ratePerMs(shape)) / 1000),
        retryAfterMs: fits ? 0 : msUntil(shape, remaining, Math.max(cost, 1)), exceeded: !fits, charged };
    }
    const never = cost > slot.capacity && !(d.kind === "budget" && d.refillMode === "add") || d.period === "none";
    return { def: d, limit: slot.capacity, remaining, resetAtMs: slot.windowEndMs, windowSeconds: periodSeconds(d.period, nowMs),
      retryAfterMs: fits ? 0 : never ? Number.POSITIVE_INFINITY : slot.windowEndMs - nowMs, exceeded: !fits, charged };
  }

  /** The warm case: every limit's cost is held here, so the charge completes without a promise. */
  function chargeHeld(slots_: Slot[], cost: number, nowMs: number): LimitOutcome[] | undefined {
    for (const slot of slots_) if (!holds(slot, cost)) return undefined;
    return slots_.map((slot) => takeHeld(slot, cost, nowMs));
  }

  /** Spends `cost` of what `slot` holds (the caller checked `holds`). */
  function takeHeld(slot: Slot, cost: number, nowMs: number): LimitOutcome {
    observe(slot, cost, nowMs);
    slot.local -= cost;
    refillAhead(slot, nowMs);
    return outcome(slot, cost, true, cost, nowMs);
  }

  /** Charges slot by slot, leasing from the store where needed; all or nothing (see `charge`). */
  async function chargeSlots(slots_: Slot[], cost: number, dryRun: boolean, nowMs: number): Promise<LimitOutcome[]> {
    const outcomes: LimitOutcome[] = [];
    let denied = false;
    for (const slot of slots_) {
      if (denied) {
        // Already denied: report the others as they stand, without asking the store.
        outcomes.push(outcome(slot, cost, slot.local + storeLeftNow(slot, nowMs) >= cost, 0, nowMs));
        continue;
      }
      if (cost === 0 || dryRun) {
        await refresh(slot);
        const fits = slot.local + storeLeftNow(slot, now()) >= Math.max(cost, 1);
        outcomes.push(outcome(slot, cost, fits, 0, nowMs));
        continue;
      }
      observe(slot, cost, nowMs);
      // Tokens already held here need no lease.
      const fits = takeLocal(slot, cost) || (await acquire(slot, cost));
      if (fits) refillAhead(slot, nowMs);
      outcomes.push(outcome(slot, cost, fits, fits ? cost : 0, nowMs));
      if (!fits && !slot.def.shadow) denied = true;
    }
    if (denied) {
      outcomes.forEach((out, i) => {
        slots_[i]!.local += out.charged;
        out.remaining += out.charged;
        out.charged = 0;
      });
    }
    return outcomes;
  }

  return {
    charge(defs, subject, cost, dryRun) {
      const nowMs = now();
      if (defs.length === 1 && cost > 0 && !dryRun) {
        // One limit (an Envoy route's usual case): no slot list to build when its tokens are held.
        const slot = slotOf(defs[0]!, subject, nowMs);
        return holds(slot, cost) ? [takeHeld(slot, cost, nowMs)] : chargeSlots([slot], cost, dryRun, nowMs);
      }
      const slots_ = new Array<Slot>(defs.length); // sized once (a pushed array grows to 17 slots)
      for (let i = 0; i < defs.length; i++) slots_[i] = slotOf(defs[i]!, subject, nowMs);
      return (cost > 0 && !dryRun && chargeHeld(slots_, cost, nowMs)) || chargeSlots(slots_, cost, dryRun, nowMs);
    },

    refund(outcomes, subject) {
      const nowMs = now();
      for (const out of outcomes) if (out.charged > 0) slotOf(out.def, subject, nowMs).local += out.charged;
    },

    async flush() {
      const nowMs = now();
      const releases: Release[] = [];
      for (const [key, slot] of slots) {
        const ended = nowMs >= slot.windowEndMs;
        const idle = nowMs - slot.lastUsedMs >= o.idleReturnMs;
        const staleBucket = isBucket(slot.def) && nowMs - slot.leasedAtMs >= o.bucketLeaseMs;
        if (slot.inflight || !(ended || idle || staleBucket || slot.toReturn > 0)) continue;
        if (ended || idle || staleBucket) {
          slot.toReturn += slot.local;
          slot.local = 0;
        }
        if (slot.toReturn > 0) releases.push(releaseOf(slot));
        slot.toReturn = 0;
        if (ended || idle) {
          slots.delete(key);
          slot.retired = true;
        }
      }
      await repo.release(releases);
    },

    async close() {
      await Promise.all([...slots.values()].map((s) => s.inflight));
      for (const s of slots.values()) {
        s.toReturn += s.local;
        s.local = 0;
      }
      const releases = [...slots.values()].filter((s) => s.toReturn > 0).map(releaseOf);
      for (const s of slots.values()) s.retired = true;
      slots.clear();
      await repo.release(releases);
    },

    held: () => [...slots.values()].reduce((n, s) => n + s.local, 0),
  };
}

/** What waiters on a slot's lease await: it never rejects (the caller that started it gets the error) and clears itself. */
function settled(lease: Promise<unknown>, slot: Slot): Promise<void> {
  return lease.then(() => undefined, () => undefined).finally(() => (slot.inflight = undefined));
}

function releaseOf(slot: Slot): Release {
  return { limitId: slot.def.limitId, subject: slot.subject, windowIndex: slot.windowIndex, count: slot.toReturn, ...(isBucket(slot.def) ? { burst: slot.def.amount } : {}) };
}
