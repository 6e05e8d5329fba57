/**
 * Refresh ahead (src/keys/verifier.ts): a cached key used in the last quarter of its TTL has its
 * row re-read in the background, so its calls never wait for the re-read, and an unchanged row
 * keeps its record object (what is memoized per record stays valid). Real server and PostgreSQL,
 * with the server's clock moved forward.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { App } from "../src/app.js";
import type { KeyRecord } from "../src/domain/key.js";
import type { Verification } from "../src/keys/verifier.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { listenerConnected, seedKey, startTestServer } from "./support/server.js";

const TTL_MS = 60_000;
let db: TestDatabase;
let app: App;
let offsetMs = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { env: { TOLLGATE_KEY_CACHE_TTL_MS: String(TTL_MS) }, now: () => Date.now() + offsetMs });
  await listenerConnected(app); // its first connection drops every cache: not in the middle of a test
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

/** Changes a key row the way a lost notification would leave it: the invalidation trigger does not fire. */
async function changeUnnotified(sql: string, keyId: string): Promise<void> {
  const client = await app.pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SET LOCAL session_replication_role = replica"); // row triggers off, for this transaction only
    await client.query(sql, [keyId]);
    await client.query("COMMIT");
  } finally {
    client.release();
  }
}

/** A synchronous verification: the value itself, never a promise. */
function warmVerify(secret: string): Verification {
  const v = app.verifier.verify(secret, "");
  expect(v).not.toBeInstanceOf(Promise);
  return v as Verification;
}

function warmLookup(keyId: string): KeyRecord | undefined {
  const k = app.verifier.lookup(keyId);
  expect(k).not.toBeInstanceOf(Promise);
  return k as KeyRecord | undefined;
}

