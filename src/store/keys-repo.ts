import type pg from "pg";
import type { Actor, KeyChanges, KeyRecord, NewKey } from "../domain/key.js";
import type { PlanOverrides } from "../domain/policy.js";
import { query, type Queryable } from "./db.js";
import { appendAudit } from "./audit-repo.js";

/** A row of `api_keys` as pg returns it (shared with the rotation repository). */
export interface KeyRow {
  key_id: string;
  tenant_id: string;
  name: string;
  environment: "live" | "test";
  prefix: string;
  secret_hash: string;
  hint: string;
  permissions: string[];
  roles: string[];
  plan: string;
  metadata: Record<string, string>;
  expires_at: Date | null;
  ip_allowlist: string[];
  owner_id: string | null;
  revoked_at: Date | null;
  revoked_reason: string | null;
  predecessor_key_id: string | null;
  successor_key_id: string | null;
  grace_expires_at: Date | null;
  quota_subject: string;
  policy_overrides: PlanOverrides;
  created_at: Date;
  updated_at: Date;
}

/** The columns every key query returns (the hash included: the verifier needs it). */
export const COLUMNS = `key_id, tenant_id, name, environment, prefix, secret_hash, hint, permissions, roles, plan,
  metadata, expires_at, ip_allowlist, owner_id, revoked_at, revoked_reason, predecessor_key_id,
  successor_key_id, grace_expires_at, quota_subject, policy_overrides, created_at, updated_at`;

