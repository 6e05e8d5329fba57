import { describe, expect, it } from "vitest";
import { windowAt, windowIndex, windowStartMs, periodSeconds } from "../src/quota/windows.js";
import { levelAt, msUntil, msUntilFull, take, type BucketShape } from "../src/quota/token-bucket.js";
import { quotaHeaders } from "../src/quota/headers.js";
import { buildCatalog, counterSubject, type LimitDefinition } from "../src/quota/limits.js";
import type { LimitOutcome } from "../src/quota/lease-engine.js";
import { createUsageRecorder } from "../src/quota/usage.js";
import { createIdempotencyCache } from "../src/quota/idempotency.js";
import { ConfigError, loadConfig } from "../src/config/config.js";

const at = (iso: string) => Date.parse(iso);

describe("calendar windows (UTC)", () => {
  it("puts the reset instant in the next window: windows are half-open [start, end)", () => {
    const w = windowAt("minute", at("2024-03-10T12:34:59.999Z"));
    expect(new Date(w.startMs).toISOString()).toBe("2024-03-10T12:34:00.000Z");
    expect(new Date(w.endMs).toISOString()).toBe("2024-03-10T12:35:00.000Z");
    expect(windowAt("minute", w.endMs).index).toBe(w.index + 1);
    expect(windowAt("second", at("2024-03-10T12:34:59.999Z")).endMs).toBe(at("2024-03-10T12:35:00.000Z"));
    expect(windowAt("hour", at("2024-03-10T12:34:59Z")).startMs).toBe(at("2024-03-10T12:00:00Z"));
  });

  it("ends a month on its true calendar length, leap years included", () => {
    expect(new Date(windowAt("month", at("2024-01-31T23:59:59.999Z")).endMs).toISOString()).toBe("2024-02-01T00:00:00.000Z");
    const leapFeb = windowAt("month", at("2024-02-29T12:00:00Z"));
    expect(new Date(leapFeb.startMs).toISOString()).toBe("2024-02-01T00:00:00.000Z");
    expect(new Date(leapFeb.endMs).toISOString()).toBe("2024-03-01T00:00:00.000Z");
    expect(periodSeconds("month", at("2024-02-10T00:00:00Z"))).toBe(29 * 86400);
    expect(periodSeconds("month", at("2023-02-10T00:00:00Z"))).toBe(28 * 86400);
    expect(periodSeconds("month", at("2100-02-10T00:00:00Z"))).toBe(28 * 86400); // 2100 is not a leap year
    expect(new Date(windowAt("month", at("2024-12-31T23:59:59.999Z")).endMs).toISOString()).toBe("2025-01-01T00:00:00.000Z");
    expect(windowIndex("month", at("2025-01-01T00:00:00Z"))).toBe(windowIndex("month", at("2024-12-31T23:59:59.999Z")) + 1);
  });

  it("uses UTC days whatever the local time zone or daylight-saving change", () => {
    // 2024-03-31 is the EU daylight-saving change; in UTC the day is still 24 h long.
    const w = windowAt("day", at("2024-03-31T01:30:00Z"));
    expect(w.endMs - w.startMs).toBe(86_400_000);
    expect(new Date(w.startMs).toISOString()).toBe("2024-03-31T00:00:00.000Z");
    expect(windowStartMs("month", windowIndex("month", at("1970-01-15T00:00:00Z")))).toBe(0);
  });

  it("gives a one-off budget a single window that never ends", () => {
    expect(windowAt("none", at("2024-05-05T00:00:00Z"))).toEqual({ index: 0, startMs: 0, endMs: Number.POSITIVE_INFINITY });
  });
});

