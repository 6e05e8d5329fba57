import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { PolicyService } from "../src/gen/tollgate/v1/policy_service_pb.js";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startServerProcess, startTestServer, type ServerProcess } from "./support/server.js";

let db: TestDatabase;
let writer: App;
let replica: ServerProcess;
let admin: ReturnType<typeof grpcClient<typeof PolicyService>>;
let onReplica: ReturnType<typeof grpcClient<typeof AuthService>>;
let headers: { authorization: string };

beforeAll(async () => {
  db = await createTestDatabase();
  writer = await startTestServer(db.url);
  // A long cache TTL on the replica: only NOTIFY can explain a change seen within a second.
  replica = await startServerProcess(db.url, { TOLLGATE_KEY_CACHE_TTL_MS: "600000" });
  admin = grpcClient(PolicyService, writer.grpcPort);
  onReplica = grpcClient(AuthService, replica.grpcPort);
  const root = await seedKey(writer, { tenantId: "root", admin: "root" });
  headers = { authorization: `Bearer ${root.secret}` };
});
afterAll(async () => {
  await replica?.stop();
  await writer?.stop();
  await db?.drop();
});

/** Polls the replica until the decision changes to `want`; returns how long that took. */
async function timeUntil(ask: () => Promise<Code>, want: Code, limitMs = 1_000): Promise<number> {
  const started = performance.now();
  for (;;) {
    const code = await ask();
    const elapsed = performance.now() - started;
    if (code === want) return elapsed;
    if (elapsed > limitMs) throw new Error(`still ${Code[code]} after ${Math.round(elapsed)} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("policy changes reach another replica within 1 s", () => {
  it("a plan change (a new deny) blocks on the replica within 1 s", async () => {
    await admin.putPlan({ plan: { name: "team", allowed: ["chat:*", "read"] } }, { headers });
    const { secret } = await seedKey(writer, { tenantId: "acme", plan: "team" });
    const ask = async () => (await onReplica.authorize({ credential: secret, permissionQuery: "chat:write" })).code;
    expect(await ask()).toBe(Code.ALLOWED);
    await admin.putPlan({ plan: { name: "team", allowed: ["chat:*", "read"], blocked: ["chat:write"] } }, { headers });
    expect(await timeUntil(ask, Code.BLOCKED)).toBeLessThan(1_000);
  });

  it("a new role definition grants on the replica within 1 s", async () => {
    const { secret } = await seedKey(writer, { tenantId: "acme", roles: ["reviewer"] });
    const ask = async () => (await onReplica.authorize({ credential: secret, permissionQuery: "reviews:approve" })).code;
    expect(await ask()).toBe(Code.INSUFFICIENT_PERMISSIONS);
    await admin.putRole({ role: { tenantId: "acme", name: "reviewer", permissions: ["reviews:*"] } }, { headers });
    expect(await timeUntil(ask, Code.ALLOWED)).toBeLessThan(1_000);
  });

  it("a key's plan switch, permission and override changes reach the replica within 1 s", async () => {
    const { key, secret } = await seedKey(writer, { tenantId: "acme" });
    const ask = (query: string, cost = 0n) => async () => (await onReplica.authorize({ credential: secret, permissionQuery: query, cost })).code;
    expect(await ask("files:read")()).toBe(Code.INSUFFICIENT_PERMISSIONS);
    await admin.updateKeyPolicy({ keyId: key.keyId, setPlan: "pro" }, { headers });
    expect(await timeUntil(ask("files:read"), Code.ALLOWED)).toBeLessThan(1_000);
    await admin.updateKeyPolicy({ keyId: key.keyId, setOverrides: { blocked: { values: ["files:read"] } } }, { headers });
    expect(await timeUntil(ask("files:read"), Code.BLOCKED)).toBeLessThan(1_000);
    await admin.updateKeyPolicy({ keyId: key.keyId, setOverrides: { maxCostPerCall: 5n } }, { headers });
    expect(await timeUntil(ask("read", 6n), Code.BLOCKED)).toBeLessThan(1_000);
    await admin.updateKeyPolicy({ keyId: key.keyId, addPermissions: ["billing:read"] }, { headers });
    expect(await timeUntil(ask("billing:read"), Code.ALLOWED)).toBeLessThan(1_000);
  });
});
