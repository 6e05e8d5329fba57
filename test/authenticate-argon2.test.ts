import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { generateKey, parseKey } from "../src/keys/format.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { argon2Verifications } from "./support/metrics.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";

const LIMIT = 4;
let db: TestDatabase;
let app: App;
let auth: ReturnType<typeof grpcClient<typeof AuthService>>;
let offsetMs = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { env: { TOLLGATE_FAILED_SECRETS_PER_MINUTE: String(LIMIT) }, now: () => Date.now() + offsetMs });
  auth = grpcClient(AuthService, app.grpcPort);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

const wrongSecretFor = (secret: string) => generateKey(parseKey(secret)!.prefix, parseKey(secret)!.keyId).full;

describe("argon2 work per key", () => {
  it("runs exactly one argon2 verification for 1,000 concurrent first calls of a new key", async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const before = await argon2Verifications(app.httpPort);
    const answers = await Promise.all(Array.from({ length: 1_000 }, () => auth.authenticate({ credential: secret })));
    expect(answers.every((a) => a.code === Code.VALID)).toBe(true);
    expect((await argon2Verifications(app.httpPort)) - before).toBe(1);
  });

  it(`stops running argon2 for a key id after ${LIMIT} wrong secrets, while its cached holder keeps working`, async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    expect((await auth.authenticate({ credential: secret })).code).toBe(Code.VALID); // warm
    const before = await argon2Verifications(app.httpPort);
    for (let i = 0; i < LIMIT + 6; i++) {
      expect((await auth.authenticate({ credential: wrongSecretFor(secret) })).code).toBe(Code.INVALID_API_KEY);
    }
    expect((await argon2Verifications(app.httpPort)) - before).toBe(LIMIT);
    expect((await auth.authenticate({ credential: secret })).code).toBe(Code.VALID); // cache hit, no argon2
    expect((await argon2Verifications(app.httpPort)) - before).toBe(LIMIT);

    offsetMs += 61_000; // the window is a minute on the injected clock
    expect((await auth.authenticate({ credential: wrongSecretFor(secret) })).code).toBe(Code.INVALID_API_KEY);
    expect((await argon2Verifications(app.httpPort)) - before).toBe(LIMIT + 1);
  });

  it(`caps argon2 at ${LIMIT} verifications for a concurrent burst of wrong secrets for one key id`, async () => {
    const { secret } = await seedKey(app, { tenantId: "acme" });
    const before = await argon2Verifications(app.httpPort);
    const answers = await Promise.all(Array.from({ length: 40 }, () => auth.authenticate({ credential: wrongSecretFor(secret) })));
    expect(answers.every((a) => a.code === Code.INVALID_API_KEY)).toBe(true);
    expect((await argon2Verifications(app.httpPort)) - before).toBeLessThanOrEqual(LIMIT);
  });

  it("throttling one key id leaves other keys alone", async () => {
    const victim = await seedKey(app, { tenantId: "acme" });
    const bystander = await seedKey(app, { tenantId: "acme" });
    for (let i = 0; i < LIMIT + 1; i++) await auth.authenticate({ credential: wrongSecretFor(victim.secret) });
    expect((await auth.authenticate({ credential: bystander.secret })).code).toBe(Code.VALID);
  });
});
