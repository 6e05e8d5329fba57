import { Code as RpcCode, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Violations } from "../domain/errors.js";
import type { KeyVerifier } from "../keys/verifier.js";
import type { QuotaService } from "../quota/quota-service.js";
import { consumeQuota } from "./consume-quota.js";
import type { AuthService } from "../gen/tollgate/v1/auth_service_pb.js";
import { AUTH_MESSAGES, clientResponseFor, codeOf, principalFromKey } from "./convert.js";
import { checkClientIp, checkCredential } from "./validate.js";

export interface AuthServiceDeps {
  verifier: KeyVerifier;
  now: () => number;
  onDecision?: (rpc: string, code: string) => void;
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
      const { code, key } = await deps.verifier.verify(req.credential, req.clientIp);
      deps.onDecision?.("Authenticate", code);
      const valid = code === "VALID";
      return {
        valid,
        code: codeOf(code),
        // The principal is returned whenever the secret was proven, so callers can say *which* key expired.
        principal: key ? principalFromKey(key, deps.now()) : undefined,
        message: AUTH_MESSAGES[code] ?? "",
        clientResponse: valid ? undefined : clientResponseFor(code, AUTH_MESSAGES[code] ?? ""),
      };
    },
    authorize: notYet("Authorize"),
    consumeQuota: deps.quota ? (req, ctx) => consumeQuota({ ...deps, quota: deps.quota! }, req, ctx) : notYet("ConsumeQuota"),
    issueToken: notYet("IssueToken"),
    rotateKey: notYet("RotateKey"),
  };
}
