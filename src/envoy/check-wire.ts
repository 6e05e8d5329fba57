import type { CheckRequestParts } from "./check-request.js";
import type { HeaderLookup } from "./credentials.js";
import { isAscii } from "../transport/wire-writer.js";

/**
 * Reads the parts of an Envoy `CheckRequest` that a decision needs straight from its wire bytes,
 * without building the message tree: the hot path of the grpc-js listener, where the generic
 * decoder (`fromBinary`, ~6–8 µs for a typical 220-byte request) was the largest single cost of
 * a Check (measured in-process; see docs/performance.md).
 *
 * It follows protobuf's decoding rules for what it reads: fields in any order, a repeated
 * singular message merges into the earlier one, a later scalar or map key wins, a oneof member
 * replaces another, unknown fields are skipped, strings must be valid UTF-8 (as in `fromBinary`).
 * Sub-messages it does not use (`destination`, `metadata_context`, `tls_session`, `time`, ...)
 * are skipped by their length without looking inside, as a lazy protobuf field is. It is stricter
 * than `fromBinary` on framing: a wrong wire type on a field it reads, or a field running past
 * the end of its message, is an error. Throws on malformed input; the adapter answers
 * INVALID_ARGUMENT, as for any undecodable request.
 *
 * Field numbers are those of envoy/service/auth/v3/{external_auth,attribute_context}.proto and
 * envoy/config/core/v3/{address,base}.proto; test/envoy-wire-codec.test.ts compares this reader
 * with `fromBinary` over generated, merged, truncated and corrupted requests.
 */
export function scanCheckRequest(bytes: Uint8Array): WireCheckParts {
  const s = new WireCheckParts(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const end = s.b.length;
  while (s.p < end) {
    const t = tag(s, end);
    if (t >>> 3 === 1) attributes(s, message(s, t, end)); // CheckRequest.attributes
    else skip(s, t, end);
  }
  return s;
}

/**
 * What the reader found, and the reader's own state while it reads (one object per request).
 * Map entries (`http.headers`, `context_extensions`) are kept as byte ranges of the request and
 * decoded only when read: a Check looks up two or three of Envoy's dozen-odd headers, and its
 * route's extensions are usually answered from the route cache by their key alone. Ranges were
 * checked when read (framing, UTF-8), so decoding cannot fail.
 *
 * It is also the request's `http.headers` lookup (`headerLookup`): a name is compared byte by
 * byte with each entry's key, from the last entry back (a later duplicate wins, as when decoding
 * a map), and only the value found is decoded. Used only when every name is lower-case, as Envoy
 * sends them.
 */
export class WireCheckParts implements CheckRequestParts, HeaderLookup {
  /** The reader's position. */
  p = 0;
  /** `http.headers` entries as ranges: key start, key end, value start, value end. */
  headerSpans: number[] = [];
  /** Whether some header name has an upper-case letter (then the view lower-cases a decoded copy). */
  upperCaseNames = false;
  /** Whether some map entry has bytes beyond ASCII (else every range is latin1-sliced as it is). */
  nonAscii = false;
  headerMapEntries: { key: string; value: string; rawValue: Uint8Array }[] | undefined = undefined;
  path = "";
  /** Which member of `Address.address` was read last (0 = none). */
  addressCase = 0;
  socketAddressRead = "";
  /** `context_extensions` entries as ranges, as `headerSpans`. */
  extensionSpans: number[] = [];
  /** The `context_extensions` entries' wire bytes, one char per byte: equal keys mean equal extensions. */
  contextExtensionsKey = "";
  #headers: Record<string, string> | undefined;
  #extensions: Record<string, string> | undefined;

  constructor(readonly b: Buffer) {}

  get headerMap(): CheckRequestParts["headerMap"] {
    return this.headerMapEntries ?? NO_ENTRIES;
  }

  get socketAddress(): string {
    return this.addressCase === ADDRESS_SOCKET ? this.socketAddressRead : "";
  }

  get headerLookup(): HeaderLookup | undefined {
    return this.headerSpans.length > 0 && !this.upperCaseNames ? this : undefined;
  }

  get headers(): Readonly<Record<string, string>> {
    return (this.#headers ??= recordOf(this.b, this.headerSpans));
  }

  get contextExtensions(): Readonly<Record<string, string>> {
    return (this.#extensions ??= recordOf(this.b, this.extensionSpans));
  }

  get(name: string): string | undefined {
    const i = this.find(name);
    const spans = this.headerSpans;
    if (i >= 0) return this.nonAscii ? text(this.b, spans[i + 2]!, spans[i + 3]!) : latin1(this.b, spans[i + 2]!, spans[i + 3]!);
    // A name with characters beyond ASCII cannot match bytes one to one: compare decoded keys.
    return isAscii(name) ? undefined : this.headers[name];
  }

  has(name: string): boolean {
    return this.find(name) >= 0 || (!isAscii(name) && this.headers[name] !== undefined);
  }

  /** The index in `headerSpans` of the last entry whose key's bytes are the ASCII `name`, else -1. */
  private find(name: string): number {
    const { b, headerSpans: spans } = this;
    const n = name.length;
    for (let i = spans.length - 4; i >= 0; i -= 4) {
      const start = spans[i]!;
      if (spans[i + 1]! - start !== n) continue;
      let j = 0;
      while (j < n && b[start + j] === name.charCodeAt(j)) j++;
      if (j === n) return i;
    }
    return -1;
  }

  *[Symbol.iterator](): Iterator<[string, string]> {
    const record = this.headers;
    for (const name in record) yield [name, record[name]!];
  }
}

type Scan = WireCheckParts;

/** Map entries' ranges (key start, key end, value start, value end; a later key wins) as a record without a prototype. */
function recordOf(b: Buffer, spans: readonly number[]): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  for (let i = 0; i < spans.length; i += 4) out[text(b, spans[i]!, spans[i + 1]!)] = text(b, spans[i + 2]!, spans[i + 3]!);
  return out;
}

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const SGROUP = 3;
const EGROUP = 4;
const I32 = 5;
const ADDRESS_SOCKET = 1;
const MAX_GROUP_DEPTH = 100;
const EMPTY = new Uint8Array(0);
const NO_ENTRIES: CheckRequestParts["headerMap"] = [];
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

function fail(message: string): never {
  throw new Error(`malformed CheckRequest: ${message}`);
}

/** An unsigned varint of at most 32 bits. */
function varint(s: Scan, end: number): number {
  // Tags, lengths and most values here are one byte.
  if (s.p < end && s.b[s.p]! < 0x80) return s.b[s.p++]!;
  let result = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (s.p >= end) fail("truncated varint");
    const byte = s.b[s.p++]!;
    result += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) {
      if (result > 0xffffffff) fail("varint overflows 32 bits");
      return result;
    }
  }
  return fail("varint too long");
}

