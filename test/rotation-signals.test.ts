import { execFile } from "node:child_process";
import net from "node:net";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code as RpcCode } from "@connectrpc/connect";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import type { App } from "../src/app.js";
import { withTransaction } from "../src/store/db.js";
import { rotationRepo } from "../src/store/rotation-repo.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startServerProcess, startTestServer, testEnv } from "./support/server.js";
import { rpcFailure } from "./support/rpc-errors.js";

const DAY = 86_400_000;
let db: TestDatabase;
let app: App;
let clock = Date.now();
let auth: ReturnType<typeof grpcClient<typeof AuthService>>;

const grace = (ms: number) => ({ seconds: BigInt(Math.trunc(ms / 1000)), nanos: 0 });

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { now: () => clock });
  auth = grpcClient(AuthService, app.grpcPort);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

async function setPolicy(tenantId: string | null, plan: string | null, maxAgeDays: number) {
  await withTransaction(app.pool, (tx) => rotationRepo.upsertPolicy(tx, { tenantId, plan, maxAgeSeconds: maxAgeDays * 86_400 }, "test"));
}

describe("rotation_due", () => {
  it("is reported once a key is older than its tenant's maximum age, and the strictest policy (plan) wins", async () => {
    clock = Date.now();
    const free = await seedKey(app, { tenantId: "aging", plan: "free" });
    const pro = await seedKey(app, { tenantId: "aging", plan: "pro" });
    await setPolicy("aging", null, 90);
    await setPolicy(null, "pro", 30);
    clock += 31 * DAY;
    // Policies reach the replica through NOTIFY.
    await expect.poll(async () => (await auth.authenticate({ credential: pro.secret })).principal?.rotationDue, { timeout: 2_000 }).toBe(true);
    expect((await auth.authenticate({ credential: free.secret })).principal?.rotationDue).toBe(false);
    clock += 60 * DAY;
    const due = await auth.authenticate({ credential: free.secret });
    expect(due.code).toBe(Code.VALID);
    expect(due.principal?.rotationDue).toBe(true);
    // Every RPC that answers with the principal says the same (one principal per key record).
    expect((await auth.authorize({ credential: free.secret, permissionQuery: "chat:write" })).principal?.rotationDue).toBe(true);
    expect((await auth.consumeQuota({ credential: free.secret, cost: 1n })).principal?.rotationDue).toBe(true);

    // The operator listing agrees with Authenticate.
    const listed = await rotationRepo.listRotationDue(app.pool, "aging", new Date(clock), 100);
    expect(listed.map((k) => k.keyId).sort()).toEqual([free.key.keyId, pro.key.keyId].sort());

    // Rotating clears the signal: the old key is pending, the successor starts young.
    const res = await auth.rotateKey({ credential: free.secret, gracePeriod: grace(DAY) });
    const old = await auth.authenticate({ credential: free.secret });
    expect(old.principal).toMatchObject({ rotationDue: false, rotationPending: true });
    expect((await auth.authenticate({ credential: res.secret })).principal?.rotationDue).toBe(false);
    expect((await rotationRepo.listRotationDue(app.pool, "aging", new Date(clock), 100)).map((k) => k.keyId)).toEqual([pro.key.keyId]);
  });

  it("is never reported for a tenant without a policy", async () => {
    clock = Date.now();
    const { secret } = await seedKey(app, { tenantId: "ageless" });
    clock += 3650 * DAY;
    expect((await auth.authenticate({ credential: secret })).principal?.rotationDue).toBe(false);
  });
});

