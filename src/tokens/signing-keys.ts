import type pg from "pg";
import type { SigningKeyRecord } from "../domain/signing-key.js";
import { withTransaction } from "../store/db.js";
import { signingKeysRepo } from "../store/signing-keys-repo.js";
import { generateSigningKey } from "./key-material.js";
import type { SigningAlgorithm, TokenConfig } from "./token-config.js";

/** The store, the master key new private keys are sealed with, the clock and the token settings. */
export interface SigningKeysDeps {
  pool: pg.Pool;
  masterKey: Buffer;
  now: () => number;
  config: TokenConfig;
}

/** The keys a rotation touched. */
export interface Rotation {
  active: SigningKeyRecord;
  next: SigningKeyRecord;
  /** The key that stopped signing; absent when there was none. */
  retired?: SigningKeyRecord;
}

/**
 * Signing-key lifecycle in the store. There is always one `active` key (signs) and one `next` key
 * (already published in the JWKS, so verifiers that cache the JWKS know it before it signs).
 * Rotation retires the active key — it stays published for the longest token lifetime plus the
 * clock skew, so every token it signed can still be verified — promotes `next`, and publishes a
 * fresh `next`. Every change runs under one advisory lock, so replicas never race.
 */
export function createSigningKeys(deps: SigningKeysDeps) {
  const publishWindowMs = (deps.config.maxTtlSeconds + deps.config.clockSkewSeconds) * 1000;
  const fresh = (algorithm?: SigningAlgorithm) => generateSigningKey(algorithm ?? deps.config.signingAlgorithm, deps.masterKey);

  async function rotateLocked(tx: pg.PoolClient, actor: string, current: { active?: SigningKeyRecord; next?: SigningKeyRecord }, algorithm?: SigningAlgorithm): Promise<Rotation> {
    const at = new Date(deps.now());
    const retired = current.active ? await signingKeysRepo.retireKey(tx, current.active.kid, at, new Date(at.getTime() + publishWindowMs), actor) : undefined;
    // Without a published next key (only after manual surgery) the new key has to sign at once.
    const active = current.next
      ? await signingKeysRepo.activateKey(tx, current.next.kid, at, actor)
      : await signingKeysRepo.insertKey(tx, await fresh(algorithm), "active", at, actor);
    const next = await signingKeysRepo.insertKey(tx, await fresh(algorithm), "next", at, actor);
    return { active, next, ...(retired ? { retired } : {}) };
  }

  return {
    /** Creates the active and next keys when missing (first start); a no-op afterwards. */
    async ensure(actor = "system"): Promise<void> {
      await withTransaction(deps.pool, async (tx) => {
        await signingKeysRepo.lock(tx);
        const current = await signingKeysRepo.currentKeys(tx);
        const at = new Date(deps.now());
        if (!current.active) await signingKeysRepo.insertKey(tx, await fresh(), "active", at, actor);
        if (!current.next) await signingKeysRepo.insertKey(tx, await fresh(), "next", at, actor);
      });
    },

    /** Rotates now. `algorithm` applies to the newly generated next key (the one after the new active key). */
    async rotate(actor: string, algorithm?: SigningAlgorithm): Promise<Rotation> {
      return withTransaction(deps.pool, async (tx) => {
        await signingKeysRepo.lock(tx);
        return rotateLocked(tx, actor, await signingKeysRepo.currentKeys(tx), algorithm);
      });
    },

    /**
     * The automatic schedule: rotates when the active key has signed for `rotateEverySeconds`.
     * Safe to call from every replica; the lock and the re-read make exactly one of them rotate.
     */
    async rotateIfDue(): Promise<Rotation | undefined> {
      const everyMs = deps.config.rotateEverySeconds * 1000;
      if (everyMs === 0) return undefined;
      return withTransaction(deps.pool, async (tx) => {
        await signingKeysRepo.lock(tx);
        const current = await signingKeysRepo.currentKeys(tx);
        const since = current.active?.activatedAt?.getTime() ?? 0;
        if (current.active && since + everyMs > deps.now()) return undefined;
        return rotateLocked(tx, "system:schedule", current);
      });
    },

    /** Published keys (newest first); with `includeExpired`, retired keys past their window too. */
    async list(includeExpired: boolean): Promise<SigningKeyRecord[]> {
      return signingKeysRepo.listKeys(deps.pool, new Date(deps.now()), includeExpired);
    },
  };
}

export type SigningKeys = ReturnType<typeof createSigningKeys>;
