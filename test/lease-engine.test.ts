import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { createPool } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";
import { createQuotaRepo } from "../src/store/quota-repo.js";
import { createLeaseEngine, DEFAULT_LEASING, type LeasingOptions } from "../src/quota/lease-engine.js";
import { createQuotaRuntime } from "../src/quota/quota-runtime.js";
import { createLogger } from "../src/observability/logger.js";
import type { LimitDefinition } from "../src/quota/limits.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { defineLimit, storedUsed } from "./support/quota.js";

let db: TestDatabase;
let pool: pg.Pool;
let clock = Date.parse("2024-02-29T10:00:00Z");
const now = () => clock;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = createPool({ connectionString: db.url, poolSize: 10, timeoutMs: 5000 }, () => {});
  await migrate(pool);
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

let seq = 0;
async function limit(over: Partial<LimitDefinition>): Promise<LimitDefinition> {
  const d: Omit<LimitDefinition, "limitId"> = { name: `l${++seq}`, scope: "plan", scopeId: "test", per: "key", kind: "quota", amount: 100, refill: 0,
    period: "day", refillMode: "set", cap: null, shadow: false, autoApply: false, ...over };
  return { ...d, limitId: await defineLimit(pool, d) };
}
const subject = (keyId = "K1") => ({ keyId, quotaSubject: keyId, tenantId: "acme", plan: "test", ownerId: null });
const engine = (options: Partial<LeasingOptions> = {}) => {
  const repo = createQuotaRepo(pool);
  return { repo, engine: createLeaseEngine(repo, now, options) };
};

async function hammer(e: ReturnType<typeof createLeaseEngine>, defs: LimitDefinition[], calls: number, cost = 1): Promise<number> {
  let admitted = 0;
  await Promise.all(Array.from({ length: calls }, async () => {
    const out = await e.charge(defs, subject(), cost, false);
    if (out.every((o) => !o.exceeded || o.def.shadow)) admitted++;
  }));
  return admitted;
}