describe("rotation across replicas", () => {
  it("keeps both keys valid on a second server process during grace, and ends the old one there when grace is 0", async () => {
    clock = Date.now();
    const replica = await startServerProcess(db.url);
    try {
      const other = grpcClient(AuthService, replica.grpcPort);
      const a = await seedKey(app, { tenantId: "replicated" });
      expect((await other.authenticate({ credential: a.secret })).code).toBe(Code.VALID); // cached there
      const res = await auth.rotateKey({ credential: a.secret, gracePeriod: grace(DAY) });
      await expect.poll(async () => (await other.authenticate({ credential: a.secret })).principal?.rotationPending, { timeout: 1_000 }).toBe(true);
      const old = await other.authenticate({ credential: a.secret });
      expect(old).toMatchObject({ code: Code.VALID, principal: { successorKeyId: res.newKey!.keyId } });
      expect((await other.authenticate({ credential: res.secret })).code).toBe(Code.VALID);

      const b = await seedKey(app, { tenantId: "replicated" });
      expect((await other.authenticate({ credential: b.secret })).code).toBe(Code.VALID);
      const now = await auth.rotateKey({ credential: b.secret, gracePeriod: grace(0) });
      await expect.poll(async () => (await other.authenticate({ credential: b.secret })).code, { timeout: 1_000 }).toBe(Code.EXPIRED_API_KEY);
      expect((await other.authenticate({ credential: now.secret })).code).toBe(Code.VALID);
    } finally {
      await replica.stop();
    }
  });
});

/** A TCP proxy in front of PostgreSQL that can be cut, to make the database fail under a running server. */
async function startProxy(target: URL) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.once("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = new URL(target.toString());
  url.hostname = "127.0.0.1";
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    cut: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    }),
  };
}

describe("RotateKey when the database fails", () => {
  it("answers UNAVAILABLE, never INTERNAL, for admin and self-service calls", async () => {
    const proxy = await startProxy(new URL(db.url));
    const broken = await startTestServer(proxy.url);
    try {
      const client = grpcClient(AuthService, broken.grpcPort);
      const admin = await seedKey(broken, { tenantId: "fragile", admin: "tenant" });
      const { key, secret } = await seedKey(broken, { tenantId: "fragile" });
      expect((await client.authenticate({ credential: admin.secret })).code).toBe(Code.VALID); // admin key now cached
      await proxy.cut();
      const asAdmin = await rpcFailure(client.rotateKey({ keyId: key.keyId }, { headers: { authorization: `Bearer ${admin.secret}` } }));
      expect(asAdmin).toMatchObject({ code: RpcCode.Unavailable, reason: "DATABASE_UNAVAILABLE" });
      expect((await rpcFailure(client.rotateKey({ credential: secret }))).code).toBe(RpcCode.Unavailable);
    } finally {
      await broken.stop();
    }
    const stored = await app.pool.query("SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = 'fragile' AND predecessor_key_id IS NOT NULL");
    expect(stored.rows[0].n).toBe(0);
  });
});

describe("CLI", () => {
  const cli = (...args: string[]) =>
    promisify(execFile)(process.execPath, ["--import", "tsx", "src/cli/run.ts", ...args], { env: { ...process.env, ...testEnv(db.url) } });

  it("rotates a key with --grace, sets a policy and lists keys due for rotation", async () => {
    const { key } = await seedKey(app, { tenantId: "cli-t" });
    const fresh = await seedKey(app, { tenantId: "cli-t" });
    const { stdout } = await cli("keys", "rotate", key.keyId, "--grace", "2h", "--json");
    const out = JSON.parse(stdout) as { keyId: string; secret: string; predecessorKeyId: string; old: { graceExpiresAt: string } };
    expect(out.predecessorKeyId).toBe(key.keyId);
    expect(new Date(out.old.graceExpiresAt).getTime() - Date.now()).toBeGreaterThan(2 * 3_600_000 - 60_000);
    expect((await auth.authenticate({ credential: out.secret })).code).toBe(Code.VALID);

    await cli("rotation-policy", "set", "--tenant", "cli-t", "--max-age", "90d");
    await app.pool.query("UPDATE api_keys SET created_at = now() - interval '100 days' WHERE key_id = ANY($1)", [[out.keyId]]);
    const listed = JSON.parse((await cli("keys", "list", "--rotation-due", "--tenant", "cli-t", "--json")).stdout) as Array<{ keyId: string }>;
    expect(listed.map((k) => k.keyId)).toEqual([out.keyId]);
    expect(listed.map((k) => k.keyId)).not.toContain(fresh.key.keyId);

    await expect(cli("keys", "rotate", key.keyId, "--grace", "-1h")).rejects.toMatchObject({ code: 2 });
    await expect(cli("keys", "rotate", key.keyId)).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining("already rotated") });
  });
});
