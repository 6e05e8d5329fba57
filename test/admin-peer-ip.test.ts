import { afterAll, beforeAll, expect, it } from "vitest";
import { Code as RpcCode, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { KeyService } from "../src/gen/tollgate/v1/key_service_pb.js";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";

let db: TestDatabase;
let app: App;
beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

const auth = (secret: string) => ({ headers: { authorization: `Bearer ${secret}` } });

it("an admin key's IP allowlist is enforced against the connection's address on both listeners", async () => {
  const elsewhere = await seedKey(app, { tenantId: "acme", admin: "tenant", ipAllowlist: ["10.0.0.0/8"] });
  const loopback = await seedKey(app, { tenantId: "acme", admin: "tenant", ipAllowlist: ["127.0.0.0/8", "::1/128"] });
  const clients = [
    grpcClient(KeyService, app.grpcPort),
    createClient(KeyService, createConnectTransport({ baseUrl: `http://127.0.0.1:${app.httpPort}`, httpVersion: "1.1" })),
  ];
  for (const client of clients) {
    await expect(client.listKeys({}, auth(elsewhere.secret))).rejects.toSatisfy(
      (e: ConnectError) => e.code === RpcCode.PermissionDenied && e.rawMessage.includes("address"),
    );
    const page = await client.listKeys({}, auth(loopback.secret));
    expect(page.keys.map((k) => k.keyId)).toContain(loopback.key.keyId);
  }
});
