/**
 * The domain calls the Envoy adapters need, as small plain interfaces. The adapters know nothing
 * of how a key is verified, a policy evaluated or a counter charged; the composition root
 * (`app.ts`) connects these ports to the real Authenticate, Authorize and ConsumeQuota domain code.
 * Every call answers a "no" as a value; it throws a `TollgateError` only when it cannot answer
 * (a broken dependency → `unavailable`), which the transport turns into gRPC UNAVAILABLE. A warm
 * answer may come synchronously (see MaybePromise), so a Check of a warm key waits on nothing.
 */
import type { KeyRecord } from "../domain/key.js";
import type { MaybePromise } from "../domain/maybe-promise.js";
import type { Code } from "../gen/tollgate/v1/code_pb.js";
import type { Verification } from "../keys/verifier.js";
import type { TokenVerification } from "../tokens/token-verifier.js";
import type { RateLimitHeaderParts } from "../quota/headers.js";

/** A decision code name from the public vocabulary (`INVALID_API_KEY`, `RATE_LIMITED`, ...). */
export type DecisionCode = keyof typeof Code;

/** Verifies a raw credential (a bare key or `Bearer <key>`) for a client address ("" = unknown). */
export type Authenticate = (credential: string, clientIp: string) => MaybePromise<Verification>;

/** Verifies an access token (the bare JWT) issued by IssueToken, as Authenticate does. */
export type AuthenticateToken = (token: string, clientIp: string) => MaybePromise<TokenVerification>;

/** One Authorize question about a key that Authenticate has just proven. */
export interface AuthorizeInput {
  key: KeyRecord;
  /** A permission query such as `chat:write AND (files:read OR admin)`; "" = no permission needed. */
  permissionQuery: string;
  /** The resource the action applies to; "" when the route does not name one. */
  resource: string;
  /** The tenant the request targets; equal to `key.tenantId` unless the route reads it from a header. */
  tenantId: string;
  clientIp: string;
  /** When the credential is an access token: its scopes. The key's policy is narrowed to them. */
  scopes?: readonly string[] | undefined;
}

/** Authorize's answer. `code` is `ALLOWED` when allowed, else the reason (`INSUFFICIENT_PERMISSIONS`, ...). */
export interface AuthorizeOutcome {
  allowed: boolean;
  code: DecisionCode;
  missingPermissions: string[];
  /** A sentence safe to show the end client. */
  message: string;
}

/** Evaluates permission query, tenant isolation and deny lists for a proven key. */
export type Authorize = (input: AuthorizeInput) => MaybePromise<AuthorizeOutcome>;

/** One ConsumeQuota charge. All named limits are charged together or not at all. */
export interface ConsumeInput {
  keyId: string;
  /** The key row when the caller has it already (ext_authz); absent for the rate-limit service. */
  key?: KeyRecord;
  /** Limit names to charge; empty = the key's auto-applied limits. */
  limits: string[];
  /** Units to charge; 0 = check without consuming. */
  cost: number;
  clientIp: string;
}

/** The state of one named limit after a charge (or a refused charge). */
export interface LimitState {
  name: string;
  /** Requests (or cost units) per window. */
  limit: number;
  remaining: number;
  /** When the window resets (or the bucket is full again), epoch milliseconds. */
  resetAtMs: number;
  /** The window length (a token bucket: the time to refill `limit` tokens). */
  windowMs: number;
  /** How long until the refused charge could succeed; 0 when not exceeded. */
  retryAfterMs: number;
  exceeded: boolean;
  /** A shadow limit is reported but never refuses. */
  shadow?: boolean;
}

/** ConsumeQuota's answer. `code` is `OK` when allowed, else `RATE_LIMITED` / `QUOTA_EXCEEDED` / `BUDGET_EXCEEDED`. */
export interface ConsumeOutcome {
  allowed: boolean;
  code: DecisionCode;
  /** Every limit that matched, in a stable order; empty when none applies (or the key is unknown). */
  limits: LimitState[];
  /** Headers for the end client: `RateLimit-Policy`, `RateLimit`, `X-RateLimit-*`, `Retry-After`. */
  headers: Record<string, string>;
  /** True when every name in `headers` is lower-case already (the quota service's are); else they are lower-cased. */
  lowerCaseNames?: boolean;
  /** The same headers as parts, when the quota service gave them (an admitted charge of one limit): written without building `headers`. */
  headerParts?: RateLimitHeaderParts | undefined;
  message: string;
}

/** Charges a key's limits. */
export type Consume = (input: ConsumeInput) => MaybePromise<ConsumeOutcome>;
