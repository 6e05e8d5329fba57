import type { LimitOutcome } from "./lease-engine.js";

/**
 * The response headers of a quota answer, lower-case (HTTP/2 and Envoy want lower-case names):
 *  - `ratelimit-policy`: every enforced limit, as IETF structured fields (draft-ietf-httpapi-ratelimit-headers):
 *    `"requests";q=100;w=60, "tokens";q=5000;w=3600` (w omitted for a budget without refill);
 *  - `x-ratelimit-limit` / `-remaining` / `-reset` for the limit that binds, reset in Unix seconds;
 *  - `ratelimit`: that same limit, `"requests";r=42;t=17` (r remaining, t seconds to reset);
 *  - `retry-after` (seconds, at least 1) on denial, when waiting can help at all.
 * The binding limit is the one that denied, else the one with the least remaining. Shadow limits
 * are never advertised: they are not enforced. The names that stay the same from call to call come
 * first (a hot key's policy and limit), then those that change; HTTP gives the order no meaning.
 */
export function quotaHeaders(outcomes: readonly LimitOutcome[], allowed: boolean, nowMs: number): Record<string, string> {
  const enforced = anyShadow(outcomes) ? outcomes.filter((o) => !o.def.shadow) : outcomes;
  if (enforced.length === 0) return {};
  const binding = enforced.length === 1 ? enforced[0]! : bindingLimit(enforced);
  const fixed = fixedParts(binding);
  const policy = enforced.length === 1 ? fixed.policy : enforced.map((o) => fixedParts(o).policy).join(", ");
  const headers = headerRecord(policy, fixed, binding.remaining, binding.resetAtMs, nowMs);
  if (!allowed && Number.isFinite(binding.retryAfterMs)) headers["retry-after"] = String(Math.max(1, Math.ceil(binding.retryAfterMs / 1000)));
  return headers;
}

function headerRecord(policy: string, fixed: FixedParts, remainingCount: number, resetAtMs: number, nowMs: number): Record<string, string> {
  const remaining = String(remainingCount);
  if (!Number.isFinite(resetAtMs)) return { "ratelimit-policy": policy, "x-ratelimit-limit": fixed.limit, ratelimit: `${fixed.quotedName};r=${remaining}`, "x-ratelimit-remaining": remaining };
  // One literal per shape, so every answer's record has the same hidden class.
  return {
    "ratelimit-policy": policy,
    "x-ratelimit-limit": fixed.limit,
    ratelimit: `${fixed.quotedName};r=${remaining};t=${resetSecondsAt(resetAtMs, nowMs)}`,
    "x-ratelimit-remaining": remaining,
    "x-ratelimit-reset": fixed.resetAt(resetAtMs),
  };
}

const resetSecondsAt = (resetAtMs: number, nowMs: number) => Math.max(0, Math.ceil((resetAtMs - nowMs) / 1000));

/**
 * The headers of the usual admitted answer — one enforced limit that resets — kept as numbers
 * and the limit's fixed parts instead of strings: Envoy's Check writes them to the wire without
 * building the record (check-wire-response.ts), and `toRecord()` gives exactly what
 * `quotaHeaders` gives for the same charge.
 */
export class RateLimitHeaderParts {
  readonly resetSeconds: number;

  constructor(
    readonly fixed: FixedParts,
    readonly remaining: number,
    readonly resetAtMs: number,
    private readonly nowMs: number,
  ) {
    this.resetSeconds = resetSecondsAt(resetAtMs, nowMs);
  }

  toRecord(): Record<string, string> {
    return headerRecord(this.fixed.policy, this.fixed, this.remaining, this.resetAtMs, this.nowMs);
  }
}

/** The parts of an admitted charge's headers when they take the usual shape (see RateLimitHeaderParts), else undefined. */
export function quotaHeaderParts(outcomes: readonly LimitOutcome[], allowed: boolean, nowMs: number): RateLimitHeaderParts | undefined {
  if (!allowed || outcomes.length !== 1) return undefined;
  const o = outcomes[0]!;
  if (o.def.shadow || !Number.isFinite(o.resetAtMs)) return undefined;
  return new RateLimitHeaderParts(fixedParts(o), o.remaining, o.resetAtMs, nowMs);
}

function anyShadow(outcomes: readonly LimitOutcome[]): boolean {
  for (const o of outcomes) if (o.def.shadow) return true;
  return false;
}

/** Header parts that change only with a limit's capacity and window: a hot key sends the same ones on every call. */
export interface FixedParts {
  capacity: number;
  windowSeconds: number;
  /** The limit's name, and the same in double quotes (a structured-field string). */
  name: string;
  quotedName: string;
  /** This limit's `RateLimit-Policy` item. */
  policy: string;
  limit: string;
  resetAt(resetAtMs: number): string;
}

const fixedByDef = new WeakMap<LimitOutcome["def"], FixedParts>();

function fixedParts(o: LimitOutcome): FixedParts {
  const known = fixedByDef.get(o.def);
  if (known && known.capacity === o.limit && known.windowSeconds === o.windowSeconds) return known;
  const quotedName = `"${o.def.name}"`;
  let lastMs = Number.NaN;
  let lastText = "";
  const parts: FixedParts = {
    capacity: o.limit,
    windowSeconds: o.windowSeconds,
    name: o.def.name,
    quotedName,
    policy: `${quotedName};q=${o.limit}${o.windowSeconds > 0 ? `;w=${o.windowSeconds}` : ""}`,
    limit: String(o.limit),
    resetAt(resetAtMs) {
      // Unix seconds; a window's reset instant is the same for every call in it.
      if (resetAtMs !== lastMs) [lastMs, lastText] = [resetAtMs, String(Math.ceil(resetAtMs / 1000))];
      return lastText;
    },
  };
  fixedByDef.set(o.def, parts);
  return parts;
}

/** The limit an end client should be told about: the first that denied, else the one with the least remaining. */
export function bindingLimit(outcomes: readonly LimitOutcome[]): LimitOutcome {
  const denied = outcomes.find((o) => o.exceeded && !o.def.shadow);
  if (denied) return denied;
  return outcomes.reduce((a, b) => (b.remaining < a.remaining ? b : a));
}
