import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { KeyService } from "../src/gen/tollgate/v1/key_service_pb.js";
import { scrubSecrets } from "../src/observability/logger.js";
import { clientFor } from "./support/clients.js";
import { createTestDatabase, type TestDatabase } from "./support/db.js";
import { grpcClient, seedKey, startTestServer } from "./support/server.js";

const run = promisify(execFile);
const repo = fileURLToPath(new URL("..", import.meta.url));
const buf = join(repo, "node_modules/.bin/buf");
let db: TestDatabase;
let app: App;
let emptyDir: string;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestServer(db.url);
  emptyDir = await mkdtemp(join(tmpdir(), "tollgate-no-protos-"));
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
  await rm(emptyDir, { recursive: true, force: true });
});

/** Runs the `tollgate` CLI against the test database. */
async function cli(...args: string[]) {
  const { stdout } = await run(process.execPath, [join(repo, "bin/tollgate.js"), ...args], {
    cwd: repo,
    env: { ...process.env, DATABASE_URL: db.url, TOLLGATE_LOG_LEVEL: "silent" },
  });
  return stdout;
}

describe("tollgate CLI", () => {
  it("bootstraps a root admin key that administers the running server; keys list/get/revoke work", { timeout: 60_000 }, async () => {
    const created = JSON.parse(await cli("keys", "create", "--admin", "--json")) as { keyId: string; tenantId: string; secret: string; permissions: string[] };
    expect(created.tenantId).toBe("root");
    expect(created.permissions).toEqual(expect.arrayContaining(["tollgate:admin", "tollgate:cross-tenant"]));
    expect(created).not.toHaveProperty("secretHash");

    const keys = clientFor(KeyService, "grpc-js", app, created.secret);
    await seedKey(app, { tenantId: "acme" });
    const made = await keys.createKey({ tenantId: "acme", name: "made with the CLI admin" });
    keys.close();

    const listed = JSON.parse(await cli("keys", "list", "--tenant", "acme", "--json")) as Array<{ keyId: string; secretHash?: string }>;
    expect(listed.map((k) => k.keyId)).toContain(made.key!.keyId);
    expect(listed.every((k) => k.secretHash === undefined)).toBe(true);
    expect(JSON.parse(await cli("keys", "get", made.key!.keyId, "--json"))).toMatchObject({ keyId: made.key!.keyId, tenantId: "acme" });

    const auth = grpcClient(AuthService, app.grpcPort);
    expect((await auth.authenticate({ credential: made.secret })).code).toBe(Code.VALID);
    const revoked = JSON.parse(await cli("keys", "revoke", made.key!.keyId, "--reason", "cli test", "--json")) as { revokedReason: string };
    expect(revoked.revokedReason).toBe("cli test");
    // The CLI writes straight to the database; the server hears about it through NOTIFY.
    const started = Date.now();
    while ((await auth.authenticate({ credential: made.secret })).code !== Code.REVOKED_API_KEY) {
      expect(Date.now() - started).toBeLessThan(1_000);
    }
  });

  it("fails with a usage error, not a stack trace, on a bad command", async () => {
    const err = (await cli("keys", "create", "--env", "prod").catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(2);
    expect(err.stderr).toContain("--env must be live or test");
    expect(err.stderr).not.toMatch(/\n\s+at /);
  });
});

describe("buf curl through server reflection, with no local protos", () => {
  /** Runs buf curl from a directory without protos; failures never show the secrets on the command line. */
  const curl = (port: number, ...args: string[]) =>
    run(buf, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args.slice(0, -1), `http://127.0.0.1:${port}${args.at(-1)}`], { cwd: emptyDir, timeout: 6_000 })
      .catch((err: Error & { cmd?: string }) => {
        err.message = scrubSecrets(err.message);
        if (err.cmd) err.cmd = scrubSecrets(err.cmd);
        throw err;
      });

  async function authenticateAndList(port: number) {
    const { key, secret } = await seedKey(app, { tenantId: "acme", permissions: ["chat:write"] });
    const { stdout } = await curl(port, "-d", JSON.stringify({ credential: `Bearer ${secret}`, client_ip: "203.0.113.5" }), "/tollgate.v1.AuthService/Authenticate");
    const res = JSON.parse(stdout) as { valid: boolean; code: string; principal: { keyId: string; permissions: string[] } };
    expect(res).toMatchObject({ valid: true, code: "VALID", principal: { keyId: key.keyId, permissions: ["chat:write"] } });

    const denied = JSON.parse((await curl(port, "-d", '{"credential":"sk_live_nope"}', "/tollgate.v1.AuthService/Authenticate")).stdout) as { code: string };
    expect(denied.code).toBe("MALFORMED_CREDENTIAL");

    const { stdout: methods } = await curl(port, "--list-methods", "/");
    const lines = methods.trim().split("\n");
    expect(lines).toEqual(expect.arrayContaining([
      "tollgate.v1.AuthService/Authenticate", "tollgate.v1.AuthService/RotateKey", "tollgate.v1.KeyService/CreateKey",
      "tollgate.v1.KeyService/ListKeys", "tollgate.v1.TenantService/CreateTenant", "grpc.health.v1.Health/Check",
    ]));
  }

  it("calls Authenticate and lists methods on the connect-node listener", { timeout: 30_000 }, () => authenticateAndList(app.httpPort));

  // buf curl exits only once the server ends its reflection stream after the client half-closes
  // (the grpc-js adapter once destroyed the call at that point instead, and buf curl hung).
  it("calls Authenticate and lists methods on the grpc-js listener", { timeout: 30_000 }, () => authenticateAndList(app.grpcPort));

  it("carries admin headers and reports errors with their gRPC code", { timeout: 30_000 }, async () => {
    const admin = await seedKey(app, { tenantId: "acme", admin: "tenant" });
    const { stdout } = await curl(app.httpPort, "-H", `authorization: Bearer ${admin.secret}`, "-d", "{}", "/tollgate.v1.KeyService/ListKeys");
    expect((JSON.parse(stdout) as { keys: unknown[] }).keys.length).toBeGreaterThan(0);
    const failure = (await curl(app.httpPort, "-d", "{}", "/tollgate.v1.KeyService/ListKeys").catch((e: unknown) => e)) as { stderr: string };
    expect(failure.stderr).toMatch(/unauthenticated/i);
  });
});
