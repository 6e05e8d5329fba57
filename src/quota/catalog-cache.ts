import { isDeepStrictEqual } from "node:util";
import { buildCatalog, type LimitCatalog, type LimitDefinition } from "./limits.js";

/** The current limit catalog of a replica, reloaded on change notifications and every `ttlMs`. */
export interface CatalogCache {
  /** The catalog; loads it on first use. Throws UNAVAILABLE only when it was never loaded and the store is down. */
  get(): Promise<LimitCatalog>;
  /** The catalog when one is loaded (starting a background reload when it is stale), without a promise; else undefined. */
  peek(): LimitCatalog | undefined;
  /** Marks the catalog stale (a `limits:` notification, or a reconnect that may have missed some). */
  invalidate(): void;
  /** Whether the catalog was invalidated after the load that produced it began (it may lack a change). */
  stale(): boolean;
  /** A catalog loaded after the last invalidation (reloading if needed). */
  fresh(): Promise<LimitCatalog>;
}

/**
 * Creates the cache. Definitions are few (plans × names plus overrides), so all of them are held
 * in memory and the hot path never reads them from the store. A failed reload keeps the previous
 * catalog: limits keep being enforced as last known while the database is away.
 *
 * An invalidation that arrives while a load is under way is not lost: that load may have read
 * the table before the change, so its catalog stays stale and the next read loads again (two
 * limits defined back to back used to leave the second unknown on a replica until the TTL).
 */
export function createCatalogCache(load: () => Promise<LimitDefinition[]>, now: () => number, ttlMs: number): CatalogCache {
  let current: LimitCatalog | undefined;
  let loadedDefs: LimitDefinition[] = [];
  let loadedAtMs = Number.NEGATIVE_INFINITY;
  let loading: Promise<LimitCatalog> | undefined;
  /** Invalidations so far, and how many there had been when the current catalog's load began. */
  let invalidations = 0;
  let loadedAfter = -1;

  const reload = () => {
    if (loading) return loading;
    const started = invalidations;
    return (loading = load()
      .then((defs) => {
        // Unchanged definitions keep the catalog object: what is memoized per catalog and per
        // definition (each key's resolved limits, its counters' slots, header bytes) stays valid.
        if (!current || !isDeepStrictEqual(loadedDefs, defs)) current = buildCatalog(defs);
        loadedDefs = defs;
        loadedAfter = started;
        loadedAtMs = now();
        return current;
      })
      .finally(() => (loading = undefined)));
  };
  const stale = () => loadedAfter !== invalidations;
  /** Reload when invalidated since the current catalog's load began, or older than the TTL. */
  const due = () => stale() || now() - loadedAtMs >= ttlMs;

  return {
    async get() {
      if (!current) return reload();
      if (due()) void reload().catch(() => undefined);
      return current;
    },
    peek() {
      if (current && due()) void reload().catch(() => undefined);
      return current;
    },
    invalidate() {
      invalidations++;
    },
    stale,
    async fresh() {
      // A load already under way may predate the invalidation: wait for it, then load again if so.
      for (let attempt = 0; attempt < 3 && (!current || stale()); attempt++) await reload();
      return current ?? reload();
    },
  };
}
