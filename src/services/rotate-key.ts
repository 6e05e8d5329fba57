import type { HandlerContext } from "@connectrpc/connect";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { permissionDenied, unauthenticated, Violations } from "../domain/errors.js";
import { isKeyId, parseKey, unwrapCredential } from "../keys/format.js";
import type { AdminCaller } from "../keys/key-admin.js";
import type { KeyRotator } from "../keys/key-rotation.js";
import type { KeyVerifier } from "../keys/verifier.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RotateKeyRequest, RotateKeyResponseSchema } from "../gen/tollgate/v1/rotate_pb.js";
import type { AdminAuthenticator } from "./admin-auth.js";
import { keyToProto } from "./convert.js";
import { checkCredential } from "./validate.js";

export interface RotateKeyDeps {
  rotator: KeyRotator;
  verifier: KeyVerifier;
  adminAuth: AdminAuthenticator;
  /** Grace when the request leaves `grace_period` unset. */
  defaultGraceMs: number;
  /** Largest grace a request may ask for. */
  maxGraceMs: number;
}

/** Reads `grace_period` into milliseconds (unset = the default), recording a violation if it is bad. */
function graceMsOf(v: Violations, grace: Duration | undefined, deps: RotateKeyDeps): number {
  if (!grace) return deps.defaultGraceMs;
  const seconds = Number(grace.seconds);
  if (seconds < 0 || grace.nanos < 0) v.add("grace_period", "must not be negative (0 ends the old key's validity now)");
  else if (grace.nanos > 999_999_999) v.add("grace_period", "nanos must be below 1,000,000,000");
  else if (seconds * 1000 + grace.nanos / 1e6 > deps.maxGraceMs) v.add("grace_period", `must be at most ${deps.maxGraceMs / 1000} seconds`);
  else return seconds * 1000 + Math.floor(grace.nanos / 1e6);
  return 0;
}

/**
 * Self-service: the credential is the key being rotated, and it must prove its secret. Unknown,
 * wrong and malformed keys are UNAUTHENTICATED alike. Revoked and expired keys (secret proven)
 * go on to the rotator, which refuses them with a precise FAILED_PRECONDITION. A key with an IP
 * allowlist is refused: this request carries no trustworthy client address to check, so such
 * keys are rotated by an admin.
 */
async function selfServiceCaller(verifier: KeyVerifier, credential: string): Promise<[AdminCaller, string]> {
  const { code, key } = await verifier.verify(credential, "");
  if (!key) throw unauthenticated(code === "MALFORMED_CREDENTIAL" ? code : "INVALID_API_KEY", "the credential is not a valid API key");
  if (code === "IP_NOT_ALLOWED") throw permissionDenied("IP_RESTRICTED_KEY", "a key with an IP allowlist must be rotated by an admin");
  return [{ actor: `key:${key.keyId}`, tenantId: key.tenantId, root: false }, key.keyId];
}

/**
 * RotateKey: either self-service (`credential` = the key being rotated) or admin (`key_id` with
 * `authorization: Bearer <admin key>`; a tenant admin reaches only its own tenant's keys, others
 * are NOT_FOUND). Validation and caller resolution here; the rotation itself in the key rotator.
 */
export function createRotateKeyHandler(deps: RotateKeyDeps) {
  return async (req: RotateKeyRequest, ctx: HandlerContext): Promise<MessageInitShape<typeof RotateKeyResponseSchema>> => {
    const v = new Violations();
    checkCredential(v, "credential", req.credential);
    if (req.keyId !== "" && !isKeyId(req.keyId)) v.add("key_id", "must be a 16-character key id");
    if (req.credential === "" && req.keyId === "") v.add("key_id", "is required unless credential (self-service) is set");
    const selfKeyId = req.credential !== "" ? parseKey(unwrapCredential(req.credential))?.keyId : undefined;
    if (selfKeyId && req.keyId !== "" && req.keyId !== selfKeyId) v.add("key_id", "must be empty or the id of the key in credential");
    const graceMs = graceMsOf(v, req.gracePeriod, deps);
    v.throwIfAny();
    const [caller, keyId] = req.credential !== "" ? await selfServiceCaller(deps.verifier, req.credential) : [await deps.adminAuth(ctx), req.keyId];
    const rotation = await deps.rotator.rotate(caller, keyId, graceMs);
    return { newKey: keyToProto(rotation.successor), secret: rotation.secret, oldKey: keyToProto(rotation.old) };
  };
}
