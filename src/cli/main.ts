import { userInfo } from "node:os";
import { parseArgs } from "node:util";
import { ConfigError, loadConfig, type Config } from "../config/config.js";
import { TollgateError } from "../domain/errors.js";
import { createHasher } from "../keys/hasher.js";
import { ADMIN_PERMISSION, CROSS_TENANT_PERMISSION, createKeyAdmin, type AdminCaller } from "../keys/key-admin.js";
import { withTransaction } from "../store/db.js";
import { migrate } from "../store/migrate.js";
import { tenantsRepo } from "../store/tenants-repo.js";
import { openCliDatabase, type CliDatabase } from "./database.js";
import { keyJson, keyLine, parseDuration } from "./format.js";
import { listRotationDueCommand, rotateKeyCommand, rotationPolicyCommand, type RotationCliDeps } from "./rotation.js";
import { signingKeysCommand } from "./signing-keys.js";
import { PolicyUsageError, keyPermissionsCommand, plansCommand, rolesCommand } from "./policy-commands.js";
import { UsageCliError, usageCommand } from "./usage.js";
import { LimitsCliError, limitsCommand } from "./limits.js";

const USAGE = `tollgate — API keys, authorization and quotas

usage:
  tollgate serve                                start the service (same as npm start)
  tollgate migrate                              apply pending migrations
  tollgate tenants create <tenant-id> [--name N]
  tollgate keys create [--admin] [--tenant T] [--name N] [--env live|test] [--prefix P]
                       [--permissions a,b] [--roles r,s] [--plan P] [--expires-in 30d]
                       [--ip 10.0.0.0/8,...] [--owner O] [--json]
  tollgate keys list --tenant T [--include-revoked] [--limit N] [--json]
  tollgate keys get <key-id> [--json]
  tollgate keys revoke <key-id> [--reason R] [--json]
  tollgate keys rotate <key-id> [--grace 24h|0] [--json]
  tollgate keys list --rotation-due [--tenant T] [--limit N] [--json]
  tollgate rotation-policy set --max-age 90d [--tenant T] [--plan P]
  tollgate rotation-policy list [--json]
  tollgate signing-keys list [--json]
  tollgate signing-keys rotate [--alg EdDSA|ES256|RS256] [--json]
  tollgate keys permissions <key-id> [--set-plan P] [--add a,b] [--remove a,b] [--max-cost N] [--json]
                                              effective permissions (plan + roles + overrides) with
                                              their sources; the flags change them first
  tollgate plans list | get <name> | delete <name> [--json]
  tollgate plans set <name> [--name N] [--allowed a,b] [--blocked c,d] [--max-cost N]
                     [--timeout-ms N] [--ip 10.0.0.0/8,...]   create, or change the named fields
  tollgate roles list --tenant T | delete <name> --tenant T
  tollgate roles set <name> --tenant T --permissions a,b [--description D]
  tollgate usage summary|by-tenant|by-key [--period hour|day|week|month] [--tenant T] [--key K] [--json]
  tollgate limits list [--scope plan|tenant|owner|key] [--scope-id I] [--json]
  tollgate limits set <name> --scope S --scope-id I --kind rate|quota|budget --amount N --period P
                     [--per key|tenant|owner] [--refill N] [--refill-mode set|add] [--cap N] [--shadow] [--auto]
  tollgate limits delete <limit-id>

The database is DATABASE_URL, or the embedded PostgreSQL under TOLLGATE_DATA_DIR (default .tollgate).
'keys create --admin' without --tenant makes a root admin key (tenant "root", every tenant);
with --tenant it makes an admin key for that tenant. Secrets are printed once.`;

