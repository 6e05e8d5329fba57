import { randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import { TollgateError, unavailable } from "../domain/errors.js";
import type { KeyVerifier } from "../keys/verifier.js";
import { ACCESS_TOKEN_TYPE, SUBJECT_PREFIX } from "./claims.js";
import type { Keyring } from "./keyring.js";
import { uncovered } from "./scopes.js";
import type { TokenConfig } from "./token-config.js";

/** What a client asks for. Field shapes are checked by the caller; meaning is checked here. */
export interface IssueRequest {
  /** The API key, as sent. */
  credential: string;
  /** Requested scopes; empty = every permission of the key. */
  scopes: string[];
  /** Requested lifetime; undefined = the configured default. Capped at the configured maximum. */
  ttlSeconds: number | undefined;
  /** Requested audience; "" = the first configured one. */
  audience: string;
  clientIp: string;
}

/** A signed access token and what it grants. */
export interface IssuedToken {
  accessToken: string;
  expiresAt: Date;
  expiresInSeconds: number;
  scopes: string[];
  audience: string;
}

/** The API-key verifier that proves the client, the keyring that signs, settings and clock. */
export interface TokenIssuerDeps {
  verifier: Pick<KeyVerifier, "verify">;
  keyring: Pick<Keyring, "signer">;
  config: TokenConfig;
  now: () => number;
}

/** An OAuth2 error (RFC 6749 §5.2 / RFC 8707) as a domain error; `error` rides in ErrorInfo metadata. */
function oauthError(kind: "invalid_argument" | "unauthenticated" | "permission_denied", error: string, message: string, field?: string): TollgateError {
  return new TollgateError(kind, error.toUpperCase(), message, {
    metadata: { error },
    ...(field ? { violations: [{ field, description: message }] } : {}),
  });
}

/**
 * Exchanges a proven API key for a signed RFC 9068 access token. A key that is unknown, wrong,
 * revoked or expired is `invalid_client` (UNAUTHENTICATED), all alike; a key used from outside its
 * IP allowlist is `unauthorized_client` (PERMISSION_DENIED); scopes beyond the key's permissions
 * are `invalid_scope` and an unconfigured audience `invalid_target` (INVALID_ARGUMENT).
 */
export function createTokenIssuer(deps: TokenIssuerDeps) {
  const { config } = deps;
  return {
    async issue(req: IssueRequest): Promise<IssuedToken> {
      const audience = req.audience || config.audiences[0]!;
      if (!config.audiences.includes(audience)) throw oauthError("invalid_argument", "invalid_target", "is not an audience this server issues tokens for", "audience");
      const { code, key } = await deps.verifier.verify(req.credential, req.clientIp);
      if (code === "IP_NOT_ALLOWED") throw oauthError("permission_denied", "unauthorized_client", "the API key may not be used from this address");
      if (code !== "VALID" || !key) throw oauthError("unauthenticated", "invalid_client", "the API key is not valid");
      const scopes = req.scopes.length > 0 ? [...new Set(req.scopes)] : key.permissions;
      const extra = uncovered(scopes, key.permissions);
      if (extra.length > 0) {
        throw oauthError("invalid_argument", "invalid_scope", `not granted to this key: ${extra.slice(0, 5).join(" ").slice(0, 200)}`, "scopes");
      }
      const signer = currentSigner(deps);
      const ttlSeconds = Math.min(req.ttlSeconds ?? config.defaultTtlSeconds, config.maxTtlSeconds);
      const iat = Math.floor(deps.now() / 1000);
      const accessToken = await new SignJWT({ client_id: key.keyId, scope: scopes.join(" "), tenant: key.tenantId })
        .setProtectedHeader({ alg: signer.algorithm, kid: signer.kid, typ: ACCESS_TOKEN_TYPE })
        .setIssuer(config.issuer)
        .setSubject(SUBJECT_PREFIX + key.keyId)
        .setAudience(audience)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + ttlSeconds)
        .setJti(randomUUID())
        .sign(signer.key);
      return { accessToken, expiresAt: new Date((iat + ttlSeconds) * 1000), expiresInSeconds: ttlSeconds, scopes, audience };
    },
  };
}

/** The replica's signing key; UNAVAILABLE when it could not be loaded or decrypted. */
function currentSigner(deps: TokenIssuerDeps) {
  const signer = deps.keyring.signer();
  if (!signer) throw unavailable("SIGNING_KEY_UNAVAILABLE", "no signing key is available; try again");
  return signer;
}

export type TokenIssuer = ReturnType<typeof createTokenIssuer>;
