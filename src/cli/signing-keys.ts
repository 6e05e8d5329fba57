import type { Config } from "../config/config.js";
import type { SigningKeyRecord } from "../domain/signing-key.js";
import { resolveMasterKey } from "../tokens/master-key.js";
import { createSigningKeys } from "../tokens/signing-keys.js";
import { SIGNING_ALGORITHMS, type SigningAlgorithm } from "../tokens/token-config.js";
import type { CliDatabase } from "./database.js";

/** A signing key as the CLI prints it: lifecycle and public key, never the private part. */
function keyJson(key: SigningKeyRecord): Record<string, unknown> {
  const { privateKeyEnc: _sealed, ...rest } = key;
  return rest;
}

function keyLine(key: SigningKeyRecord): string {
  const state = key.state === "retired" && key.publishUntil && key.publishUntil.getTime() <= Date.now() ? "expired" : key.state;
  const until = key.publishUntil ? `published until ${key.publishUntil.toISOString()}` : "";
  return [key.kid, key.algorithm, state, key.createdAt.toISOString(), until].join("\t");
}

/**
 * `tollgate signing-keys list|rotate`. Rotation goes through the store like the admin RPC, so
 * every running replica reloads its keyring on the NOTIFY it causes. Returns a usage problem, if any.
 */
export async function signingKeysCommand(
  db: CliDatabase,
  config: Config,
  sub: string | undefined,
  options: { alg?: string | undefined; json?: boolean | undefined; actor: string },
): Promise<string | undefined> {
  if (sub !== "list" && sub !== "rotate") return `unknown signing-keys command "${sub ?? ""}"`;
  if (options.alg !== undefined && !(SIGNING_ALGORITHMS as readonly string[]).includes(options.alg)) return `--alg must be one of ${SIGNING_ALGORITHMS.join(", ")}`;
  const masterKey = await resolveMasterKey(config.masterKey, config.dataDir, (msg) => console.error(`warning: ${msg}`));
  const keys = createSigningKeys({ pool: db.pool, masterKey, now: Date.now, config: config.tokens });
  await keys.ensure(options.actor);
  if (sub === "rotate") {
    const rotation = await keys.rotate(options.actor, options.alg as SigningAlgorithm | undefined);
    if (options.json) console.log(JSON.stringify({ active: keyJson(rotation.active), next: keyJson(rotation.next), retired: rotation.retired && keyJson(rotation.retired) }));
    else console.log(`rotated: ${rotation.active.kid} (${rotation.active.algorithm}) now signs; next is ${rotation.next.kid}`);
    return undefined;
  }
  const list = await keys.list(true);
  if (options.json) console.log(JSON.stringify(list.map(keyJson)));
  else list.forEach((k) => console.log(keyLine(k)));
  return undefined;
}
