import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { invalidArgument, permissionDenied } from "../domain/errors.js";
import type { SigningKeyRecord } from "../domain/signing-key.js";
import type { SigningKeys } from "../tokens/signing-keys.js";
import { jwkOf } from "../tokens/key-material.js";
import { SIGNING_ALGORITHMS, type SigningAlgorithm } from "../tokens/token-config.js";
import { SigningKeySchema, SigningKeyState, type SigningKey, type SigningKeyService } from "../gen/tollgate/v1/signing_key_service_pb.js";
import type { AdminAuthenticator } from "./admin-auth.js";
import { ts } from "./convert.js";

/** A stored signing key as the admin API shows it: public parts and lifecycle only. */
export function signingKeyToProto(key: SigningKeyRecord, nowMs: number): SigningKey {
  const expired = key.state === "retired" && key.publishUntil !== null && key.publishUntil.getTime() <= nowMs;
  const state = expired ? SigningKeyState.EXPIRED : { next: SigningKeyState.NEXT, active: SigningKeyState.ACTIVE, retired: SigningKeyState.RETIRED }[key.state];
  return create(SigningKeySchema, {
    kid: key.kid,
    algorithm: key.algorithm,
    state,
    createdAt: ts(key.createdAt),
    activatedAt: ts(key.activatedAt),
    retiredAt: ts(key.retiredAt),
    publishUntil: ts(key.publishUntil),
    publicJwk: JSON.stringify(jwkOf(key)),
  });
}

/**
 * The admin SigningKeyService. Signing keys serve every tenant, so only a root admin key may
 * read or rotate them; a tenant admin is PERMISSION_DENIED.
 */
export function createSigningKeyService(keys: SigningKeys, authenticate: AdminAuthenticator, now: () => number): ServiceImpl<typeof SigningKeyService> {
  async function rootCaller(ctx: HandlerContext) {
    const caller = await authenticate(ctx);
    if (!caller.root) throw permissionDenied("ROOT_ADMIN_REQUIRED", "signing keys can be managed only with a root admin key");
    return caller;
  }
  return {
    async listSigningKeys(req, ctx) {
      await rootCaller(ctx);
      const rows = await keys.list(req.includeExpired);
      return { keys: rows.map((k) => signingKeyToProto(k, now())) };
    },
    async rotateSigningKey(req, ctx) {
      const caller = await rootCaller(ctx);
      if (req.algorithm !== "" && !(SIGNING_ALGORITHMS as readonly string[]).includes(req.algorithm)) {
        throw invalidArgument("algorithm", `must be one of ${SIGNING_ALGORITHMS.join(", ")}`);
      }
      const rotation = await keys.rotate(caller.actor, (req.algorithm || undefined) as SigningAlgorithm | undefined);
      return {
        active: signingKeyToProto(rotation.active, now()),
        next: signingKeyToProto(rotation.next, now()),
        retired: rotation.retired ? signingKeyToProto(rotation.retired, now()) : undefined,
      };
    },
  };
}
