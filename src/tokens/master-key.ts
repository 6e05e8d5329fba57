import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";

/** Name of the generated master key inside the data dir. */
export const MASTER_KEY_FILE = "master-key";

/**
 * The master key that encrypts signing keys at rest. A configured key (`TOLLGATE_MASTER_KEY`) wins.
 * Without one, a random key is generated once and kept in `dataDir/master-key` (mode 0600) — fine
 * for the embedded single-machine default, but every replica must share it, so `warn` is told to
 * say so. Losing the file makes the stored private keys unusable (rotate to recover).
 */
export async function resolveMasterKey(configured: Buffer | undefined, dataDir: string, warn: (msg: string) => void): Promise<Buffer> {
  if (configured) return configured;
  const root = resolve(dataDir);
  const file = join(root, MASTER_KEY_FILE);
  if (!existsSync(file)) {
    await mkdir(root, { recursive: true, mode: 0o700 });
    await writeFile(file, randomBytes(32).toString("base64"), { mode: 0o600, flag: "wx" }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err; // another process created it first: use theirs
    });
  }
  warn(`TOLLGATE_MASTER_KEY is not set: signing keys are encrypted with the generated key in ${file}; set TOLLGATE_MASTER_KEY (shared by every replica) in production`);
  const key = Buffer.from((await readFile(file, "utf8")).trim(), "base64");
  if (key.length !== 32) throw new Error(`${file} does not hold a 32-byte base64 master key`);
  return key;
}
