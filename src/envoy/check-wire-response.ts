import { create, toBinary } from "@bufbuild/protobuf";
import type { KeyRecord } from "../domain/key.js";
import { CheckResponseSchema, OkHttpResponseSchema } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { HeaderValueOption_HeaderAppendAction as AppendAction } from "../gen/envoy/config/core/v3/base_pb.js";
import { WireWriter, wireWriter } from "../transport/wire-writer.js";
import { checkResponseFor, identityHeaders, metadataOf } from "./check-response.js";
import type { CheckAllow, CheckDecision } from "./check.js";
import type { CredentialLocations } from "./credentials.js";

/**
 * Encodes a Check decision to CheckResponse wire bytes: the same message `checkResponseFor`
 * builds (test/envoy-wire-codec.test.ts decodes both and compares), made faster for the case
 * that repeats — an allowed request of a known key. Generic encoding of that ~500-byte answer
 * cost ~15 µs a call; here the parts that depend only on the key (status, identity headers,
 * dynamic metadata) are encoded once per key record and the per-request parts (credential
 * headers to strip, rate-limit headers) are written around them with the shared WireWriter.
 * Denials take the generic path: they are rarer and vary more.
 *
 * Field numbers: CheckResponse { status = 1; ok_response = 3; dynamic_metadata = 4 },
 * OkHttpResponse { headers = 2; headers_to_remove = 5; response_headers_to_add = 6;
 * query_parameters_to_remove = 8 }, HeaderValueOption { header = 1; append_action = 3;
 * keep_empty_value = 4 }, HeaderValue { key = 1; value = 2 }.
 */
export function encodeCheckResponse(decision: CheckDecision): Uint8Array {
  return decision.allowed ? encodeAllow(decision) : toBinary(CheckResponseSchema, checkResponseFor(decision));
}

interface KeyParts {
  /** `status` (code 0) and `dynamic_metadata`, as CheckResponse fields. */
  head: Uint8Array;
  /** The identity headers, as OkHttpResponse fields. */
  identity: Uint8Array;
}

/** Key records are replaced (not changed) when a key changes, so the parts live exactly as long as the record. */
const partsByKey = new WeakMap<KeyRecord, KeyParts>();

function keyParts(key: KeyRecord): KeyParts {
  let parts = partsByKey.get(key);
  if (!parts) {
    parts = {
      head: toBinary(CheckResponseSchema, create(CheckResponseSchema, { status: { code: 0 }, dynamicMetadata: metadataOf(key, "VALID") })),
      identity: toBinary(OkHttpResponseSchema, create(OkHttpResponseSchema, { headers: identityHeaders(key) })),
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
  const { head, identity } = keyParts(d.key);
  const w = wireWriter.start().raw(head);
  const ok = w.begin(3); // ok_response
  w.raw(identity);
  if (d.strip.headers.length > 0 || d.strip.queryParameters.length > 0) w.raw(stripFields(d.strip));
  const added = d.responseHeaders;
  for (const name in added) {
    const value = added[name]!;
    const memo = headerMemo.get(name);
    if (memo?.bytes !== undefined && memo.value === value) {
      w.raw(memo.bytes);
      continue;
    }
    const start = w.length;
    const option = w.begin(6); // response_headers_to_add: HeaderValueOption
    const header = w.begin(1); // header: HeaderValue
    w.string(1, name).string(2, value).end(header);
    w.uint(3, AppendAction.OVERWRITE_IF_EXISTS_OR_ADD).bool(4, true).end(option); // as overwrite() sets them
    if (memo === undefined) {
      if (headerMemo.size < MAX_MEMO_NAMES) headerMemo.set(name, { value, bytes: undefined });
    } else if (memo.value === value) memo.bytes = w.copy(start);
    else [memo.value, memo.bytes] = [value, undefined];
  }
  return w.end(ok).finish();
}
