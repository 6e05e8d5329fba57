import type pg from "pg";
import type { KeyRecord } from "../domain/key.js";
import { notFound, TollgateError } from "../domain/errors.js";
import { withTransaction } from "../store/db.js";
import { rotationRepo } from "../store/rotation-repo.js";
import { generateKey, hintOf, newKeyId } from "./format.js";
import type { SecretHasher } from "./hasher.js";
import type { AdminCaller } from "./key-admin.js";

/** A completed rotation: both rows as stored, and the successor's full key string (shown once). */
export interface Rotation {
  old: KeyRecord;
  successor: KeyRecord;
  secret: string;
}

export interface KeyRotatorDeps {
  pool: pg.Pool;
  hasher: SecretHasher;
  now: () => number;
  /** Called after commit with the old key's id, so this replica stops serving its cached row at once. */
  onRotated?(keyId: string): void;
}

function precondition(reason: string, message: string, metadata: Record<string, string> = {}): TollgateError {
  return new TollgateError("failed_precondition", reason, message, { metadata });
}

/**
 * Refuses keys that cannot be rotated, with a reason a client can act on:
 * - KEY_REVOKED: a revoked key stays dead; create a new key instead.
 * - ALREADY_ROTATED: a key has at most one successor (metadata `successor_key_id`); rotate the
 *   successor instead. This holds during grace and after it, and makes concurrent calls safe.
 * - KEY_EXPIRED: past its own expiry there is nothing left to carry over.
 */
function checkRotatable(key: KeyRecord, nowMs: number): void {
  if (key.revokedAt) throw precondition("KEY_REVOKED", `key "${key.keyId}" is revoked and cannot be rotated`);
  if (key.successorKeyId) {
    throw precondition("ALREADY_ROTATED", `key "${key.keyId}" was already rotated; rotate its successor "${key.successorKeyId}" instead`,
      { successor_key_id: key.successorKeyId });
  }
  if (key.expiresAt && key.expiresAt.getTime() <= nowMs) throw precondition("KEY_EXPIRED", `key "${key.keyId}" has expired and cannot be rotated`);
}

/**
 * The end of the old key's grace period: now + grace, but never beyond the old key's own expiry
 * (rotation must not extend a key's life). A grace of 0 ends it now: the old key answers
 * EXPIRED_API_KEY from the next request on.
 */
export function graceEnd(key: Pick<KeyRecord, "expiresAt">, nowMs: number, graceMs: number): Date {
  const end = nowMs + graceMs;
  const expiry = key.expiresAt?.getTime();
  return new Date(expiry !== undefined && expiry < end ? expiry : end);
}

/**
 * Rotates API keys. The successor is a copy of the old key in everything but its id, secret and
 * creation time, including its quota subject, so counters are shared across the rotation. The old
 * row is locked for the whole transaction: of several concurrent rotations of one key exactly one
 * creates a successor and the others fail with ALREADY_ROTATED. Audit rows commit with the change.
 */
export function createKeyRotator(deps: KeyRotatorDeps) {
  return {
    /**
     * Rotates `keyId` on behalf of `caller` (an admin, or the key itself as a tenant-scoped
     * caller). A key outside the caller's tenant is reported as missing, so its existence does not leak.
     */
    async rotate(caller: AdminCaller, keyId: string, graceMs: number): Promise<Rotation> {
      const result = await withTransaction(deps.pool, async (tx) => {
        const key = await rotationRepo.lockKey(tx, keyId);
        if (!key || (!caller.root && key.tenantId !== caller.tenantId)) throw notFound("key", keyId);
        const nowMs = deps.now();
        checkRotatable(key, nowMs);
        // Hashed under the lock (~20 ms of argon2): losers of a race wait and fail without burning CPU.
        const generated = generateKey(key.prefix, newKeyId());
        const secretHash = await deps.hasher.hash(generated.secret);
        const rows = await rotationRepo.insertSuccessor(tx, key, {
          keyId: generated.keyId, secretHash, hint: hintOf(generated), graceExpiresAt: graceEnd(key, nowMs, graceMs), createdAt: new Date(nowMs),
        }, caller.actor);
        if (!rows) throw precondition("ALREADY_ROTATED", `key "${keyId}" was rotated concurrently`);
        return { old: rows[0], successor: rows[1], secret: generated.full };
      });
      deps.onRotated?.(keyId);
      return result;
    },
  };
}

export type KeyRotator = ReturnType<typeof createKeyRotator>;
