import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Code as RpcCode } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { KeyService } from "../src/gen/tollgate/v1/key_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import type { App } from "../src/app.js";
import { keysRepo } from "../src/store/keys-repo.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";
import { rpcFailure } from "./support/rpc-errors.js";

const HOUR = 3_600_000;
let db: TestDatabase;
let app: App;
let clock = Date.now();
let auth: ReturnType<typeof grpcClient<typeof AuthService>>;
let keys: ReturnType<typeof grpcClient<typeof KeyService>>;

const grace = (ms: number) => ({ seconds: BigInt(Math.trunc(ms / 1000)), nanos: (ms % 1000) * 1e6 });
const asAdmin = (secret: string) => ({ headers: { authorization: `Bearer ${secret}` } });
const authenticate = (credential: string) => auth.authenticate({ credential });

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { now: () => clock });
  auth = grpcClient(AuthService, app.grpcPort);
  keys = grpcClient(KeyService, app.grpcPort);
});
beforeEach(() => {
  clock = Date.now();
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

describe("RotateKey, self-service", () => {
  it("creates a successor carrying everything of the old key, linked both ways, and shows its secret once", async () => {
    const { key, secret } = await seedKey(app, {
      tenantId: "acme", name: "billing", permissions: ["chat:write"], roles: ["editor"], plan: "pro",
      metadata: { team: "ml" }, ownerId: "user-7", expiresAt: new Date(clock + 90 * 24 * HOUR),
    });
    const res = await auth.rotateKey({ credential: secret, gracePeriod: grace(2 * HOUR) });
    const next = res.newKey!;
    expect(res.secret).toMatch(new RegExp(`^sk_live_${next.keyId}_1`));
    expect(next.keyId).not.toBe(key.keyId);
    expect({ tenant: next.tenantId, name: next.name, permissions: next.permissions, roles: next.roles, plan: next.plan,
      metadata: next.metadata, owner: next.ownerId, prefix: next.prefix, environment: next.environment })
      .toEqual({ tenant: "acme", name: "billing", permissions: ["chat:write"], roles: ["editor"], plan: "pro",
        metadata: { team: "ml" }, owner: "user-7", prefix: "sk_live", environment: "live" });
    expect(timestampDate(next.expiresAt!).getTime()).toBe(key.expiresAt!.getTime());
    expect(next.predecessorKeyId).toBe(key.keyId);
    expect(res.oldKey?.successorKeyId).toBe(next.keyId);
    expect(timestampDate(res.oldKey!.graceExpiresAt!).getTime()).toBe(clock + 2 * HOUR);

    const stored = await keysRepo.findKey(app.pool, next.keyId);
    expect(stored?.quotaSubject).toBe(key.quotaSubject);
    expect(key.quotaSubject).toBe(key.keyId);
    const audit = await app.pool.query("SELECT action, target_id FROM audit_log WHERE target_id = ANY($1) ORDER BY audit_id", [[key.keyId, next.keyId]]);
    expect(audit.rows.map((r) => `${r.action} ${r.target_id}`)).toEqual(
      [`key.create ${key.keyId}`, `key.rotate ${key.keyId}`, `key.create ${next.keyId}`],
    );
  });

  it("keeps both keys valid during grace, flags the old one, and expires it when grace ends", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    const res = await auth.rotateKey({ credential: secret, gracePeriod: grace(HOUR) });
    const during = await authenticate(secret);
    expect(during.code).toBe(Code.VALID);
    expect(during.principal?.rotationPending).toBe(true);
    expect(during.principal?.successorKeyId).toBe(res.newKey!.keyId);
    expect(timestampDate(during.principal!.graceExpiresAt!).getTime()).toBe(clock + HOUR);
    const fresh = await authenticate(res.secret);
    expect(fresh.code).toBe(Code.VALID);
    expect(fresh.principal?.rotationPending).toBe(false);

    clock += HOUR - 1;
    expect((await authenticate(secret)).code).toBe(Code.VALID);
    clock += 1;
    const after = await authenticate(secret);
    expect(after.code).toBe(Code.EXPIRED_API_KEY);
    expect(after.principal?.keyId).toBe(key.keyId);
    expect(after.clientResponse?.httpStatus).toBe(401);
    expect((await authenticate(res.secret)).code).toBe(Code.VALID);
  });

  it("uses the configured default grace (24 h) when grace_period is unset, and 0 ends the old key now", async () => {
    const a = await seedKey(app, { tenantId: "acme" });
    const res = await auth.rotateKey({ credential: a.secret });
    expect(timestampDate(res.oldKey!.graceExpiresAt!).getTime()).toBe(clock + 24 * HOUR);

    const b = await seedKey(app, { tenantId: "acme" });
    expect((await authenticate(b.secret)).code).toBe(Code.VALID); // cached before the rotation
    const now = await auth.rotateKey({ credential: b.secret, gracePeriod: grace(0) });
    expect((await authenticate(b.secret)).code).toBe(Code.EXPIRED_API_KEY);
    expect((await authenticate(now.secret)).code).toBe(Code.VALID);
  });

  it("never lets grace outlive the old key's own expiry", async () => {
    const expiresAt = new Date(clock + HOUR);
    const { secret } = await seedKey(app, { tenantId: "acme", expiresAt });
    const res = await auth.rotateKey({ credential: secret, gracePeriod: grace(24 * HOUR) });
    expect(timestampDate(res.oldKey!.graceExpiresAt!).getTime()).toBe(expiresAt.getTime());
    expect(timestampDate(res.newKey!.expiresAt!).getTime()).toBe(expiresAt.getTime());
    clock = expiresAt.getTime();
    expect((await authenticate(secret)).code).toBe(Code.EXPIRED_API_KEY);
  });

  it("refuses a second rotation of a rotated key with ALREADY_ROTATED naming the successor, during and after grace", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const first = await auth.rotateKey({ credential: secret, gracePeriod: grace(HOUR) });
    const again = await rpcFailure(auth.rotateKey({ credential: secret }));
    expect(again).toMatchObject({ code: RpcCode.FailedPrecondition, reason: "ALREADY_ROTATED", metadata: { successor_key_id: first.newKey!.keyId } });
    clock += 2 * HOUR;
    expect(await rpcFailure(auth.rotateKey({ credential: secret }))).toMatchObject({ code: RpcCode.FailedPrecondition, reason: "ALREADY_ROTATED" });
    // The successor rotates normally and keeps the lineage's quota subject.
    const second = await auth.rotateKey({ credential: first.secret, gracePeriod: grace(HOUR) });
    const [a, c] = await Promise.all([keysRepo.findKey(app.pool, first.oldKey!.keyId), keysRepo.findKey(app.pool, second.newKey!.keyId)]);
    expect(c?.quotaSubject).toBe(a?.quotaSubject);
  });

  it("answers a revoked key with KEY_REVOKED and an expired one with KEY_EXPIRED; revoking the old key during grace leaves the successor working", async () => {
    const revoked = await seedKey(app, { tenantId: "acme" });
    const admin = await seedKey(app, { tenantId: "acme", admin: "tenant" });
    await keys.revokeKey({ keyId: revoked.key.keyId, reason: "leaked" }, asAdmin(admin.secret));
    expect(await rpcFailure(auth.rotateKey({ credential: revoked.secret }))).toMatchObject({ code: RpcCode.FailedPrecondition, reason: "KEY_REVOKED" });

    const expiring = await seedKey(app, { tenantId: "acme", expiresAt: new Date(clock + HOUR) });
    clock += 2 * HOUR;
    expect(await rpcFailure(auth.rotateKey({ credential: expiring.secret }))).toMatchObject({ code: RpcCode.FailedPrecondition, reason: "KEY_EXPIRED" });
    expect(await rpcFailure(auth.rotateKey({ keyId: expiring.key.keyId }, asAdmin(admin.secret)))).toMatchObject({ reason: "KEY_EXPIRED" });
    clock = Date.now();

    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    const res = await auth.rotateKey({ credential: secret, gracePeriod: grace(HOUR) });
    await keys.revokeKey({ keyId: key.keyId, reason: "rotation done early" }, asAdmin(admin.secret));
    clock = Date.now(); // revoked_at comes from the database clock
    // Revocation reaches the cache through NOTIFY (bounded, asynchronous).
    await expect.poll(async () => (await authenticate(secret)).code, { timeout: 1_000 }).toBe(Code.REVOKED_API_KEY);
    expect((await authenticate(res.secret)).code).toBe(Code.VALID);
  });

  it("refuses self-service rotation of an IP-restricted key (no trustworthy address to check)", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", ipAllowlist: ["10.0.0.0/8"] });
    expect(await rpcFailure(auth.rotateKey({ credential: secret }))).toMatchObject({ code: RpcCode.PermissionDenied, reason: "IP_RESTRICTED_KEY" });
  });
});