/** Maps a row to the domain record. */
export function toKeyRecord(r: KeyRow): KeyRecord {
  return {
    keyId: r.key_id,
    tenantId: r.tenant_id,
    name: r.name,
    environment: r.environment,
    prefix: r.prefix,
    secretHash: r.secret_hash,
    hint: r.hint,
    permissions: r.permissions,
    roles: r.roles,
    plan: r.plan,
    metadata: r.metadata,
    expiresAt: r.expires_at,
    ipAllowlist: r.ip_allowlist,
    ownerId: r.owner_id,
    revokedAt: r.revoked_at,
    revokedReason: r.revoked_reason,
    predecessorKeyId: r.predecessor_key_id,
    successorKeyId: r.successor_key_id,
    graceExpiresAt: r.grace_expires_at,
    quotaSubject: r.quota_subject,
    policyOverrides: r.policy_overrides,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** A page position: the (created_at, key_id) of the last row returned. */
export interface KeyCursor {
  createdAt: Date;
  keyId: string;
}

/** SQL for API keys. The hot path uses only `findKey` (primary-key lookup). */
export const keysRepo = {
  /** Hot path on a cache miss: primary-key index `api_keys_pkey`. */
  async findKey(db: Queryable, keyId: string): Promise<KeyRecord | undefined> {
    const { rows } = await query<KeyRow>(db, `SELECT ${COLUMNS} FROM api_keys WHERE key_id = $1`, [keyId]);
    return rows[0] && toKeyRecord(rows[0]);
  },

  /** Many rows by id in one statement (the key cache's refresh ahead): `api_keys_pkey` again. */
  async findKeys(db: Queryable, keyIds: readonly string[]): Promise<KeyRecord[]> {
    const { rows } = await query<KeyRow>(db, `SELECT ${COLUMNS} FROM api_keys WHERE key_id = ANY($1::text[])`, [keyIds]);
    return rows.map(toKeyRecord);
  },

  async insertKey(tx: pg.PoolClient, key: NewKey, actor: Actor): Promise<KeyRecord> {
    const { rows } = await query<KeyRow>(
      tx,
      `INSERT INTO api_keys (key_id, tenant_id, name, environment, prefix, secret_hash, hint, permissions,
         roles, plan, metadata, expires_at, ip_allowlist, owner_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
       RETURNING ${COLUMNS}`,
      [key.keyId, key.tenantId, key.name, key.environment, key.prefix, key.secretHash, key.hint, key.permissions,
        key.roles, key.plan, JSON.stringify(key.metadata), key.expiresAt, key.ipAllowlist, key.ownerId],
    );
    await appendAudit(tx, { actor, action: "key.create", targetType: "key", targetId: key.keyId, tenantId: key.tenantId,
      details: { name: key.name, environment: key.environment, plan: key.plan } });
    return toKeyRecord(rows[0]!);
  },

  /** Newest first; index `api_keys_tenant_page`. */
  async listKeys(db: Queryable, tenantId: string, limit: number, after: KeyCursor | undefined, includeRevoked: boolean): Promise<KeyRecord[]> {
    const { rows } = await query<KeyRow>(
      db,
      `SELECT ${COLUMNS} FROM api_keys
       WHERE tenant_id = $1
         AND ($2::timestamptz IS NULL OR (created_at, key_id) < ($2, $3))
         AND ($4 OR revoked_at IS NULL)
       ORDER BY created_at DESC, key_id DESC
       LIMIT $5`,
      [tenantId, after?.createdAt ?? null, after?.keyId ?? "", includeRevoked, limit],
    );
    return rows.map(toKeyRecord);
  },

  async updateKey(tx: pg.PoolClient, keyId: string, changes: KeyChanges, actor: Actor): Promise<KeyRecord | undefined> {
    const { rows } = await query<KeyRow>(
      tx,
      `UPDATE api_keys SET
         name = CASE WHEN $2 THEN $3 ELSE name END,
         permissions = CASE WHEN $4 THEN $5::text[] ELSE permissions END,
         roles = CASE WHEN $6 THEN $7::text[] ELSE roles END,
         plan = CASE WHEN $8 THEN $9 ELSE plan END,
         metadata = CASE WHEN $10 THEN $11::jsonb ELSE metadata END,
         expires_at = CASE WHEN $12 THEN $13::timestamptz ELSE expires_at END,
         ip_allowlist = CASE WHEN $14 THEN $15::text[] ELSE ip_allowlist END,
         owner_id = CASE WHEN $16 THEN $17 ELSE owner_id END,
         updated_at = now()
       WHERE key_id = $1
       RETURNING ${COLUMNS}`,
      [keyId, "name" in changes, changes.name ?? null, "permissions" in changes, changes.permissions ?? null,
        "roles" in changes, changes.roles ?? null, "plan" in changes, changes.plan ?? null,
        "metadata" in changes, JSON.stringify(changes.metadata ?? {}), "expiresAt" in changes, changes.expiresAt ?? null,
        "ipAllowlist" in changes, changes.ipAllowlist ?? null, "ownerId" in changes, changes.ownerId ?? null],
    );
    const row = rows[0];
    if (!row) return undefined;
    await appendAudit(tx, { actor, action: "key.update", targetType: "key", targetId: keyId, tenantId: row.tenant_id,
      details: { fields: Object.keys(changes) } });
    return toKeyRecord(row);
  },

  /** Revokes once: a second revoke keeps the first time and reason. */
  async revokeKey(tx: pg.PoolClient, keyId: string, reason: string, actor: Actor): Promise<KeyRecord | undefined> {
    const { rows } = await query<KeyRow>(
      tx,
      `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()),
         revoked_reason = CASE WHEN revoked_at IS NULL THEN $2 ELSE revoked_reason END, updated_at = now()
       WHERE key_id = $1 RETURNING ${COLUMNS}`,
      [keyId, reason],
    );
    const row = rows[0];
    if (!row) return undefined;
    await appendAudit(tx, { actor, action: "key.revoke", targetType: "key", targetId: keyId, tenantId: row.tenant_id, details: { reason } });
    return toKeyRecord(row);
  },

  /** Replaces a hash with a stronger one after a successful verify; only if it is still the old one. */
  async replaceHash(db: Queryable, keyId: string, oldHash: string, newHash: string): Promise<void> {
    await query(db, "UPDATE api_keys SET secret_hash = $3 WHERE key_id = $1 AND secret_hash = $2", [keyId, oldHash, newHash]);
  },
};
