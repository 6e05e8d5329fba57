/**
 * The limit catalog cache keeps every invalidation: one that arrives while a load is under way
 * leaves that load's catalog stale, so a limit defined right after another is not missed.
 */
import { describe, expect, it } from "vitest";
import { createCatalogCache } from "../src/quota/catalog-cache.js";
import type { LimitDefinition } from "../src/quota/limits.js";

const limit = (limitId: number, name: string): LimitDefinition => ({
  limitId, name, scope: "plan", scopeId: "pro", per: "key", kind: "quota", amount: 10, refill: 0, period: "day", refillMode: "set", cap: null, shadow: false, autoApply: false,
});

/** A store whose loads the test answers one by one, each with the table as it is when the load began. */
function store() {
  let table = [limit(1, "first")];
  const pending: { defs: LimitDefinition[]; resolve: (d: LimitDefinition[]) => void }[] = [];
  return {
    define: (d: LimitDefinition) => void (table = [...table, d]),
    load: () => new Promise<LimitDefinition[]>((resolve) => pending.push({ defs: table, resolve })),
    loads: () => pending.length,
    async answer(i: number) {
      pending[i]!.resolve(pending[i]!.defs);
      await new Promise((r) => setImmediate(r));
    },
  };
}

describe("limit catalog cache", () => {
  it("stays stale when invalidated during a load, and reloads on the next read", async () => {
    const s = store();
    const cache = createCatalogCache(s.load, () => 0, 60_000);
    const first = cache.get();
    s.define(limit(2, "second")); // committed after the load read the table...
    cache.invalidate(); // ...and its notification arrives before the load ends
    await s.answer(0);
    expect((await first).names.has("second")).toBe(false);
    expect(cache.stale()).toBe(true);
    expect(cache.peek()?.names.has("second")).toBe(false); // answers at once, and starts a reload
    expect(s.loads()).toBe(2);
    await s.answer(1);
    expect(cache.stale()).toBe(false);
    expect(cache.peek()?.names.has("second")).toBe(true);
    expect(s.loads()).toBe(2); // fresh within the TTL: no further load
  });

  it("gives a catalog loaded after the last invalidation, waiting out a load that predates it", async () => {
    const s = store();
    const cache = createCatalogCache(s.load, () => 0, 60_000);
    const initial = cache.get();
    await s.answer(0);
    await initial;
    expect(cache.stale()).toBe(false);
    cache.invalidate();
    const early = cache.get(); // starts a load that will miss the next definition
    s.define(limit(3, "third"));
    cache.invalidate();
    const fresh = cache.fresh();
    await s.answer(1);
    await early;
    await s.answer(2);
    expect((await fresh).names.has("third")).toBe(true);
    expect(cache.stale()).toBe(false);
  });

  it("keeps the catalog object when a reload brings the same definitions, and replaces it when they changed", async () => {
    const s = store();
    let clock = 0;
    const cache = createCatalogCache(s.load, () => clock, 60_000);
    const first = cache.get();
    await s.answer(0);
    const catalog = await first;
    clock = 60_000; // past the TTL: answered at once, reloaded behind
    expect(cache.peek()).toBe(catalog);
    await s.answer(1);
    expect(cache.peek()).toBe(catalog); // same table: same object
    s.define(limit(2, "second"));
    cache.invalidate();
    expect(cache.peek()).toBe(catalog);
    await s.answer(2);
    const changed = cache.peek();
    expect(changed).not.toBe(catalog);
    expect(changed?.names.has("second")).toBe(true);
  });
});
