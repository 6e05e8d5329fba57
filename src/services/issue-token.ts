import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import { Violations } from "../domain/errors.js";
import { unwrapCredential } from "../keys/format.js";
import type { KeyRecord } from "../domain/key.js";
import { looksLikeJwt, type AccessTokenClaims } from "../tokens/claims.js";
import { covered } from "../tokens/scopes.js";
import type { TokenIssuer } from "../tokens/token-issuer.js";
import type { TokenVerification, TokenVerifier } from "../tokens/token-verifier.js";
import { isPromise, type MaybePromise } from "../domain/maybe-promise.js";
import { CredentialType, type Principal } from "../gen/tollgate/v1/common_pb.js";
import type { AuthenticateRequest, AuthenticateResponse } from "../gen/tollgate/v1/authenticate_pb.js";
import type { IssueTokenRequest, IssueTokenResponse } from "../gen/tollgate/v1/token_pb.js";
import { IssueTokenResponseSchema } from "../gen/tollgate/v1/token_pb.js";
import { clientResponseFor, codeOf, principalFromKey, AUTH_MESSAGES } from "./convert.js";
import { LIMITS, checkClientIp, checkCredential, checkPermissions } from "./validate.js";

/** End-client explanations of access-token outcomes (safe to show). */
export const TOKEN_MESSAGES: Record<string, string> = {
  VALID: "the access token is valid",
  INVALID_ACCESS_TOKEN: "the access token is not valid",
  EXPIRED_ACCESS_TOKEN: "the access token has expired",
  IP_NOT_ALLOWED: "the access token may not be used from this address",
};

/** Seconds of a requested lifetime; a non-positive or fractional-second duration is a field error. */
function ttlSecondsOf(v: Violations, ttl: Duration | undefined): number | undefined {
  if (!ttl) return undefined;
  const seconds = Number(ttl.seconds);
  if (seconds <= 0 || ttl.nanos !== 0) v.add("ttl", "must be a positive whole number of seconds");
  return seconds;
}

/** The token parts AuthService needs: IssueToken signs, Authenticate verifies. */
export interface AccessTokens {
  issuer: TokenIssuer;
  verifier: TokenVerifier;
}

/** Whether Authenticate should treat a credential as an access token rather than an API key. */
export function isAccessToken(rawCredential: string): boolean {
  return looksLikeJwt(unwrapCredential(rawCredential));
}

/** IssueToken: validate the shape of the request, one domain call, encode. */
export async function issueToken(tokens: AccessTokens, req: IssueTokenRequest): Promise<IssueTokenResponse> {
  const v = new Violations();
  checkCredential(v, "credential", req.credential);
  checkClientIp(v, "client_ip", req.clientIp);
  checkPermissions(v, "scopes", req.scopes);
  if (req.audience.length > LIMITS.nameLength) v.add("audience", `must be at most ${LIMITS.nameLength} characters`);
  const ttlSeconds = ttlSecondsOf(v, req.ttl);
  v.throwIfAny();
  const issued = await tokens.issuer.issue({ credential: req.credential, scopes: req.scopes, ttlSeconds, audience: req.audience, clientIp: req.clientIp });
  return create(IssueTokenResponseSchema, {
    accessToken: issued.accessToken,
    tokenType: "Bearer",
    expiresIn: BigInt(issued.expiresInSeconds),
    expiresAt: timestampFromDate(issued.expiresAt),
    scope: issued.scopes.join(" "),
  });
}

/**
 * The principal behind an access token: the key's principal, narrowed. Its permissions are the
 * token's scopes that the key still grants (so taking a permission from a key takes it from its
 * live tokens), it has no roles (a token carries exactly its scopes), and it expires with the token.
 */
export function principalFromToken(key: KeyRecord, claims: AccessTokenClaims, nowMs: number): Principal {
  const principal = principalFromKey(key, nowMs);
  const { scopes, granted } = tokenScopes(key, claims);
  principal.credentialType = CredentialType.ACCESS_TOKEN;
  principal.scopes = scopes;
  principal.permissions = granted;
  principal.roles = [];
  principal.expiresAt = timestampFromDate(new Date(claims.exp * 1000));
  return principal;
}

/** A token's scopes, and those of them its key still grants (so taking a permission from a key takes it from its live tokens). */
export function tokenScopes(key: KeyRecord, claims: AccessTokenClaims): { scopes: string[]; granted: string[] } {
  const scopes = claims.scope.split(" ").filter(Boolean);
  return { scopes, granted: scopes.filter((s) => covered(s, key.permissions)) };
}

/** The sentence for a token verification's code. */
export function tokenMessage(code: string): string {
  return TOKEN_MESSAGES[code] ?? AUTH_MESSAGES[code] ?? "";
}

/** Authenticate for a JWT-shaped credential; the same decision shape as for API keys (synchronous for a warm token). */
export function authenticateAccessToken(
  tokens: AccessTokens,
  req: AuthenticateRequest,
  deps: { now: () => number; onDecision?: (rpc: string, code: string) => void },
): MaybePromise<Omit<AuthenticateResponse, "$typeName">> {
  const answer = ({ code, key, claims }: TokenVerification): Omit<AuthenticateResponse, "$typeName"> => {
    deps.onDecision?.("Authenticate", code);
    const valid = code === "VALID";
    const message = tokenMessage(code);
    return {
      valid,
      code: codeOf(code),
      principal: key && claims ? principalFromToken(key, claims, deps.now()) : undefined,
      message,
      clientResponse: valid ? undefined : clientResponseFor(code, message),
    };
  };
  const verifying = tokens.verifier.verify(unwrapCredential(req.credential), req.clientIp);
  return isPromise(verifying) ? verifying.then(answer) : answer(verifying);
}
