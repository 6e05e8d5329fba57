import { Violations } from "../domain/errors.js";
import type { Plan } from "../domain/policy.js";
import type { AdminCaller } from "../keys/key-admin.js";
import { createPolicyAdmin, type KeyPolicyView } from "../policy/policy-admin.js";
import { checkPatterns, checkTimeout } from "../services/policy-convert.js";
import { checkCidrs, checkName, checkPermissions, checkTenantId, checkTokens } from "../services/validate.js";
import type { CliDatabase } from "./database.js";

/** The flags the policy commands read (a subset of the CLI's options). */
export interface PolicyFlags {
  "set-plan"?: string;
  add?: string;
  remove?: string;
  "max-cost"?: string;
  "timeout-ms"?: string;
  allowed?: string;
  blocked?: string;
  permissions?: string;
  ip?: string;
  name?: string;
  description?: string;
  tenant?: string;
  json?: boolean;
}

/** A usage mistake in a policy command; the CLI prints it with the usage text. */
export class PolicyUsageError extends Error {}

const list = (s: string | undefined) => (s === undefined ? undefined : s.split(",").map((x) => x.trim()).filter(Boolean));

function integer(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text)) throw new PolicyUsageError(`--${flag} takes a non-negative integer`);
  return Number(text);
}

/** Human-readable effective policy: every grant and deny with its source, then the settings. */
export function formatKeyPolicy({ key, policy }: KeyPolicyView): string {
  const width = Math.max(12, ...policy.granted.map((g) => g.permission.length), ...policy.blocked.map((b) => b.permission.length));
  const row = (p: { permission: string; source: string }) => `  ${p.permission.padEnd(width)}  ${p.source}`;
  const s = policy.settings;
  const src = policy.settingSources;
  return [
    `key ${key.keyId} in tenant ${key.tenantId}, plan ${policy.plan}${policy.planFound ? "" : " (unknown plan: grants nothing)"}`,
    "granted:", ...(policy.granted.length ? policy.granted.map(row) : ["  (none)"]),
    "blocked:", ...(policy.blocked.length ? policy.blocked.map(row) : ["  (none)"]),
    `max cost per call: ${s.maxCostPerCall ?? "no cap"} (${src.maxCostPerCall})`,
    `timeout: ${s.timeoutMs === null ? "gateway default" : `${s.timeoutMs} ms`} (${src.timeoutMs})`,
    `ip allowlist: ${s.ipAllowlist.join(", ") || "anywhere"} (${src.ipAllowlist})`,
    ...(policy.unknownRoles.length ? [`unknown roles (grant nothing): ${policy.unknownRoles.join(", ")}`] : []),
  ].join("\n");
}

/** `tollgate keys permissions <key-id> [--set-plan P] [--add a,b] [--remove a,b] [--max-cost N]`. */
export async function keyPermissionsCommand(db: CliDatabase, caller: AdminCaller, keyId: string | undefined, v: PolicyFlags): Promise<void> {
  if (!keyId) throw new PolicyUsageError("keys permissions needs a key id");
  const admin = createPolicyAdmin({ pool: db.pool });
  const add = list(v.add) ?? [];
  const remove = list(v.remove) ?? [];
  const maxCost = integer("max-cost", v["max-cost"]);
  const violations = new Violations();
  if (v["set-plan"] !== undefined) checkTokens(violations, "--set-plan", [v["set-plan"]], 1);
  checkPermissions(violations, "--add", add);
  violations.throwIfAny();
  const changing = v["set-plan"] !== undefined || add.length > 0 || remove.length > 0 || maxCost !== undefined;
  const view = changing
    ? await admin.updateKeyPolicy(caller, keyId, { setPlan: v["set-plan"], add, remove, setOverrides: maxCost === undefined ? {} : { maxCostPerCall: maxCost } })
    : await admin.getKeyPolicy(caller, keyId);
  for (const permission of remove) {
    const still = view.policy.granted.find((g) => g.permission === permission);
    if (still) console.error(`note: ${permission} is still granted by ${still.source}; change that ${still.source.split(":")[0]} or block it with an override`);
  }
  console.log(v.json ? JSON.stringify({ keyId: view.key.keyId, tenantId: view.key.tenantId, ...view.policy, overrides: view.key.policyOverrides }) : formatKeyPolicy(view));
}

