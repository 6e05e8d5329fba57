import type { FixedParts, RateLimitHeaderParts } from "./headers.js";
import { isAscii, type WireWriter } from "../transport/wire-writer.js";

/** The bytes every per-limit cache keeps: the start of the `ratelimit` value and the reset header of the last reset instant. */
export interface LimitBytes {
  /** `"<name>";r=`, the start of the `ratelimit` value. */
  ratelimitStart: string;
  resetAtMs: number;
  reset: Buffer;
}

/**
 * A cache of an answer's encoded rate-limit parts per limit (its FixedParts, which fix the name,
 * capacity and window), for the wire writers of Envoy's Check and of ConsumeQuota: `build` encodes
 * what never changes for the limit, `resetBytes` the `x-ratelimit-reset` header of one reset
 * instant (re-encoded when the window moves on). Answers undefined — the caller's general path —
 * when the limit's name is not ASCII (the digits path writes the `ratelimit` value byte by byte) or
 * the remaining count is not a non-negative safe integer.
 */
export function limitBytesCache<T extends object>(build: (fixed: FixedParts) => T, resetBytes: (value: string) => Buffer): (p: RateLimitHeaderParts) => (T & LimitBytes) | undefined {
  const cache = new WeakMap<FixedParts, (T & LimitBytes) | null>();
  return (p) => {
    const { fixed } = p;
    let c = cache.get(fixed);
    if (c === undefined) {
      c = isAscii(fixed.quotedName) ? { ...build(fixed), ratelimitStart: `${fixed.quotedName};r=`, resetAtMs: Number.NaN, reset: Buffer.alloc(0) } : null;
      cache.set(fixed, c);
    }
    if (c === null || !Number.isSafeInteger(p.remaining) || p.remaining < 0) return undefined;
    if (c.resetAtMs !== p.resetAtMs) [c.reset, c.resetAtMs] = [resetBytes(fixed.resetAt(p.resetAtMs)), p.resetAtMs];
    return c;
  };
}

/**
 * The per-call rate-limit headers as (name = 1, value = 2) fields — a HeaderValue's shape and a
 * map entry's alike — written into a message the caller has opened: `ratelimit` with its numbers as
 * digits (`"<name>";r=<remaining>;t=<reset seconds>`), and `x-ratelimit-remaining`. The lengths are
 * the numbers' `decimalLength`s, which the caller computes once for both.
 */
export function ratelimitFields(w: WireWriter, c: LimitBytes, remaining: number, remainingLength: number, resetSeconds: number, resetLength: number): void {
  w.string(1, "ratelimit").tag(2, 2).varint(c.ratelimitStart.length + remainingLength + 3 + resetLength);
  w.ascii(c.ratelimitStart).decimal(remaining, remainingLength).ascii(";t=").decimal(resetSeconds, resetLength);
}

/** `x-ratelimit-remaining` as (name = 1, value = 2) fields, its number as digits (see ratelimitFields). */
export function remainingFields(w: WireWriter, remaining: number, remainingLength: number): void {
  w.string(1, "x-ratelimit-remaining").tag(2, 2).varint(remainingLength).decimal(remaining, remainingLength);
}