function tag(s: Scan, end: number): number {
  const t = varint(s, end);
  if (t >>> 3 === 0 || (t & 7) > 5) fail(`illegal tag ${t}`);
  return t;
}

/** The end of a length-delimited field whose length comes next; it must fit in its message. */
function delimitedEnd(s: Scan, end: number): number {
  const length = varint(s, end);
  const fieldEnd = s.p + length;
  if (fieldEnd > end) fail("a field runs past the end of its message");
  return fieldEnd;
}

function skip(s: Scan, t: number, end: number, depth = 0): void {
  switch (t & 7) {
    case VARINT:
      varint64(s, end);
      return;
    case I64:
      s.p += 8;
      break;
    case LEN:
      s.p = delimitedEnd(s, end);
      return;
    case SGROUP:
      if (depth >= MAX_GROUP_DEPTH) fail("groups nested too deep");
      for (;;) {
        const inner = tag(s, end);
        if ((inner & 7) === EGROUP) {
          if (inner >>> 3 !== t >>> 3) fail("mismatched end group");
          return;
        }
        skip(s, inner, end, depth + 1);
      }
    case I32:
      s.p += 4;
      break;
    default:
      fail(`unexpected wire type ${t & 7}`);
  }
  if (s.p > end) fail("truncated field");
}

function varint64(s: Scan, end: number): void {
  for (let i = 0; i < 10; i++) {
    if (s.p >= end) fail("truncated varint");
    if (s.b[s.p++]! < 0x80) return;
  }
  fail("varint too long");
}

/** A string field (after its tag): ASCII is sliced directly, anything else must be valid UTF-8. */
function string(s: Scan, t: number, end: number): string {
  const stop = message(s, t, end);
  const start = s.p;
  s.p = stop;
  return text(s.b, start, stop, true);
}

/** The text of a string's bytes; `check`: refuse invalid UTF-8 (ranges checked once already need not be). */
function text(b: Buffer, start: number, stop: number, check = false): string {
  for (let i = start; i < stop; i++) if (b[i]! >= 0x80) return (check ? strictUtf8 : utf8).decode(b.subarray(start, stop));
  return latin1(b, start, stop);
}

/** A string field's range (after its tag), its bytes checked as `string` would; returns its end. */
function stringRange(s: Scan, t: number, end: number): number {
  const stop = message(s, t, end);
  for (let i = s.p; i < stop; i++) {
    if (s.b[i]! >= 0x80) {
      strictUtf8.decode(s.b.subarray(s.p, stop)); // throws on invalid UTF-8
      s.nonAscii = true;
      break;
    }
  }
  return stop;
}

function hasUpperCase(b: Buffer, start: number, stop: number): boolean {
  for (let i = start; i < stop; i++) if (b[i]! >= 0x41 && b[i]! <= 0x5a) return true;
  return false;
}

