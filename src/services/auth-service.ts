import type { ServiceImpl } from "@connectrpc/connect";
import { Violations } from "../domain/errors.js";
import type { KeyVerifier, Verification } from "../keys/verifier.js";
import { isPromise } from "../domain/maybe-promise.js";
import type { PolicyCache } from "../policy/policy-cache.js";
import type { QuotaService } from "../quota/quota-service.js";
import { consumeQuota } from "./consume-quota.js";
import type { AuthService } from "../gen/tollgate/v1/auth_service_pb.js";
import { create } from "@bufbuild/protobuf";
import { AuthenticateResponseSchema, type AuthenticateResponse } from "../gen/tollgate/v1/authenticate_pb.js";
import type { KeyRecord } from "../domain/key.js";
import { AUTH_MESSAGES, clientResponseFor, codeOf, createPrincipalCache } from "./convert.js";
import type { Principal } from "../gen/tollgate/v1/common_pb.js";
import { checkClientIp, checkCredential } from "./validate.js";
import { authenticateAccessToken, isAccessToken, issueToken, type AccessTokens } from "./issue-token.js";
import { createAuthorize } from "./authorize.js";

export interface AuthServiceDeps {
  verifier: KeyVerifier;
  /** Access tokens: issued by IssueToken, accepted by Authenticate. */
  tokens: AccessTokens;
  policies: PolicyCache;
  now: () => number;
  onDecision?: (rpc: string, code: string) => void;
  /** RotateKey (src/services/rotate-key.ts). */
  rotateKey: ServiceImpl<typeof AuthService>["rotateKey"];
  /** The strictest maximum age (ms) for a key, for `rotation_due`; none when absent. */
  maxKeyAgeMs?: (key: KeyRecord) => number | undefined;
  quota: QuotaService;
}

/**
 * AuthService. Authenticate answers with a decision value: a "no" is an OK RPC whose `code`
 * says why, plus what a gateway should tell the end client. RPC errors mean a malformed request
 * (INVALID_ARGUMENT) or a broken dependency (UNAVAILABLE).
 */
export function createAuthService(deps: AuthServiceDeps): ServiceImpl<typeof AuthService> {
  // One principal per key record, its rotation flags included, shared by every RPC that answers with one.
  const cache = createPrincipalCache();
  const principals = (key: KeyRecord, nowMs: number) => cache(key, nowMs, deps.maxKeyAgeMs?.(key));
  const validAnswers = createValidAnswerCache(deps, principals);
  const quotaDeps = { ...deps, principals };
  /** Authenticate's answer for an API key's verification. */
  const keyAnswer = ({ code, key }: Verification) => {
    deps.onDecision?.("Authenticate", code);
    if (code === "VALID" && key) return validAnswers(key);
    const message = AUTH_MESSAGES[code] ?? "";
    return {
      valid: false,
      code: codeOf(code),
      // The principal is returned whenever the secret was proven, so callers can say *which* key expired.
      principal: key ? principals(key, deps.now()) : undefined,
      message,
      clientResponse: clientResponseFor(code, message),
    };
  };
  return {
    // Synchronous for a warm key or token (no promise, as for Check); a throw is the RPC's error either way.
    authenticate(req) {
      const v = new Violations();
      checkCredential(v, "credential", req.credential);
      checkClientIp(v, "client_ip", req.clientIp);
      v.throwIfAny();
      if (isAccessToken(req.credential)) return authenticateAccessToken(deps.tokens, req, deps);
      const verifying = deps.verifier.verify(req.credential, req.clientIp);
      return isPromise(verifying) ? verifying.then(keyAnswer) : keyAnswer(verifying);
    },
    authorize: createAuthorize({ ...deps, principals }),
    consumeQuota: (req, ctx) => consumeQuota(quotaDeps, req, ctx),
    issueToken: (req) => issueToken(deps.tokens, req),
    rotateKey: deps.rotateKey,
  };
}

/**
 * The VALID answer for a key, built once per principal (itself memoized per key record and its
 * time-dependent flags) and frozen, so a warm Authenticate allocates no response and the grpc-js
 * adapter reuses the answer's encoded bytes. A changed key gets a new record, hence a new answer.
 */
function createValidAnswerCache(deps: AuthServiceDeps, principals: (key: KeyRecord, nowMs: number) => Principal) {
  const answers = new WeakMap<Principal, AuthenticateResponse>();
  return (key: KeyRecord): AuthenticateResponse => {
    const principal = principals(key, deps.now());
    let answer = answers.get(principal);
    if (!answer) {
      answer = Object.freeze(create(AuthenticateResponseSchema, { valid: true, code: codeOf("VALID"), principal, message: AUTH_MESSAGES.VALID }));
      answers.set(principal, answer);
    }
    return answer;
  };
}
