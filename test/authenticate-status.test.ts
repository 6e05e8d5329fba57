import { timestampDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { generateKey, parseKey } from "../src/keys/format.js";
import { withTransaction } from "../src/store/db.js";
import { keysRepo } from "../src/store/keys-repo.js";
import { clientFor, STACKS, type TestClient } from "./support/clients.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { seedKey, startTestServer } from "./support/server.js";

let db: TestDatabase;
let app: App;
let auth: TestClient<typeof AuthService>;
/** The server's clock runs `offsetMs` ahead of real time (never behind: the database stamps revocations). */
let offsetMs = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { now: () => Date.now() + offsetMs });
  auth = clientFor(AuthService, "grpc-js", app);
});
afterAll(async () => {
  auth?.close();
  await app?.stop();
  await db?.drop();
});

const HOUR = 3_600_000;
/** The same key id with a different secret and a valid checksum: passes the cheap checks, fails argon2. */
const wrongSecretFor = (secret: string) => generateKey(parseKey(secret)!.prefix, parseKey(secret)!.keyId).full;
const revoke = (keyId: string) => withTransaction(app.pool, (tx) => keysRepo.revokeKey(tx, keyId, "test", "test"));

describe("Authenticate status codes", () => {
  it("answers EXPIRED_API_KEY with the principal once the key's expiry passes, cached or not", async () => {
    const expiresAt = new Date(Date.now() + offsetMs + HOUR);
    const { key, secret } = await seedKey(app, { tenantId: "acme", expiresAt });
    const fresh = await auth.authenticate({ credential: secret });
    expect(fresh.code).toBe(Code.VALID);
    offsetMs += 2 * HOUR;
    for (let i = 0; i < 2; i++) {
      const res = await auth.authenticate({ credential: secret });
      expect(res.valid).toBe(false);
      expect(res.code).toBe(Code.EXPIRED_API_KEY);
      expect(res.principal?.keyId).toBe(key.keyId);
      expect(timestampDate(res.principal!.expiresAt!).getTime()).toBe(expiresAt.getTime());
      expect(res.clientResponse?.httpStatus).toBe(401);
      expect(JSON.parse(res.clientResponse!.body)).toMatchObject({ code: "EXPIRED_API_KEY", status: 401 });
    }
    app.verifier.invalidate(key.keyId); // and from a cold cache
    expect((await auth.authenticate({ credential: secret })).code).toBe(Code.EXPIRED_API_KEY);
  });

  it("answers REVOKED_API_KEY only to the holder of the secret; a wrong secret on a revoked key is INVALID_API_KEY", async () => {
    const { key, secret } = await seedKey(app, { tenantId: "acme" });
    await revoke(key.keyId);
    const right = await auth.authenticate({ credential: secret });
    expect(right.code).toBe(Code.REVOKED_API_KEY);
    expect(right.principal?.keyId).toBe(key.keyId);
    const wrong = await auth.authenticate({ credential: wrongSecretFor(secret) });
    expect(wrong.code).toBe(Code.INVALID_API_KEY);
    expect(wrong.principal).toBeUndefined();
  });

  it("makes an unknown key id, a wrong secret and a revoked key's wrong secret indistinguishable", async () => {
    const live = await seedKey(app, { tenantId: "acme" });
    const revoked = await seedKey(app, { tenantId: "acme" });
    await revoke(revoked.key.keyId);
    const answers = [];
    for (const credential of [generateKey("sk_live").full, wrongSecretFor(live.secret), wrongSecretFor(revoked.secret)]) {
      const res = await auth.authenticate({ credential });
      answers.push({ valid: res.valid, code: res.code, principal: res.principal, message: res.message, client: res.clientResponse });
    }
    expect(answers[0]!.code).toBe(Code.INVALID_API_KEY);
    expect(answers[1]).toEqual(answers[0]);
    expect(answers[2]).toEqual(answers[0]);
  });

  it("answers INVALID_API_KEY for a well-formed key whose prefix belongs to another environment", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme", environment: "test" });
    expect(parseKey(secret)?.prefix).toBe("sk_test");
    const res = await auth.authenticate({ credential: generateKey("sk_live", parseKey(secret)!.keyId).full });
    expect(res.code).toBe(Code.INVALID_API_KEY);
  });
});

describe.each(STACKS)("Authenticate IP allowlists over %s", (stack) => {
  let client: TestClient<typeof AuthService>;
  let secret: string;
  beforeAll(async () => {
    client = clientFor(AuthService, stack, app);
    ({ secret } = await seedKey(app, { tenantId: "acme", ipAllowlist: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"] }));
  });
  afterAll(() => client.close());

  const allowed = ["10.1.2.3", "10.255.255.255", "192.0.2.7", "2001:db8::1", "2001:DB8:ffff::42", "::ffff:10.1.2.3", "::ffff:192.0.2.7"];
  const denied = ["11.0.0.1", "9.255.255.255", "192.0.2.8", "2001:db9::1", "::1", "::ffff:11.0.0.1", "::a01:203", "64:ff9b::a01:203", "fe80::1"];

  it("admits addresses inside the allowlist, IPv4-mapped IPv6 included", async () => {
    for (const clientIp of allowed) {
      const res = await client.authenticate({ credential: secret, clientIp });
      expect(res.code, clientIp).toBe(Code.VALID);
    }
  });

  it("refuses addresses outside it, and a call with no address, as IP_NOT_ALLOWED (403) with the principal", async () => {
    for (const clientIp of [...denied, ""]) {
      const res = await client.authenticate({ credential: secret, clientIp });
      expect(res.code, clientIp).toBe(Code.IP_NOT_ALLOWED);
      expect(res.principal?.tenantId).toBe("acme");
      expect(res.clientResponse?.httpStatus).toBe(403);
    }
  });
});
