import { afterAll, beforeAll, expect, it } from "vitest";
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
