import type pg from "pg";
import type { NewSigningKey, SigningKeyRecord, SigningKeyState } from "../domain/signing-key.js";
import { appendAudit } from "./audit-repo.js";
import { query, type Queryable } from "./db.js";

interface SigningKeyRow {
  kid: string;
  algorithm: SigningKeyRecord["algorithm"];
  public_jwk: Record<string, unknown>;
  private_key_enc: Buffer;
  state: SigningKeyState;
  created_at: Date;
  activated_at: Date | null;
  retired_at: Date | null;
  publish_until: Date | null;
}

const COLUMNS = "kid, algorithm, public_jwk, private_key_enc, state, created_at, activated_at, retired_at, publish_until";

function toRecord(r: SigningKeyRow): SigningKeyRecord {
  return {
    kid: r.kid,
    algorithm: r.algorithm,
    publicJwk: r.public_jwk,
    privateKeyEnc: r.private_key_enc,
    state: r.state,
    createdAt: r.created_at,
    activatedAt: r.activated_at,
    retiredAt: r.retired_at,
    publishUntil: r.publish_until,
  };
}

/** Serialises bootstrap and rotation across replicas (transaction-scoped advisory lock). */
const SIGNING_KEYS_LOCK_ID = 7_310_411_004;

/**
 * SQL for signing keys. None of it is on the request path: replicas load the keyring at start-up
 * and on NOTIFY, and answer from memory.
 */
export const signingKeysRepo = {
  /** Every key still published at `at`, plus (when `includeExpired`) retired keys past their window. Newest first. */
  async listKeys(db: Queryable, at: Date, includeExpired: boolean): Promise<SigningKeyRecord[]> {
    const { rows } = await query<SigningKeyRow>(
      db,
      `SELECT ${COLUMNS} FROM signing_keys
       WHERE $2 OR state <> 'retired' OR publish_until > $1
       ORDER BY created_at DESC, kid`,
      [at, includeExpired],
    );
    return rows.map(toRecord);
  },

  /** Takes the lock that serialises keyring changes; call inside a transaction. */
  async lock(tx: pg.PoolClient): Promise<void> {
    await query(tx, "SELECT pg_advisory_xact_lock($1)", [SIGNING_KEYS_LOCK_ID]);
  },

  /** The signing and waiting keys, locked for a rotation. */
  async currentKeys(tx: pg.PoolClient): Promise<{ active?: SigningKeyRecord; next?: SigningKeyRecord }> {
    const { rows } = await query<SigningKeyRow>(tx, `SELECT ${COLUMNS} FROM signing_keys WHERE state IN ('active', 'next') FOR UPDATE`);
    const records = rows.map(toRecord);
    return { active: records.find((r) => r.state === "active"), next: records.find((r) => r.state === "next") };
  },

  async insertKey(tx: pg.PoolClient, key: NewSigningKey, state: "next" | "active", at: Date, actor: string): Promise<SigningKeyRecord> {
    const { rows } = await query<SigningKeyRow>(
      tx,
      `INSERT INTO signing_keys (kid, algorithm, public_jwk, private_key_enc, state, created_at, activated_at)
       VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 = 'active' THEN $6::timestamptz END)
       RETURNING ${COLUMNS}`,
      [key.kid, key.algorithm, JSON.stringify(key.publicJwk), key.privateKeyEnc, state, at],
    );
    await appendAudit(tx, { actor, action: "signing_key.create", targetType: "signing_key", targetId: key.kid, details: { algorithm: key.algorithm, state } });
    return toRecord(rows[0]!);
  },

  /** Retires the signing key: it stops signing now and stays published until `publishUntil`. */
  async retireKey(tx: pg.PoolClient, kid: string, at: Date, publishUntil: Date, actor: string): Promise<SigningKeyRecord> {
    const { rows } = await query<SigningKeyRow>(
      tx,
      `UPDATE signing_keys SET state = 'retired', retired_at = $2, publish_until = $3 WHERE kid = $1 RETURNING ${COLUMNS}`,
      [kid, at, publishUntil],
    );
    await appendAudit(tx, { actor, action: "signing_key.retire", targetType: "signing_key", targetId: kid, details: { publishUntil: publishUntil.toISOString() } });
    return toRecord(rows[0]!);
  },

  /** Promotes the waiting key to the signing key. */
  async activateKey(tx: pg.PoolClient, kid: string, at: Date, actor: string): Promise<SigningKeyRecord> {
    const { rows } = await query<SigningKeyRow>(tx, `UPDATE signing_keys SET state = 'active', activated_at = $2 WHERE kid = $1 RETURNING ${COLUMNS}`, [kid, at]);
    await appendAudit(tx, { actor, action: "signing_key.activate", targetType: "signing_key", targetId: kid });
    return toRecord(rows[0]!);
  },
};