describe("token bucket", () => {
  const shape: BucketShape = { burst: 10, refill: 10, periodMs: 60_000 }; // 10/min, burst 10

  it("refills continuously at rate and never above the burst", () => {
    expect(levelAt(shape, { tokens: 0, atMs: 0 }, 6_000)).toBeCloseTo(1);
    expect(levelAt(shape, { tokens: 0, atMs: 0 }, 30_000)).toBeCloseTo(5);
    expect(levelAt(shape, { tokens: 4, atMs: 0 }, 3_600_000)).toBe(10);
    expect(levelAt(shape, { tokens: 4, atMs: 1_000 }, 0)).toBe(4); // a clock going backwards adds nothing
  });

  it("admits exactly the burst at once, then one per refill interval", () => {
    let state = { tokens: 10, atMs: 0 };
    let admitted = 0;
    for (let i = 0; i < 15; i++) {
      const r = take(shape, state, 0, 1);
      state = r.state;
      if (r.ok) admitted++;
    }
    expect(admitted).toBe(10);
    expect(take(shape, state, 5_999, 1).ok).toBe(false);
    expect(take(shape, state, 6_000, 1).ok).toBe(true);
  });

  it("reports retry-after for a cost and the time to full", () => {
    expect(msUntil(shape, 0, 1)).toBe(6_000);
    expect(msUntil(shape, 2, 5)).toBe(18_000);
    expect(msUntil(shape, 0, 11)).toBe(Number.POSITIVE_INFINITY);
    expect(msUntilFull(shape, 5)).toBe(30_000);
  });
});

function def(over: Partial<LimitDefinition>): LimitDefinition {
  return { limitId: 1, name: "requests", scope: "plan", scopeId: "free", per: "key", kind: "quota", amount: 100, refill: 0, period: "minute",
    refillMode: "set", cap: null, shadow: false, autoApply: true, ...over };
}

describe("limit resolution", () => {
  it("lets a key's own limit override its owner's, tenant's and plan's of the same name", () => {
    const catalog = buildCatalog([
      def({ limitId: 1, scope: "plan", scopeId: "free", amount: 10 }),
      def({ limitId: 2, scope: "tenant", scopeId: "acme", amount: 20 }),
      def({ limitId: 3, scope: "key", scopeId: "K1", amount: 30 }),
      def({ limitId: 4, name: "tokens", scope: "plan", scopeId: "free", amount: 5000 }),
      def({ limitId: 5, name: "chat", scope: "plan", scopeId: "pro" }),
    ]);
    const subject = { keyId: "K1", quotaSubject: "K1", tenantId: "acme", plan: "free", ownerId: null };
    const applicable = catalog.applicable(subject);
    expect(applicable.get("requests")?.amount).toBe(30);
    expect(applicable.get("tokens")?.amount).toBe(5000);
    expect(applicable.has("chat")).toBe(false);
    expect(catalog.applicable({ ...subject, keyId: "K2", quotaSubject: "K2" }).get("requests")?.amount).toBe(20);
    expect(catalog.applicable({ ...subject, keyId: "K2", quotaSubject: "K2", tenantId: "other" }).get("requests")?.amount).toBe(10);
    // A rotated successor (new id, same lineage) keeps the limits attached to its predecessor.
    expect(catalog.applicable({ ...subject, keyId: "K9" })).toEqual(applicable);
    expect(catalog.names.has("chat")).toBe(true);
  });

  it("counts per key, per tenant, or per owner (a key without an owner counts alone)", () => {
    const s = { keyId: "K1", quotaSubject: "K1", tenantId: "acme", plan: "free", ownerId: null };
    expect(counterSubject(def({ per: "tenant" }), s)).toBe("tenant:acme");
    expect(counterSubject(def({ per: "owner" }), s)).toBe("key:K1");
    expect(counterSubject(def({ per: "owner" }), { ...s, ownerId: "alice" })).toBe("owner:alice");
  });

  it("counts a rotated key and its successor on one counter (their shared quota subject)", () => {
    const old = { keyId: "K1", quotaSubject: "K1", tenantId: "acme", plan: "free", ownerId: null };
    const successor = { ...old, keyId: "K2" };
    expect(counterSubject(def({ per: "key" }), successor)).toBe(counterSubject(def({ per: "key" }), old));
  });
});

