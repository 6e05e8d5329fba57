import type { HandlerContext } from "@connectrpc/connect";
import { permissionDenied, unauthenticated } from "../domain/errors.js";
import { MAX_CREDENTIAL_LENGTH } from "../keys/format.js";
import { ADMIN_PERMISSION, CROSS_TENANT_PERMISSION } from "../keys/key-admin.js";
import type { KeyVerifier } from "../keys/verifier.js";

/**
 * Permission of a service key (a gateway, an application backend) that authenticates end clients
 * itself and asks Authorize about them by key id. `tollgate:admin` is accepted too.
 */
export const AUTHORIZE_PERMISSION = "tollgate:authorize";

/** A proven service caller: which tenant's keys it may ask about. */
export interface TrustedCaller {
  tenantId: string;
  /** May ask about keys of every tenant. */
  crossTenant: boolean;
}

/**
 * Proves the caller of a by-key-id question. Asking about a key by id skips the proof of
 * possession, so it is reserved for callers that present `authorization: Bearer <key>` holding
 * `tollgate:authorize` or `tollgate:admin` (exact grants on the key). Failures are RPC errors,
 * not decisions: UNAUTHENTICATED when the caller's key is missing or not valid (unknown, wrong,
 * revoked and expired look alike), PERMISSION_DENIED when it lacks the permission.
 */
export async function authenticateTrustedCaller(verifier: KeyVerifier, ctx: HandlerContext): Promise<TrustedCaller> {
  const header = ctx.requestHeader.get("authorization") ?? "";
  if (header.length > MAX_CREDENTIAL_LENGTH) throw unauthenticated("MALFORMED_CREDENTIAL", "the authorization header is too long");
  if (header.trim() === "") {
    throw unauthenticated("MISSING_CREDENTIAL", `Authorize by key_id needs \`authorization: Bearer <key with ${AUTHORIZE_PERMISSION}>\``);
  }
  const { code, key } = await verifier.verify(header, "");
  if (code !== "VALID" || !key) {
    throw unauthenticated(code === "MALFORMED_CREDENTIAL" ? code : "INVALID_API_KEY", "the caller's key is not valid");
  }
  if (!key.permissions.includes(AUTHORIZE_PERMISSION) && !key.permissions.includes(ADMIN_PERMISSION)) {
    throw permissionDenied("NOT_A_SERVICE_KEY", `Authorize by key_id needs a key holding ${AUTHORIZE_PERMISSION}`);
  }
  return { tenantId: key.tenantId, crossTenant: key.permissions.includes(CROSS_TENANT_PERMISSION) };
}
