import { hash } from "node:crypto";
import { decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from "jose";
import type { KeyRecord } from "../domain/key.js";
import { keyStatus } from "../keys/key-status.js";
import { TtlCache } from "../keys/ttl-cache.js";
import { isPromise, type MaybePromise } from "../domain/maybe-promise.js";
import { ACCESS_TOKEN_TYPE, SUBJECT_PREFIX, type AccessTokenClaims } from "./claims.js";
import type { Keyring } from "./keyring.js";
import { SIGNING_ALGORITHMS, type TokenConfig } from "./token-config.js";

/** Every answer Authenticate gives for an access token. */
export type TokenCode = "VALID" | "INVALID_ACCESS_TOKEN" | "EXPIRED_ACCESS_TOKEN" | "IP_NOT_ALLOWED";

/** The outcome of verifying a token; `key` and `claims` are set once the signature and claims hold. */
export interface TokenVerification {
  code: TokenCode;
  key?: KeyRecord;
  claims?: AccessTokenClaims;
}

/** The keyring with the published keys, the key-row lookup, settings and clock. */
export interface TokenVerifierDeps {
  keyring: Pick<Keyring, "verificationKey" | "knownKey">;
  /** The current row of the key a token was issued from (cached, answered synchronously when warm; evicted on change through NOTIFY). */
  lookupKey(keyId: string): MaybePromise<KeyRecord | undefined>;
  config: TokenConfig;
  now: () => number;
  /** Most verified tokens remembered (by SHA-256 digest, never the token itself). */
  maxCachedTokens?: number;
}

/** A token whose signature and claims were checked once: what later calls need to re-check. */
interface Checked {
  kid: string;
  claims: AccessTokenClaims;
}

const INVALID: TokenVerification = { code: "INVALID_ACCESS_TOKEN" };

/** Checks the claims jose does not know about; undefined when they are not ours. */
function ourClaims(payload: JWTPayload): AccessTokenClaims | undefined {
  const p = payload as Partial<Record<keyof AccessTokenClaims, unknown>>;
  const strings = [p.client_id, p.scope, p.tenant, p.jti, p.sub].every((v) => typeof v === "string");
  if (!strings || p.sub !== SUBJECT_PREFIX + String(p.client_id)) return undefined;
  return payload as unknown as AccessTokenClaims;
}

/**
 * Verifies access tokens against the in-memory keyring — no store round trip while the key row
 * is cached. The first sight of a token checks, in order: the header (`alg` on the allow-list, so
 * `none` and every HMAC are refused before any crypto; a kid published now, whose algorithm must
 * equal the header's), the signature, `typ`, `iss`, `aud`, `exp`/`nbf` within the configured skew,
 * and our claims. The outcome is remembered by the token's SHA-256 digest until it expires, so a
 * repeat costs a hash instead of a signature verification. Every call then re-checks what can
 * change: the key is still published, `exp`/`nbf` against the clock, and the API key the token
 * came from — a revoked, expired or deleted key kills its tokens.
 */
export function createTokenVerifier(deps: TokenVerifierDeps) {
  const { config } = deps;
  const checked = new TtlCache<string, Checked>(deps.maxCachedTokens ?? 50_000, deps.now);

  async function checkSignature(token: string): Promise<Checked | TokenVerification> {
    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      return INVALID;
    }
    if (typeof header.kid !== "string" || !(SIGNING_ALGORITHMS as readonly unknown[]).includes(header.alg)) return INVALID;
    const published = await deps.keyring.verificationKey(header.kid);
    if (!published || published.algorithm !== header.alg) return INVALID;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, published.key, {
        algorithms: [published.algorithm],
        typ: ACCESS_TOKEN_TYPE,
        issuer: config.issuer,
        audience: config.audiences,
        clockTolerance: config.clockSkewSeconds,
        currentDate: new Date(deps.now()),
        requiredClaims: ["exp", "iat", "nbf", "jti", "sub"],
      }));
    } catch (err) {
      return { code: err instanceof errors.JWTExpired ? "EXPIRED_ACCESS_TOKEN" : "INVALID_ACCESS_TOKEN" };
    }
    const claims = ourClaims(payload);
    return claims ? { kid: header.kid, claims } : INVALID;
  }

  /**
   * What may have changed since the signature was checked: publication, time, the API key. A warm
   * token (its kid known, its key row cached) is answered synchronously, as a warm API key is.
   */
  function recheck(entry: Checked, clientIp: string): MaybePromise<TokenVerification> {
    if (deps.keyring.knownKey(entry.kid)) return recheckTimeAndKey(entry, clientIp);
    return deps.keyring.verificationKey(entry.kid).then((published) => (published ? recheckTimeAndKey(entry, clientIp) : INVALID));
  }

  function recheckTimeAndKey({ claims }: Checked, clientIp: string): MaybePromise<TokenVerification> {
    const nowSeconds = Math.floor(deps.now() / 1000);
    if (claims.exp <= nowSeconds - config.clockSkewSeconds) return { code: "EXPIRED_ACCESS_TOKEN" };
    if (claims.nbf > nowSeconds + config.clockSkewSeconds) return INVALID;
    const key = deps.lookupKey(claims.client_id);
    return isPromise(key) ? key.then((k) => keyVerdict(k, claims, clientIp)) : keyVerdict(key, claims, clientIp);
  }

  function keyVerdict(key: KeyRecord | undefined, claims: AccessTokenClaims, clientIp: string): TokenVerification {
    if (!key || key.tenantId !== claims.tenant) return INVALID;
    const status = keyStatus(key, deps.now(), clientIp);
    if (status === "IP_NOT_ALLOWED") return { code: status, key, claims };
    return status === "VALID" ? { code: "VALID", key, claims } : INVALID;
  }

  return {
    /** Verifies a token: synchronously when it was seen before and nothing needs loading, else through a promise. */
    verify(token: string, clientIp: string): MaybePromise<TokenVerification> {
      const digest = hash("sha256", token, "base64");
      const entry = checked.get(digest);
      if (entry) return recheck(entry, clientIp);
      return checkSignature(token).then((outcome) => {
        if ("code" in outcome) return outcome;
        checked.set(digest, outcome, (outcome.claims.exp + config.clockSkewSeconds) * 1000 - deps.now());
        return recheck(outcome, clientIp);
      });
    },
  };
}

export type TokenVerifier = ReturnType<typeof createTokenVerifier>;