function outcome(over: Partial<LimitOutcome> & { def: LimitDefinition }): LimitOutcome {
  return { limit: 100, remaining: 40, resetAtMs: 60_000, windowSeconds: 60, retryAfterMs: 0, exceeded: false, charged: 1, ...over };
}

describe("rate-limit headers", () => {
  it("advertises every enforced policy and the binding one in IETF and X-RateLimit form", () => {
    const now = at("2024-01-01T00:00:30Z");
    const h = quotaHeaders([
      outcome({ def: def({ name: "requests" }), limit: 100, remaining: 40, resetAtMs: now + 30_000, windowSeconds: 60 }),
      outcome({ def: def({ name: "tokens", period: "hour" }), limit: 5000, remaining: 7, resetAtMs: now + 1_770_500, windowSeconds: 3600 }),
      outcome({ def: def({ name: "shadowy", shadow: true }), remaining: 0 }),
    ], true, now);
    expect(h["ratelimit-policy"]).toBe('"requests";q=100;w=60, "tokens";q=5000;w=3600');
    expect(h.ratelimit).toBe('"tokens";r=7;t=1771');
    expect(h["x-ratelimit-limit"]).toBe("5000");
    expect(h["x-ratelimit-remaining"]).toBe("7");
    expect(h["x-ratelimit-reset"]).toBe(String(Math.ceil((now + 1_770_500) / 1000)));
    expect(h["retry-after"]).toBeUndefined();
  });

  it("names the denying limit and a Retry-After of at least one second on denial", () => {
    const now = 1_000_000;
    const h = quotaHeaders([
      outcome({ def: def({ name: "requests" }), remaining: 90 }),
      outcome({ def: def({ name: "chat", kind: "rate" }), limit: 10, remaining: 0, resetAtMs: now + 60_000, windowSeconds: 60, retryAfterMs: 200, exceeded: true }),
    ], false, now);
    expect(h.ratelimit).toBe('"chat";r=0;t=60');
    expect(h["retry-after"]).toBe("1");
  });

  it("sends no Retry-After when waiting cannot help (a one-off budget)", () => {
    const h = quotaHeaders([outcome({ def: def({ name: "credits", kind: "budget", period: "none" }), remaining: 0, resetAtMs: Infinity, windowSeconds: 0, retryAfterMs: Infinity, exceeded: true })], false, 0);
    expect(h["retry-after"]).toBeUndefined();
    expect(h["x-ratelimit-reset"]).toBeUndefined();
    expect(h["ratelimit-policy"]).toBe('"credits";q=100');
  });
});

describe("usage write interval setting", () => {
  it("defaults to 5 s, takes a whole number of milliseconds in range, and names the variable otherwise", () => {
    expect(loadConfig({}).quota.usageFlushMs).toBe(5000);
    expect(loadConfig({ TOLLGATE_USAGE_FLUSH_MS: "60000" }).quota.usageFlushMs).toBe(60_000);
    for (const bad of ["0", "9", "3600001", "5s", "-1", "1.5"]) {
      expect(() => loadConfig({ TOLLGATE_USAGE_FLUSH_MS: bad }), bad).toThrow(ConfigError);
      try {
        loadConfig({ TOLLGATE_USAGE_FLUSH_MS: bad });
      } catch (err) {
        expect((err as ConfigError).problems.join("\n")).toMatch(/TOLLGATE_USAGE_FLUSH_MS/);
      }
    }
  });
});

