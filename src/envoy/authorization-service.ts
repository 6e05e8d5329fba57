import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { acceptsEncoded } from "../transport/encode.js";
import type { Authorization, CheckRequest } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import type { CredentialSource } from "./credentials.js";
import { partsOf, viewOf } from "./check-request.js";
import { checkResponseFor } from "./check-response.js";
import { scanCheckRequest, WireCheckParts } from "./check-wire.js";
import { encodeCheckResponse } from "./check-wire-response.js";
import { decide, type CheckDecision, type CheckDeps } from "./check.js";
import { isPromise } from "../domain/maybe-promise.js";
import { createRouteSettingsReader } from "./route-settings.js";

/** What the ext_authz service needs: the domain calls, and the server-wide request settings. */
export interface AuthorizationServiceDeps extends CheckDeps {
  /** Where credentials are looked for, in order, unless a route overrides it. */
  credentialSources: readonly CredentialSource[];
  /** Trusted `x-forwarded-for` hops; 0 = use the socket address Envoy reports. */
  xffTrustedHops: number;
  onDecision?(rpc: string, code: string): void;
}

/**
 * The grpc-js listener's decoder for Check: wire bytes → the parts a decision reads (see
 * check-wire.ts); the connect listener passes decoded messages.
 */
export const checkWireDecoders = { check: scanCheckRequest };

/**
 * `envoy.service.auth.v3.Authorization/Check` for Envoy's ext_authz filter: decode the request,
 * one domain decision, encode it the way Envoy reads it. A denial is an OK RPC; an RPC error means
 * the decision could not be made (bad route settings → INVALID_ARGUMENT, a broken dependency or
 * the deadline in `grpc-timeout` → UNAVAILABLE), so Envoy applies its `status_on_error`.
 */
export function createAuthorizationService(deps: AuthorizationServiceDeps): ServiceImpl<typeof Authorization> {
  const routeSettings = createRouteSettingsReader(deps.credentialSources);
  function answer(decision: CheckDecision, ctx: HandlerContext) {
    deps.onDecision?.("Check", decision.code);
    return acceptsEncoded(ctx) ? encodeCheckResponse(decision) : checkResponseFor(decision);
  }
  function check(req: CheckRequest | WireCheckParts, ctx: HandlerContext) {
    const view = viewOf(req instanceof WireCheckParts ? req : partsOf(req), deps.xffTrustedHops);
    const decision = decide(view, routeSettings(view), deps);
    return isPromise(decision) ? decision.then((d) => answer(d, ctx)) : answer(decision, ctx);
  }
  // The wire forms are the grpc-js adapter's contract (mountOnGrpc's `decoders`, encode.ts), invisible in connect's types.
  return { check: check as unknown as ServiceImpl<typeof Authorization>["check"] };
}
