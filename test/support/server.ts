import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { startApp, type App } from "../../src/app.js";
import { loadConfig, type Config } from "../../src/config/config.js";
import { createLogger } from "../../src/observability/logger.js";
import { createHasher } from "../../src/keys/hasher.js";
import { ADMIN_PERMISSION, CROSS_TENANT_PERMISSION, createKeyAdmin, type CreateKeyInput } from "../../src/keys/key-admin.js";
import { withTransaction } from "../../src/store/db.js";
import { tenantsRepo } from "../../src/store/tenants-repo.js";

/** Environment shared by in-process and child-process test servers. */
export function testEnv(databaseUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    TOLLGATE_HOST: "127.0.0.1",
    TOLLGATE_GRPC_PORT: "0",
    TOLLGATE_HTTP_PORT: "0",
    TOLLGATE_LOG_LEVEL: "silent",
    TOLLGATE_PEPPER: "test-pepper-test-pepper-test-pepper-0123",
    // Shared by every replica of a test, so any of them can use the signing keys another created.
    TOLLGATE_MASTER_KEY: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    TOLLGATE_SHUTDOWN_GRACE_MS: "500",
    ...extra,
  };
}

/** Starts a real server in this process on ports chosen by the kernel. */
export async function startTestServer(databaseUrl: string, options: { env?: Record<string, string>; config?: Partial<Config>; now?: () => number } = {}): Promise<App> {
  const config = loadConfig(testEnv(databaseUrl, options.env), options.config);
  return startApp(config, { logger: createLogger("silent"), ...(options.now ? { now: options.now } : {}) });
}

/** A server in a separate process (a second replica), with its ports read from its log. */
export interface ServerProcess {
  grpcPort: number;
  httpPort: number;
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far (its JSON log lines). */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function startServerProcess(databaseUrl: string, env: Record<string, string> = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    env: { ...process.env, ...testEnv(databaseUrl, { TOLLGATE_LOG_LEVEL: "info", ...env }) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  let stdout = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  const ports = await new Promise<{ grpcPort: number; httpPort: number }>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`server process did not start: ${stderr}`)), 30_000);
    lines.on("line", (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; grpcPort?: number; httpPort?: number };
        if (entry.msg === "tollgate listening") {
          clearTimeout(timer);
          resolve({ grpcPort: entry.grpcPort!, httpPort: entry.httpPort! });
        }
      } catch {
        // not a log line
      }
    });
    child.once("exit", (code) => reject(new Error(`server process exited with ${code}: ${stderr}`)));
  });
  return {
    ...ports,
    child,
    output: () => stdout + stderr,
    stop: (signal = "SIGTERM") =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill(signal);
      }),
  };
}

/** A connect client speaking gRPC to the grpc-js listener. */
export function grpcClient<S extends DescService>(service: S, port: number): Client<S> {
  return createClient(service, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
}

/** Creates a tenant (if needed) and a key in it directly through the domain, as the CLI does. */
export async function seedKey(app: Pick<App, "pool" | "config">, input: Partial<CreateKeyInput> & { tenantId: string; admin?: "tenant" | "root" }) {
  await withTransaction(app.pool, (tx) => tenantsRepo.ensureTenant(tx, input.tenantId, "test"));
  const admin = createKeyAdmin({ pool: app.pool, hasher: createHasher({ params: app.config.argon2, concurrency: 2, queueLimit: 100 }), prefixes: app.config.prefixes });
  const permissions = [...(input.permissions ?? [])];
  if (input.admin) permissions.push(ADMIN_PERMISSION);
  if (input.admin === "root") permissions.push(CROSS_TENANT_PERMISSION);
  return admin.createKey({ actor: "test", tenantId: input.tenantId, root: true }, {
    name: "test key", environment: "live", prefix: "", roles: [], plan: "free", metadata: {}, expiresAt: null, ipAllowlist: [], ownerId: null,
    ...input, permissions,
  });
}

/**
 * Waits until the server's invalidation listener is connected. Its (re)connection drops every
 * cache (what changed while it was away is unknown), so a test that relies on a cached row must
 * not start while a reconnect is pending, as it is for a while after another test's outage (the
 * listener backs off up to 5 s). A changed row must come back as an eviction: by its NOTIFY, or
 * by the reset of a reconnect; either means the listener is connected.
 */
export async function listenerConnected(app: App): Promise<void> {
  const probe = await seedKey(app, { tenantId: "acme" });
  await app.verifier.lookup(probe.key.keyId);
  await app.pool.query("UPDATE api_keys SET name = 'listener probe' WHERE key_id = $1", [probe.key.keyId]);
  const started = Date.now();
  while (!(app.verifier.lookup(probe.key.keyId) instanceof Promise)) {
    if (Date.now() - started > 15_000) throw new Error("the invalidation listener did not reconnect within 15 s");
    await new Promise((r) => setTimeout(r, 50));
  }
}

export { create };
