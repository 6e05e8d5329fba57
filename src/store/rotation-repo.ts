import type pg from "pg";
import type { Actor, KeyRecord } from "../domain/key.js";
import { query, type Queryable } from "./db.js";
import { appendAudit } from "./audit-repo.js";
import { COLUMNS, toKeyRecord, type KeyRow } from "./keys-repo.js";

/** A maximum-age policy row: `tenantId`/`plan` null means "every tenant"/"every plan". */
export interface RotationPolicyRecord {
  tenantId: string | null;
  plan: string | null;
  maxAgeSeconds: number;
}

/** What RotateKey writes: the successor's id, secret hash and hint, and when the old key's grace ends. */
export interface SuccessorInput {
  keyId: string;
  secretHash: string;
  hint: string;
  graceExpiresAt: Date;
  /** The successor's creation time, from the service's clock (its age drives `rotation_due`). */
  createdAt: Date;
}

interface PolicyRow {
  tenant_id: string | null;
  plan: string | null;
  max_age_seconds: number;
}

/** SQL for key rotation and rotation policies. None of it is on the Authenticate hot path. */
export const rotationRepo = {
  /**
   * Reads a key and locks its row until the transaction ends (primary key `api_keys_pkey`), so that
   * concurrent rotations of one key run one after the other and the second sees the first's successor.
   */
  async lockKey(tx: pg.PoolClient, keyId: string): Promise<KeyRecord | undefined> {
    const { rows } = await query<KeyRow>(tx, `SELECT ${COLUMNS} FROM api_keys WHERE key_id = $1 FOR UPDATE`, [keyId]);
    return rows[0] && toKeyRecord(rows[0]);
  },

  /**
   * Creates the successor as a copy of `old` (tenant, environment, prefix, permissions, roles, plan,
   * metadata, expiry, IP allowlist, owner, quota subject) and links both ways. The old row's update
   * is conditional on it having no successor yet: a second writer that somehow got past the row lock
   * changes nothing, and the partial unique indexes of migration 005 back this up. Both audit rows
   * are written in the same transaction. Returns [old, successor] as stored.
   */
  async insertSuccessor(tx: pg.PoolClient, old: KeyRecord, input: SuccessorInput, actor: Actor): Promise<[KeyRecord, KeyRecord] | undefined> {
    const inserted = await query<KeyRow>(
      tx,
      `INSERT INTO api_keys (key_id, tenant_id, name, environment, prefix, secret_hash, hint, permissions, roles, plan,
         metadata, expires_at, ip_allowlist, owner_id, predecessor_key_id, quota_subject, created_at, updated_at)
       SELECT $2, tenant_id, name, environment, prefix, $3, $4, permissions, roles, plan,
         metadata, expires_at, ip_allowlist, owner_id, key_id, quota_subject, $5, now()
       FROM api_keys WHERE key_id = $1
       RETURNING ${COLUMNS}`,
      [old.keyId, input.keyId, input.secretHash, input.hint, input.createdAt],
    );
    const updated = await query<KeyRow>(
      tx,
      `UPDATE api_keys SET successor_key_id = $2, grace_expires_at = $3, updated_at = now()
       WHERE key_id = $1 AND successor_key_id IS NULL AND revoked_at IS NULL
       RETURNING ${COLUMNS}`,
      [old.keyId, input.keyId, input.graceExpiresAt],
    );
    if (!inserted.rows[0] || !updated.rows[0]) return undefined;
    await appendAudit(tx, { actor, action: "key.rotate", targetType: "key", targetId: old.keyId, tenantId: old.tenantId,
      details: { successor_key_id: input.keyId, grace_expires_at: input.graceExpiresAt.toISOString() } });
    await appendAudit(tx, { actor, action: "key.create", targetType: "key", targetId: input.keyId, tenantId: old.tenantId,
      details: { predecessor_key_id: old.keyId, quota_subject: old.quotaSubject, reason: "rotation" } });
    return [toKeyRecord(updated.rows[0]), toKeyRecord(inserted.rows[0])];
  },

  /** Every policy; replicas hold them all in memory (they are few: per tenant and plan). */
  async listPolicies(db: Queryable): Promise<RotationPolicyRecord[]> {
    const { rows } = await query<PolicyRow>(db, "SELECT tenant_id, plan, max_age_seconds FROM key_rotation_policies ORDER BY policy_id");
    return rows.map((r) => ({ tenantId: r.tenant_id, plan: r.plan, maxAgeSeconds: r.max_age_seconds }));
  },

  /** Creates or replaces the policy for one (tenant, plan) scope, with its audit row. */
  async upsertPolicy(tx: pg.PoolClient, policy: RotationPolicyRecord, actor: Actor): Promise<void> {
    await query(
      tx,
      `INSERT INTO key_rotation_policies (tenant_id, plan, max_age_seconds) VALUES ($1, $2, $3)
       ON CONFLICT (tenant_id, plan) DO UPDATE SET max_age_seconds = EXCLUDED.max_age_seconds, updated_at = now()`,
      [policy.tenantId, policy.plan, policy.maxAgeSeconds],
    );
    await appendAudit(tx, { actor, action: "rotation_policy.set", targetType: "rotation_policy",
      targetId: `${policy.tenantId ?? "*"}/${policy.plan ?? "*"}`, tenantId: policy.tenantId, details: { max_age_seconds: policy.maxAgeSeconds } });
  },

  /**
   * Usable keys older than the strictest policy that applies to them (the rule of
   * `effectiveMaxAgeMs`, restated in SQL), oldest first. An operator query: it scans api_keys.
   */
  async listRotationDue(db: Queryable, tenantId: string | undefined, now: Date, limit: number): Promise<KeyRecord[]> {
    const { rows } = await query<KeyRow>(
      db,
      `SELECT ${COLUMNS.replace(/(\w+)/g, "k.$1")} FROM api_keys k
       CROSS JOIN LATERAL (
         SELECT min(p.max_age_seconds) AS max_age_seconds FROM key_rotation_policies p
         WHERE (p.tenant_id IS NULL OR p.tenant_id = k.tenant_id) AND (p.plan IS NULL OR p.plan = k.plan)
       ) policy
       WHERE ($1::text IS NULL OR k.tenant_id = $1)
         AND k.revoked_at IS NULL AND k.successor_key_id IS NULL
         AND (k.expires_at IS NULL OR k.expires_at > $2)
         AND policy.max_age_seconds IS NOT NULL
         AND k.created_at <= $2::timestamptz - make_interval(secs => policy.max_age_seconds)
       ORDER BY k.created_at, k.key_id
       LIMIT $3`,
      [tenantId ?? null, now, limit],
    );
    return rows.map(toKeyRecord);
  },
};
