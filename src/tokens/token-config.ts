import { intVar, type Env } from "../config/env.js";

/** JWS algorithms Tollgate signs access tokens with. HMAC and `none` are never among them. */
export const SIGNING_ALGORITHMS = ["EdDSA", "ES256", "RS256"] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

/** Access-token settings, validated once with the rest of the configuration. */
export interface TokenConfig {
  /** The `iss` claim, and the base of the metadata endpoints when it is an http(s) URL. */
  issuer: string;
  /** Audiences a token may be issued for; the first is the default. */
  audiences: string[];
  defaultTtlSeconds: number;
  /** Longer requested lifetimes are capped to this; it also bounds how long a retired key stays published. */
  maxTtlSeconds: number;
  /** Leeway for `exp`/`nbf` against clocks of other replicas and verifiers. */
  clockSkewSeconds: number;
  /** Algorithm of newly generated signing keys. */
  signingAlgorithm: SigningAlgorithm;
  /** Rotate the signing key automatically this long after it became active; 0 = only by hand. */
  rotateEverySeconds: number;
}



/**
 * Parses the token settings (`TOLLGATE_TOKEN_*`, `TOLLGATE_SIGNING_*`), appending every problem to
 * `problems` so that configuration errors are reported together.
 */
export function parseTokenConfig(env: Env, problems: string[]): TokenConfig {
  const issuer = env.TOLLGATE_TOKEN_ISSUER || "tollgate";
  const audiences = (env.TOLLGATE_TOKEN_AUDIENCES || "tollgate").split(",").map((a) => a.trim()).filter(Boolean);
  if (audiences.length === 0) problems.push("TOLLGATE_TOKEN_AUDIENCES must name at least one audience");
  const maxTtlSeconds = intVar(env, problems, "TOLLGATE_TOKEN_MAX_TTL_SECONDS", 3600, 60, 86_400);
  const defaultTtlSeconds = intVar(env, problems, "TOLLGATE_TOKEN_TTL_SECONDS", Math.min(3600, maxTtlSeconds), 60, 86_400);
  if (defaultTtlSeconds > maxTtlSeconds) problems.push("TOLLGATE_TOKEN_TTL_SECONDS must not exceed TOLLGATE_TOKEN_MAX_TTL_SECONDS");
  const alg = env.TOLLGATE_SIGNING_ALG || "EdDSA";
  if (!(SIGNING_ALGORITHMS as readonly string[]).includes(alg)) problems.push(`TOLLGATE_SIGNING_ALG must be one of ${SIGNING_ALGORITHMS.join("|")}, got "${alg.slice(0, 20)}"`);
  const rotateEverySeconds = intVar(env, problems, "TOLLGATE_SIGNING_KEY_ROTATE_EVERY_SECONDS", 0, 0, 366 * 86_400);
  if (rotateEverySeconds !== 0 && rotateEverySeconds < 2 * maxTtlSeconds) {
    problems.push("TOLLGATE_SIGNING_KEY_ROTATE_EVERY_SECONDS must be 0 (off) or at least twice TOLLGATE_TOKEN_MAX_TTL_SECONDS");
  }
  return {
    issuer,
    audiences,
    defaultTtlSeconds,
    maxTtlSeconds,
    clockSkewSeconds: intVar(env, problems, "TOLLGATE_TOKEN_CLOCK_SKEW_SECONDS", 30, 0, 300),
    signingAlgorithm: (SIGNING_ALGORITHMS as readonly string[]).includes(alg) ? (alg as SigningAlgorithm) : "EdDSA",
    rotateEverySeconds,
  };
}

/**
 * Parses `TOLLGATE_MASTER_KEY`: 32 bytes as 64 hex digits or as base64/base64url. The value is
 * never echoed in a problem message.
 */
export function parseMasterKey(raw: string | undefined, problems: string[]): Buffer | undefined {
  if (raw === undefined || raw === "") return undefined;
  const key = /^[0-9a-fA-F]{64}$/.test(raw) ? Buffer.from(raw, "hex") : Buffer.from(raw, "base64");
  if (key.length !== 32) {
    problems.push("TOLLGATE_MASTER_KEY must be 32 bytes, as 64 hex digits or base64");
    return undefined;
  }
  return key;
}
