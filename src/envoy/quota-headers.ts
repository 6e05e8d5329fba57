import type { ConsumeOutcome } from "./ports.js";

/** Header names as HTTP/2 and Envoy want them: lower-case. */
export function lowerCaseHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value;
  return out;
}

/**
 * The end-client headers of a quota answer, lower-cased; a refusal always carries `retry-after`
 * (whole seconds, rounded up, at least 1) even if the quota step left it out — unless no wait can
 * help (a spent budget that never refills), where a `retry-after` would only invite retries.
 */
export function quotaHeaders(outcome: ConsumeOutcome): Record<string, string> {
  // The quota service's names are lower-case already: copy only when a port does not say so.
  const headers = outcome.lowerCaseNames ? outcome.headers : lowerCaseHeaders(outcome.headers);
  if (outcome.allowed || headers["retry-after"] !== undefined) return headers;
  const waitMs = Math.max(0, ...outcome.limits.filter((l) => l.exceeded && !l.shadow).map((l) => l.retryAfterMs));
  if (!Number.isFinite(waitMs)) return headers; // a spent budget without refill: waiting does not help
  return { ...headers, "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))) };
}
