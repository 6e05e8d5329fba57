import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { KeyService } from "../src/gen/tollgate/v1/key_service_pb.js";
import { generateKey, parseKey } from "../src/keys/format.js";
import { clientFor, rpcError } from "./support/clients.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startServerProcess, startTestServer, testEnv, type ServerProcess } from "./support/server.js";

let db: TestDatabase;
let app: App;
let replica: ServerProcess;
let admin: { secret: string };

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
  replica = await startServerProcess(db.url);
  admin = await seedKey(app, { tenantId: "root", admin: "root" });
});
afterAll(async () => {
  await replica?.stop();
  await app?.stop();
  await db?.drop();
});

describe("a second server process on the same database", () => {
  it("sees a revocation made through another server within 1 s, from a warm cache", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    const remote = grpcClient(AuthService, replica.grpcPort);
    expect((await remote.authenticate({ credential: secret })).code).toBe(Code.VALID);
    expect((await remote.authenticate({ credential: secret })).code).toBe(Code.VALID); // now a cache hit there

    const keys = clientFor(KeyService, "grpc-js", app, admin.secret);
    await keys.revokeKey({ keyId: key.keyId, reason: "compromised" });
    keys.close();
    const revokedAt = Date.now();
    let code = Code.VALID;
    while (code !== Code.REVOKED_API_KEY && Date.now() - revokedAt < 2_000) {
      code = (await remote.authenticate({ credential: secret })).code;
    }
    expect(code).toBe(Code.REVOKED_API_KEY);
    expect(Date.now() - revokedAt).toBeLessThan(1_000);
  });

  it("sees a permission change made through another server within 1 s", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["a:read"] });
    const remote = grpcClient(AuthService, replica.grpcPort);
    expect((await remote.authenticate({ credential: secret })).principal?.permissions).toEqual(["a:read"]);
    const keys = clientFor(KeyService, "grpc-js", app, admin.secret);
    await keys.updateKey({ key: { keyId: key.keyId, permissions: [] }, updateMask: { paths: ["permissions"] } });
    keys.close();
    const changedAt = Date.now();
    let permissions = ["a:read"];
    while (permissions.length > 0 && Date.now() - changedAt < 2_000) {
      permissions = (await remote.authenticate({ credential: secret })).principal?.permissions ?? [];
    }
    expect(permissions).toEqual([]);
    expect(Date.now() - changedAt).toBeLessThan(1_000);
  });

  it("never writes a secret, or the pepper, to its logs, whatever the calls", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", ipAllowlist: ["10.0.0.0/8"] });
    const plain = await seedKey(app, { tenantId: "acme" });
    const remote = clientFor(AuthService, "grpc-js", replica);
    const remoteH1 = clientFor(AuthService, "connect-h1", replica);
    const secretPart = parseKey(secret)!.secret;
    const credentials = [
      secret, `Bearer ${secret}`, secret.slice(0, -1), `${secret}x`, `${secret} ${secret}`, secret.toUpperCase(),
      wrongSecret(secret), `Bearer ${"x".repeat(4000)}${secret}`,
    ];
    for (const credential of credentials) {
      for (const client of [remote, remoteH1]) {
        await client.authenticate({ credential, clientIp: "10.1.1.1" }).catch(() => undefined);
        await client.authenticate({ credential, clientIp: "192.0.2.1" }).catch(() => undefined);
        await client.authenticate({ credential, clientIp: credential.slice(0, 100) }).catch(() => undefined);
      }
    }
    await rpcError(remote.authenticate({ credential: `${"y".repeat(4100)}${secret}` }));
    for (const header of [secret, plain.secret, admin.secret]) {
      const keys = clientFor(KeyService, "connect-h1", replica, header);
      await keys.listKeys({ tenantId: "acme" }).catch(() => undefined);
      await keys.createKey({ tenantId: "acme", name: secret.slice(0, 60) }).catch(() => undefined);
      keys.close();
    }
    remote.close();
    await new Promise((r) => setTimeout(r, 300)); // let the last log lines arrive
    const logs = replica.output();
    const rpcLines = logs.split("\n").filter((l) => l.includes('"msg":"rpc"'));
    expect(rpcLines.length).toBeGreaterThanOrEqual(credentials.length * 6);
    for (const s of [secret, plain.secret, admin.secret]) {
      expect(logs).not.toContain(parseKey(s)!.secret.slice(0, 16));
    }
    expect(logs).not.toContain(secretPart.slice(-16));
    expect(logs).not.toContain(testEnv(db.url).TOLLGATE_PEPPER);
  });

  it("drains and exits 0 on SIGTERM, even one sent the moment it reports listening", async () => {
    const other = await startServerProcess(db.url); // SIGTERM the moment it reports listening
    const exited = new Promise<number | null>((resolve) => other.child.once("exit", (code) => resolve(code)));
    await other.stop("SIGTERM");
    expect(await exited).toBe(0);
    expect(other.output()).toContain("tollgate stopped");
  });
});

function wrongSecret(secret: string): string {
  return generateKey(parseKey(secret)!.prefix, parseKey(secret)!.keyId).full;
}
