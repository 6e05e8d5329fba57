import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code as RpcCode, ConnectError } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { CredentialType } from "../src/gen/tollgate/v1/common_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";
import { inspect } from "./support/tokens.js";

let db: TestDatabase;
let app: App;
let client: ReturnType<typeof grpcClient<typeof AuthService>>;
let clock = Date.now();

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, {
    env: { TOLLGATE_TOKEN_ISSUER: "https://auth.example.test", TOLLGATE_TOKEN_AUDIENCES: "api.example.test,billing.example.test" },
    now: () => clock,
  });
  client = grpcClient(AuthService, app.grpcPort);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

/** Runs `call`, expecting an RPC error; returns its code, ErrorInfo and field names. */
async function rpcError(call: Promise<unknown>) {
  const err = await call.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConnectError);
  const e = err as ConnectError;
  const info = e.findDetails(ErrorInfoSchema)[0];
  const fields = e.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field) ?? [];
  return { code: e.code, reason: info?.reason, oauthError: info?.metadata.error, fields, message: e.rawMessage };
}

describe("IssueToken", () => {
  it("issues an RFC 9068 access token whose claims name the key, tenant, audience and scopes", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write", "files:read"] });
    const res = await client.issueToken({ credential: secret });
    expect(res.tokenType).toBe("Bearer");
    expect(res.expiresIn).toBe(3600n);
    expect(res.scope).toBe("chat:write files:read");
    const { header, claims } = inspect(res.accessToken);
    expect(header).toMatchObject({ typ: "at+jwt", alg: "EdDSA" });
    expect(app.tokens.keyring.jwks().keys.map((k) => k.kid)).toContain(header.kid);
    const iat = Math.floor(clock / 1000);
    expect(claims).toMatchObject({
      iss: "https://auth.example.test", sub: `apikey:${key.keyId}`, aud: "api.example.test", client_id: key.keyId,
      scope: "chat:write files:read", tenant: "acme", iat, nbf: iat, exp: iat + 3600,
    });
    expect(Number(res.expiresAt?.seconds)).toBe(iat + 3600);
    const again = inspect((await client.issueToken({ credential: secret })).accessToken).claims;
    expect(typeof claims.jti).toBe("string");
    expect(again.jti).not.toBe(claims.jti);
  });

  it("narrows to requested scopes, including ones a wildcard permission grants, and the principal carries only them", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:*", "files:read"], roles: ["editor"] });
    const res = await client.issueToken({ credential: secret, scopes: ["chat:write", "chat:write"] });
    expect(res.scope).toBe("chat:write");
    const auth = await client.authenticate({ credential: `Bearer ${res.accessToken}` });
    expect(auth.code).toBe(Code.VALID);
    expect(auth.principal).toMatchObject({ keyId: key.keyId, tenantId: "acme", credentialType: CredentialType.ACCESS_TOKEN, scopes: ["chat:write"], permissions: ["chat:write"], roles: [] });
    expect(Number(auth.principal?.expiresAt?.seconds)).toBe(Math.floor(clock / 1000) + 3600);
  });

  it("refuses scopes beyond the key's permissions as INVALID_ARGUMENT invalid_scope", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:*"] });
    for (const scopes of [["files:read"], ["chat:write", "admin"], ["*"], ["chat"]]) {
      const e = await rpcError(client.issueToken({ credential: secret, scopes }));
      expect(e).toMatchObject({ code: RpcCode.InvalidArgument, reason: "INVALID_SCOPE", oauthError: "invalid_scope", fields: ["scopes"] });
    }
  });

  it("defaults the lifetime to 1 hour, honours shorter requests and caps longer ones at the maximum", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", permissions: ["read"] });
    expect((await client.issueToken({ credential: secret, ttl: durationFromMs(600_000) })).expiresIn).toBe(600n);
    const capped = await client.issueToken({ credential: secret, ttl: durationFromMs(86_400_000) });
    expect(capped.expiresIn).toBe(3600n);
    const { claims } = inspect(capped.accessToken);
    expect(claims.exp! - claims.iat!).toBe(3600);
  });

  it("issues for another configured audience and refuses an unconfigured one as invalid_target", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", permissions: ["read"] });
    const res = await client.issueToken({ credential: secret, audience: "billing.example.test" });
    expect(inspect(res.accessToken).claims.aud).toBe("billing.example.test");
    expect((await client.authenticate({ credential: res.accessToken })).code).toBe(Code.VALID);
    const e = await rpcError(client.issueToken({ credential: secret, audience: "evil.example.test" }));
    expect(e).toMatchObject({ code: RpcCode.InvalidArgument, reason: "INVALID_TARGET", oauthError: "invalid_target", fields: ["audience"] });
  });

  it("reports every malformed field at once as INVALID_ARGUMENT, never INTERNAL", async () => {
    const e = await rpcError(client.issueToken({ credential: "x".repeat(5000), clientIp: "999.1.1.1", scopes: ["bad scope", ""], ttl: durationFromMs(-5000) }));
    expect(e.code).toBe(RpcCode.InvalidArgument);
    expect(e.fields).toEqual(expect.arrayContaining(["credential", "client_ip", "scopes[0]", "scopes[1]", "ttl"]));
    const fractional = await rpcError(client.issueToken({ credential: "x", ttl: durationFromMs(1500) }));
    expect(fractional.fields).toEqual(["ttl"]);
  });

  it("answers UNAUTHENTICATED invalid_client alike for a missing, malformed, wrong, revoked or token credential", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["read"] });
    const { secret: revokedSecret, key: revoked } = await seedKey(app, { tenantId: "acme" });
    await app.pool.query("UPDATE api_keys SET revoked_at = now() - interval '1 minute' WHERE key_id = $1", [revoked.keyId]);
    const token = (await client.issueToken({ credential: secret })).accessToken;
    const unknownId = secret.replace(key.keyId, "A".repeat(16));
    for (const credential of ["", "sk_live_nope", unknownId, revokedSecret, token]) {
      const e = await rpcError(client.issueToken({ credential }));
      expect(e).toMatchObject({ code: RpcCode.Unauthenticated, reason: "INVALID_CLIENT", oauthError: "invalid_client" });
      expect(e.message).not.toContain(secret);
    }
  });

  it("refuses a key used from outside its IP allowlist as PERMISSION_DENIED unauthorized_client", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", permissions: ["read"], ipAllowlist: ["10.0.0.0/8"] });
    expect((await client.issueToken({ credential: secret, clientIp: "10.1.2.3" })).accessToken).toBeTruthy();
    const e = await rpcError(client.issueToken({ credential: secret, clientIp: "192.0.2.1" }));
    expect(e).toMatchObject({ code: RpcCode.PermissionDenied, reason: "UNAUTHORIZED_CLIENT", oauthError: "unauthorized_client" });
  });
});
