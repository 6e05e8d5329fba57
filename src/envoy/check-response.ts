import { create, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { Code as GrpcCode } from "@connectrpc/connect";
import type { KeyRecord } from "../domain/key.js";
import { HeaderValueOption_HeaderAppendAction as AppendAction, type HeaderValueOptionSchema } from "../gen/envoy/config/core/v3/base_pb.js";
import { CheckResponseSchema, type CheckResponse } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import type { StatusCode } from "../gen/envoy/type/v3/http_status_pb.js";
import { clientResponseFor } from "../services/convert.js";
import { headerRecord, type CheckAllow, type CheckDecision, type CheckDeny } from "./check.js";

/** Headers Tollgate sets on an allowed request for the upstream. Clients cannot inject them: each overwrites. */
export const IDENTITY_HEADERS = {
  keyId: "x-tollgate-key-id",
  tenant: "x-tollgate-tenant",
  plan: "x-tollgate-plan",
  scopes: "x-tollgate-scopes",
} as const;

type HeaderInit = MessageInitShape<typeof HeaderValueOptionSchema>;

/**
 * One header that replaces any header of the same name. `keep_empty_value` makes an empty value
 * still overwrite, so a client-sent `x-tollgate-plan` never survives when the key has no plan.
 */
export function overwrite(key: string, value: string): HeaderInit {
  return { header: { key, value }, appendAction: AppendAction.OVERWRITE_IF_EXISTS_OR_ADD, keepEmptyValue: true };
}

const toHeaders = (headers: Record<string, string>) => Object.entries(headers).map(([k, v]) => overwrite(k, v));

/**
 * The headers that tell the upstream who called: the same for every allowed request of a key. An
 * access token's request carries the token's scopes that the key still grants instead of the key's.
 */
export function identityHeaders(key: KeyRecord, tokenScopes?: readonly string[]): HeaderInit[] {
  return [
    overwrite(IDENTITY_HEADERS.keyId, key.keyId),
    overwrite(IDENTITY_HEADERS.tenant, key.tenantId),
    overwrite(IDENTITY_HEADERS.plan, key.plan),
    overwrite(IDENTITY_HEADERS.scopes, (tokenScopes ?? key.permissions).join(" ")),
  ];
}

/** What later filters (rate limit, access log) can read under `envoy.filters.http.ext_authz`. */
export function metadataOf(key: KeyRecord | undefined, code: string, credentialType: "api_key" | "access_token" = "api_key"): JsonObject {
  if (!key) return { decision: code };
  return { decision: code, key_id: key.keyId, tenant_id: key.tenantId, plan: key.plan, environment: key.environment, ...(credentialType === "access_token" ? { credential_type: credentialType } : {}) };
}

/**
 * Encodes a decision the way Envoy reads it. Allow: `status.code = 0` and an `ok_response` that
 * sets the identity headers, removes the credential headers and query parameters, and adds the
 * rate-limit headers to the client's response. Deny: a non-zero `status.code` (UNAUTHENTICATED,
 * PERMISSION_DENIED or RESOURCE_EXHAUSTED, for logs) and a `denied_response` with the HTTP status
 * Envoy sends (401 / 403 / 429 — Envoy never derives it from the gRPC code), the headers and the
 * problem body. Never an empty response, which Envoy would read as "allow".
 */
export function checkResponseFor(decision: CheckDecision): CheckResponse {
  return decision.allowed ? allowResponse(decision) : denyResponse(decision);
}

function allowResponse(d: CheckAllow): CheckResponse {
  return create(CheckResponseSchema, {
    status: { code: 0 }, // google.rpc.Code.OK: allow
    httpResponse: {
      case: "okResponse",
      value: {
        headers: identityHeaders(d.key, d.tokenScopes),
        headersToRemove: [...d.strip.headers],
        queryParametersToRemove: [...d.strip.queryParameters],
        responseHeadersToAdd: toHeaders(headerRecord(d.responseHeaders)),
      },
    },
    dynamicMetadata: metadataOf(d.key, d.code, d.tokenScopes ? "access_token" : "api_key"),
  });
}

const GRPC_CODE_FOR_STATUS: Record<number, GrpcCode> = {
  401: GrpcCode.Unauthenticated,
  403: GrpcCode.PermissionDenied,
  429: GrpcCode.ResourceExhausted,
};

function denyResponse(d: CheckDeny): CheckResponse {
  const client = clientResponseFor(d.code, d.message, d.headers);
  // The issue asks for `application/json`; the body is still an RFC 9457 problem document.
  const headers = { ...client.headers, "content-type": "application/json" };
  return create(CheckResponseSchema, {
    status: { code: GRPC_CODE_FOR_STATUS[client.httpStatus] ?? GrpcCode.PermissionDenied, message: d.code },
    httpResponse: {
      case: "deniedResponse",
      value: { status: { code: client.httpStatus as StatusCode }, headers: toHeaders(headers), body: client.body },
    },
    dynamicMetadata: metadataOf(d.key, d.code),
  });
}
