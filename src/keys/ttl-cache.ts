/**
 * Refresh ahead: a cache entry used once this fraction of its TTL has passed is re-read in the
 * background while it keeps answering, so an entry in use never makes a call wait for the re-read
 * (the key cache, plans and roles). No answer comes from an entry older than its TTL.
 */
export const REFRESH_AHEAD_AT = 0.75;

/**
 * A bounded map with per-entry expiry. When full, the oldest insertion is dropped (FIFO): cheaper
 * than true LRU on every hit, and hits re-insert on refresh, so hot entries stay young anyway.
 */
export class TtlCache<K, V> {
  private readonly entries = new Map<K, { value: V; expiresAt: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number,
  ) {}

  /** The value, or undefined when absent or expired. */
  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key: K, value: V, ttlMs: number): void {
    this.entries.delete(key);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, { value, expiresAt: this.now() + ttlMs });
  }

  delete(key: K): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * Shares one in-flight promise per key: concurrent callers asking for the same thing wait for
 * the first caller's work instead of repeating it (e.g. one argon2 verification for a thousand
 * simultaneous first calls of a new key).
 */
export class SingleFlight<K, V> {
  private readonly inFlight = new Map<K, Promise<V>>();

  /** True while work for `key` is in flight, so a caller would join it rather than start new work. */
  has(key: K): boolean {
    return this.inFlight.has(key);
  }

  run(key: K, work: () => Promise<V>): Promise<V> {
    const existing = this.inFlight.get(key);
    if (existing) return existing;
    const promise = work().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, promise);
    return promise;
  }
}
