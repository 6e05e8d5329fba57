import type { ServiceImpl } from "@connectrpc/connect";
import { invalidArgument, Violations } from "../domain/errors.js";
import type { LimitService, Limit } from "../gen/tollgate/v1/limit_service_pb.js";
import type { LimitAdmin } from "../quota/limit-admin.js";
import { checkLimit, LIMIT_SCOPES } from "./limit-validation.js";
import type { LimitDefinition } from "../quota/limits.js";
import type { AdminAuthenticator } from "./admin-auth.js";

/** The stored limit as the API shows it (int64 fields as bigint; no cap = 0). */
export function limitToProto(l: LimitDefinition) {
  return {
    limitId: BigInt(l.limitId), name: l.name, scope: l.scope, scopeId: l.scopeId, per: l.per, kind: l.kind,
    amount: BigInt(l.amount), refill: BigInt(l.refill), period: l.period, refillMode: l.refillMode,
    cap: BigInt(l.cap ?? 0), shadow: l.shadow, autoApply: l.autoApply,
  };
}

/** int64 → number, or NaN when outside the safe range (which validation then reports). */
const safe = (n: bigint) => (n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : Number.NaN);

/** LimitService: validation and encoding here, scoping and SQL in the limit admin. */
export function createLimitService(admin: LimitAdmin, authenticate: AdminAuthenticator): ServiceImpl<typeof LimitService> {
  return {
    async putLimit(req, ctx) {
      const caller = await authenticate(ctx);
      const l: Limit | undefined = req.limit;
      if (!l) throw invalidArgument("limit", "is required");
      const input = checkLimit({ ...l, amount: safe(l.amount), refill: safe(l.refill), cap: safe(l.cap) });
      return { limit: limitToProto(await admin.putLimit(caller, input)) };
    },
    async listLimits(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      if (req.scope !== "" && !(LIMIT_SCOPES as readonly string[]).includes(req.scope)) v.add("scope", `must be one of ${LIMIT_SCOPES.join(", ")}`);
      if (req.scopeId.length > 128) v.add("scope_id", "at most 128 characters");
      v.throwIfAny();
      return { limits: (await admin.listLimits(caller, req.scope, req.scopeId)).map(limitToProto) };
    },
    async deleteLimit(req, ctx) {
      const caller = await authenticate(ctx);
      if (req.limitId <= 0n || req.limitId > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument("limit_id", "must be a limit id");
      await admin.deleteLimit(caller, Number(req.limitId));
      return {};
    },
  };
}