describe("usage recorder and idempotency cache", () => {
  it("counts per key, limit and minute, and writes them in one statement per flush", async () => {
    let clock = at("2024-01-01T10:59:30Z");
    const writes: unknown[][] = [];
    const rec = createUsageRecorder(async (items) => void writes.push(items), () => clock);
    const s = { keyId: "K1", quotaSubject: "K1", tenantId: "acme", plan: "free", ownerId: null };
    rec.record(s, "requests", true, 3);
    rec.record(s, "requests", false, 0);
    clock += 60_000; // next minute
    rec.record(s, "requests", true, 2);
    await rec.flush();
    expect(writes).toEqual([[
      { minuteMs: at("2024-01-01T10:59:00Z"), tenantId: "acme", keyId: "K1", limitName: "requests", admitted: 1, denied: 1, cost: 3 },
      { minuteMs: at("2024-01-01T11:00:00Z"), tenantId: "acme", keyId: "K1", limitName: "requests", admitted: 1, denied: 0, cost: 2 },
    ]]);
    await rec.flush();
    expect(writes).toHaveLength(1); // nothing new, nothing written
  });

  it("keeps counts of a failed write for the next flush", async () => {
    let fail = true;
    const writes: Array<Array<{ admitted: number }>> = [];
    const rec = createUsageRecorder(async (items) => {
      if (fail) throw new Error("down");
      writes.push(items);
    }, () => 0);
    rec.record({ keyId: "K", quotaSubject: "K", tenantId: "t", plan: "free", ownerId: null }, "requests", true, 1);
    await expect(rec.flush()).rejects.toThrow("down");
    fail = false;
    await rec.flush();
    expect(writes[0]![0]!.admitted).toBe(1);
  });

  it("counts a subject's repeat calls into the right batch across flushes, failed ones included", async () => {
    let fail = false;
    const writes: Array<Array<{ admitted: number; denied: number }>> = [];
    const rec = createUsageRecorder(async (items) => {
      if (fail) throw new Error("down");
      writes.push(items as never);
    }, () => 0);
    const s = { keyId: "K", quotaSubject: "K", tenantId: "t", plan: "free", ownerId: null }; // one object, as quotaSubjectOf gives
    // The last write's rows for the one (key, limit, minute), summed as the store's statement sums them.
    const minute = () => writes.at(-1)!.reduce((sum, r) => ({ admitted: sum.admitted + r.admitted, denied: sum.denied + r.denied }), { admitted: 0, denied: 0 });
    rec.record(s, "requests", true, 1);
    rec.record(s, "requests", true, 1);
    await rec.flush();
    expect(minute().admitted).toBe(2);
    rec.record(s, "requests", true, 1); // the remembered entry was flushed: a new one
    await rec.flush();
    expect(minute().admitted).toBe(1);
    rec.record(s, "requests", false, 0);
    fail = true;
    await expect(rec.flush()).rejects.toThrow("down");
    rec.record(s, "requests", true, 1); // written with the kept counts (a row of its own), not lost
    fail = false;
    await rec.flush();
    expect(minute()).toEqual({ admitted: 1, denied: 1 });
    await rec.flush();
    expect(writes).toHaveLength(3);
  });

  it("writes many keys in bounded chunks; a failed chunk keeps itself and the rest, never what was written", async () => {
    const writes: Array<Array<{ keyId: string; admitted: number }>> = [];
    let failOnCall = 2;
    let callNo = 0;
    const rec = createUsageRecorder(async (items) => {
      if (++callNo === failOnCall) throw new Error("down");
      writes.push(items as never);
    }, () => 0, 100, 2);
    for (const k of ["A", "B", "C", "D", "E"]) rec.record({ keyId: k, quotaSubject: k, tenantId: "t", plan: "free", ownerId: null }, "requests", true, 1);
    await expect(rec.flush()).rejects.toThrow("down");
    failOnCall = 0;
    await rec.flush();
    expect(writes.map((w) => w.length)).toEqual([2, 2, 1]);
    expect(writes.flat().map((r) => r.keyId).sort()).toEqual(["A", "B", "C", "D", "E"]); // each exactly once
  });

  it("forgets idempotent answers after their TTL and beyond its bound, oldest first", () => {
    let clock = 0;
    const cache = createIdempotencyCache<number>(2, 1000, () => clock);
    cache.set("k", "a", 1);
    cache.set("k", "b", 2);
    expect(cache.get("k", "a")).toBe(1); // a is now the most recent
    cache.set("k", "c", 3);
    expect(cache.get("k", "b")).toBeUndefined();
    expect(cache.get("k", "a")).toBe(1);
    clock = 1000;
    expect(cache.get("k", "c")).toBeUndefined();
  });
});