async function until(check: () => boolean, withinMs = 3_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > withinMs) throw new Error(`not within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("refresh ahead: keys, plans and roles", () => {
  it("re-reads a verified key in use before its TTL without making a call wait, and keeps the record object when the row is unchanged", async () => {
    offsetMs = 0;
    const { secret } = await seedKey(app, { tenantId: "acme" });
    expect((await app.verifier.verify(secret, "")).code).toBe("VALID"); // first use: database and argon2
    const record = warmVerify(secret).key!;

    offsetMs = TTL_MS * 0.8; // in the last quarter: answered from the cache, re-read behind it
    expect(warmVerify(secret)).toMatchObject({ code: "VALID", key: record });
    await new Promise((r) => setTimeout(r, 300));
    // Past the first read's TTL, but not the background read's: still no wait, and the same object.
    offsetMs = TTL_MS * 1.5;
    const later = warmVerify(secret);
    expect(later.code).toBe("VALID");
    expect(later.key).toBe(record);
  });

  it("brings in a revocation whose notification was lost within the TTL, from the background read", async () => {
    offsetMs = 0;
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    await app.verifier.verify(secret, "");
    expect(warmVerify(secret).code).toBe("VALID");
    await changeUnnotified("UPDATE api_keys SET revoked_at = now(), revoked_reason = 'lost notification' WHERE key_id = $1", key.keyId);
    expect(warmVerify(secret).code).toBe("VALID"); // no notification: the cache still holds the old row
    offsetMs = TTL_MS * 0.8;
    expect(warmVerify(secret).code).toBe("VALID"); // this call is answered at once; it starts the re-read
    await until(() => warmVerify(secret).code === "REVOKED_API_KEY");
    expect(warmVerify(secret).key?.revokedReason).toBe("lost notification");
  });

  it("re-reads the keys due at once in one statement, not one statement per key", async () => {
    offsetMs = 0;
    const keys = await Promise.all(Array.from({ length: 12 }, () => seedKey(app, { tenantId: "many" })));
    for (const { key } of keys) await app.verifier.lookup(key.keyId);
    const records = keys.map(({ key }) => warmLookup(key.keyId));
    const sent = vi.spyOn(app.pool, "query");
    try {
      offsetMs = TTL_MS * 0.8;
      for (const { key } of keys) warmLookup(key.keyId); // all twelve are due
      await new Promise((r) => setTimeout(r, 300));
      const texts = sent.mock.calls.map((c) => String(typeof c[0] === "string" ? c[0] : (c[0] as { text: string }).text));
      expect(texts.filter((t) => t.includes("FROM api_keys"))).toEqual([expect.stringContaining("key_id = ANY(")]);
      offsetMs = TTL_MS * 1.5; // every one was refreshed by that statement: still warm, the same objects
      expect(keys.map(({ key }) => warmLookup(key.keyId))).toEqual(records);
      keys.forEach(({ key }, i) => expect(warmLookup(key.keyId)).toBe(records[i]));
    } finally {
      sent.mockRestore();
    }
  });

  it("does the same for keys looked up by id (ConsumeQuota's key_id form, a token's key)", async () => {
    offsetMs = 0;
    const { key } = await seedKey(app, { tenantId: "acme" });
    expect((await app.verifier.lookup(key.keyId))?.keyId).toBe(key.keyId); // first use: a database read
    const record = warmLookup(key.keyId)!;

    offsetMs = TTL_MS * 0.8;
    expect(warmLookup(key.keyId)).toBe(record);
    await new Promise((r) => setTimeout(r, 300));
    offsetMs = TTL_MS * 1.5;
    expect(warmLookup(key.keyId)).toBe(record); // re-read at 0.8 × TTL, unchanged: the same object

    await changeUnnotified("UPDATE api_keys SET name = 'renamed' WHERE key_id = $1", key.keyId);
    offsetMs = TTL_MS * 1.6; // the last read was at 0.8 × TTL: this is its refresh-ahead window
    expect(warmLookup(key.keyId)).toBe(record);
    await until(() => warmLookup(key.keyId)?.name === "renamed");
    expect(warmLookup(key.keyId)).not.toBe(record);
  });

  it("re-reads a plan and a tenant's roles in use in the background too: a key's policy stays synchronous and is not recompiled while unchanged", async () => {
    offsetMs = 0;
    await app.pool.query("INSERT INTO tenants (tenant_id) VALUES ('roles-t') ON CONFLICT DO NOTHING");
    await app.pool.query("INSERT INTO roles (tenant_id, role_name, permissions) VALUES ('roles-t', 'editor', '{files:write}')");
    const { key } = await seedKey(app, { tenantId: "roles-t", plan: "free", roles: ["editor"] });
    const record = (await app.verifier.lookup(key.keyId))!;
    const first = await app.policies.policyFor(record);
    const warm = app.policies.policyFor(record);
    expect(warm).toBe(first); // synchronous: the compiled policy itself

    offsetMs = TTL_MS * 0.8; // plan and roles due: answered at once, re-read behind the call
    expect(app.policies.policyFor(record)).toBe(first);
    await new Promise((r) => setTimeout(r, 300));
    offsetMs = TTL_MS * 1.5; // past the first reads' TTL: still synchronous, still the same compiled policy
    expect(app.policies.policyFor(record)).toBe(first);

    // A role changed behind a lost notification is picked up by the next background read, and the policy recompiled.
    await app.pool.query("ALTER TABLE roles DISABLE TRIGGER USER");
    try {
      await app.pool.query("UPDATE roles SET permissions = '{files:write,files:read}' WHERE tenant_id = 'roles-t' AND role_name = 'editor'");
    } finally {
      await app.pool.query("ALTER TABLE roles ENABLE TRIGGER USER");
    }
    offsetMs = TTL_MS * 1.6;
    expect(app.policies.policyFor(record)).toBe(first);
    await until(() => app.policies.policyFor(record) !== first);
    const recompiled = app.policies.policyFor(record);
    expect(recompiled).not.toBeInstanceOf(Promise);
  });
});
