import { buildCatalog, type LimitCatalog, type LimitDefinition } from "./limits.js";

/** The current limit catalog of a replica, reloaded on change notifications and every `ttlMs`. */
export interface CatalogCache {
  /** The catalog; loads it on first use. Throws UNAVAILABLE only when it was never loaded and the store is down. */
  get(): Promise<LimitCatalog>;
  /** The catalog when one is loaded (starting a background reload when it is stale), without a promise; else undefined. */
  peek(): LimitCatalog | undefined;
  /** Marks the catalog stale (a `limits:` notification, or a reconnect that may have missed some). */
  invalidate(): void;
}

/**
 * Creates the cache. Definitions are few (plans × names plus overrides), so all of them are held
 * in memory and the hot path never reads them from the store. A failed reload keeps the previous
 * catalog: limits keep being enforced as last known while the database is away.
 */
export function createCatalogCache(load: () => Promise<LimitDefinition[]>, now: () => number, ttlMs: number): CatalogCache {
  let current: LimitCatalog | undefined;
  let loadedAtMs = Number.NEGATIVE_INFINITY;
  let loading: Promise<LimitCatalog> | undefined;

  const reload = () =>
    (loading ??= load()
      .then((defs) => {
        current = buildCatalog(defs);
        loadedAtMs = now();
        return current;
      })
      .finally(() => (loading = undefined)));

  return {
    async get() {
      if (!current) return reload();
      if (now() - loadedAtMs >= ttlMs) void reload().catch(() => undefined);
      return current;
    },
    peek() {
      if (current && now() - loadedAtMs >= ttlMs) void reload().catch(() => undefined);
      return current;
    },
    invalidate() {
      loadedAtMs = Number.NEGATIVE_INFINITY;
    },
  };
}
