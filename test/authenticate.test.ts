import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code as RpcCode, ConnectError } from "@connectrpc/connect";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { CredentialType } from "../src/gen/tollgate/v1/common_pb.js";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";

let db: TestDatabase;
let app: App;
let client: ReturnType<typeof grpcClient<typeof AuthService>>;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
  client = grpcClient(AuthService, app.grpcPort);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

describe("Authenticate", () => {
  it("accepts a fresh key as a bare key, a Bearer value and an X-API-Key value, with its principal", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write"], metadata: { team: "ml" } });
    for (const credential of [secret, `Bearer ${secret}`, `  bearer   ${secret} `]) {
      const res = await client.authenticate({ credential, clientIp: "203.0.113.9" });
      expect(res.valid).toBe(true);
      expect(res.code).toBe(Code.VALID);
      expect(res.principal?.keyId).toBe(key.keyId);
      expect(res.principal?.tenantId).toBe("acme");
      expect(res.principal?.permissions).toEqual(["chat:write"]);
      expect(res.principal?.metadata).toEqual({ team: "ml" });
      expect(res.principal?.credentialType).toBe(CredentialType.API_KEY);
    }
  });

  it("answers a warm key synchronously (no promise, no microtask hop), a cold one and garbage as before", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    const cold = app.verifier.verify(secret, "");
    expect(cold).toBeInstanceOf(Promise);
    expect((await cold).code).toBe("VALID");
    const warm = app.verifier.verify(`Bearer ${secret}`, "");
    expect(warm).not.toBeInstanceOf(Promise);
    expect(warm).toMatchObject({ code: "VALID", key: { keyId: key.keyId } });
    const typo = `${secret.slice(0, -1)}${secret.at(-1) === "x" ? "y" : "x"}`; // a real change even when the secret ends in "x"
    expect(app.verifier.verify(typo, "")).toEqual({ code: "MALFORMED_CREDENTIAL" }); // checksum still checked on a miss
    expect(app.verifier.verify("x".repeat(10_000), "")).toEqual({ code: "MALFORMED_CREDENTIAL" });
  });

  it("answers MISSING, MALFORMED and INVALID as values with a 401 client response", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const wrongSecret = secret.slice(0, -8) + (secret.at(-8) === "A" ? "B" : "A") + secret.slice(-7);
    const cases: Array<[string, Code]> = [
      ["", Code.MISSING_CREDENTIAL],
      ["Bearer ", Code.MISSING_CREDENTIAL],
      ["sk_live_nonsense", Code.MALFORMED_CREDENTIAL],
      [wrongSecret, Code.MALFORMED_CREDENTIAL], // checksum catches a one-character typo
    ];
    for (const [credential, code] of cases) {
      const res = await client.authenticate({ credential });
      expect(res.valid).toBe(false);
      expect(res.code).toBe(code);
      expect(res.principal).toBeUndefined();
      expect(res.clientResponse?.httpStatus).toBe(401);
      expect(res.clientResponse?.headers["www-authenticate"]).toMatch(/^Bearer realm="tollgate"/);
    }
  });

  it("rejects an oversized credential and a bad client_ip as INVALID_ARGUMENT naming the field", async () => {
    await expect(client.authenticate({ credential: "x".repeat(5000) })).rejects.toSatisfy(
      (e: ConnectError) => e.code === RpcCode.InvalidArgument && e.message.includes("credential"),
    );
    await expect(client.authenticate({ credential: "x", clientIp: "300.1.1.1" })).rejects.toSatisfy(
      (e: ConnectError) => e.code === RpcCode.InvalidArgument && e.message.includes("client_ip"),
    );
  });
});