const planLine = (p: Plan) =>
  [p.name, `allowed=${p.allowed.join(",")}`, `blocked=${p.blocked.join(",")}`, `max-cost=${p.maxCostPerCall ?? "none"}`, `timeout-ms=${p.timeoutMs ?? "default"}`,
    `ip=${p.ipAllowlist.join(",") || "any"}`].join("\t");

/** `tollgate plans list | get <name> | set <name> [...] | delete <name>`. A set keeps unnamed fields. */
export async function plansCommand(db: CliDatabase, caller: AdminCaller, sub: string | undefined, name: string | undefined, v: PolicyFlags): Promise<void> {
  const admin = createPolicyAdmin({ pool: db.pool });
  const print = (p: Plan) => console.log(v.json ? JSON.stringify(p) : planLine(p));
  if (sub === "list") return (await admin.listPlans()).forEach(print);
  if (!name) throw new PolicyUsageError(`plans ${sub ?? ""} needs a plan name`);
  if (sub === "get") return print(await admin.getPlan(name));
  if (sub === "delete") return admin.deletePlan(caller, name).then(() => console.log(`deleted plan ${name}`));
  if (sub !== "set") throw new PolicyUsageError(`unknown plans command "${sub ?? ""}"`);
  const current = await admin.getPlan(name).catch(() => undefined);
  const plan = {
    name, displayName: v.name ?? current?.displayName ?? "", allowed: list(v.allowed) ?? current?.allowed ?? [], blocked: list(v.blocked) ?? current?.blocked ?? [],
    maxCostPerCall: integer("max-cost", v["max-cost"]) ?? current?.maxCostPerCall ?? null, timeoutMs: integer("timeout-ms", v["timeout-ms"]) ?? current?.timeoutMs ?? null,
    ipAllowlist: list(v.ip) ?? current?.ipAllowlist ?? [],
  };
  const violations = new Violations();
  checkTokens(violations, "plan name", [name], 1);
  checkName(violations, "--name", plan.displayName);
  checkPatterns(violations, "--allowed", plan.allowed);
  checkPatterns(violations, "--blocked", plan.blocked);
  checkTimeout(violations, "--timeout-ms", plan.timeoutMs ?? undefined);
  checkCidrs(violations, "--ip", plan.ipAllowlist);
  violations.throwIfAny();
  print(await admin.putPlan(caller, plan));
}

/** `tollgate roles list --tenant T | set <name> --tenant T --permissions a,b | delete <name> --tenant T`. */
export async function rolesCommand(db: CliDatabase, caller: AdminCaller, sub: string | undefined, name: string | undefined, v: PolicyFlags): Promise<void> {
  if (!v.tenant) throw new PolicyUsageError("--tenant is required");
  const admin = createPolicyAdmin({ pool: db.pool });
  const violations = new Violations();
  checkTenantId(violations, "--tenant", v.tenant, true);
  violations.throwIfAny();
  if (sub === "list") {
    const roles = await admin.listRoles(caller, v.tenant);
    return roles.forEach((r) => console.log(v.json ? JSON.stringify(r) : `${r.name}\t${r.permissions.join(",")}\t${r.description}`));
  }
  if (!name) throw new PolicyUsageError(`roles ${sub ?? ""} needs a role name`);
  if (sub === "delete") return admin.deleteRole(caller, v.tenant, name).then(() => console.log(`deleted role ${name} in ${v.tenant}`));
  if (sub !== "set") throw new PolicyUsageError(`unknown roles command "${sub ?? ""}"`);
  const permissions = list(v.permissions) ?? [];
  checkTokens(violations, "role name", [name], 1);
  checkPatterns(violations, "--permissions", permissions);
  checkName(violations, "--description", v.description ?? "");
  violations.throwIfAny();
  const role = await admin.putRole(caller, { tenantId: v.tenant, name, description: v.description ?? "", permissions });
  console.log(v.json ? JSON.stringify(role) : `role ${role.name} in ${role.tenantId}: ${role.permissions.join(",")}`);
}
