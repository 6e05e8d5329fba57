import type { ServiceImpl } from "@connectrpc/connect";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { permissionDenied, Violations } from "../domain/errors.js";
import { isKeyId } from "../keys/format.js";
import type { QuotaRepo } from "../store/quota-repo.js";
import { UsageGranularity, UsageGroupBy, type UsageService } from "../gen/tollgate/v1/usage_service_pb.js";
import type { AdminAuthenticator } from "./admin-auth.js";
import { checkTenantId } from "./validate.js";

const GRANULARITY = { [UsageGranularity.MINUTE]: "minute", [UsageGranularity.HOUR]: "hour", [UsageGranularity.DAY]: "day" } as const;
const GROUP = { [UsageGroupBy.TOTAL]: "total", [UsageGroupBy.TENANT]: "tenant", [UsageGroupBy.KEY]: "key" } as const;
const WEEK_MS = 7 * 86_400_000;

/**
 * UsageService: reads the usage roll-ups. A root admin sees every tenant; a tenant admin only its
 * own (the filter defaults to it, and asking for another tenant is PERMISSION_DENIED). Usage is
 * written in batches, so the last few seconds (one flush interval) may not be visible yet.
 */
export function createUsageService(repo: QuotaRepo, authenticate: AdminAuthenticator, now: () => number): ServiceImpl<typeof UsageService> {
  return {
    async getUsage(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkTenantId(v, "tenant_id", req.tenantId, false);
      if (req.keyId !== "" && !isKeyId(req.keyId)) v.add("key_id", "must be a 16-character key id");
      const granularity = req.granularity === UsageGranularity.UNSPECIFIED ? "day" : GRANULARITY[req.granularity as 1];
      if (!granularity) v.add("granularity", "unknown granularity");
      const groupBy = req.groupBy === UsageGroupBy.UNSPECIFIED ? "total" : GROUP[req.groupBy as 1];
      if (!groupBy) v.add("group_by", "unknown grouping");
      if (req.maxRows < 0 || req.maxRows > 10_000) v.add("max_rows", "must be between 0 and 10000");
      const to = req.endTime ? timestampDate(req.endTime) : new Date(now());
      const from = req.startTime ? timestampDate(req.startTime) : new Date(to.getTime() - WEEK_MS);
      if (from.getTime() > to.getTime()) v.add("start_time", "must not be after end_time");
      v.throwIfAny();
      if (!caller.root && req.tenantId !== "" && req.tenantId !== caller.tenantId) {
        throw permissionDenied("TENANT_FORBIDDEN", "a tenant admin key may read only its own tenant's usage");
      }
      const tenantId = caller.root ? req.tenantId || undefined : caller.tenantId;
      const rows = await repo.usage({ granularity: granularity!, from, to, tenantId, keyId: req.keyId || undefined, groupBy: groupBy!, perBucket: req.perBucket, limit: req.maxRows || 1000 });
      return {
        rows: rows.map((r) => ({ ...r, bucketStart: r.bucketStart ? timestampFromDate(r.bucketStart) : undefined, admitted: BigInt(r.admitted), denied: BigInt(r.denied), cost: BigInt(r.cost) })),
        startTime: timestampFromDate(from),
        endTime: timestampFromDate(to),
      };
    },
  };
}