describe("leasing engine against PostgreSQL", () => {
  it("two replicas hammering one quota admit exactly the limit, and hand back what they hold", async () => {
    const d = await limit({ amount: 257 });
    const a = engine();
    const b = engine();
    const [x, y] = await Promise.all([hammer(a.engine, [d], 300), hammer(b.engine, [d], 300)]);
    // Keep asking until neither holds anything: tokens a replica holds are not lost, only parked.
    const more = (await hammer(a.engine, [d], 50)) + (await hammer(b.engine, [d], 50));
    expect(x + y + more).toBe(257);
    expect(a.engine.held() + b.engine.held()).toBe(0);
    expect(await storedUsed(pool, d.limitId)).toBe(257);
  });

  it("shrinks blocks near the limit, so that a replica's unused tokens go back at shutdown", async () => {
    const d = await limit({ amount: 1000 });
    const a = engine({ minBlock: 100 });
    expect(await hammer(a.engine, [d], 10)).toBe(10);
    expect(a.engine.held()).toBe(90);
    await a.engine.close();
    expect(await storedUsed(pool, d.limitId)).toBe(10);
  });

  it("charges nothing when any non-shadow limit denies (all or nothing)", async () => {
    const roomy = await limit({ amount: 100 });
    const tight = await limit({ amount: 2 });
    const a = engine({ minBlock: 1 });
    expect(await hammer(a.engine, [roomy, tight], 5)).toBe(2);
    await a.engine.close();
    expect(await storedUsed(pool, roomy.limitId)).toBe(2);
    expect(await storedUsed(pool, tight.limitId)).toBe(2);
  });

  it("reports a shadow limit as exceeded but never denies because of it", async () => {
    const shadow = await limit({ amount: 3, shadow: true });
    const a = engine();
    const outs = [];
    for (let i = 0; i < 5; i++) outs.push(await a.engine.charge([shadow], subject(), 1, false));
    expect(outs.map((o) => o[0]!.exceeded)).toEqual([false, false, false, true, true]);
    expect(outs.map((o) => o[0]!.remaining)).toEqual([2, 1, 0, 0, 0]);
  });

  it("answers denials inside an exhausted window from memory, and starts the next window fresh", async () => {
    const d = await limit({ amount: 5, period: "minute" });
    const { repo, engine: e } = engine({ minBlock: 5, recheckMs: 60_000 });
    clock = Date.parse("2024-02-29T10:01:30Z");
    expect(await hammer(e, [d], 8)).toBe(5);
    const before = repo.statements;
    const denied = await e.charge([d], subject(), 1, false);
    expect(denied[0]).toMatchObject({ exceeded: true, remaining: 0, resetAtMs: Date.parse("2024-02-29T10:02:00Z"), retryAfterMs: 30_000 });
    expect(repo.statements).toBe(before);
    clock = Date.parse("2024-02-29T10:02:00Z");
    expect(await hammer(e, [d], 8)).toBe(5);
  });

  it("remembers a subject's counter only while it is live: a new window, an idle return and a reload each find the right one", async () => {
    const d = await limit({ amount: 1000, period: "minute" });
    const { repo, engine: e } = engine({ minBlock: 10, maxBlock: 10, idleReturnMs: 60_000 });
    const who = subject("K-remembered"); // one object for every call, as quotaSubjectOf gives
    clock = Date.parse("2024-02-29T11:00:10Z");
    const first = e.charge([d], who, 1, false);
    expect(first).toBeInstanceOf(Promise); // nothing held yet: it must lease
    await first;
    for (let i = 0; i < 13; i++) await e.charge([d], who, 1, false);
    expect(e.charge([d], who, 1, false)).not.toBeInstanceOf(Promise); // tokens held here: answered without a promise
    expect(await storedUsed(pool, d.limitId)).toBe(20); // two blocks of 10
    expect(e.held()).toBe(5);
    clock = Date.parse("2024-02-29T11:01:10Z"); // next window: a new counter, not the remembered one
    const [next] = await e.charge([d], who, 1, false);
    expect(next).toMatchObject({ remaining: 999, resetAtMs: Date.parse("2024-02-29T11:02:00Z") });
    clock += 120_000; // idle: flush hands both windows' tokens back and retires their counters
    await e.flush();
    expect(e.held()).toBe(0);
    const statements = repo.statements;
    const [again] = await e.charge([d], who, 1, false); // must lease afresh, not spend from a retired counter
    expect(again!.exceeded).toBe(false);
    expect(repo.statements).toBe(statements + 1);
    expect(e.held()).toBe(9);
    const lowered = { ...d, amount: 5 }; // an operator lowered the limit: the reloaded definition is a new object
    await pool.query("UPDATE quota_limits SET amount = 5 WHERE limit_id = $1", [d.limitId]);
    const before = repo.statements;
    const [after] = await e.charge([lowered], who, 1, false);
    // Not served from the 9 remembered tokens leased under the old limit: they go back, and the store decides.
    expect(repo.statements).toBe(before + 1);
    expect(after!.exceeded).toBe(true); // 10 already leased in this window ≥ the new limit of 5
    expect(e.held()).toBe(0);
  });

  it("rolls minute usage up into its minute, hour and day rows (UTC) in the store, adding to what is there", async () => {
    const repo = createQuotaRepo(pool);
    const row = (minute: string, admitted: number, cost: number) => ({ minuteMs: Date.parse(minute), tenantId: "roll", keyId: "R1", limitName: "requests", admitted, denied: 1, cost });
    await repo.addUsage([row("2024-03-31T23:59:00Z", 2, 20), row("2024-04-01T00:00:00Z", 3, 30)]);
    await repo.addUsage([row("2024-04-01T00:00:00Z", 1, 5)]);
    const { rows } = await pool.query<{ granularity: string; bucket: string; admitted: string; denied: string; cost: string }>(
      `SELECT granularity, to_char(bucket_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI') AS bucket, admitted, denied, cost
       FROM quota_usage WHERE tenant_id = 'roll' ORDER BY granularity, bucket_start`);
    expect(rows.map((r) => [r.granularity, r.bucket, Number(r.admitted), Number(r.denied), Number(r.cost)])).toEqual([
      ["day", "2024-03-31T00:00", 2, 1, 20],
      ["day", "2024-04-01T00:00", 4, 2, 35],
      ["hour", "2024-03-31T23:00", 2, 1, 20],
      ["hour", "2024-04-01T00:00", 4, 2, 35],
      ["minute", "2024-03-31T23:59", 2, 1, 20],
      ["minute", "2024-04-01T00:00", 4, 2, 35],
    ]);
  });

  it("writes usage on its own interval, and at once when a flush is asked for", async () => {
    await defineLimit(pool, { name: "usage-interval", scopeId: "usage-plan", amount: 1000 });
    let t = Date.parse("2024-05-01T12:00:00Z");
    const runtime = createQuotaRuntime(pool, { leasing: DEFAULT_LEASING, flushMs: 10, usageFlushMs: 60_000, catalogTtlMs: 60_000 }, () => t, createLogger("silent"));
    const rows = async () => Number((await pool.query("SELECT count(*) AS n FROM quota_usage WHERE key_id = 'U1'")).rows[0].n);
    try {
      const who = { keyId: "U1", quotaSubject: "U1", tenantId: "t", plan: "usage-plan", ownerId: null };
      await runtime.service.consume(who, { limits: ["usage-interval"], cost: 1, idempotencyKey: "", dryRun: false });
      await new Promise((r) => setTimeout(r, 100)); // several lease flushes
      expect(await rows()).toBe(0);
      t += 60_000; // the usage interval has passed: the next tick writes
      await new Promise((r) => setTimeout(r, 100));
      expect(await rows()).toBe(3); // minute, hour and day
      await runtime.service.consume(who, { limits: ["usage-interval"], cost: 1, idempotencyKey: "", dryRun: false });
      await runtime.flush(); // asked for: written now
      expect(Number((await pool.query("SELECT admitted FROM quota_usage WHERE key_id = 'U1' AND granularity = 'day'")).rows[0].admitted)).toBe(2);
    } finally {
      await runtime.close();
    }
  });

  it("rolls an unused budget over into the next month with refill mode add, up to the cap", async () => {
    const d = await limit({ kind: "budget", amount: 100, period: "month", refillMode: "add", cap: 250 });
    const { engine: e } = engine({ minBlock: 1 });
    clock = Date.parse("2024-01-31T23:00:00Z");
    await e.charge([d], subject(), 30, false);
    await e.close();
    clock = Date.parse("2024-02-01T00:00:00Z");
    const [feb] = await e.charge([d], subject(), 0, false); // check only
    expect(feb).toMatchObject({ limit: 170, remaining: 170, exceeded: false });
    clock = Date.parse("2024-04-01T00:00:00Z"); // two more refills: 170 + 200, capped
    const [apr] = await e.charge([d], subject(), 250, false);
    expect(apr).toMatchObject({ limit: 250, remaining: 0, exceeded: false });
  });

  it("replaces the balance each month with refill mode set, and refuses a cost above the budget for good", async () => {
    const d = await limit({ kind: "budget", amount: 50, period: "month" });
    const { engine: e } = engine({ minBlock: 1 });
    clock = Date.parse("2024-03-31T23:59:59Z");
    expect((await e.charge([d], subject(), 50, false))[0]!.exceeded).toBe(false);
    expect((await e.charge([d], subject(), 1, false))[0]).toMatchObject({ exceeded: true, retryAfterMs: 1000 });
    clock = Date.parse("2024-04-01T00:00:00Z");
    expect((await e.charge([d], subject(), 50, false))[0]!.exceeded).toBe(false);
    expect((await e.charge([d], subject(), 51, false))[0]!.retryAfterMs).toBe(Number.POSITIVE_INFINITY);
  });

  it("refills a token bucket at its rate across replicas: burst first, then one per interval", async () => {
    const d = await limit({ kind: "rate", amount: 10, refill: 10, period: "minute" }); // 10/min, burst 10
    const a = engine({ minBlock: 3 });
    const b = engine({ minBlock: 3 });
    clock = Date.parse("2024-05-01T00:00:00Z");
    const admitted = (await hammer(a.engine, [d], 8)) + (await hammer(b.engine, [d], 8));
    // b may be refused while a still holds a leased token, so drain a too.
    const total = admitted + (await hammer(a.engine, [d], 5));
    expect(total).toBe(10);
    const [denied] = await b.engine.charge([d], subject(), 1, false);
    expect(denied).toMatchObject({ exceeded: true, retryAfterMs: 6000 });
    clock += 6_000;
    expect(await hammer(b.engine, [d], 3)).toBe(1);
  });

  it("leases the next block before the held one runs out, so a hot counter's calls keep answering from memory", async () => {
    const d = await limit({ amount: 1_000_000 });
    const repo = createQuotaRepo(pool);
    // The real store, with each lease's promise and the tokens held when it was asked for recorded.
    const leases: { heldThen: number; answer: Promise<unknown> }[] = [];
    const watched: typeof repo = Object.create(repo, {
      leaseWindow: { value: (l: Parameters<typeof repo.leaseWindow>[0]) => {
        const answer = repo.leaseWindow(l);
        leases.push({ heldThen: e.held(), answer });
        return answer;
      } },
    });
    const e = createLeaseEngine(watched, now, { minBlock: 100, maxBlock: 100 });
    await e.charge([d], subject(), 1, false); // the first block
    let waited = 0;
    for (let i = 0; i < 1000; i++) {
      const out = e.charge([d], subject(), 1, false);
      if (out instanceof Promise) {
        waited++;
        await out;
      }
      // The store's answer arrives while calls go on (as on a server's event loop).
      if (leases.length > 0) await leases[leases.length - 1]!.answer;
    }
    expect(waited).toBe(0);
    // One lease per block as before, each asked for while a quarter of a block was still held.
    expect(leases).toHaveLength(11);
    for (const l of leases.slice(1)) expect(l.heldThen).toBe(24);
    await e.close();
    expect(await storedUsed(pool, d.limitId)).toBe(1001);
  });

  it("leases ahead by the store's round trip: a lease that takes 40 ms at one call per ms leaves no call waiting", async () => {
    const d = await limit({ amount: 1_000_000 });
    const repo = createQuotaRepo(pool);
    // The real store, whose answers reach the engine 40 simulated ms after they were asked for
    // (a busy event loop: 20–60 ms were measured on a loaded server).
    const pending: { dueMs: number; answer: Promise<unknown>; release: () => void }[] = [];
    const slow: typeof repo = Object.create(repo, {
      leaseWindow: { value: (l: Parameters<typeof repo.leaseWindow>[0]) => {
        const answer = repo.leaseWindow(l);
        return new Promise((resolve, reject) => pending.push({ dueMs: clock + 40, answer, release: () => void answer.then(resolve, reject) }));
      } },
    });
    async function deliver(untilMs: number) {
      for (const p of pending.filter((q) => q.dueMs <= untilMs)) {
        pending.splice(pending.indexOf(p), 1);
        await p.answer;
        p.release();
      }
      await new Promise((r) => setImmediate(r));
    }
    const e = createLeaseEngine(slow, now, { minBlock: 100, maxBlock: 100 });
    const start = clock;
    let waitedLate = 0;
    let mostHeld = 0;
    for (let i = 0; i < 4000; i++) {
      clock += 1;
      await deliver(clock);
      const out = e.charge([d], subject(), 1, false);
      if (out instanceof Promise) {
        if (i >= 3000) waitedLate++;
        clock += 40; // the call waits for its lease
        await deliver(clock);
        await out;
      }
      mostHeld = Math.max(mostHeld, e.held());
    }
    // A quarter of a block (25 calls, 25 ms) is less than a round trip; two round trips are 80.
    expect(waitedLate).toBe(0);
    expect(mostHeld).toBeLessThan(200); // under two blocks
    clock = start;
    await deliver(Number.POSITIVE_INFINITY);
    await e.close();
  });

  it("sees a rate above one call per millisecond: ten calls a tick size a block for ten thousand a second", async () => {
    const d = await limit({ amount: 100_000_000 });
    const repo = createQuotaRepo(pool);
    const wants: number[] = [];
    const watched: typeof repo = Object.create(repo, {
      leaseWindow: { value: (l: Parameters<typeof repo.leaseWindow>[0]) => {
        wants.push(l.want);
        return repo.leaseWindow(l);
      } },
    });
    const e = createLeaseEngine(watched, now, { minBlock: 50, maxBlock: 1_000_000, targetLeaseMs: 1000 });
    const start = clock;
    for (let ms = 0; ms < 3000; ms++) {
      clock = start + ms;
      for (let i = 0; i < 10; i++) {
        const out = e.charge([d], subject("rate"), 1, false);
        if (out instanceof Promise) await out;
      }
      if (ms % 100 === 0) await new Promise((r) => setImmediate(r)); // leases ahead come back
    }
    // ~1 s of demand at 10 a ms; counted as one call per tick, the estimate could not pass 1,000.
    expect(wants.at(-1)).toBeGreaterThan(8000);
    expect(wants.at(-1)).toBeLessThanOrEqual(10_000);
    clock = start;
    await e.close();
  });

  it("leaves a failed early lease to the call that needs the tokens, and does not retry it on every call", async () => {
    const d = await limit({ amount: 1_000_000 });
    const repo = createQuotaRepo(pool);
    let failing = false;
    let attempts = 0;
    const flaky: typeof repo = Object.create(repo, {
      leaseWindow: { value: (l: Parameters<typeof repo.leaseWindow>[0]) => {
        attempts++;
        return failing ? Promise.reject(new Error("store down")) : repo.leaseWindow(l);
      } },
    });
    const e = createLeaseEngine(flaky, now, { minBlock: 100, maxBlock: 100 });
    await e.charge([d], subject(), 1, false);
    failing = true;
    attempts = 0;
    const answers: unknown[] = [];
    for (let i = 0; i < 99; i++) {
      answers.push(e.charge([d], subject(), 1, false));
      await new Promise((r) => setImmediate(r)); // the failed early lease settles meanwhile
    }
    // Every held token was still spent from memory; the early lease was tried once, not per call.
    expect(answers.every((a) => Array.isArray(a))).toBe(true);
    expect(attempts).toBe(1);
    // The call that finds nothing held asks the store itself, and reports its failure.
    await expect(e.charge([d], subject(), 1, false)).rejects.toThrow("store down");
    failing = false;
    const next = await e.charge([d], subject(), 1, false);
    expect(next[0]!.exceeded).toBe(false);
    await e.close();
    expect(await storedUsed(pool, d.limitId)).toBe(101);
  });

  it("needs well under 20 statements per 1,000 admitted calls at a steady rate on a hot key", async () => {
    const d = await limit({ amount: 10_000_000 });
    const { repo, engine: e } = engine();
    const start = Date.parse("2024-06-01T00:00:00Z");
    // 5,000 calls/s for 4 simulated seconds, with flushes as the runtime would run them.
    for (let ms = 0; ms < 4000; ms += 10) {
      clock = start + ms;
      for (let i = 0; i < 50; i++) await e.charge([d], subject(), 1, false);
      if (ms % 1000 === 0) await e.flush();
    }
    const first = repo.statements;
    for (let ms = 4000; ms < 8000; ms += 10) {
      clock = start + ms;
      for (let i = 0; i < 50; i++) await e.charge([d], subject(), 1, false);
      if (ms % 1000 === 0) await e.flush();
    }
    const perThousand = ((repo.statements - first) / 20_000) * 1000;
    if (process.env.SHOW_QUOTA_FIGURES) console.log(`statements per 1,000 admitted calls: ${perThousand}`);
    expect(perThousand).toBeLessThanOrEqual(20);
    expect(perThousand).toBeGreaterThan(0);
  });
});
