import { query, type Queryable } from "./db.js";

/** One audit entry: who did what to which record. */
export interface AuditEntry {
  actor: string;
  action: string;
  targetType: string;
  targetId: string;
  tenantId?: string | null;
  details?: Record<string, unknown>;
}

/**
 * Appends to the audit log. Call it with the same transaction as the change it records, so a
 * change and its audit row commit or vanish together.
 */
export async function appendAudit(db: Queryable, entry: AuditEntry): Promise<void> {
  await query(
    db,
    "INSERT INTO audit_log (actor, action, target_type, target_id, tenant_id, details) VALUES ($1, $2, $3, $4, $5, $6)",
    [entry.actor, entry.action, entry.targetType, entry.targetId, entry.tenantId ?? null, JSON.stringify(entry.details ?? {})],
  );
}
