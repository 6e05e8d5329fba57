import { Code as RpcCode, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Violations } from "../domain/errors.js";
import type { KeyVerifier } from "../keys/verifier.js";
import type { PolicyCache } from "../policy/policy-cache.js";
import type { QuotaService } from "../quota/quota-service.js";
import { consumeQuota } from "./consume-quota.js";
import type { AuthService } from "../gen/tollgate/v1/auth_service_pb.js";
import type { KeyRecord } from "../domain/key.js";
import { AUTH_MESSAGES, clientResponseFor, codeOf, principalFromKey } from "./convert.js";
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
  /** RotateKey (src/services/rotate-key.ts); UNIMPLEMENTED when absent. */
  rotateKey?: ServiceImpl<typeof AuthService>["rotateKey"];
  /** The strictest maximum age (ms) for a key, for `rotation_due`; none when absent. */
  maxKeyAgeMs?: (key: KeyRecord) => number | undefined;
  quota?: QuotaService;
}

const notYet = (rpc: string) => () => {
  throw new ConnectError(`${rpc} is not implemented yet`, RpcCode.Unimplemented);
};

/**
 * AuthService. Authenticate answers with a decision value: a "no" is an OK RPC whose `code`
 * says why, plus what a gateway should tell the end client. RPC errors mean a malformed request
 * (INVALID_ARGUMENT) or a broken dependency (UNAVAILABLE).
 */
export function createAuthService(deps: AuthServiceDeps): ServiceImpl<typeof AuthService> {
  return {
    async authenticate(req) {
      const v = new Violations();
      checkCredential(v, "credential", req.credential);
      checkClientIp(v, "client_ip", req.clientIp);
      v.throwIfAny();
      if (isAccessToken(req.credential)) return authenticateAccessToken(deps.tokens, req, deps);
      const { code, key } = await deps.verifier.verify(req.credential, req.clientIp);
      deps.onDecision?.("Authenticate", code);
      const valid = code === "VALID";
      return {
        valid,
        code: codeOf(code),
        // The principal is returned whenever the secret was proven, so callers can say *which* key expired.
        principal: key ? principalFromKey(key, deps.now(), deps.maxKeyAgeMs?.(key)) : undefined,
        message: AUTH_MESSAGES[code] ?? "",
        clientResponse: valid ? undefined : clientResponseFor(code, AUTH_MESSAGES[code] ?? ""),
      };
    },
    authorize: createAuthorize(deps),
    consumeQuota: deps.quota ? (req, ctx) => consumeQuota({ ...deps, quota: deps.quota! }, req, ctx) : notYet("ConsumeQuota"),
    issueToken: (req) => issueToken(deps.tokens, req),
    rotateKey: deps.rotateKey ?? notYet("RotateKey"),
  };
}