const OPTIONS = {
  admin: { type: "boolean" }, tenant: { type: "string" }, name: { type: "string" }, env: { type: "string" },
  prefix: { type: "string" }, permissions: { type: "string" }, roles: { type: "string" }, plan: { type: "string" },
  "expires-in": { type: "string" }, ip: { type: "string" }, owner: { type: "string" }, json: { type: "boolean" },
  "include-revoked": { type: "boolean" }, limit: { type: "string" }, reason: { type: "string" }, alg: { type: "string" }, help: { type: "boolean", short: "h" },
  grace: { type: "string" }, "rotation-due": { type: "boolean" }, "max-age": { type: "string" },
  "set-plan": { type: "string" }, add: { type: "string" }, remove: { type: "string" }, "max-cost": { type: "string" },
  "timeout-ms": { type: "string" }, allowed: { type: "string" }, blocked: { type: "string" }, description: { type: "string" },
  period: { type: "string" }, key: { type: "string" },
  scope: { type: "string" }, "scope-id": { type: "string" }, per: { type: "string" }, kind: { type: "string" }, amount: { type: "string" },
  refill: { type: "string" }, "refill-mode": { type: "string" }, cap: { type: "string" }, shadow: { type: "boolean" }, auto: { type: "boolean" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

/** A usage mistake: printed with the usage text, exit code 2. */
class UsageError extends Error {}

const list = (s: string | undefined) => (s ? s.split(",").map((x) => x.trim()).filter(Boolean) : []);
const cliCaller = (): AdminCaller => ({ actor: `cli:${userInfo().username}`, tenantId: "root", root: true });

async function createKey(db: CliDatabase, config: Config, v: Values): Promise<void> {
  const env = v.env ?? "live";
  if (env !== "live" && env !== "test") throw new UsageError("--env must be live or test");
  const expiresInMs = v["expires-in"] ? parseDuration(v["expires-in"]) : undefined;
  if (v["expires-in"] && expiresInMs === undefined) throw new UsageError("--expires-in takes a duration such as 90d or 12h");
  const tenantId = v.tenant ?? (v.admin ? "root" : undefined);
  if (!tenantId) throw new UsageError("--tenant is required (or --admin for a root admin key)");
  const permissions = list(v.permissions);
  if (v.admin) permissions.push(ADMIN_PERMISSION, ...(v.tenant ? [] : [CROSS_TENANT_PERMISSION]));
  const caller = cliCaller();
  await withTransaction(db.pool, (tx) => tenantsRepo.ensureTenant(tx, tenantId, caller.actor));
  const admin = createKeyAdmin({ pool: db.pool, hasher: createHasher({ params: config.argon2, concurrency: 1, queueLimit: 1 }), prefixes: config.prefixes });
  const { key, secret } = await admin.createKey(caller, {
    tenantId, name: v.name ?? (v.admin ? "admin" : ""), environment: env, prefix: v.prefix ?? "", permissions: [...new Set(permissions)],
    roles: list(v.roles), plan: v.plan ?? "free", metadata: {}, expiresAt: expiresInMs ? new Date(Date.now() + expiresInMs) : null,
    ipAllowlist: list(v.ip), ownerId: v.owner ?? null,
  });
  if (v.json) console.log(JSON.stringify({ ...keyJson(key), secret }));
  else {
    console.log(`created key ${key.keyId} in tenant ${key.tenantId}`);
    console.log(`secret (shown once, store it now):\n${secret}`);
  }
}

async function keysCommand(db: CliDatabase, config: Config, sub: string | undefined, args: string[], v: Values): Promise<void> {
  const admin = createKeyAdmin({ pool: db.pool, hasher: createHasher({ params: config.argon2, concurrency: 1, queueLimit: 1 }), prefixes: config.prefixes });
  const print = (key: Parameters<typeof keyLine>[0]) => console.log(v.json ? JSON.stringify(keyJson(key)) : keyLine(key));
  switch (sub) {
    case "create":
      return createKey(db, config, v);
    case "rotate":
      return rotateKeyCommand(rotationDeps(db, config), args[0], v);
    case "list": {
      if (v["rotation-due"]) return listRotationDueCommand(rotationDeps(db, config), v);
      if (!v.tenant) throw new UsageError("--tenant is required");
      const page = await admin.listKeys(cliCaller(), v.tenant, Number(v.limit ?? 500), undefined, v["include-revoked"] ?? false);
      if (v.json) console.log(JSON.stringify(page.keys.map(keyJson)));
      else page.keys.forEach(print);
      return;
    }
    case "get":
      if (!args[0]) throw new UsageError("keys get needs a key id");
      return print(await admin.getKey(cliCaller(), args[0]));
    case "revoke":
      if (!args[0]) throw new UsageError("keys revoke needs a key id");
      return print(await admin.revokeKey(cliCaller(), args[0], v.reason ?? "revoked from the CLI"));
    case "permissions":
      return keyPermissionsCommand(db, cliCaller(), args[0], v);
    default:
      throw new UsageError(`unknown keys command "${sub ?? ""}"`);
  }
}

const rotationDeps = (db: CliDatabase, config: Config): RotationCliDeps => ({ db, config, caller: cliCaller(), usage: (m) => new UsageError(m) });

/** Runs the CLI; returns the process exit code. */
export async function runCli(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [group, sub, ...rest] = positionals;
  if (values.help || !group) {
    console.log(USAGE);
    return group || values.help ? 0 : 2;
  }
  if (group === "serve") {
    await import("../main.js");
    return -1; // keep running
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : String(err));
    return 2;
  }
  let db: CliDatabase | undefined;
  try {
    if (!["migrate", "keys", "tenants", "rotation-policy", "signing-keys", "plans", "roles", "usage", "limits"].includes(group)) throw new UsageError(`unknown command "${group}"`);
    db = await openCliDatabase(config);
    if (group === "migrate") console.log(`schema is at migration ${(await migrate(db.pool)).join(",") || "head (nothing to apply)"}`);
    else if (group === "keys") await keysCommand(db, config, sub, rest, values);
    else if (group === "rotation-policy") await rotationPolicyCommand(rotationDeps(db, config), sub, values);
    else if (group === "signing-keys") {
      const problem = await signingKeysCommand(db, config, sub, { alg: values.alg, json: values.json, actor: cliCaller().actor });
      if (problem) throw new UsageError(problem);
    }
    else if (group === "plans") await plansCommand(db, cliCaller(), sub, rest[0], values);
    else if (group === "roles") await rolesCommand(db, cliCaller(), sub, rest[0], values);
    else if (group === "usage") await usageCommand(db, sub, values);
    else if (group === "limits") await limitsCommand(db, cliCaller(), sub, rest[0], values);
    else if (sub === "create" && rest[0]) {
      const tenant = await withTransaction(db.pool, (tx) => tenantsRepo.insertTenant(tx, rest[0]!, values.name ?? "", cliCaller().actor));
      console.log(values.json ? JSON.stringify(tenant) : `created tenant ${tenant.tenantId}`);
    } else throw new UsageError("usage: tollgate tenants create <tenant-id>");
    return 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof PolicyUsageError || err instanceof UsageCliError || err instanceof LimitsCliError) {
      console.error(`${err.message}\n\n${USAGE}`);
      return 2;
    }
    console.error(`error: ${err instanceof TollgateError ? err.message : (err as Error).message}`);
    return 1;
  } finally {
    await db?.close();
  }
}
