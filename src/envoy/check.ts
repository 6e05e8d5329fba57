import { TollgateError } from "../domain/errors.js";
import type { KeyRecord } from "../domain/key.js";
import { MAX_CREDENTIAL_LENGTH, unwrapCredential } from "../keys/format.js";
import { looksLikeJwt } from "../tokens/claims.js";
import type { TokenVerification } from "../tokens/token-verifier.js";
import { tokenMessage, tokenScopes } from "../services/issue-token.js";
import { AUTH_MESSAGES } from "../services/convert.js";
import { TENANT_ID_PATTERN } from "../services/validate.js";
import type { HttpRequestView } from "./check-request.js";
import { findCredential, locationsFor, type CredentialLocations, type FoundCredential } from "./credentials.js";
import { isPromise, type MaybePromise } from "../domain/maybe-promise.js";
import type { Verification } from "../keys/verifier.js";
import type { Authenticate, AuthenticateToken, Authorize, AuthorizeOutcome, Consume, ConsumeOutcome, DecisionCode } from "./ports.js";
import { quotaHeaders } from "./quota-headers.js";
import { RateLimitHeaderParts } from "../quota/headers.js";
import type { RouteSettings } from "./route-settings.js";

/** The domain calls one Check makes. `authorize` and `consume` are optional only until they are wired. */
export interface CheckDeps {
  authenticate: Authenticate;
  /** Access tokens (IssueToken's JWTs); without it a JWT is answered as a malformed API key. */
  authenticateToken?: AuthenticateToken | undefined;
  authorize?: Authorize | undefined;
  consume?: Consume | undefined;
}

/** Let the request through, changed as described. */
export interface CheckAllow {
  allowed: true;
  code: "VALID";
  key: KeyRecord;
  /** Credential headers and query parameters to remove before the request goes upstream. */
  strip: CredentialLocations;
  /** Rate-limit headers for the end client's response (as parts when the quota step gave them; see `headerRecord`). */
  responseHeaders: Readonly<Record<string, string>> | RateLimitHeaderParts;
  /** When the credential was an access token: its scopes that the key still grants (what the upstream is told). */
  tokenScopes?: readonly string[] | undefined;
}

/** An allowed decision's response headers as a record. */
export function headerRecord(headers: CheckAllow["responseHeaders"]): Readonly<Record<string, string>> {
  return headers instanceof RateLimitHeaderParts ? headers.toRecord() : headers;
}

/** Refuse the request; the adapter turns `code` into 401 / 403 / 429. */
export interface CheckDeny {
  allowed: false;
  code: DecisionCode;
  message: string;
  /** The key, when its secret was proven (for dynamic metadata and logs). */
  key?: KeyRecord | undefined;
  /** Extra headers for the end client (rate-limit headers, `retry-after`). */
  headers: Record<string, string>;
}

/** What one Check decided: a value, never an exception, whatever the answer. */
export type CheckDecision = CheckAllow | CheckDeny;

const deny = (code: DecisionCode, message: string, key?: KeyRecord, headers: Record<string, string> = {}): CheckDeny => ({ allowed: false, code, message, key, headers });

/**
 * One ext_authz decision: find the credential → Authenticate → Authorize (when the route asks for
 * a permission, resource or tenant) → ConsumeQuota (unless the route says `limits: none`). The
 * first "no" ends it, so a request refused by policy is never charged. Throws only when a domain
 * call cannot answer (UNAVAILABLE) or the route needs a step this server cannot perform.
 */
export function decide(view: HttpRequestView, route: RouteSettings, deps: CheckDeps): MaybePromise<CheckDecision> {
  const found = findCredential(view, route.credentialSources);
  if (!found) return deny("MISSING_CREDENTIAL", AUTH_MESSAGES.MISSING_CREDENTIAL!);
  if (found.value.length > MAX_CREDENTIAL_LENGTH) return deny("MALFORMED_CREDENTIAL", AUTH_MESSAGES.MALFORMED_CREDENTIAL!);
  // An API key has no dot; a JWT has two (the cheap test first, so a key's Check pays nothing more).
  if (deps.authenticateToken && found.value.includes(".")) {
    const token = unwrapCredential(found.value);
    if (looksLikeJwt(token)) {
      const verifying = deps.authenticateToken(token, view.clientIp);
      return isPromise(verifying) ? verifying.then((t) => tokenAuthenticated(view, route, deps, found, t)) : tokenAuthenticated(view, route, deps, found, verifying);
    }
  }
  const verification = deps.authenticate(found.value, view.clientIp);
  return isPromise(verification) ? verification.then((v) => authenticated(view, route, deps, found, v)) : authenticated(view, route, deps, found, verification);
}

/**
 * An access token stands for its key narrowed to its scopes, as Authenticate's principal does:
 * Authorize sees the key's policy with only the grants the token's scopes cover, the quota is
 * the key's, and the upstream is told the scopes the key still grants.
 */
