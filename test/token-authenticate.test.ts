import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SignJWT, UnsecuredJWT, generateKeyPair, exportSPKI } from "jose";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";
import { b64json, inspect, signWithStoredKey, withPart } from "./support/tokens.js";

const SKEW = 10;
let db: TestDatabase;
let app: App;
let client: ReturnType<typeof grpcClient<typeof AuthService>>;
let clock = Date.UTC(2030, 0, 1);

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { env: { TOLLGATE_TOKEN_CLOCK_SKEW_SECONDS: String(SKEW) }, now: () => clock });
  client = grpcClient(AuthService, app.grpcPort);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

async function freshToken(permissions = ["read"]) {
  const seeded = await seedKey(app, { tenantId: "acme", permissions });
  const res = await client.issueToken({ credential: seeded.secret, ttl: { seconds: 600n, nanos: 0 } });
  return { ...seeded, token: res.accessToken, ...inspect(res.accessToken) };
}

async function codeOf(credential: string) {
  const res = await client.authenticate({ credential });
  if (res.code !== Code.VALID) {
    expect(res.valid).toBe(false);
    expect(res.principal).toBeUndefined();
    expect(res.clientResponse?.httpStatus).toBe(401);
  }
  return res.code;
}

describe("Authenticate with access tokens", () => {
  it("answers a token seen before synchronously (no promise), as a warm API key is, and still rechecks its key", async () => {
    const { token, key } = await freshToken();
    const first = app.tokens.verifier.verify(token, "");
    expect(first).toBeInstanceOf(Promise); // the signature is checked once, asynchronously
    expect((await first).code).toBe("VALID");
    const warm = app.tokens.verifier.verify(token, "");
    expect(warm).not.toBeInstanceOf(Promise);
    expect(warm).toMatchObject({ code: "VALID", key: { keyId: key.keyId } });
    expect(await codeOf(token)).toBe(Code.VALID);
    // A forgotten key row is loaded again (a promise), and the answer is the same.
    app.verifier.invalidate(key.keyId);
    const reloading = app.tokens.verifier.verify(token, "");
    expect(reloading).toBeInstanceOf(Promise);
    expect((await reloading).code).toBe("VALID");
  });

  it("accepts a token until exp plus the configured skew, then answers EXPIRED_ACCESS_TOKEN (injected clock)", async () => {
    const { token, claims } = await freshToken();
    const issuedAt = clock;
    try {
      clock = claims.exp! * 1000 + (SKEW - 1) * 1000;
      expect(await codeOf(token)).toBe(Code.VALID);
      clock = claims.exp! * 1000 + SKEW * 1000;
      expect(await codeOf(token)).toBe(Code.EXPIRED_ACCESS_TOKEN);
      const res = await client.authenticate({ credential: token });
      expect(res.clientResponse?.headers["www-authenticate"]).toContain('error="invalid_token"');
    } finally {
      clock = issuedAt;
    }
  });

  it("accepts a token from a verifier whose clock runs behind by less than the skew, not more (nbf)", async () => {
    const { token } = await freshToken();
    const issuedAt = clock;
    try {
      clock = issuedAt - (SKEW - 1) * 1000;
      expect(await codeOf(token)).toBe(Code.VALID);
      clock = issuedAt - (SKEW + 2) * 1000;
      expect(await codeOf(token)).toBe(Code.INVALID_ACCESS_TOKEN);
    } finally {
      clock = issuedAt;
    }
  });

  it("rejects tampered, truncated and re-signed tokens as INVALID_ACCESS_TOKEN", async () => {
    const { token, header, claims } = await freshToken(["read"]);
    expect(await codeOf(token)).toBe(Code.VALID);
    const widened = withPart(token, 1, b64json({ ...claims, scope: "read admin:*" }));
    const otherTenant = withPart(token, 1, b64json({ ...claims, tenant: "globex" }));
    const flippedSignature = withPart(token, 2, token.split(".")[2]!.replace(/^./, (c) => (c === "A" ? "B" : "A")));
    const attacker = await generateKeyPair("EdDSA");
    const resigned = await new SignJWT({ ...claims }).setProtectedHeader({ ...header, alg: "EdDSA" }).sign(attacker.privateKey);
    for (const bad of [widened, otherTenant, flippedSignature, token.slice(0, -10), resigned]) {
      expect(await codeOf(bad)).toBe(Code.INVALID_ACCESS_TOKEN);
    }
    // Cut before the signature: no longer token-shaped, so it is a malformed credential.
    expect(await codeOf(token.split(".").slice(0, 2).join("."))).toBe(Code.MALFORMED_CREDENTIAL);
  });

  it("rejects alg none, HS256 keyed with the public key, and an alg that does not match the kid's key", async () => {
    const { token, header, claims } = await freshToken();
    const unsigned = new UnsecuredJWT({ ...claims }).encode();
    const noneWithKid = withPart(unsigned, 0, b64json({ alg: "none", typ: "at+jwt", kid: header.kid }));
    const jwk = app.tokens.keyring.jwks().keys.find((k) => k.kid === header.kid)!;
    const publicKeyObject = (await app.tokens.keyring.verificationKey(header.kid!))!.key;
    const pem = await exportSPKI(publicKeyObject);
    const hmacs = await Promise.all(
      [pem, JSON.stringify(jwk), String(jwk.x)].map((secret) =>
        new SignJWT({ ...claims }).setProtectedHeader({ alg: "HS256", typ: "at+jwt", kid: header.kid! }).sign(new TextEncoder().encode(secret)),
      ),
    );
    const wrongAlgHeader = withPart(token, 0, b64json({ ...header, alg: "ES256" }));
    for (const bad of [noneWithKid, ...hmacs, wrongAlgHeader]) expect(await codeOf(bad)).toBe(Code.INVALID_ACCESS_TOKEN);
  });

  it("rejects validly signed tokens with the wrong audience, issuer, typ, subject or missing claims", async () => {
    const { header, claims } = await freshToken();
    const kid = header.kid!;
    const variants = [
      { ...claims, aud: "someone-else" },
      { ...claims, iss: "https://evil.example" },
      { ...claims, sub: "user:42" },
      { ...claims, jti: undefined },
      { ...claims, scope: undefined },
      { ...claims, nbf: undefined },
    ];
    expect(await codeOf(await signWithStoredKey(app, kid, { ...claims }))).toBe(Code.VALID); // the control
    for (const v of variants) expect(await codeOf(await signWithStoredKey(app, kid, JSON.parse(JSON.stringify(v))))).toBe(Code.INVALID_ACCESS_TOKEN);
    expect(await codeOf(await signWithStoredKey(app, kid, { ...claims }, { typ: "JWT" }))).toBe(Code.INVALID_ACCESS_TOKEN);
    expect(await codeOf(await signWithStoredKey(app, kid, { ...claims }, { kid: "unknown-kid" }))).toBe(Code.INVALID_ACCESS_TOKEN);
  });

  it("kills a token with its key: revoking or expiring the API key rejects its tokens at once", async () => {
    const a = await freshToken();
    const b = await freshToken();
    expect(await codeOf(a.token)).toBe(Code.VALID);
    expect(await codeOf(b.token)).toBe(Code.VALID);
    await app.pool.query("UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1", [a.key.keyId, new Date(clock - 1000)]);
    await app.pool.query("UPDATE api_keys SET expires_at = $2 WHERE key_id = $1", [b.key.keyId, new Date(clock - 1000)]);
    await expect.poll(() => codeOf(a.token), { timeout: 1000, interval: 20 }).toBe(Code.INVALID_ACCESS_TOKEN);
    await expect.poll(() => codeOf(b.token), { timeout: 1000, interval: 20 }).toBe(Code.INVALID_ACCESS_TOKEN);
  });

  it("takes a permission removed from the key away from its live tokens' principal", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["read", "write"] });
    const token = (await client.issueToken({ credential: secret })).accessToken;
    await app.pool.query("UPDATE api_keys SET permissions = '{read}' WHERE key_id = $1", [key.keyId]);
    await expect.poll(async () => (await client.authenticate({ credential: token })).principal?.permissions, { timeout: 1000, interval: 20 }).toEqual(["read"]);
    expect((await client.authenticate({ credential: token })).principal?.scopes).toEqual(["read", "write"]);
  });

  it("applies the key's IP allowlist to its tokens", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", permissions: ["read"], ipAllowlist: ["10.0.0.0/8"] });
    const token = (await client.issueToken({ credential: secret, clientIp: "10.0.0.1" })).accessToken;
    expect((await client.authenticate({ credential: token, clientIp: "10.9.9.9" })).code).toBe(Code.VALID);
    const denied = await client.authenticate({ credential: token, clientIp: "192.0.2.7" });
    expect(denied.code).toBe(Code.IP_NOT_ALLOWED);
    expect(denied.clientResponse?.httpStatus).toBe(403);
  });
});
