import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { KeyRecord } from "../domain/key.js";
import { CredentialType, PrincipalSchema, ClientResponseSchema, type Principal, type ClientResponse } from "../gen/tollgate/v1/common_pb.js";
import { ApiKeySchema, type ApiKey } from "../gen/tollgate/v1/key_pb.js";
import { Code } from "../gen/tollgate/v1/code_pb.js";
import { isRotationDue } from "../keys/rotation-policy.js";

/** Optional Date → optional Timestamp. */
export function ts(date: Date | null | undefined): Timestamp | undefined {
  return date ? timestampFromDate(date) : undefined;
}

/** The stored key as the admin API shows it (never the hash). */
export function keyToProto(key: KeyRecord): ApiKey {
  return create(ApiKeySchema, {
    keyId: key.keyId,
    tenantId: key.tenantId,
    name: key.name,
    environment: key.environment,
    prefix: key.prefix,
    permissions: key.permissions,
    roles: key.roles,
    plan: key.plan,
    metadata: key.metadata,
    expiresAt: ts(key.expiresAt),
    ipAllowlist: key.ipAllowlist,
    revokedAt: ts(key.revokedAt),
    revokedReason: key.revokedReason ?? "",
    createdAt: ts(key.createdAt),
    updatedAt: ts(key.updatedAt),
    hint: key.hint,
    ownerId: key.ownerId ?? "",
    predecessorKeyId: key.predecessorKeyId ?? "",
    successorKeyId: key.successorKeyId ?? "",
    graceExpiresAt: ts(key.graceExpiresAt),
  });
}

/**
 * The principal behind a proven API key. `rotation_pending` is set while the key is inside its
 * rotation grace period; `rotation_due` when `maxAgeMs` (the strictest rotation policy for the key)
 * is given and the key, not yet rotated, is at least that old.
 */
export function principalFromKey(key: KeyRecord, nowMs: number, maxAgeMs?: number): Principal {
  const inGrace = key.graceExpiresAt !== null && key.graceExpiresAt.getTime() > nowMs;
  return create(PrincipalSchema, {
    keyId: key.keyId,
    tenantId: key.tenantId,
    environment: key.environment,
    permissions: key.permissions,
    roles: key.roles,
    plan: key.plan,
    metadata: key.metadata,
    expiresAt: ts(key.expiresAt),
    name: key.name,
    credentialType: CredentialType.API_KEY,
    ownerId: key.ownerId ?? "",
    rotationPending: inGrace,
    successorKeyId: key.successorKeyId ?? "",
    graceExpiresAt: ts(key.graceExpiresAt),
    rotationDue: isRotationDue(key, nowMs, maxAgeMs),
  });
}

/**
 * Principals memoized per key record: the same object while the record and its time-dependent
 * flags (rotation pending, rotation due) are unchanged. Records are replaced whenever a key is
 * re-read, so a changed key always gets a fresh principal. Treat the result as immutable.
 */
export function createPrincipalCache(): (key: KeyRecord, nowMs: number, maxAgeMs?: number) => Principal {
  const memo = new WeakMap<KeyRecord, { pending: boolean; due: boolean; principal: Principal }>();
  return (key, nowMs, maxAgeMs) => {
    const pending = key.graceExpiresAt !== null && key.graceExpiresAt.getTime() > nowMs;
    const due = isRotationDue(key, nowMs, maxAgeMs);
    const hit = memo.get(key);
    if (hit && hit.pending === pending && hit.due === due) return hit.principal;
    // Frozen: shared by every answer for this key, and encoded once by the grpc-js adapter.
    const principal = Object.freeze(principalFromKey(key, nowMs, maxAgeMs));
    memo.set(key, { pending, due, principal });
    return principal;
  };
}

/** Parses a decision code name (`INVALID_API_KEY`) into the proto enum. */
export function codeOf(name: keyof typeof Code): Code {
  return Code[name];
}

const TITLES: Record<string, [number, string, string]> = {
  MISSING_CREDENTIAL: [401, "Missing credential", "invalid_request"],
  MALFORMED_CREDENTIAL: [401, "Malformed credential", "invalid_token"],
  INVALID_API_KEY: [401, "Invalid API key", "invalid_token"],
  EXPIRED_API_KEY: [401, "Expired API key", "invalid_token"],
  REVOKED_API_KEY: [401, "Revoked API key", "invalid_token"],
  INVALID_ACCESS_TOKEN: [401, "Invalid access token", "invalid_token"],
  EXPIRED_ACCESS_TOKEN: [401, "Expired access token", "invalid_token"],
  IP_NOT_ALLOWED: [403, "Address not allowed", ""],
  INSUFFICIENT_PERMISSIONS: [403, "Insufficient permissions", "insufficient_scope"],
  TENANT_FORBIDDEN: [403, "Tenant forbidden", ""],
  BLOCKED: [403, "Blocked", ""],
  RATE_LIMITED: [429, "Rate limited", ""],
  QUOTA_EXCEEDED: [429, "Quota exceeded", ""],
  BUDGET_EXCEEDED: [429, "Budget exceeded", ""],
};

/**
 * What a gateway should send the end client for a "no": status, headers and an RFC 9457
 * problem document whose `type` names the decision code.
 */
export function clientResponseFor(code: string, detail: string, extraHeaders: Record<string, string> = {}): ClientResponse {
  const [status, title, bearerError] = TITLES[code] ?? [403, "Forbidden", ""];
  const headers: Record<string, string> = { "content-type": "application/problem+json", ...extraHeaders };
  if (status === 401) {
    headers["www-authenticate"] = `Bearer realm="tollgate"${bearerError ? `, error="${bearerError}"` : ""}`;
  }
  const body = JSON.stringify({ type: `https://tollgate.dev/problems/${code.toLowerCase().replaceAll("_", "-")}`, title, status, detail, code });
  return create(ClientResponseSchema, { httpStatus: status, headers, body });
}

/** End-client explanations of each authentication outcome (safe to show; they reveal nothing). */
export const AUTH_MESSAGES: Record<string, string> = {
  VALID: "the credential is valid",
  MISSING_CREDENTIAL: "no credential was presented",
  MALFORMED_CREDENTIAL: "the credential is not a well-formed API key or access token",
  INVALID_API_KEY: "the API key is not valid",
  EXPIRED_API_KEY: "the API key has expired",
  REVOKED_API_KEY: "the API key has been revoked",
  IP_NOT_ALLOWED: "the API key may not be used from this address",
};