function tokenAuthenticated(view: HttpRequestView, route: RouteSettings, deps: CheckDeps, found: FoundCredential, t: TokenVerification): MaybePromise<CheckDecision> {
  const { key, claims } = t;
  if (t.code !== "VALID" || !key || !claims) {
    const code = t.code === "VALID" ? "INVALID_ACCESS_TOKEN" : t.code;
    return deny(code, tokenMessage(code), key);
  }
  return authorizedThenCharged(view, route, deps, found, key, tokenScopes(key, claims));
}

// The steps after the first, each run at once when the one before answered synchronously (a warm
// key: the whole decision then completes without a promise, and without a closure per step).

function authenticated(view: HttpRequestView, route: RouteSettings, deps: CheckDeps, found: FoundCredential, verification: Verification): MaybePromise<CheckDecision> {
  const key = verification.key;
  if (verification.code !== "VALID" || !key) {
    return deny(verification.code === "VALID" ? "INVALID_API_KEY" : verification.code, AUTH_MESSAGES[verification.code] ?? "", key);
  }
  return authorizedThenCharged(view, route, deps, found, key, undefined);
}

/** Authorize, then charge unless refused; an access token (`token`) is authorized by its scopes and tells the upstream those its key still grants. */
function authorizedThenCharged(view: HttpRequestView, route: RouteSettings, deps: CheckDeps, found: FoundCredential, key: KeyRecord, token: { scopes: string[]; granted: string[] } | undefined): MaybePromise<CheckDecision> {
  const refused = authorizeStep(view, route, key, deps, token?.scopes);
  if (isPromise(refused)) return refused.then((r) => r ?? chargeStep(view, route, deps, found, key, token?.granted));
  return refused ?? chargeStep(view, route, deps, found, key, token?.granted);
}

function chargeStep(view: HttpRequestView, route: RouteSettings, deps: CheckDeps, found: FoundCredential, key: KeyRecord, tokenScopes?: readonly string[]): MaybePromise<CheckDecision> {
  if (route.limits === undefined || (!deps.consume && route.limits.length === 0)) return allow(route, found, key, {}, tokenScopes);
  if (!deps.consume) throw notWired("QUOTA_NOT_AVAILABLE", "the route names `limits` but this server has no quota service wired");
  const outcome = deps.consume({ keyId: key.keyId, key, limits: route.limits, cost: route.cost, clientIp: view.clientIp });
  return isPromise(outcome) ? outcome.then((o) => charged(route, found, key, o, tokenScopes)) : charged(route, found, key, outcome, tokenScopes);
}

function charged(route: RouteSettings, found: FoundCredential, key: KeyRecord, o: ConsumeOutcome, tokenScopes: readonly string[] | undefined): CheckDecision {
  if (o.allowed && o.headerParts) return allow(route, found, key, o.headerParts, tokenScopes);
  const responseHeaders = quotaHeaders(o);
  return o.allowed ? allow(route, found, key, responseHeaders, tokenScopes) : deny(o.code, o.message, key, responseHeaders);
}

const NOTHING_TO_STRIP: CredentialLocations = Object.freeze({ headers: Object.freeze([]), queryParameters: Object.freeze([]) });

function allow(route: RouteSettings, found: FoundCredential, key: KeyRecord, responseHeaders: CheckAllow["responseHeaders"], tokenScopes: readonly string[] | undefined): CheckAllow {
  const strip = route.stripCredentials ? locationsFor(route.credentialSources, found.present) : NOTHING_TO_STRIP;
  return tokenScopes ? { allowed: true, code: "VALID", key, strip, responseHeaders, tokenScopes } : { allowed: true, code: "VALID", key, strip, responseHeaders };
}

function authorizeStep(view: HttpRequestView, route: RouteSettings, key: KeyRecord, deps: CheckDeps, scopes: readonly string[] | undefined): MaybePromise<CheckDeny | undefined> {
  let tenantId = key.tenantId;
  if (route.tenantHeader !== "") {
    const requested = view.headers.get(route.tenantHeader)?.trim() ?? "";
    if (requested !== "" && !TENANT_ID_PATTERN.test(requested)) return deny("TENANT_FORBIDDEN", "the requested tenant is not a valid tenant id", key);
    if (requested !== "") tenantId = requested;
  }
  if (route.permission === "" && route.resource === "" && route.tenantHeader === "") return undefined;
  if (!deps.authorize) {
    if (route.permission === "" && route.resource === "" && tenantId === key.tenantId) return undefined;
    throw notWired("AUTHORIZE_NOT_AVAILABLE", "the route needs a permission, resource or tenant check but this server has no Authorize wired");
  }
  const refusal = (outcome: AuthorizeOutcome) => (outcome.allowed ? undefined : deny(outcome.code, outcome.message, key));
  const authorizing = deps.authorize({ key, permissionQuery: route.permission, resource: route.resource, tenantId, clientIp: view.clientIp, scopes });
  return isPromise(authorizing) ? authorizing.then(refusal) : refusal(authorizing);
}

function notWired(reason: string, message: string): TollgateError {
  return new TollgateError("failed_precondition", reason, message);
}
