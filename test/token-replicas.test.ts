import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code as RpcCode, ConnectError } from "@connectrpc/connect";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { KeyService } from "../src/gen/tollgate/v1/key_service_pb.js";
import { SigningKeyService } from "../src/gen/tollgate/v1/signing_key_service_pb.js";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startServerProcess, startTestServer, type ServerProcess } from "./support/server.js";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.js";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe("access tokens across replicas", () => {
  let app: App;
  let replica: ServerProcess;
  beforeAll(async () => {
    app = await startTestServer(db.url);
    replica = await startServerProcess(db.url);
  });
  afterAll(async () => {
    await replica?.stop();
    await app?.stop();
  });

  it("a token issued by one replica verifies on another, and revoking its key rejects it there within 1 s", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["read"] });
    const admin = { authorization: `Bearer ${(await seedKey(app, { tenantId: "root", admin: "root" })).secret}` };
    const token = (await grpcClient(AuthService, app.grpcPort).issueToken({ credential: secret })).accessToken;
    const remote = grpcClient(AuthService, replica.grpcPort);
    expect((await remote.authenticate({ credential: token })).code).toBe(Code.VALID); // warm: key row cached there
    expect((await remote.authenticate({ credential: token })).code).toBe(Code.VALID);
    await grpcClient(KeyService, app.grpcPort).revokeKey({ keyId: key.keyId, reason: "leaked" }, { headers: admin });
    const revokedAt = performance.now();
    await expect.poll(async () => (await remote.authenticate({ credential: token })).code, { timeout: 1000, interval: 25 }).toBe(Code.INVALID_ACCESS_TOKEN);
    expect(performance.now() - revokedAt).toBeLessThan(1000);
  });

  it("a rotation on one replica is published in the other's JWKS within 1 s", async () => {
    const admin = { authorization: `Bearer ${(await seedKey(app, { tenantId: "root", admin: "root" })).secret}` };
    const rotation = await grpcClient(SigningKeyService, app.grpcPort).rotateSigningKey({}, { headers: admin });
    const jwksKids = async () => ((await (await fetch(`http://127.0.0.1:${replica.httpPort}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
    await expect.poll(jwksKids, { timeout: 1000, interval: 25 }).toContain(rotation.next!.kid);
  });
});

describe("when PostgreSQL is unreachable", () => {
  let proxy: TcpProxy;
  let app: App;
  beforeAll(async () => {
    proxy = await startTcpProxy(db.url);
    app = await startTestServer(proxy.url, { env: { TOLLGATE_DB_TIMEOUT_MS: "500" } });
  });
  afterAll(async () => {
    await app?.stop();
    await proxy?.close();
  });

  it("keeps verifying warm tokens from memory, and answers UNAVAILABLE (never INTERNAL) for work that needs the store", async () => {
    const auth = grpcClient(AuthService, app.grpcPort);
    const warm = await seedKey(app, { tenantId: "acme", permissions: ["read"] });
    const cold = await seedKey(app, { tenantId: "acme", permissions: ["read"] });
    const root = await seedKey(app, { tenantId: "root", admin: "root" });
    const warmToken = (await auth.issueToken({ credential: warm.secret })).accessToken;
    const coldToken = (await auth.issueToken({ credential: cold.secret })).accessToken;
    expect((await auth.authenticate({ credential: warmToken })).code).toBe(Code.VALID);
    const signing = grpcClient(SigningKeyService, app.grpcPort);
    await signing.listSigningKeys({}, { headers: { authorization: `Bearer ${root.secret}` } }); // warms the admin key
    app.verifier.invalidate(cold.key.keyId); // forget what issuing cached about the cold key
    await proxy.cut();

    expect((await auth.authenticate({ credential: warmToken })).code).toBe(Code.VALID);
    const unknownKey = (await seedKeyOffline()).secret;
    const failures = [
      () => auth.authenticate({ credential: coldToken }),
      () => auth.issueToken({ credential: unknownKey }),
      () => signing.rotateSigningKey({}, { headers: { authorization: `Bearer ${root.secret}` } }),
    ];
    for (const call of failures) {
      const err = await call().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(RpcCode.Unavailable);
      expect((err as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason).toMatch(/UNAVAILABLE/);
    }
    const http = await fetch(`http://127.0.0.1:${app.httpPort}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "client_credentials", client_secret: cold.secret }).toString(),
    });
    expect(http.status).toBe(503);
    expect(((await http.json()) as { error: string }).error).toBe("temporarily_unavailable");
    expect(http.headers.get("cache-control")).toBe("no-store");
  });
});

/** A well-formed key this server has never seen, so verifying it must read the store. */
async function seedKeyOffline() {
  const { generateKey } = await import("../src/keys/format.js");
  return { secret: generateKey("sk_live").full };
}
