import { toJsonString } from "@bufbuild/protobuf";
import { Code as RpcCode } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { GetKeyResponseSchema, KeyService, ListKeysResponseSchema } from "../src/gen/tollgate/v1/key_service_pb.js";
import { parseKey } from "../src/keys/format.js";
import { clientFor, rpcError, STACKS, violatedFields, type Stack, type TestClient } from "./support/clients.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";

let db: TestDatabase;
let app: App;
let auth: ReturnType<typeof grpcClient<typeof AuthService>>;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
  auth = grpcClient(AuthService, app.grpcPort);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

/** Polls `check` until it holds or `withinMs` passes; returns how long it took. */
async function eventually(check: () => Promise<boolean>, withinMs: number): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > withinMs) throw new Error(`condition not met within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - started;
}

describe.each(STACKS)("KeyService over %s", (stack: Stack) => {
  const tenantId = `crud-${stack}`;
  let keys: TestClient<typeof KeyService>;

  beforeAll(async () => {
    const admin = await seedKey(app, { tenantId, admin: "tenant" });
    keys = clientFor(KeyService, stack, app, admin.secret);
  });
  afterAll(() => keys?.close());

  it("returns the secret once at creation; GetKey and ListKeys never carry it or its hash", async () => {
    const created = await keys.createKey({ name: "billing", permissions: ["invoices:read"], roles: ["viewer"], plan: "pro", metadata: { team: "billing" } });
    const parsed = parseKey(created.secret);
    expect(parsed?.keyId).toBe(created.key?.keyId);
    expect(created.key).toMatchObject({ tenantId, name: "billing", environment: "live", prefix: "sk_live", plan: "pro", permissions: ["invoices:read"], roles: ["viewer"] });
    expect(created.key?.hint).toBe(parsed!.secret.slice(-4));

    const got = await keys.getKey({ keyId: created.key!.keyId });
    const listed = await keys.listKeys({});
    for (const json of [toJsonString(GetKeyResponseSchema, got), toJsonString(ListKeysResponseSchema, listed)]) {
      expect(json).toContain(created.key!.keyId);
      expect(json).not.toContain(parsed!.secret);
      expect(json).not.toContain(parsed!.secret.slice(0, 20));
      expect(json).not.toContain("argon2");
    }
    const res = await auth.authenticate({ credential: created.secret });
    expect(res.code).toBe(Code.VALID);
    expect(res.principal?.permissions).toEqual(["invoices:read"]);
  });

  it("pages through ListKeys newest first without gaps or repeats, and rejects bad pagination", async () => {
    const pageTenant = `pages-${stack}`;
    const root = await seedKey(app, { tenantId: "root", admin: "root" });
    const rootKeys = clientFor(KeyService, stack, app, root.secret);
    try {
      await seedKey(app, { tenantId: pageTenant });
      const created: string[] = [];
      for (let i = 0; i < 6; i++) created.push((await rootKeys.createKey({ tenantId: pageTenant, name: `k${i}` })).key!.keyId);
      const all = (await rootKeys.listKeys({ tenantId: pageTenant, pageSize: 500 })).keys.map((k) => k.keyId);
      expect(all).toHaveLength(7);
      expect(all.slice(0, 6)).toEqual([...created].reverse());

      const seen: string[] = [];
      const sizes: number[] = [];
      let pageToken = "";
      do {
        const page = await rootKeys.listKeys({ tenantId: pageTenant, pageSize: 3, pageToken });
        seen.push(...page.keys.map((k) => k.keyId));
        sizes.push(page.keys.length);
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      expect(sizes).toEqual([3, 3, 1]);
      expect(seen).toEqual(all);

      const first = await rootKeys.listKeys({ tenantId: pageTenant, pageSize: 2 });
      const token = first.nextPageToken;
      const decoded = JSON.parse(Buffer.from(token, "base64url").toString()) as Record<string, string>;
      const forged = Buffer.from(JSON.stringify({ ...decoded, s: `keys:${tenantId}:false` })).toString("base64url");
      const bad: Array<[string, Parameters<typeof rootKeys.listKeys>[0]]> = [
        ["page_token", { tenantId: pageTenant, pageToken: token.slice(0, -3) + (token.endsWith("A") ? "B" : "A") + "!!" }],
        ["page_token", { tenantId: pageTenant, pageToken: "not a token" }],
        ["page_token", { tenantId: pageTenant, pageToken: Buffer.from('{"s":1}').toString("base64url") }],
        ["page_token", { tenantId: pageTenant, pageToken: Buffer.from(JSON.stringify({ ...decoded, c: "yesterday" })).toString("base64url") }],
        ["page_token", { tenantId: pageTenant, pageToken: token, includeRevoked: true }], // token of another query
        ["page_token", { tenantId: pageTenant, pageToken: forged }], // re-scoped to another tenant
        ["page_token", { tenantId: pageTenant, pageToken: "x".repeat(2000) }],
        ["page_size", { tenantId: pageTenant, pageSize: -1 }],
        ["page_size", { tenantId: pageTenant, pageSize: 501 }],
      ];
      for (const [field, request] of bad) {
        const err = await rpcError(rootKeys.listKeys(request));
        expect(err.code, JSON.stringify(request).slice(0, 200)).toBe(RpcCode.InvalidArgument);
        expect(violatedFields(err)).toEqual([field]);
      }
      expect((await rootKeys.listKeys({ tenantId: pageTenant, pageSize: 500 })).keys).toHaveLength(7);
      expect((await rootKeys.listKeys({ tenantId: pageTenant, pageSize: 0 })).keys).toHaveLength(7); // 0 = default (50)
    } finally {
      rootKeys.close();
    }
  });

  it("updates exactly the fields named by the mask, and the change reaches Authenticate", async () => {
    const created = await keys.createKey({ name: "before", permissions: ["a:read"], plan: "free", metadata: { keep: "me" } });
    const keyId = created.key!.keyId;
    expect((await auth.authenticate({ credential: created.secret })).principal?.permissions).toEqual(["a:read"]);

    const updated = await keys.updateKey({
      key: { keyId, name: "after", permissions: ["a:read", "a:write"], plan: "enterprise", metadata: { ignored: "x" } },
      updateMask: { paths: ["name", "permissions"] },
    });
    expect(updated.key).toMatchObject({ name: "after", permissions: ["a:read", "a:write"], plan: "free", metadata: { keep: "me" } });
    expect((await keys.getKey({ keyId })).key).toMatchObject({ name: "after", plan: "free" });
    // The cached principal is evicted through NOTIFY, not by waiting for the cache TTL (60 s).
    await eventually(async () => (await auth.authenticate({ credential: created.secret })).principal?.permissions.length === 2, 1_000);

    for (const paths of [["secret_hash"], ["name", "tenant_id"], ["revoked_at"], []]) {
      const err = await rpcError(keys.updateKey({ key: { keyId, name: "x" }, updateMask: { paths } }));
      expect(err.code).toBe(RpcCode.InvalidArgument);
      expect(violatedFields(err)).toEqual(["update_mask"]);
    }
    expect((await keys.getKey({ keyId })).key?.name).toBe("after");
  });

  it("revokes once, hides revoked keys from default listings, and Authenticate sees the revocation", async () => {
    const created = await keys.createKey({ name: "doomed" });
    const keyId = created.key!.keyId;
    expect((await auth.authenticate({ credential: created.secret })).code).toBe(Code.VALID);
    const revoked = await keys.revokeKey({ keyId, reason: "leaked" });
    expect(revoked.key?.revokedAt).toBeDefined();
    expect(revoked.key?.revokedReason).toBe("leaked");
    const again = await keys.revokeKey({ keyId, reason: "second thoughts" });
    expect(again.key?.revokedReason).toBe("leaked");
    expect(again.key?.revokedAt).toEqual(revoked.key?.revokedAt);

    expect((await keys.listKeys({ pageSize: 500 })).keys.map((k) => k.keyId)).not.toContain(keyId);
    expect((await keys.listKeys({ pageSize: 500, includeRevoked: true })).keys.map((k) => k.keyId)).toContain(keyId);
    await eventually(async () => (await auth.authenticate({ credential: created.secret })).code === Code.REVOKED_API_KEY, 1_000);
  });

  it("answers NOT_FOUND for a well-formed key id that does not exist", async () => {
    const missing = "0000000000000000";
    const calls = [
      () => keys.getKey({ keyId: missing }),
      () => keys.revokeKey({ keyId: missing }),
      () => keys.updateKey({ key: { keyId: missing, name: "x" }, updateMask: { paths: ["name"] } }),
    ];
    for (const call of calls) {
      expect((await rpcError(call())).code).toBe(RpcCode.NotFound);
    }
  });
});
