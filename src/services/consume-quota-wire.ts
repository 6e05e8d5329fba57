import { PrincipalSchema, type Principal } from "../gen/tollgate/v1/common_pb.js";
import { Code } from "../gen/tollgate/v1/code_pb.js";
import type { QuotaDecision } from "../quota/quota-service.js";
import { encodeMessage } from "../transport/encode.js";
import { decimalLength, WireWriter, wireWriter } from "../transport/wire-writer.js";
import type { RateLimitHeaderParts } from "../quota/headers.js";
import { limitBytesCache, ratelimitFields, remainingFields } from "../quota/header-bytes.js";

/**
 * The wire bytes of an admitted ConsumeQuota answer — the answer a hot key gets on almost every
 * call — written with the shared WireWriter instead of building LimitStatus, Timestamp and
 * Duration messages and encoding them by reflection (~4 µs of a call, measured in-process). It
 * is exactly the message `toProto` builds (test/consume-quota-wire.test.ts decodes both and
 * compares); the principal's bytes come from the frozen principal's cached encoding.
 * Returns undefined for every other answer (denied, replayed, or a shadow limit exceeded), which
 * the generic path encodes. The usual answer of all — one enforced limit, its headers kept as
 * parts (RateLimitHeaderParts) — is written from bytes encoded once per limit (see oneLimit).
 *
 * Field numbers: ConsumeQuotaResponse { allowed = 1; code = 2; limits = 3; headers = 4;
 * principal = 6 }, LimitStatus { name = 1; limit = 2; remaining = 3; reset_at = 4; window = 5;
 * shadow = 8 }, Timestamp and Duration { seconds = 1; nanos = 2 }.
 */
export function encodeAdmitted(d: QuotaDecision, principal: Principal): Uint8Array | undefined {
  if (!d.allowed || d.replayed) return undefined;
  const parts = d.headerParts;
  const cached = parts ? oneLimitBytes(parts) : undefined;
  if (cached) return oneLimit(parts!, cached, principal);
  for (const l of d.limits) if (l.exceeded) return undefined;
  const w = wireWriter.start().bool(1, true).uint(2, Code.OK);
  for (const l of d.limits) {
    const status = w.begin(3);
    w.string(1, l.name).uint(2, l.limit).uint(3, l.remaining);
    if (l.resetAtMs !== null) {
      const at = w.begin(4);
      secondsAndNanos(w, l.resetAtMs);
      w.end(at);
    }
    const window = w.begin(5);
    secondsAndNanos(w, l.windowSeconds * 1000);
    w.end(window).bool(8, l.shadow).end(status);
  }
  for (const name in d.headers) {
    const entry = w.begin(4);
    w.string(1, name).string(2, d.headers[name]!).end(entry);
  }
  return w.bytesField(6, encodeMessage(PrincipalSchema, principal)).finish();
}

/** A Timestamp or Duration of `ms` ≥ 0, split as protobuf-es's timestampFromMs / durationFromMs split it. */
function secondsAndNanos(w: WireWriter, ms: number): void {
  const seconds = Math.floor(ms / 1000);
  w.uint(1, seconds).uint(2, (ms - seconds * 1000) * 1_000_000);
}

/**
 * Per limit (see limitBytesCache): the LimitStatus fields that do not change from call to call,
 * and the `ratelimit-policy` and `x-ratelimit-limit` map entries.
 */
const oneLimitBytes = limitBytesCache(
  (fixed) => ({
    /** LimitStatus name = 1, limit = 2. */
    head: new WireWriter(256).string(1, fixed.name).uint(2, fixed.capacity).copy(0),
    /** LimitStatus window = 5 (shadow is false: a shadow limit has no header parts). */
    window: windowField(fixed.windowSeconds),
    /** The policy and limit header entries (ConsumeQuotaResponse.headers = 4). */
    constantHeaders: Buffer.concat([headerEntry("ratelimit-policy", fixed.policy), headerEntry("x-ratelimit-limit", fixed.limit)]),
  }),
  (value) => headerEntry("x-ratelimit-reset", value),
);
type OneLimitBytes = NonNullable<ReturnType<typeof oneLimitBytes>>;

function windowField(windowSeconds: number): Buffer {
  const w = new WireWriter(64);
  const window = w.begin(5);
  secondsAndNanos(w, windowSeconds * 1000);
  return w.end(window).copy(0);
}

function headerEntry(name: string, value: string): Buffer {
  const w = new WireWriter(256);
  const entry = w.begin(4);
  return w.string(1, name).string(2, value).end(entry).copy(0);
}

/** The admitted answer of one enforced limit: cached bytes, plus the remaining count and the reset instant written per call. */
function oneLimit(p: RateLimitHeaderParts, c: OneLimitBytes, principal: Principal): Uint8Array {
  const { remaining, resetSeconds } = p;
  const w = wireWriter.start().bool(1, true).uint(2, Code.OK);
  const status = w.begin(3);
  w.raw(c.head).uint(3, remaining);
  const at = w.begin(4);
  secondsAndNanos(w, p.resetAtMs);
  w.end(at).raw(c.window).end(status).raw(c.constantHeaders);
  const remainingLength = decimalLength(remaining);
  const resetLength = decimalLength(resetSeconds);
  let entry = w.begin(4);
  ratelimitFields(w, c, remaining, remainingLength, resetSeconds, resetLength);
  w.end(entry);
  entry = w.begin(4);
  remainingFields(w, remaining, remainingLength);
  w.end(entry);
  return w.raw(c.reset).bytesField(6, encodeMessage(PrincipalSchema, principal)).finish();
}
