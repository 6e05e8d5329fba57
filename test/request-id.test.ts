import { afterAll, beforeAll, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { HealthCheckRequestSchema } from "../src/gen/grpc/health/v1/health_pb.js";
import type { App } from "../src/app.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { startTestServer } from "./support/server.js";

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

async function echoedRequestId(sent: string | undefined): Promise<string | null> {
  const res = await fetch(`http://127.0.0.1:${app.httpPort}/grpc.health.v1.Health/Check`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(sent === undefined ? {} : { "x-request-id": sent }) },
    body: "{}",
  });
  expect(res.status).toBe(200);
  return res.headers.get("x-request-id");
}

it("echoes a client's x-request-id only when it is plainly an id, else issues a fresh one", async () => {
  expect(await echoedRequestId("req-42.a:b_c")).toBe("req-42.a:b_c");
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  for (const bad of [undefined, "has spaces", "x".repeat(129), "quote\"d", "sk_live_{secret}"]) {
    expect(await echoedRequestId(bad)).toMatch(uuid);
  }
});

/** A Health/Check through the grpc-js listener: the answer's status and the response headers' x-request-id. */
async function grpcCheck(service: string, sent: string | undefined): Promise<{ code: number; requestId: string | undefined }> {
  const client = new grpc.Client(`127.0.0.1:${app.grpcPort}`, grpc.credentials.createInsecure());
  try {
    const metadata = new grpc.Metadata();
    if (sent !== undefined) metadata.set("x-request-id", sent);
    return await new Promise((resolve) => {
      let requestId: string | undefined;
      const request = Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service })));
      const call = client.makeUnaryRequest("/grpc.health.v1.Health/Check", (b: Buffer) => b, (b: Buffer) => b, request, metadata, (err) => resolve({ code: err?.code ?? grpc.status.OK, requestId }));
      call.on("metadata", (md: grpc.Metadata) => (requestId = md.get("x-request-id")[0] as string | undefined));
    });
  } finally {
    client.close();
  }
}

it("does the same on the grpc-js listener, where a synchronous answer is sent without a promise and a synchronous throw is a typed error", async () => {
  expect(await grpcCheck("", "req-7")).toEqual({ code: grpc.status.OK, requestId: "req-7" });
  const fresh = await grpcCheck("", "has spaces");
  expect(fresh.code).toBe(grpc.status.OK);
  expect(fresh.requestId).toMatch(/^[0-9a-f-]{36}$/);
  // Health/Check throws NOT_FOUND synchronously for an unknown service: an error answer (trailers only), not a crash.
  expect((await grpcCheck("no-such-service", "req-8")).code).toBe(grpc.status.NOT_FOUND);
  expect(await grpcCheck("", undefined)).toMatchObject({ code: grpc.status.OK });
});
