import { create, toBinary } from "@bufbuild/protobuf";
import type { KeyRecord } from "../domain/key.js";
import { CheckResponseSchema, OkHttpResponseSchema } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { HeaderValueOption_HeaderAppendAction as AppendAction } from "../gen/envoy/config/core/v3/base_pb.js";
import { decimalLength, WireWriter, wireWriter } from "../transport/wire-writer.js";
import { checkResponseFor, identityHeaders, metadataOf } from "./check-response.js";
import { headerRecord, type CheckAllow, type CheckDecision } from "./check.js";
import { RateLimitHeaderParts } from "../quota/headers.js";
import { limitBytesCache, ratelimitFields, remainingFields } from "../quota/header-bytes.js";
import type { CredentialLocations } from "./credentials.js";

/**
 * Encodes a Check decision to CheckResponse wire bytes: the same message `checkResponseFor`
 * builds (test/envoy-wire-codec.test.ts decodes both and compares), made faster for the case
 * that repeats — an allowed request of a known key. Generic encoding of that ~500-byte answer
 * cost ~15 µs a call; here the parts that depend only on the key (status, identity headers,
 * dynamic metadata) are encoded once per key record, joined with the credential headers to strip
 * and a limit's constant rate-limit headers into one run of bytes, and the parts that change per
 * call (the remaining count, the seconds to reset) are written as digits with the shared
 * WireWriter. Denials, and allows of access tokens, take the generic path: they are rarer and vary more.
 *
 * Field numbers: CheckResponse { status = 1; ok_response = 3; dynamic_metadata = 4 },
 * OkHttpResponse { headers = 2; headers_to_remove = 5; response_headers_to_add = 6;
 * query_parameters_to_remove = 8 }, HeaderValueOption { header = 1; append_action = 3;
 * keep_empty_value = 4 }, HeaderValue { key = 1; value = 2 }.
 */
export function encodeCheckResponse(decision: CheckDecision): Uint8Array {
  // An access token's allow names the token's scopes, not the key's: not the per-key bytes.
  return decision.allowed && decision.tokenScopes === undefined ? encodeAllow(decision) : toBinary(CheckResponseSchema, checkResponseFor(decision));
}

interface KeyParts {
  /** `status` (code 0) and `dynamic_metadata`, as CheckResponse fields. */
  head: Uint8Array;
  /** The identity headers, as OkHttpResponse fields. */
  identity: Uint8Array;
  /**
   * Per set of credential locations: the identity headers, the strip fields and the constant
   * rate-limit headers of the last limit answered with, as one run of OkHttpResponse fields.
   */
  okStarts: Map<CredentialLocations, { constant: Buffer | undefined; bytes: Buffer }>;
}

/** Key records are replaced (not changed) when a key changes, so the parts live exactly as long as the record. */
const partsByKey = new WeakMap<KeyRecord, KeyParts>();

function keyParts(key: KeyRecord): KeyParts {
  let parts = partsByKey.get(key);
  if (!parts) {
    parts = {
      head: toBinary(CheckResponseSchema, create(CheckResponseSchema, { status: { code: 0 }, dynamicMetadata: metadataOf(key, "VALID") })),
      identity: toBinary(OkHttpResponseSchema, create(OkHttpResponseSchema, { headers: identityHeaders(key) })),
      okStarts: new Map(),
    };
    partsByKey.set(key, parts);
  }
  return parts;
}

/** The encoded `headers_to_remove` and `query_parameters_to_remove` of each (shared, frozen) set of credential locations. */
const stripBytes = new WeakMap<CredentialLocations, Buffer>();

function stripFields(strip: CredentialLocations): Buffer {
  let bytes = stripBytes.get(strip);
  if (!bytes) {
    const w = new WireWriter(256);
    for (const name of strip.headers) w.string(5, name); // headers_to_remove
    for (const name of strip.queryParameters) w.string(8, name); // query_parameters_to_remove
    stripBytes.set(strip, (bytes = w.copy(0)));
  }
  return bytes;
}

/**
 * The last value each response header name was written with, and once it repeats, its encoded
 * `response_headers_to_add` field: most rate-limit headers of a hot key (the policy, the limit,
 * the reset instant) are the same string on every call, while `remaining` changes each time.
 */
interface HeaderMemo {
  value: string;
  bytes: Buffer | undefined;
}
const headerMemo = new Map<string, HeaderMemo>();
/** Names remembered at most; the quota service writes six. */
const MAX_MEMO_NAMES = 64;

