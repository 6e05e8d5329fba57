import type { Config } from "../config/config.js";
import type { KeyRecord } from "../domain/key.js";
import { createHasher } from "../keys/hasher.js";
import type { AdminCaller } from "../keys/key-admin.js";
import { createKeyRotator } from "../keys/key-rotation.js";
import { withTransaction } from "../store/db.js";
import { rotationRepo } from "../store/rotation-repo.js";
import type { CliDatabase } from "./database.js";
import { keyJson, keyLine, parseDuration } from "./format.js";

/** The options the rotation commands read. */
export interface RotationOptions {
  grace?: string;
  tenant?: string;
  plan?: string;
  "max-age"?: string;
  limit?: string;
  json?: boolean;
}

/** What the rotation commands need from the CLI: the database, config, the caller, and how to report a usage mistake. */
export interface RotationCliDeps {
  db: CliDatabase;
  config: Config;
  caller: AdminCaller;
  usage(message: string): Error;
}

/** Parses `--grace`: a duration such as `24h`, or `0` to end the old key's validity now. */
function graceMsOf(deps: RotationCliDeps, text: string | undefined): number {
  if (text === undefined) return deps.config.rotation.defaultGraceSeconds * 1000;
  const ms = text.trim() === "0" ? 0 : parseDuration(text);
  if (ms === undefined) throw deps.usage("--grace takes a duration such as 24h, 30m or 0");
  if (ms > deps.config.rotation.maxGraceSeconds * 1000) throw deps.usage(`--grace must be at most ${deps.config.rotation.maxGraceSeconds}s`);
  return ms;
}

/** `tollgate keys rotate <key-id> [--grace 24h]`: prints the successor and its secret, once. */
export async function rotateKeyCommand(deps: RotationCliDeps, keyId: string | undefined, v: RotationOptions): Promise<void> {
  if (!keyId) throw deps.usage("keys rotate needs a key id");
  const graceMs = graceMsOf(deps, v.grace);
  const hasher = createHasher({ params: deps.config.argon2, concurrency: 1, queueLimit: 1 });
  const rotation = await createKeyRotator({ pool: deps.db.pool, hasher, now: Date.now }).rotate(deps.caller, keyId, graceMs);
  if (v.json) {
    console.log(JSON.stringify({ ...keyJson(rotation.successor), secret: rotation.secret, old: keyJson(rotation.old) }));
    return;
  }
  console.log(`rotated key ${rotation.old.keyId} -> ${rotation.successor.keyId} (tenant ${rotation.successor.tenantId})`);
  console.log(`old key valid until ${rotation.old.graceExpiresAt?.toISOString() ?? "now"}`);
  console.log(`secret of the new key (shown once, store it now):\n${rotation.secret}`);
}

/** `tollgate keys list --rotation-due [--tenant T]`: usable, unrotated keys older than their policy's maximum age. */
export async function listRotationDueCommand(deps: RotationCliDeps, v: RotationOptions): Promise<void> {
  const limit = Number(v.limit ?? 500);
  if (!Number.isInteger(limit) || limit < 1) throw deps.usage("--limit must be a positive integer");
  const keys = await rotationRepo.listRotationDue(deps.db.pool, v.tenant, new Date(), limit);
  if (v.json) console.log(JSON.stringify(keys.map(keyJson)));
  else keys.forEach((k: KeyRecord) => console.log(`${keyLine(k)}\tcreated ${k.createdAt.toISOString()}`));
}

/**
 * `tollgate rotation-policy set --max-age 90d [--tenant T] [--plan P]` and `rotation-policy list`.
 * Without --tenant the policy applies to every tenant, without --plan to every plan.
 */
export async function rotationPolicyCommand(deps: RotationCliDeps, sub: string | undefined, v: RotationOptions): Promise<void> {
  if (sub === "list") {
    const policies = await rotationRepo.listPolicies(deps.db.pool);
    for (const p of policies) {
      console.log(v.json ? JSON.stringify(p) : `${p.tenantId ?? "*"}\t${p.plan ?? "*"}\tmax age ${p.maxAgeSeconds}s`);
    }
    return;
  }
  if (sub !== "set") throw deps.usage(`unknown rotation-policy command "${sub ?? ""}"`);
  const maxAgeMs = v["max-age"] ? parseDuration(v["max-age"]) : undefined;
  if (!maxAgeMs || maxAgeMs < 1000) throw deps.usage("--max-age takes a duration of at least 1s, such as 90d");
  const policy = { tenantId: v.tenant ?? null, plan: v.plan ?? null, maxAgeSeconds: Math.floor(maxAgeMs / 1000) };
  await withTransaction(deps.db.pool, (tx) => rotationRepo.upsertPolicy(tx, policy, deps.caller.actor));
  console.log(v.json ? JSON.stringify(policy) : `keys of tenant ${policy.tenantId ?? "*"}, plan ${policy.plan ?? "*"}: rotation due after ${policy.maxAgeSeconds}s`);
}
