import type { ServiceImpl } from "@connectrpc/connect";
import type { Authorization } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import type { CredentialSource } from "./credentials.js";
import { readCheckRequest } from "./check-request.js";
import { checkResponseFor } from "./check-response.js";
import { decide, type CheckDeps } from "./check.js";
import { readRouteSettings } from "./route-settings.js";

/** What the ext_authz service needs: the domain calls, and the server-wide request settings. */
export interface AuthorizationServiceDeps extends CheckDeps {
  /** Where credentials are looked for, in order, unless a route overrides it. */
  credentialSources: readonly CredentialSource[];
  /** Trusted `x-forwarded-for` hops; 0 = use the socket address Envoy reports. */
  xffTrustedHops: number;
  onDecision?(rpc: string, code: string): void;
}

/**
 * `envoy.service.auth.v3.Authorization/Check` for Envoy's ext_authz filter: decode the request,
 * one domain decision, encode it the way Envoy reads it. A denial is an OK RPC; an RPC error means
 * the decision could not be made (bad route settings → INVALID_ARGUMENT, a broken dependency or
 * the deadline in `grpc-timeout` → UNAVAILABLE), so Envoy applies its `status_on_error`.
 */
export function createAuthorizationService(deps: AuthorizationServiceDeps): ServiceImpl<typeof Authorization> {
  return {
    async check(req) {
      const view = readCheckRequest(req, deps.xffTrustedHops);
      const route = readRouteSettings(view.extensions, deps.credentialSources);
      const decision = await decide(view, route, deps);
      deps.onDecision?.("Check", decision.code);
      return checkResponseFor(decision);
    },
  };
}
