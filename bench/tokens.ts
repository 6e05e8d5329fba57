/**
 * Authenticate throughput: an access token against an API key, both warm (cached), over gRPC on
 * the grpc-js listener. Usage: `tsx bench/tokens.ts [seconds per case] [concurrency]`, with
 * BENCH_DATABASE_URL (default: the local test PostgreSQL) naming a server it may create a
 * database in. Prints one JSON line per case.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { startApp } from "../src/app.js";
import { loadConfig } from "../src/config/config.js";
import { createLogger } from "../src/observability/logger.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { grpcClient, seedKey, testEnv } from "../test/support/server.js";

const seconds = Number(process.argv[2] ?? 3);
const concurrency = Number(process.argv[3] ?? 16);
const adminUrl = process.env.BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";

async function run(label: string, call: () => Promise<{ code: Code }>): Promise<void> {
  const latencies: number[] = [];
  const until = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < until) {
      const started = performance.now();
      const res = await call();
      if (res.code !== Code.VALID) throw new Error(`${label}: unexpected code ${Code[res.code]}`);
      latencies.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  latencies.sort((a, b) => a - b);
  const at = (q: number) => Math.round(latencies[Math.floor(q * (latencies.length - 1))]! * 1000) / 1000;
  console.log(JSON.stringify({ case: label, concurrency, rps: Math.round(latencies.length / seconds), p50ms: at(0.5), p99ms: at(0.99) }));
}

const name = `tollgate_bench_${randomBytes(4).toString("hex")}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
const url = new URL(adminUrl);
url.pathname = `/${name}`;
const app = await startApp(loadConfig(testEnv(url.toString())), { logger: createLogger("silent") });
try {
  const { secret } = await seedKey(app, { tenantId: "bench", permissions: ["read", "write"] });
  const client = grpcClient(AuthService, app.grpcPort);
  const token = (await client.issueToken({ credential: secret })).accessToken;
  await client.authenticate({ credential: secret });
  await client.authenticate({ credential: token });
  for (const [label, verify] of [
    ["domain: api key verify (warm)", () => app.verifier.verify(secret, "")],
    ["domain: access token verify (warm)", () => app.tokens.verifier.verify(token, "")],
  ] as const) {
    const n = 5000;
    const started = performance.now();
    for (let i = 0; i < n; i++) await verify();
    console.log(JSON.stringify({ case: label, microsPerCall: Math.round(((performance.now() - started) / n) * 1000) }));
  }
  await run("authenticate api key (warm)", () => client.authenticate({ credential: secret }));
  await run("authenticate access token (warm)", () => client.authenticate({ credential: token }));
} finally {
  await app.stop();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}