describe("RotateKey, admin", () => {
  it("lets a tenant admin rotate a key of its tenant, IP allowlist included, and hides other tenants' keys", async () => {
    const admin = await seedKey(app, { tenantId: "globex", admin: "tenant" });
    const { key } = await seedKey(app, { tenantId: "globex", ipAllowlist: ["10.0.0.0/8"] });
    const res = await auth.rotateKey({ keyId: key.keyId, gracePeriod: grace(HOUR) }, asAdmin(admin.secret));
    expect(res.newKey?.ipAllowlist).toEqual(["10.0.0.0/8"]);
    const audit = await app.pool.query("SELECT actor FROM audit_log WHERE action = 'key.rotate' AND target_id = $1", [key.keyId]);
    expect(audit.rows[0]?.actor).toBe(`key:${admin.key.keyId}`);

    const foreign = await seedKey(app, { tenantId: "initech" });
    expect(await rpcFailure(auth.rotateKey({ keyId: foreign.key.keyId }, asAdmin(admin.secret)))).toMatchObject({ code: RpcCode.NotFound, reason: "KEY_NOT_FOUND" });
    expect((await keysRepo.findKey(app.pool, foreign.key.keyId))?.successorKeyId).toBeNull();
    expect(await rpcFailure(auth.rotateKey({ keyId: "AAAAAAAAAAAAAAAA" }, asAdmin(admin.secret)))).toMatchObject({ code: RpcCode.NotFound });

    const root = await seedKey(app, { tenantId: "root", admin: "root" });
    const rotated = await auth.rotateKey({ keyId: foreign.key.keyId }, asAdmin(root.secret));
    expect(rotated.newKey?.tenantId).toBe("initech");
  });

  it("creates exactly one successor when many RotateKey calls race on one key", async () => {
    const admin = await seedKey(app, { tenantId: "race", admin: "tenant" });
    const { key, secret } = await seedKey(app, { tenantId: "race" });
    const calls = Array.from({ length: 6 }, (_, i) =>
      i % 2 === 0 ? auth.rotateKey({ keyId: key.keyId }, asAdmin(admin.secret)) : auth.rotateKey({ credential: secret }));
    const outcomes = await Promise.allSettled(calls);
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    for (const o of outcomes.filter((o) => o.status === "rejected")) {
      expect(await rpcFailure(Promise.reject((o as PromiseRejectedResult).reason))).toMatchObject({ code: RpcCode.FailedPrecondition, reason: "ALREADY_ROTATED" });
    }
    const { rows } = await app.pool.query("SELECT key_id FROM api_keys WHERE predecessor_key_id = $1", [key.keyId]);
    expect(rows).toHaveLength(1);
    expect((await keysRepo.findKey(app.pool, key.keyId))?.successorKeyId).toBe(rows[0].key_id);
  });
});

