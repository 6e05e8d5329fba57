import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRemoteJWKSet, jwtVerify } from "jose";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { seedKey, startTestServer } from "./support/server.js";
import { inspect } from "./support/tokens.js";

const ISSUER = "https://auth.example.test";
let db: TestDatabase;
let app: App;
let base: string;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { env: { TOLLGATE_TOKEN_ISSUER: ISSUER, TOLLGATE_TOKEN_AUDIENCES: "api,billing" } });
  base = `http://127.0.0.1:${app.httpPort}`;
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`;

async function token(form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/oauth/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    body: new URLSearchParams(form).toString(),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

describe("POST /oauth/token", () => {
  it("issues a token for client_credentials with HTTP Basic, answering RFC 6749 §5.1 JSON with no-store", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write", "files:read"] });
    const res = await token({ grant_type: "client_credentials", scope: "chat:write" }, { authorization: basic(key.keyId, secret) });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(res.body).toMatchObject({ token_type: "Bearer", expires_in: 3600, scope: "chat:write" });
    expect(inspect(res.body.access_token as string).claims).toMatchObject({ sub: `apikey:${key.keyId}`, aud: "api", iss: ISSUER });
  });

  it("accepts client_id and client_secret in the form, with expires_in and audience", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["read"] });
    const res = await token({ grant_type: "client_credentials", client_id: key.keyId, client_secret: secret, expires_in: "120", audience: "billing" });
    expect(res.status).toBe(200);
    expect(res.body.expires_in).toBe(120);
    expect(inspect(res.body.access_token as string).claims.aud).toBe("billing");
  });

  it("answers RFC 6749 §5.2 errors: invalid_client 401 with a challenge, invalid_scope, invalid_request, unsupported_grant_type", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["read"] });
    const other = await seedKey(app, { tenantId: "acme" });
    const wrong = secret.replace(key.keyId, other.key.keyId);
    const cases: Array<[Record<string, string>, Record<string, string>, number, string]> = [
      [{ grant_type: "client_credentials" }, { authorization: basic(key.keyId, wrong) }, 401, "invalid_client"],
      [{ grant_type: "client_credentials" }, { authorization: basic(other.key.keyId, secret) }, 401, "invalid_client"],
      [{ grant_type: "client_credentials" }, {}, 401, "invalid_client"],
      [{ grant_type: "client_credentials", scope: "write" }, { authorization: basic(key.keyId, secret) }, 400, "invalid_scope"],
      [{ grant_type: "client_credentials", scope: "no\u0000pe" }, { authorization: basic(key.keyId, secret) }, 400, "invalid_scope"],
      [{ grant_type: "client_credentials", audience: "elsewhere" }, { authorization: basic(key.keyId, secret) }, 400, "invalid_target"],
      [{ grant_type: "client_credentials", expires_in: "-1" }, { authorization: basic(key.keyId, secret) }, 400, "invalid_request"],
      [{}, { authorization: basic(key.keyId, secret) }, 400, "invalid_request"],
      [{ grant_type: "password" }, { authorization: basic(key.keyId, secret) }, 400, "unsupported_grant_type"],
      [{ grant_type: "client_credentials", client_secret: secret }, { authorization: basic(key.keyId, secret) }, 400, "invalid_request"],
    ];
    for (const [form, headers, status, error] of cases) {
      const res = await token(form, headers);
      expect({ status: res.status, error: res.body.error }).toEqual({ status, error });
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(JSON.stringify(res.body)).not.toContain(secret);
      if (status === 401) expect(res.headers.get("www-authenticate")).toBe('Basic realm="tollgate"');
    }
  });

  it("refuses a body that is not a form, and serves the endpoint for POST only", async () => {
    const json = await fetch(`${base}/oauth/token`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(json.status).toBe(400);
    expect(((await json.json()) as { error: string }).error).toBe("invalid_request");
    expect((await fetch(`${base}/oauth/token`)).status).toBe(404);
    const huge = await fetch(`${base}/oauth/token`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "scope=" + "a".repeat(20_000) });
    expect(huge.status).toBe(400);
  });
});

describe("JWKS and metadata", () => {
  it("publishes a JWKS that jose's remote JWKS verifier uses to verify issued tokens", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["read"] });
    const res = await token({ grant_type: "client_credentials" }, { authorization: basic(key.keyId, secret) });
    const jwksRes = await fetch(`${base}/.well-known/jwks.json`);
    expect(jwksRes.headers.get("cache-control")).toMatch(/max-age=\d+/);
    const jwks = (await jwksRes.json()) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys.length).toBeGreaterThanOrEqual(2); // active + next
    for (const k of jwks.keys) {
      expect(k).toMatchObject({ use: "sig", alg: "EdDSA", kty: "OKP" });
      expect(k).not.toHaveProperty("d");
    }
    const remote = createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(res.body.access_token as string, remote, { issuer: ISSUER, audience: "api", typ: "at+jwt", algorithms: ["EdDSA"] });
    expect(payload.client_id).toBe(key.keyId);
    expect(protectedHeader.typ).toBe("at+jwt");
    await expect(jwtVerify(res.body.access_token as string, remote, { issuer: ISSUER, audience: "someone-else" })).rejects.toThrow();
  });

  it("serves RFC 8414 authorization-server metadata pointing at the token endpoint and the JWKS", async () => {
    const res = await fetch(`${base}/.well-known/oauth-authorization-server`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      issuer: ISSUER,
      token_endpoint: `${ISSUER}/oauth/token`,
      jwks_uri: `${ISSUER}/.well-known/jwks.json`,
      grant_types_supported: ["client_credentials"],
      token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
    });
  });
});
