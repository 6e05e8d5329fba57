import type { HandlerContext } from "@connectrpc/connect";
import { permissionDenied, unauthenticated } from "../domain/errors.js";
import { ADMIN_PERMISSION, CROSS_TENANT_PERMISSION, type AdminCaller } from "../keys/key-admin.js";
import type { KeyVerifier } from "../keys/verifier.js";
import { MAX_CREDENTIAL_LENGTH } from "../keys/format.js";
import { peerAddress } from "../transport/peer.js";

/** Turns the `authorization` header of an admin call into a proven admin caller, or throws. */
export type AdminAuthenticator = (ctx: HandlerContext) => Promise<AdminCaller>;

/**
 * Admin calls authenticate with `authorization: Bearer <admin key>` through the same verifier
 * (and caches) as Authenticate. The key must hold `tollgate:admin`; `tollgate:cross-tenant` makes
 * it a root admin. Failures are UNAUTHENTICATED with the decision code as the reason.
 */
export function createAdminAuthenticator(verifier: KeyVerifier): AdminAuthenticator {
  return async (ctx) => {
    const header = ctx.requestHeader.get("authorization") ?? "";
    if (header.length > MAX_CREDENTIAL_LENGTH) throw unauthenticated("MALFORMED_CREDENTIAL", "the authorization header is too long");
    if (header.trim() === "") throw unauthenticated("MISSING_CREDENTIAL", "admin calls need `authorization: Bearer <admin key>`");
    // An admin key with an IP allowlist is checked against the connection's remote address.
    const { code, key } = await verifier.verify(header, peerAddress(ctx));
    if (code === "IP_NOT_ALLOWED") throw permissionDenied("IP_NOT_ALLOWED", "this admin key may not be used from this address");
    if (code !== "VALID" || !key) {
      // Wrong, unknown, revoked and expired admin keys all look alike to a caller without the secret.
      const reason = code === "MALFORMED_CREDENTIAL" ? code : "INVALID_API_KEY";
      throw unauthenticated(reason, "the admin key is not valid");
    }
    if (!key.permissions.includes(ADMIN_PERMISSION)) {
      throw permissionDenied("NOT_AN_ADMIN_KEY", `this key lacks the ${ADMIN_PERMISSION} permission`);
    }
    return { actor: `key:${key.keyId}`, tenantId: key.tenantId, root: key.permissions.includes(CROSS_TENANT_PERMISSION) };
  };
}