describe("RotateKey, refusals", () => {
  it("rejects bad input as INVALID_ARGUMENT naming the field", async () => {
    const admin = await seedKey(app, { tenantId: "acme", admin: "tenant" });
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    const other = await seedKey(app, { tenantId: "acme" });
    const cases: Array<[Parameters<typeof auth.rotateKey>[0], string]> = [
      [{ keyId: key.keyId, gracePeriod: { seconds: -1n } }, "grace_period"],
      [{ keyId: key.keyId, gracePeriod: { seconds: 0n, nanos: -5 } }, "grace_period"],
      [{ keyId: key.keyId, gracePeriod: grace(31 * 24 * HOUR) }, "grace_period"],
      [{}, "key_id"],
      [{ keyId: "not-a-key-id" }, "key_id"],
      [{ credential: secret, keyId: other.key.keyId }, "key_id"],
      [{ credential: "x".repeat(5000) }, "credential"],
    ];
    for (const [req, field] of cases) {
      const failure = await rpcFailure(auth.rotateKey(req, asAdmin(admin.secret)));
      expect(failure.code, JSON.stringify(field)).toBe(RpcCode.InvalidArgument);
      expect(failure.fields).toContain(field);
    }
    expect((await keysRepo.findKey(app.pool, key.keyId))?.successorKeyId).toBeNull();
  });

  it("answers UNAUTHENTICATED without a valid credential or admin key, and PERMISSION_DENIED for a non-admin key", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    const wrong = secret.slice(0, -10) + "0000000000";
    expect(await rpcFailure(auth.rotateKey({ keyId: key.keyId }))).toMatchObject({ code: RpcCode.Unauthenticated, reason: "MISSING_CREDENTIAL" });
    expect((await rpcFailure(auth.rotateKey({ credential: wrong }))).code).toBe(RpcCode.Unauthenticated);
    expect((await rpcFailure(auth.rotateKey({ keyId: key.keyId }, asAdmin("sk_live_nonsense")))).code).toBe(RpcCode.Unauthenticated);
    const plain = await seedKey(app, { tenantId: "acme" });
    expect(await rpcFailure(auth.rotateKey({ keyId: key.keyId }, asAdmin(plain.secret)))).toMatchObject({ code: RpcCode.PermissionDenied, reason: "NOT_AN_ADMIN_KEY" });
    expect((await keysRepo.findKey(app.pool, key.keyId))?.successorKeyId).toBeNull();
  });
});
