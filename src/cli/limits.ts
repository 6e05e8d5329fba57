import type { AdminCaller } from "../keys/key-admin.js";
import { createLimitAdmin } from "../quota/limit-admin.js";
import { checkLimit } from "../services/limit-validation.js";
import type { LimitDefinition } from "../quota/limits.js";
import type { CliDatabase } from "./database.js";

/** Options of `tollgate limits …`. */
export interface LimitsCliOptions {
  scope?: string;
  "scope-id"?: string;
  per?: string;
  kind?: string;
  amount?: string;
  refill?: string;
  period?: string;
  "refill-mode"?: string;
  cap?: string;
  shadow?: boolean;
  auto?: boolean;
  json?: boolean;
}

/** A usage mistake in `tollgate limits`, reported with the usage text. */
export class LimitsCliError extends Error {}

const line = (l: LimitDefinition) =>
  [l.limitId, l.name, `${l.scope}:${l.scopeId}`, `per ${l.per}`, l.kind, l.amount, l.kind === "rate" ? `+${l.refill}/${l.period}` : l.period, l.shadow ? "shadow" : "", l.autoApply ? "auto" : ""].join("\t").trimEnd();

const whole = (flag: string, text: string | undefined, def: number): number => {
  if (text === undefined) return def;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new LimitsCliError(`--${flag} takes a whole number`);
  return n;
};

/**
 * `tollgate limits list [--scope S] [--scope-id I]`, `limits set <name> --scope plan|tenant|owner|key
 * --scope-id I --kind rate|quota|budget --amount N --period P [--per key|tenant|owner] [--refill N]
 * [--refill-mode set|add] [--cap N] [--shadow] [--auto]` (creates or replaces), `limits delete <limit-id>`.
 * Runs as a root operator; every change is audited and reaches running replicas within a second.
 */
export async function limitsCommand(db: CliDatabase, caller: AdminCaller, sub: string | undefined, arg: string | undefined, o: LimitsCliOptions): Promise<void> {
  const admin = createLimitAdmin(db.pool);
  switch (sub) {
    case "list": {
      const limits = await admin.listLimits(caller, o.scope ?? "", o["scope-id"] ?? "");
      console.log(o.json ? JSON.stringify(limits) : limits.map(line).join("\n"));
      return;
    }
    case "set": {
      if (!arg) throw new LimitsCliError("limits set needs a limit name");
      const input = checkLimit({
        name: arg, scope: o.scope ?? "", scopeId: o["scope-id"] ?? "", per: o.per ?? "", kind: o.kind ?? "",
        amount: whole("amount", o.amount, 0), refill: whole("refill", o.refill, 0), period: o.period ?? "",
        refillMode: o["refill-mode"] ?? "", cap: whole("cap", o.cap, 0), shadow: o.shadow ?? false, autoApply: o.auto ?? false,
      }, "--");
      const limit = await admin.putLimit(caller, input);
      console.log(o.json ? JSON.stringify(limit) : line(limit));
      return;
    }
    case "delete": {
      const id = Number(arg);
      if (!Number.isSafeInteger(id) || id <= 0) throw new LimitsCliError("limits delete needs a limit id (see limits list)");
      await admin.deleteLimit(caller, id);
      console.log(`deleted limit ${id}`);
      return;
    }
    default:
      throw new LimitsCliError(`unknown limits command "${sub ?? ""}" (list, set, delete)`);
  }
}
