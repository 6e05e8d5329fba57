/**
 * Idempotency keys: a retry of a charged call with the same key (for the same API key) gets the
 * first answer back and is never charged again, on any replica.
 *
 * Design: the first call charges from memory as usual and then *claims* the key with one
 * `INSERT … ON CONFLICT DO NOTHING` that stores its answer (TTL 24 h by default). Whoever inserts
 * first wins; a call that loses the race (a concurrent retry, here or on another replica) puts its
 * tokens back into local memory and answers with the stored answer. So a call carrying an
 * idempotency key costs one statement (two for a retry that misses this replica's memory), and
 * calls without one cost none. Recent answers are also kept in a bounded in-memory LRU, so retries
 * that come back to the same replica are answered without the store. Only charged calls are
 * recorded: a denied call charged nothing, so its retry is decided afresh.
 */
export interface IdempotencyCache<T> {
  get(scope: string, key: string): T | undefined;
  set(scope: string, key: string, value: T): void;
}

/** A bounded LRU of recent answers (Map keeps insertion order; a hit moves the entry to the end). */
export function createIdempotencyCache<T>(maxEntries: number, ttlMs: number, now: () => number): IdempotencyCache<T> {
  const entries = new Map<string, { value: T; expiresAtMs: number }>();
  return {
    get(scope, key) {
      const k = `${scope}\u0000${key}`;
      const e = entries.get(k);
      if (!e) return undefined;
      entries.delete(k);
      if (e.expiresAtMs <= now()) return undefined;
      entries.set(k, e);
      return e.value;
    },
    set(scope, key, value) {
      const k = `${scope}\u0000${key}`;
      entries.delete(k);
      entries.set(k, { value, expiresAtMs: now() + ttlMs });
      while (entries.size > maxEntries) entries.delete(entries.keys().next().value as string);
    },
  };
}
