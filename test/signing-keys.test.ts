import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code as RpcCode, ConnectError } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { SigningKeyService, SigningKeyState } from "../src/gen/tollgate/v1/signing_key_service_pb.js";
import type { App } from "../src/app.js";
import { signingKeysRepo } from "../src/store/signing-keys-repo.js";
import { importPrivateKey } from "../src/tokens/key-material.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer, testEnv } from "./support/server.js";
import { inspect, signWithStoredKey } from "./support/tokens.js";

let db: TestDatabase;
let app: App;
let auth: ReturnType<typeof grpcClient<typeof AuthService>>;
let admin: ReturnType<typeof grpcClient<typeof SigningKeyService>>;
let rootHeaders: { authorization: string };
let clock = Date.now();

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url, { now: () => clock, env: { TOLLGATE_SIGNING_KEY_ROTATE_EVERY_SECONDS: "86400" } });
  auth = grpcClient(AuthService, app.grpcPort);
  admin = grpcClient(SigningKeyService, app.grpcPort);
  rootHeaders = { authorization: `Bearer ${(await seedKey(app, { tenantId: "root", admin: "root" })).secret}` };
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

const kids = () => app.tokens.keyring.jwks().keys.map((k) => k.kid);

async function issue(permissions = ["read"]) {
  const { secret } = await seedKey(app, { tenantId: "acme", permissions });
  return (await auth.issueToken({ credential: secret })).accessToken;
}

async function current() {
  const { keys } = await admin.listSigningKeys({}, { headers: rootHeaders });
  return { active: keys.find((k) => k.state === SigningKeyState.ACTIVE)!, next: keys.find((k) => k.state === SigningKeyState.NEXT)!, keys };
}