/** `toString("latin1", start, end)` without its argument checks (Node's own fast path). */
function latin1(b: Buffer, start: number, end: number): string {
  return (b as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(start, end);
}

/** The end of a length-delimited field (a sub-message, string or bytes) after its tag; any other wire type is refused. */
function message(s: Scan, t: number, end: number): number {
  if ((t & 7) !== LEN) fail(`field ${t >>> 3} must be length-delimited`);
  return delimitedEnd(s, end);
}

/**
 * A `map<string, string>` entry, appended to `into` as ranges (a missing key or value is an empty
 * range; within an entry a later key or value wins).
 */
function entry(s: Scan, t: number, end: number, into: number[]): void {
  const stop = message(s, t, end);
  let keyStart = 0;
  let keyEnd = 0;
  let valueStart = 0;
  let valueEnd = 0;
  while (s.p < stop) {
    const f = tag(s, stop);
    if (f >>> 3 === 1) {
      keyEnd = stringRange(s, f, stop);
      keyStart = s.p;
      s.p = keyEnd;
    } else if (f >>> 3 === 2) {
      valueEnd = stringRange(s, f, stop);
      valueStart = s.p;
      s.p = valueEnd;
    } else skip(s, f, stop);
  }
  into.push(keyStart, keyEnd, valueStart, valueEnd);
}

/** AttributeContext: source = 1, request = 4, context_extensions = 10. */
function attributes(s: Scan, end: number): void {
  while (s.p < end) {
    const at = s.p;
    const t = tag(s, end);
    const field = t >>> 3;
    if (field === 1) peer(s, message(s, t, end));
    else if (field === 4) request(s, message(s, t, end));
    else if (field === 10) {
      entry(s, t, end, s.extensionSpans);
      s.contextExtensionsKey += latin1(s.b, at, s.p);
    } else skip(s, t, end);
  }
}

/** Peer: address = 1. Address: oneof { socket_address = 1; pipe = 2; envoy_internal_address = 3 }. */
function peer(s: Scan, end: number): void {
  while (s.p < end) {
    const t = tag(s, end);
    if (t >>> 3 !== 1) {
      skip(s, t, end);
      continue;
    }
    const addressEnd = message(s, t, end);
    while (s.p < addressEnd) {
      const a = tag(s, addressEnd);
      const member = a >>> 3;
      if (member === ADDRESS_SOCKET) {
        if (s.addressCase !== ADDRESS_SOCKET) s.socketAddressRead = "";
        s.addressCase = ADDRESS_SOCKET;
        socketAddress(s, message(s, a, addressEnd));
      } else if (member === 2 || member === 3) {
        s.p = message(s, a, addressEnd);
        s.addressCase = member;
      } else skip(s, a, addressEnd);
    }
  }
}

/** SocketAddress: address = 2. */
function socketAddress(s: Scan, end: number): void {
  while (s.p < end) {
    const t = tag(s, end);
    if (t >>> 3 === 2) s.socketAddressRead = string(s, t, end);
    else skip(s, t, end);
  }
}

/** AttributeContext.Request: http = 2. */
function request(s: Scan, end: number): void {
  while (s.p < end) {
    const t = tag(s, end);
    if (t >>> 3 === 2) http(s, message(s, t, end));
    else skip(s, t, end);
  }
}

/** AttributeContext.HttpRequest: headers = 3, path = 4, header_map = 13. */
function http(s: Scan, end: number): void {
  while (s.p < end) {
    const t = tag(s, end);
    const field = t >>> 3;
    if (field === 3) {
      entry(s, t, end, s.headerSpans);
      if (!s.upperCaseNames) s.upperCaseNames = hasUpperCase(s.b, s.headerSpans[s.headerSpans.length - 4]!, s.headerSpans[s.headerSpans.length - 3]!);
    }
    else if (field === 4) s.path = string(s, t, end);
    else if (field === 13) headerMap(s, message(s, t, end));
    else skip(s, t, end);
  }
}

/** HeaderMap: repeated HeaderValue headers = 1. HeaderValue: key = 1, value = 2, raw_value = 3. */
function headerMap(s: Scan, end: number): void {
  while (s.p < end) {
    const t = tag(s, end);
    if (t >>> 3 !== 1) {
      skip(s, t, end);
      continue;
    }
    const stop = message(s, t, end);
    const h: { key: string; value: string; rawValue: Uint8Array } = { key: "", value: "", rawValue: EMPTY };
    while (s.p < stop) {
      const f = tag(s, stop);
      const field = f >>> 3;
      if (field === 1) h.key = string(s, f, stop);
      else if (field === 2) h.value = string(s, f, stop);
      else if (field === 3) {
        const rawEnd = message(s, f, stop);
        h.rawValue = s.b.subarray(s.p, rawEnd);
        s.p = rawEnd;
      } else skip(s, f, stop);
    }
    (s.headerMapEntries ??= []).push(h);
  }
}
