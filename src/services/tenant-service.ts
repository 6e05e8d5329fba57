import type pg from "pg";
import type { ServiceImpl } from "@connectrpc/connect";
import { notFound, permissionDenied, Violations } from "../domain/errors.js";
import { withTransaction } from "../store/db.js";
import { tenantsRepo, type TenantRecord } from "../store/tenants-repo.js";
import type { TenantService } from "../gen/tollgate/v1/tenant_service_pb.js";
import type { AdminAuthenticator } from "./admin-auth.js";
import { ts } from "./convert.js";
import { decodePageToken, encodePageToken, pageSize } from "./page-token.js";
import { checkName, checkTenantId } from "./validate.js";

const toProto = (t: TenantRecord) => ({ tenantId: t.tenantId, displayName: t.displayName, createdAt: ts(t.createdAt) });

/** TenantService: root admins create and list tenants; a tenant admin may read its own. */
export function createTenantService(pool: pg.Pool, authenticate: AdminAuthenticator): ServiceImpl<typeof TenantService> {
  const requireRoot = async (ctx: Parameters<AdminAuthenticator>[0]) => {
    const caller = await authenticate(ctx);
    if (!caller.root) throw permissionDenied("ROOT_ADMIN_REQUIRED", "only a root admin key may manage tenants");
    return caller;
  };
  return {
    async createTenant(req, ctx) {
      const caller = await requireRoot(ctx);
      const v = new Violations();
      checkTenantId(v, "tenant_id", req.tenantId, true);
      checkName(v, "display_name", req.displayName);
      v.throwIfAny();
      const tenant = await withTransaction(pool, (tx) => tenantsRepo.insertTenant(tx, req.tenantId, req.displayName, caller.actor));
      return { tenant: toProto(tenant) };
    },
    async getTenant(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkTenantId(v, "tenant_id", req.tenantId, true);
      v.throwIfAny();
      const tenant = caller.root || caller.tenantId === req.tenantId ? await tenantsRepo.findTenant(pool, req.tenantId) : undefined;
      if (!tenant) throw notFound("tenant", req.tenantId);
      return { tenant: toProto(tenant) };
    },
    async listTenants(req, ctx) {
      await requireRoot(ctx);
      const size = pageSize("page_size", req.pageSize);
      const after = decodePageToken("page_token", req.pageToken, "tenants", ["a"])?.a;
      const rows = await tenantsRepo.listTenants(pool, size + 1, after);
      const page = rows.slice(0, size);
      const last = page[page.length - 1];
      return { tenants: page.map(toProto), nextPageToken: rows.length > size && last ? encodePageToken("tenants", { a: last.tenantId }) : "" };
    },
  };
}