describe("signing keys", () => {
  it("starts with an active EdDSA key and a next key, both published, with the private key only encrypted at rest", async () => {
    const { active, next } = await current();
    expect(active.algorithm).toBe("EdDSA");
    expect(kids()).toEqual(expect.arrayContaining([active.kid, next.kid]));
    expect(inspect(await issue()).header.kid).toBe(active.kid);
    const { rows } = await app.pool.query<{ private_key_enc: Buffer }>("SELECT private_key_enc FROM signing_keys");
    for (const r of rows) expect(r.private_key_enc.toString("latin1")).not.toContain("PRIVATE KEY");
    const [record] = await signingKeysRepo.listKeys(app.pool, new Date(clock), false);
    await expect(importPrivateKey(record!, Buffer.alloc(32, 7))).rejects.toThrow();
    expect(JSON.parse(active.publicJwk)).not.toHaveProperty("d");
  });

  it("rotates: the published next key starts signing, tokens of the retired key keep verifying", async () => {
    const before = await current();
    const old = await issue();
    const rotation = await admin.rotateSigningKey({}, { headers: rootHeaders });
    expect(rotation.active?.kid).toBe(before.next.kid);
    expect(rotation.retired?.kid).toBe(before.active.kid);
    expect(rotation.retired?.state).toBe(SigningKeyState.RETIRED);
    await expect.poll(async () => inspect(await issue()).header.kid, { timeout: 1000, interval: 20 }).toBe(before.next.kid);
    expect(kids()).toEqual(expect.arrayContaining([before.active.kid, before.next.kid, rotation.next!.kid]));
    expect((await auth.authenticate({ credential: old })).code).toBe(Code.VALID);
  });

  it("stops publishing and accepting a retired key once every token it signed has expired", async () => {
    const before = await current();
    const { claims } = inspect(await issue());
    const rotation = await admin.rotateSigningKey({}, { headers: rootHeaders });
    const retiredKid = rotation.retired!.kid;
    const publishUntil = timestampMs(rotation.retired!.publishUntil!);
    expect(publishUntil).toBe(clock + (3600 + 30) * 1000); // the longest token lifetime plus the clock skew
    // A validly signed token from the retired key that claims to live for days.
    const longLived = await signWithStoredKey(app, retiredKid, { ...claims, exp: claims.exp! + 10 * 86400 });
    expect(retiredKid).toBe(before.active.kid);
    const start = clock;
    try {
      clock = publishUntil - 1000;
      expect((await auth.authenticate({ credential: longLived })).code).toBe(Code.VALID);
      clock = publishUntil;
      expect((await auth.authenticate({ credential: longLived })).code).toBe(Code.INVALID_ACCESS_TOKEN);
      expect(kids()).not.toContain(retiredKid);
      const all = await admin.listSigningKeys({ includeExpired: true }, { headers: rootHeaders });
      expect(all.keys.find((k) => k.kid === retiredKid)?.state).toBe(SigningKeyState.EXPIRED);
      expect((await admin.listSigningKeys({}, { headers: rootHeaders })).keys.map((k) => k.kid)).not.toContain(retiredKid);
    } finally {
      clock = start;
    }
  });

  it("switches algorithm over two rotations (ES256, then RS256) and verifies tokens of each", async () => {
    for (const algorithm of ["ES256", "RS256"]) {
      const first = await admin.rotateSigningKey({ algorithm }, { headers: rootHeaders });
      expect(first.next?.algorithm).toBe(algorithm);
      const second = await admin.rotateSigningKey({}, { headers: rootHeaders });
      expect(second.active?.algorithm).toBe(algorithm);
      await expect.poll(async () => inspect(await issue()).header.alg, { timeout: 1000, interval: 20 }).toBe(algorithm);
      expect((await auth.authenticate({ credential: await issue() })).code).toBe(Code.VALID);
    }
  });

  it("every replica picks up a rotation within a second (NOTIFY), signing with the new key", async () => {
    const other = await startTestServer(db.url, { now: () => clock });
    try {
      const rotation = await admin.rotateSigningKey({}, { headers: rootHeaders });
      const otherAuth = grpcClient(AuthService, other.grpcPort);
      const { secret } = await seedKey(app, { tenantId: "acme", permissions: ["read"] });
      await expect.poll(async () => inspect((await otherAuth.issueToken({ credential: secret })).accessToken).header.kid, { timeout: 1000, interval: 20 }).toBe(rotation.active!.kid);
      await expect.poll(() => other.tokens.keyring.jwks().keys.map((k) => k.kid), { timeout: 1000, interval: 20 }).toContain(rotation.next!.kid);
    } finally {
      await other.stop();
    }
  });

  it("rotates on the automatic schedule exactly once per period (injected clock)", async () => {
    const start = clock;
    try {
      expect(await app.tokens.signingKeys.rotateIfDue()).toBeUndefined();
      clock += 86_400_000;
      const [a, b] = await Promise.all([app.tokens.signingKeys.rotateIfDue(), app.tokens.signingKeys.rotateIfDue()]);
      expect([a, b].filter(Boolean)).toHaveLength(1);
      expect(await app.tokens.signingKeys.rotateIfDue()).toBeUndefined();
    } finally {
      clock = start;
    }
  });

  it("requires a root admin key: missing is UNAUTHENTICATED, a tenant admin PERMISSION_DENIED, a bad algorithm INVALID_ARGUMENT", async () => {
    const tenantAdmin = { authorization: `Bearer ${(await seedKey(app, { tenantId: "acme", admin: "tenant" })).secret}` };
    const codeOf = (p: Promise<unknown>) => p.then(() => undefined, (e: ConnectError) => e.code);
    expect(await codeOf(admin.listSigningKeys({}))).toBe(RpcCode.Unauthenticated);
    expect(await codeOf(admin.rotateSigningKey({}, { headers: { authorization: "Bearer sk_live_nope" } }))).toBe(RpcCode.Unauthenticated);
    expect(await codeOf(admin.rotateSigningKey({}, { headers: tenantAdmin }))).toBe(RpcCode.PermissionDenied);
    const bad = await admin.rotateSigningKey({ algorithm: "HS256" }, { headers: rootHeaders }).catch((e: ConnectError) => e);
    expect(bad).toBeInstanceOf(ConnectError);
    expect((bad as ConnectError).code).toBe(RpcCode.InvalidArgument);
    expect((bad as ConnectError).message).toContain("algorithm");
  });

  it("the CLI lists and rotates signing keys, and the running service follows", async () => {
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, ["bin/tollgate.js", ...args], { env: { ...process.env, ...testEnv(db.url) } });
    const before = await current();
    const rotated = JSON.parse((await run(["signing-keys", "rotate", "--json"])).stdout) as { active: { kid: string } };
    expect(rotated.active.kid).toBe(before.next.kid);
    const listed = JSON.parse((await run(["signing-keys", "list", "--json"])).stdout) as Array<{ kid: string; privateKeyEnc?: unknown }>;
    expect(listed.map((k) => k.kid)).toContain(before.next.kid);
    expect(listed.every((k) => k.privateKeyEnc === undefined)).toBe(true);
    await expect.poll(async () => inspect(await issue()).header.kid, { timeout: 1000, interval: 20 }).toBe(before.next.kid);
    await expect(run(["signing-keys", "rotate", "--alg", "HS256"])).rejects.toMatchObject({ code: 2 });
  });
});
