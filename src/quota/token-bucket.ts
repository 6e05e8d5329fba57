/**
 * Token-bucket maths (rate + burst), pure and clock-free: every function takes the instant it
 * reasons about. A bucket holds at most `burst` tokens and gains `refill` tokens every
 * `periodMs`, continuously (fractions accumulate). The same formula runs inside the lease
 * statement in PostgreSQL (see quota-repo.ts); this copy computes what the answers report.
 */
export interface BucketShape {
  burst: number;
  refill: number;
  periodMs: number;
}

/** A bucket's level at an instant. */
export interface BucketState {
  tokens: number;
  atMs: number;
}

/** Tokens per millisecond. */
export function ratePerMs(shape: BucketShape): number {
  return shape.refill / shape.periodMs;
}

/** The level at `nowMs`: the level at `state.atMs` plus the refill since, capped at `burst`. A clock going backwards adds nothing. */
export function levelAt(shape: BucketShape, state: BucketState, nowMs: number): number {
  const elapsed = Math.max(0, nowMs - state.atMs);
  return Math.min(shape.burst, state.tokens + elapsed * ratePerMs(shape));
}

/** Takes `cost` tokens if the bucket holds them at `nowMs`; otherwise takes nothing. */
export function take(shape: BucketShape, state: BucketState, nowMs: number, cost: number): { ok: boolean; state: BucketState } {
  const level = levelAt(shape, state, nowMs);
  if (level + 1e-9 < cost) return { ok: false, state: { tokens: level, atMs: nowMs } };
  return { ok: true, state: { tokens: Math.max(0, level - cost), atMs: nowMs } };
}

/** Milliseconds until the bucket holds `cost` tokens (0 if it already does; Infinity if cost > burst). */
export function msUntil(shape: BucketShape, level: number, cost: number): number {
  if (cost > shape.burst) return Number.POSITIVE_INFINITY;
  if (level >= cost) return 0;
  return Math.ceil((cost - level) / ratePerMs(shape));
}

/** Milliseconds until the bucket is full again (the "reset" of a rate limit). */
export function msUntilFull(shape: BucketShape, level: number): number {
  return level >= shape.burst ? 0 : Math.ceil((shape.burst - level) / ratePerMs(shape));
}
