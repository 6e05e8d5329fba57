/**
 * The server under test: one real Tollgate in a child process, compiled as production runs it
 * (`tsc`, then `node .../src/main.js`, as the Dockerfile does), on a fresh database, with its log
 * in a file so that writing one log line per call costs the server what it costs in production
 * without the bench having to read it. Running the sources through tsx instead would measure
 * tsx's transform too: it wraps every closure the code creates in a `__name` call, which was
 * several µs of a Check in a CPU profile.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { loadConfig, type Config } from "../src/config/config.js";
import { createPool } from "../src/store/db.js";
import { startEmbeddedPostgres } from "../src/store/embedded.js";
import { postgresReachable as reachable } from "../src/store/db.js";

const LOCAL_ADMIN_URL = process.env.BENCH_PG_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";

/** Compiles the server into bench/out/build (inside the project, so node_modules resolve; not dist/, which the CLI would pick up). */
export function compiledServer(): string {
  const outDir = "bench/out/build";
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json", "--outDir", outDir, "--sourceMap", "false"], { stdio: "inherit" });
  execFileSync(process.execPath, ["scripts/copy-assets.mjs", outDir], { stdio: "inherit" }); // as `npm run build` does
  return `${outDir}/src/main.js`;
}

/** A running server under test and the bench's own connection to its database. */
export interface BenchServer {
  pid: number;
  grpcPort: number;
  httpPort: number;
  /** The bench's pool on the server's database (seeding keys, NOTIFY). */
  pool: pg.Pool;
  /** The configuration the server runs with, as the domain code needs it for seeding. */
  config: Config;
  /** "local PostgreSQL (fresh database …)" or "embedded PostgreSQL". */
  database: string;
  stop(): Promise<void>;
}


async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: LOCAL_ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Waits until the server's log file holds the "tollgate listening" line, and returns its ports. */
async function waitForPorts(logPath: string, child: ChildProcess, stderr: () => string): Promise<{ grpcPort: number; httpPort: number }> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${stderr()}`);
    const text = await readFile(logPath, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      if (!line.includes("tollgate listening")) continue;
      const entry = JSON.parse(line) as { grpcPort: number; httpPort: number };
      return { grpcPort: entry.grpcPort, httpPort: entry.httpPort };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not start within 60 s: ${stderr()}`);
}

/** Waits until `/readyz` says the database and the invalidation listener are up. */
async function waitForReady(httpPort: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`).catch(() => undefined);
    if (res?.ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("server did not become ready within 30 s");
}

/**
 * Starts the server: on a fresh database in the PostgreSQL at 127.0.0.1:5432 when it answers,
 * else on the embedded default in a temporary data directory (the bench then attaches to it).
 * `env` adds or overrides server settings; TOLLGATE_* variables of the bench's own environment
 * are passed through (e.g. `TOLLGATE_ARGON2_CONCURRENCY=1 npm run bench`).
 */
export async function startBenchServer(env: Record<string, string>, entry?: string): Promise<BenchServer> {
  const work = await mkdtemp(join(tmpdir(), "tollgate-bench-"));
  // As root, the embedded PostgreSQL runs as another user, which must be able to reach its data dir inside.
  if (process.getuid?.() === 0) await chmod(work, 0o755);
  const local = await reachable(LOCAL_ADMIN_URL);
  const dbName = `tollgate_bench_${randomBytes(5).toString("hex")}`;
  let databaseUrl: string | undefined;
  if (local) {
    await adminQuery(`CREATE DATABASE ${dbName}`);
    const url = new URL(LOCAL_ADMIN_URL);
    url.pathname = `/${dbName}`;
    databaseUrl = url.toString();
  }
  const serverEnv: Record<string, string> = {
    TOLLGATE_HOST: "127.0.0.1",
    TOLLGATE_GRPC_PORT: "0",
    TOLLGATE_HTTP_PORT: "0",
    TOLLGATE_DATA_DIR: join(work, "data"),
    TOLLGATE_LOG_LEVEL: "info",
    TOLLGATE_SHUTDOWN_GRACE_MS: "1000",
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...env,
  };
  const logPath = join(work, "server.log");
  const log = await open(logPath, "w");
  const { DATABASE_URL: _ignored, ...inherited } = process.env;
  // BENCH_CPU_PROF=<dir>: the server writes a V8 CPU profile there when it exits (open it in Chrome DevTools).
  const profile = process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  // BENCH_ALLOC_PROF=<file>: the server samples every allocation, collected ones included, and writes the profile there on exit (alloc-profile.mjs).
  const allocations = process.env.BENCH_ALLOC_PROF ? ["--import", new URL("./alloc-profile.mjs", import.meta.url).href] : [];
  // BENCH_NODE_FLAGS: more flags for the server's node (e.g. `--trace-gc`, or a V8 heap setting to compare).
  const flags = process.env.BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...flags, ...profile, ...allocations, entry ?? compiledServer()], {
    env: { ...inherited, ...serverEnv },
    stdio: ["ignore", log.fd, "pipe"],
  });
  await log.close();
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const cleanup = async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      await exited;
    }
    if (local) await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);
    if (!process.env.BENCH_KEEP_LOG) await rm(work, { recursive: true, force: true });
    else process.stderr.write(`server log kept in ${logPath}\n`);
  };
  try {
    const ports = await waitForPorts(logPath, child, () => stderr);
    await waitForReady(ports.httpPort);
    const url = databaseUrl ?? (await startEmbeddedPostgres(serverEnv.TOLLGATE_DATA_DIR!)).connectionString;
    const pool = createPool({ connectionString: url, poolSize: 4, timeoutMs: 10_000, applicationName: "tollgate-bench" }, () => undefined);
    return {
      pid: child.pid!,
      ...ports,
      pool,
      config: loadConfig({ ...inherited, ...serverEnv }),
      database: local ? `local PostgreSQL (fresh database ${dbName})` : "embedded PostgreSQL (temporary data dir)",
      async stop() {
        await pool.end();
        await cleanup();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Total CPU time (user + system) the process has used so far, in microseconds. */
export async function cpuMicros(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / CLOCK_TICKS;
}

/** USER_HZ: 100 on every Linux we run on (getconf CLK_TCK). */
const CLOCK_TICKS = 100;
