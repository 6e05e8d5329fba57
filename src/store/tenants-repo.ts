import type pg from "pg";
import { query, type Queryable } from "./db.js";
import { appendAudit } from "./audit-repo.js";

/** A tenant as stored. */
export interface TenantRecord {
  tenantId: string;
  displayName: string;
  createdAt: Date;
}

interface TenantRow {
  tenant_id: string;
  display_name: string;
  created_at: Date;
}

const toTenant = (r: TenantRow): TenantRecord => ({ tenantId: r.tenant_id, displayName: r.display_name, createdAt: r.created_at });

/** SQL for tenants. */
export const tenantsRepo = {
  async insertTenant(tx: pg.PoolClient, tenantId: string, displayName: string, actor: string): Promise<TenantRecord> {
    const { rows } = await query<TenantRow>(tx, "INSERT INTO tenants (tenant_id, display_name) VALUES ($1, $2) RETURNING *", [tenantId, displayName]);
    await appendAudit(tx, { actor, action: "tenant.create", targetType: "tenant", targetId: tenantId, tenantId });
    return toTenant(rows[0]!);
  },

  /** Creates the tenant unless it exists; used by bootstrap paths such as the CLI. */
  async ensureTenant(tx: pg.PoolClient, tenantId: string, actor: string): Promise<void> {
    const { rowCount } = await query(tx, "INSERT INTO tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", [tenantId]);
    if (rowCount) await appendAudit(tx, { actor, action: "tenant.create", targetType: "tenant", targetId: tenantId, tenantId });
  },

  async findTenant(db: Queryable, tenantId: string): Promise<TenantRecord | undefined> {
    const { rows } = await query<TenantRow>(db, "SELECT * FROM tenants WHERE tenant_id = $1", [tenantId]);
    return rows[0] && toTenant(rows[0]);
  },

  /** Ordered by id; `after` is the last id of the previous page. */
  async listTenants(db: Queryable, limit: number, after: string | undefined): Promise<TenantRecord[]> {
    const { rows } = await query<TenantRow>(db, "SELECT * FROM tenants WHERE tenant_id > $1 ORDER BY tenant_id LIMIT $2", [after ?? "", limit]);
    return rows.map(toTenant);
  },
};
