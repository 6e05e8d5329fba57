import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code as RpcCode, type ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { BadRequestSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { KeyService, type CreateKeyRequest } from "../src/gen/tollgate/v1/key_service_pb.js";
import { clientFor, grpcJsRawCall, reasonOf, rpcError, STACKS, violatedFields, type Stack, type TestClient } from "./support/clients.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { seedKey, startTestServer } from "./support/server.js";

let db: TestDatabase;
let app: App;
let admin: { secret: string; key: { keyId: string } };

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
  admin = await seedKey(app, { tenantId: "root", admin: "root" });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

type CreateInit = Partial<Omit<CreateKeyRequest, "$typeName" | "expiresAt">> & { expiresAt?: ReturnType<typeof timestampFromMs> };
const many = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i));

/** One bad value per case, and the field the BadRequest violation must name. */
const CREATE_CASES: Array<[string, CreateInit]> = [
  ["tenant_id", { tenantId: "Acme" }],
  ["tenant_id", { tenantId: "a_b" }],
  ["tenant_id", { tenantId: "-edge" }],
  ["tenant_id", { tenantId: "x".repeat(64) }],
  ["tenant_id", { tenantId: "ünïcode" }],
  ["name", { name: "n".repeat(201) }],
  ["name", { name: "nul\u0000byte" }],
  ["name", { name: "line\nbreak" }],
  ["environment", { environment: "prod" }],
  ["prefix", { prefix: "SK_LIVE" }],
  ["prefix", { prefix: "sk-live" }],
  ["prefix", { prefix: "a_b_c_d" }],
  ["permissions[0]", { permissions: [""] }],
  ["permissions[1]", { permissions: ["ok:read", "has space"] }],
  ["permissions[0]", { permissions: ["a::b"] }],
  ["permissions[0]", { permissions: [":read"] }],
  ["permissions[0]", { permissions: ["p".repeat(129)] }],
  ["permissions", { permissions: many(257, (i) => `p${i}:read`) }],
  ["roles[0]", { roles: ["has space"] }],
  ["roles", { roles: many(65, (i) => `r${i}`) }],
  ["plan", { plan: "gold plan" }],
  ["metadata", { metadata: Object.fromEntries(many(33, (i) => [`k${i}`, "v"] as unknown as string).map((e) => e as unknown as [string, string])) }],
  ["metadata", { metadata: Object.fromEntries(many(10, (i) => [`k${i}`, "v".repeat(500)] as unknown as string).map((e) => e as unknown as [string, string])) }],
  ['metadata[""]', { metadata: { "": "empty key" } }],
  [`metadata["${"k".repeat(65)}"]`, { metadata: { ["k".repeat(65)]: "v" } }],
  ['metadata["big"]', { metadata: { big: "v".repeat(513) } }],
  ["expires_at", { expiresAt: timestampFromMs(Date.now() - 60_000) }],
  ["ip_allowlist[0]", { ipAllowlist: ["10.0.0.0/33"] }],
  ["ip_allowlist[0]", { ipAllowlist: ["300.1.1.1"] }],
  ["ip_allowlist[1]", { ipAllowlist: ["10.0.0.0/8", "10.0.0.0/8/8"] }],
  ["ip_allowlist[0]", { ipAllowlist: ["fe80::/129"] }],
  ["ip_allowlist[0]", { ipAllowlist: ["not-an-ip"] }],
  ["ip_allowlist[0]", { ipAllowlist: [""] }],
  ["ip_allowlist", { ipAllowlist: many(65, (i) => `10.0.${i}.0/24`) }],
  ["owner_id", { ownerId: "o".repeat(129) }],
];

function expectBadRequest(err: ConnectError, field: string): void {
  expect(err.code, `${field}: ${err.message}`).toBe(RpcCode.InvalidArgument);
  expect(reasonOf(err)).toBe("INVALID_ARGUMENT");
  expect(violatedFields(err)).toContain(field);
  for (const v of err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations)) expect(v.description).not.toBe("");
}

