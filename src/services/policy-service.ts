import type { ServiceImpl } from "@connectrpc/connect";
import { invalidArgument, Violations } from "../domain/errors.js";
import type { PlanSettings } from "../domain/policy.js";
import { isKeyId } from "../keys/format.js";
import type { PolicyAdmin } from "../policy/policy-admin.js";
import type { PolicyService } from "../gen/tollgate/v1/policy_service_pb.js";
import type { AdminAuthenticator } from "./admin-auth.js";
import {
  checkMaxCost, checkPatterns, checkTimeout, fieldOfWireName, keyPolicyToProto, overridesFromProto, planToProto, roleToProto,
} from "./policy-convert.js";
import { LIMITS, checkCidrs, checkName, checkPermissions, checkTenantId, checkTokens } from "./validate.js";

function checkNameToken(v: Violations, field: string, value: string): void {
  if (value === "") v.add(field, "is required");
  else checkTokens(v, field, [value], 1);
}

function checkKeyId(v: Violations, field: string, keyId: string): void {
  if (keyId === "") v.add(field, "is required");
  else if (!isKeyId(keyId)) v.add(field, "must be a 16-character key id");
}

/** The admin PolicyService: validation and encoding here, scoping and storage in the policy admin. */
export function createPolicyService(admin: PolicyAdmin, authenticate: AdminAuthenticator): ServiceImpl<typeof PolicyService> {
  return {
    async getPlan(req, ctx) {
      await authenticate(ctx);
      const v = new Violations();
      checkNameToken(v, "name", req.name);
      v.throwIfAny();
      return { plan: planToProto(await admin.getPlan(req.name)) };
    },

    async listPlans(_req, ctx) {
      await authenticate(ctx);
      return { plans: (await admin.listPlans()).map(planToProto) };
    },

    async putPlan(req, ctx) {
      const caller = await authenticate(ctx);
      const p = req.plan;
      if (!p) throw invalidArgument("plan", "is required");
      const v = new Violations();
      checkNameToken(v, "plan.name", p.name);
      checkName(v, "plan.display_name", p.displayName);
      checkPatterns(v, "plan.allowed", p.allowed);
      checkPatterns(v, "plan.blocked", p.blocked);
      checkMaxCost(v, "plan.max_cost_per_call", p.maxCostPerCall);
      checkTimeout(v, "plan.timeout_ms", p.timeoutMs);
      checkCidrs(v, "plan.ip_allowlist", p.ipAllowlist);
      v.throwIfAny();
      const plan = await admin.putPlan(caller, {
        name: p.name, displayName: p.displayName, allowed: p.allowed, blocked: p.blocked, ipAllowlist: p.ipAllowlist,
        maxCostPerCall: p.maxCostPerCall === undefined ? null : Number(p.maxCostPerCall), timeoutMs: p.timeoutMs ?? null,
      });
      return { plan: planToProto(plan) };
    },

    async deletePlan(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkNameToken(v, "name", req.name);
      v.throwIfAny();
      await admin.deletePlan(caller, req.name);
      return {};
    },

    async listRoles(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkTenantId(v, "tenant_id", req.tenantId, false);
      v.throwIfAny();
      return { roles: (await admin.listRoles(caller, req.tenantId)).map(roleToProto) };
    },

    async putRole(req, ctx) {
      const caller = await authenticate(ctx);
      const r = req.role;
      if (!r) throw invalidArgument("role", "is required");
      const v = new Violations();
      checkTenantId(v, "role.tenant_id", r.tenantId, false);
      checkNameToken(v, "role.name", r.name);
      checkName(v, "role.description", r.description);
      checkPatterns(v, "role.permissions", r.permissions);
      v.throwIfAny();
      const role = await admin.putRole(caller, { tenantId: r.tenantId, name: r.name, description: r.description, permissions: r.permissions });
      return { role: roleToProto(role) };
    },

    async deleteRole(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkTenantId(v, "tenant_id", req.tenantId, false);
      checkNameToken(v, "name", req.name);
      v.throwIfAny();
      await admin.deleteRole(caller, req.tenantId, req.name);
      return {};
    },

    async getKeyPolicy(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkKeyId(v, "key_id", req.keyId);
      v.throwIfAny();
      return { policy: keyPolicyToProto(await admin.getKeyPolicy(caller, req.keyId)) };
    },

    async updateKeyPolicy(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkKeyId(v, "key_id", req.keyId);
      if (req.setPlan !== "") checkTokens(v, "set_plan", [req.setPlan], 1);
      checkPermissions(v, "add_permissions", req.addPermissions);
      if (req.removePermissions.length > LIMITS.permissions) v.add("remove_permissions", `at most ${LIMITS.permissions} entries`);
      const setOverrides = overridesFromProto(v, "set_overrides.", req.setOverrides);
      const clearOverrides: (keyof PlanSettings)[] = [];
      req.clearOverrides.forEach((name, i) => {
        const field = fieldOfWireName(name);
        if (field) clearOverrides.push(field);
        else v.add(`clear_overrides[${i}]`, "must be allowed, blocked, max_cost_per_call, timeout_ms or ip_allowlist");
      });
      v.throwIfAny();
      const view = await admin.updateKeyPolicy(caller, req.keyId, {
        setPlan: req.setPlan, add: req.addPermissions, remove: req.removePermissions, setOverrides, clearOverrides,
      });
      return { policy: keyPolicyToProto(view) };
    },
  };
}
