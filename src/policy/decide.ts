import { ipAllowed, parseIp } from "../keys/ip.js";
import type { EffectivePolicy } from "./effective.js";
import type { QueryNode } from "./query.js";

/** The outcomes of the policy part of Authorize, in the order they are checked. */
export type PolicyCode = "ALLOWED" | "TENANT_FORBIDDEN" | "IP_NOT_ALLOWED" | "BLOCKED" | "INSUFFICIENT_PERMISSIONS";

/** What is being asked of a key whose credential already checked out. */
export interface PolicyQuestion {
  /** The key's own tenant. */
  keyTenantId: string;
  /** The tenant the call targets; "" means the key's own. */
  targetTenantId: string;
  /** The parsed permission query; undefined when only a resource is asked about. */
  query: QueryNode | undefined;
  /** A concrete permission naming the object of the action (`tool:Bash`); "" for none. */
  resource: string;
  /** The cost the call will charge; 0 when not declared. */
  cost: number;
  /** The end client's address; "" when unknown. */
  clientIp: string;
}

/** A policy decision as a value. `missing` and `blocked` are empty unless the code says otherwise. */
export interface PolicyDecision {
  code: PolicyCode;
  /** Required permissions the key lacks (in query order, without duplicates). */
  missing: string[];
  /** Required permissions (or the resource) a deny list matched. */
  blocked: string[];
  /** A sentence safe to show the end client. */
  message: string;
}

const ALLOWED: PolicyDecision = Object.freeze({ code: "ALLOWED", missing: [], blocked: [], message: "the request is allowed" }) as PolicyDecision;

/** A leaf holds when no deny matches it and some grant does (deny wins). */
function leafHolds(policy: EffectivePolicy, permission: string): boolean {
  return !policy.denies.has(permission) && policy.grants.has(permission);
}

/** Evaluates without allocating; recursion depth is bounded by the parser's nesting cap. */
function holds(policy: EffectivePolicy, node: QueryNode): boolean {
  if (node.op === "perm") return leafHolds(policy, node.name);
  if (node.op === "and") {
    for (const child of node.children) if (!holds(policy, child)) return false;
    return true;
  }
  for (const child of node.children) if (holds(policy, child)) return true;
  return false;
}

/**
 * Collects why a failing node fails: every leaf under it that is denied or not granted, skipping
 * the children of an AND that hold (they are not the problem). Only runs on a "no".
 */
function explain(policy: EffectivePolicy, node: QueryNode, missing: Set<string>, blocked: Set<string>): void {
  if (node.op === "perm") {
    if (policy.denies.has(node.name)) blocked.add(node.name);
    else if (!policy.grants.has(node.name)) missing.add(node.name);
    return;
  }
  for (const child of node.children) {
    if (!holds(policy, child)) explain(policy, child, missing, blocked);
  }
}

function denied(code: PolicyCode, message: string, missing: string[] = [], blocked: string[] = []): PolicyDecision {
  return { code, missing, blocked, message };
}

/**
 * The decision, pure and in memory. Checks in order: tenant isolation (a key acts only in its own
 * tenant unless it directly holds the cross-tenant admin permission), the plan's IP allowlist,
 * the plan's cost cap, then the resource and the query against grants and denies. When the query
 * fails and a deny list is part of why, the code is BLOCKED (deny wins); otherwise
 * INSUFFICIENT_PERMISSIONS. A query that holds through one branch of an OR is allowed even when
 * another branch names a denied permission: the denied alternative is simply not taken.
 */
export function decide(policy: EffectivePolicy, q: PolicyQuestion): PolicyDecision {
  if (q.targetTenantId !== "" && q.targetTenantId !== q.keyTenantId && !policy.crossTenant) {
    return denied("TENANT_FORBIDDEN", "the API key may not act in the requested tenant");
  }
  if (policy.ipBlocks.length > 0) {
    const ip = q.clientIp ? parseIp(q.clientIp) : undefined;
    if (!ip || !ipAllowed(ip, policy.ipBlocks)) return denied("IP_NOT_ALLOWED", "the plan does not allow calls from this address");
  }
  const cap = policy.settings.maxCostPerCall;
  if (cap !== null && q.cost > cap) {
    return denied("BLOCKED", `the call's cost ${q.cost} exceeds the plan's maximum of ${cap} per call`);
  }
  const resourceOk = q.resource === "" || leafHolds(policy, q.resource);
  const queryOk = q.query === undefined || holds(policy, q.query);
  if (resourceOk && queryOk) return ALLOWED;
  const missing = new Set<string>();
  const blocked = new Set<string>();
  if (!resourceOk) explain(policy, { op: "perm", name: q.resource }, missing, blocked);
  if (!queryOk && q.query) explain(policy, q.query, missing, blocked);
  if (blocked.size > 0) {
    return denied("BLOCKED", `denied by policy: ${[...blocked].join(", ")}`, [...missing], [...blocked]);
  }
  return denied("INSUFFICIENT_PERMISSIONS", `missing permission: ${[...missing].join(", ")}`, [...missing]);
}