describe.each(STACKS)("malformed input over %s", (stack: Stack) => {
  let keys: TestClient<typeof KeyService>;
  beforeAll(() => void (keys = clientFor(KeyService, stack, app, admin.secret)));
  afterAll(() => keys.close());

  it("CreateKey names every bad field in google.rpc.BadRequest, and creates nothing", async () => {
    const before = (await keys.listKeys({ tenantId: "root", pageSize: 500 })).keys.length;
    for (const [field, request] of CREATE_CASES) expectBadRequest(await rpcError(keys.createKey({ tenantId: "root", ...request })), field);
    const all = await rpcError(keys.createKey({ tenantId: "Bad", name: "\u0007", environment: "x", ipAllowlist: ["nope"], plan: "a b" }));
    expect(new Set(violatedFields(all))).toEqual(new Set(["tenant_id", "name", "environment", "ip_allowlist[0]", "plan"]));
    expect((await keys.listKeys({ tenantId: "root", pageSize: 500 })).keys.length).toBe(before);
  });

  it("GetKey, RevokeKey, UpdateKey and ListKeys reject malformed ids and fields", async () => {
    const cases: Array<[string, () => Promise<unknown>]> = [
      ["key_id", () => keys.getKey({ keyId: "" })],
      ["key_id", () => keys.getKey({ keyId: "short" })],
      ["key_id", () => keys.getKey({ keyId: "has/slash0000000" })],
      ["key_id", () => keys.getKey({ keyId: "x".repeat(10_000) })],
      ["key_id", () => keys.revokeKey({ keyId: "" })],
      ["reason", () => keys.revokeKey({ keyId: admin.key.keyId, reason: "r".repeat(201) })],
      ["key", () => keys.updateKey({ updateMask: { paths: ["name"] } })],
      ["key.key_id", () => keys.updateKey({ key: { keyId: "nope" }, updateMask: { paths: ["name"] } })],
      ["key.ip_allowlist[0]", () => keys.updateKey({ key: { keyId: admin.key.keyId, ipAllowlist: ["1.2.3.4/40"] }, updateMask: { paths: ["ip_allowlist"] } })],
      ["key.permissions[0]", () => keys.updateKey({ key: { keyId: admin.key.keyId, permissions: ["no spaces please"] }, updateMask: { paths: ["permissions"] } })],
      ['key.metadata["big"]', () => keys.updateKey({ key: { keyId: admin.key.keyId, metadata: { big: "v".repeat(513) } }, updateMask: { paths: ["metadata"] } })],
      ["tenant_id", () => keys.listKeys({ tenantId: "UPPER" })],
    ];
    for (const [field, call] of cases) expectBadRequest(await rpcError(call()), field);
    // The admin key survived every rejected update untouched.
    expect((await keys.getKey({ keyId: admin.key.keyId })).key?.ipAllowlist).toEqual([]);
  });

  it("Authenticate rejects an oversized credential and a bad client_ip, never answering INTERNAL", async () => {
    const auth = clientFor(AuthService, stack, app);
    try {
      expectBadRequest(await rpcError(auth.authenticate({ credential: "x".repeat(4097) })), "credential");
      for (const clientIp of ["300.1.1.1", "10.0.0.0/8", "::g", "localhost", " 1.2.3.4"]) {
        expectBadRequest(await rpcError(auth.authenticate({ credential: "x", clientIp })), "client_ip");
      }
      const both = await rpcError(auth.authenticate({ credential: "x".repeat(5000), clientIp: "nope" }));
      expect(new Set(violatedFields(both))).toEqual(new Set(["credential", "client_ip"]));
    } finally {
      auth.close();
    }
  });
});

/** Protobuf bytes for a length-delimited field: tag, varint length (< 128), payload. */
const lengthDelimited = (field: number, payload: number[]) => [(field << 3) | 2, payload.length, ...payload];
const INVALID_UTF8 = [0x61, 0xff, 0xfe, 0x62];

describe("undecodable requests", () => {
  const bodies: Array<[string, string, number[]]> = [
    ["CreateKey name with invalid UTF-8", "/tollgate.v1.KeyService/CreateKey", lengthDelimited(2, INVALID_UTF8)],
    ["CreateKey metadata key with invalid UTF-8", "/tollgate.v1.KeyService/CreateKey", lengthDelimited(8, [...lengthDelimited(1, INVALID_UTF8), ...lengthDelimited(2, [0x76])])],
    ["CreateKey permission with invalid UTF-8", "/tollgate.v1.KeyService/CreateKey", lengthDelimited(5, INVALID_UTF8)],
    ["Authenticate credential with invalid UTF-8", "/tollgate.v1.AuthService/Authenticate", lengthDelimited(1, INVALID_UTF8)],
    ["a truncated message", "/tollgate.v1.AuthService/Authenticate", [0x0a, 0x10, 0x41]],
  ];

  it.each(bodies)("%s is INVALID_ARGUMENT on the grpc-js listener", async (_name, path, bytes) => {
    const err = await rpcError(grpcJsRawCall(app.grpcPort, path, Buffer.from(bytes), { authorization: `Bearer ${admin.secret}` }));
    expect(err.code).toBe(RpcCode.InvalidArgument);
    expect(reasonOf(err)).not.toBe("INTERNAL");
  });

  it.each(bodies)("%s is INVALID_ARGUMENT over gRPC on the connect-node listener", async (_name, path, bytes) => {
    const err = await rpcError(grpcJsRawCall(app.httpPort, path, Buffer.from(bytes), { authorization: `Bearer ${admin.secret}` }));
    expect(err.code).toBe(RpcCode.InvalidArgument);
    expect(reasonOf(err)).toBe("INVALID_ARGUMENT");
  });

  // connect-es itself would answer INTERNAL ("parse binary: ..."): src/transport/decode-guard.ts
  // checks binary unary bodies first.
  it.each(bodies)("%s is INVALID_ARGUMENT on the connect-node listener (Connect binary)", async (_name, path, bytes) => {
    const res = await fetch(`http://127.0.0.1:${app.httpPort}${path}`, {
      method: "POST",
      headers: { "content-type": "application/proto", authorization: `Bearer ${admin.secret}` },
      body: Buffer.from(bytes),
    });
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code, body.message).toBe("invalid_argument");
    expect(res.status).toBe(400);
  });

  it.each(bodies)("%s is INVALID_ARGUMENT over gRPC-Web on the connect-node listener", async (_name, path, bytes) => {
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, bytes.length]), Buffer.from(bytes)]);
    const res = await fetch(`http://127.0.0.1:${app.httpPort}${path}`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", authorization: `Bearer ${admin.secret}` },
      body: frame,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("grpc-status")).toBe(String(RpcCode.InvalidArgument));
  });

  it("a Connect JSON body of the wrong shape is INVALID_ARGUMENT", async () => {
    for (const body of ['{"pageSize":"many"}', '{"tenantId":', '{"nope":1', "[]"]) {
      const res = await fetch(`http://127.0.0.1:${app.httpPort}/tollgate.v1.KeyService/ListKeys`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${admin.secret}` },
        body,
      });
      expect(((await res.json()) as { code: string }).code, body).toBe("invalid_argument");
    }
  });
});