function encodeAllow(d: CheckAllow): Uint8Array {
  const key = keyParts(d.key);
  const parts = d.responseHeaders;
  const quota = parts instanceof RateLimitHeaderParts ? quotaBytesFor(parts) : undefined;
  const w = wireWriter.start().raw(key.head);
  const ok = w.begin(3); // ok_response
  w.raw(okStart(key, d.strip, quota?.constant));
  if (quota) writeQuotaHeaders(w, parts as RateLimitHeaderParts, quota);
  else writeHeaderRecord(w, headerRecord(parts));
  return w.end(ok).finish();
}

/** Most sets of credential locations remembered per key (a route's sources decide them; routes are few). */
const MAX_OK_STARTS = 16;

/** The identity headers, the strip fields and the constant rate-limit headers, as one run of bytes (see KeyParts). */
function okStart(key: KeyParts, strip: CredentialLocations, constant: Buffer | undefined): Buffer {
  const known = key.okStarts.get(strip);
  if (known && known.constant === constant) return known.bytes;
  const runs = [key.identity];
  if (strip.headers.length > 0 || strip.queryParameters.length > 0) runs.push(stripFields(strip));
  if (constant) runs.push(constant);
  const bytes = Buffer.concat(runs);
  if (key.okStarts.size >= MAX_OK_STARTS && !known) key.okStarts.clear();
  key.okStarts.set(strip, { constant, bytes });
  return bytes;
}

/** Ends a `response_headers_to_add` entry opened as `w.begin(6)` (HeaderValueOption), then `w.begin(1)` (HeaderValue): append action and keep_empty_value as overwrite() sets them. */
function endHeaderOption(w: WireWriter, option: number, header: number): void {
  w.end(header).uint(3, AppendAction.OVERWRITE_IF_EXISTS_OR_ADD).bool(4, true).end(option);
}

/** Writes one `response_headers_to_add` entry. */
function writeHeaderOption(w: WireWriter, name: string, value: string): void {
  const option = w.begin(6);
  const header = w.begin(1);
  w.string(1, name).string(2, value);
  endHeaderOption(w, option, header);
}

/** The encoded `response_headers_to_add` entry of one header, as a buffer of its own (kept for reuse). */
function headerOption(name: string, value: string): Buffer {
  const w = new WireWriter(256);
  writeHeaderOption(w, name, value);
  return w.copy(0);
}

/** Per limit: the policy and limit headers encoded as one run (see limitBytesCache for the rest). */
const quotaBytesFor = limitBytesCache(
  (fixed) => ({ constant: Buffer.concat([headerOption("ratelimit-policy", fixed.policy), headerOption("x-ratelimit-limit", fixed.limit)]) }),
  (value) => headerOption("x-ratelimit-reset", value),
);
type QuotaHeaderBytes = NonNullable<ReturnType<typeof quotaBytesFor>>;

/**
 * Writes the rate-limit headers of an admitted charge that follow the constant ones (which
 * `okStart` wrote: policy, limit), in the order of the record `p.toRecord()`: `ratelimit` and
 * `x-ratelimit-remaining` with their numbers written as digits, then the reset header as bytes
 * encoded once per reset instant.
 */
function writeQuotaHeaders(w: WireWriter, p: RateLimitHeaderParts, c: QuotaHeaderBytes): void {
  const { remaining, resetSeconds } = p;
  const remainingLength = decimalLength(remaining);
  const resetLength = decimalLength(resetSeconds);
  let option = w.begin(6);
  let header = w.begin(1);
  ratelimitFields(w, c, remaining, remainingLength, resetSeconds, resetLength);
  endHeaderOption(w, option, header);
  option = w.begin(6);
  header = w.begin(1);
  remainingFields(w, remaining, remainingLength);
  endHeaderOption(w, option, header);
  w.raw(c.reset);
}

/** Writes a header record's entries, reusing an entry's encoding while its value repeats (see HeaderMemo). */
function writeHeaderRecord(w: WireWriter, added: Readonly<Record<string, string>>): void {
  for (const name in added) {
    const value = added[name]!;
    const memo = headerMemo.get(name);
    if (memo?.bytes !== undefined && memo.value === value) {
      w.raw(memo.bytes);
      continue;
    }
    const start = w.length;
    writeHeaderOption(w, name, value);
    if (memo === undefined) {
      if (headerMemo.size < MAX_MEMO_NAMES) headerMemo.set(name, { value, bytes: undefined });
    } else if (memo.value === value) memo.bytes = w.copy(start);
    else [memo.value, memo.bytes] = [value, undefined];
  }
}
