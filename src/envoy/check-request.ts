import type { CheckRequest } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { isIP } from "node:net";
import { parseIp } from "../keys/ip.js";
import { namesAreLowerCase, type CredentialCarrier, type HeaderLookup } from "./credentials.js";

/**
 * The parts of an Envoy `CheckRequest` that Tollgate decides on, read defensively: Envoy's HTTP
 * filter always sends `attributes.request.http`, but the network filter (or a hand-written caller)
 * may not, and every field may be empty. Nothing here throws; a missing part reads as empty.
 */
export interface HttpRequestView extends CredentialCarrier {
  /** The end client's address, or "" when it cannot be known (pipe, garbage, missing). */
  clientIp: string;
  /** Per-route settings from `check_settings.context_extensions`. */
  extensions: Readonly<Record<string, string>>;
  /** See CheckRequestParts.contextExtensionsKey. */
  extensionsKey?: string;
}

/**
 * The fields of a CheckRequest a decision reads, exactly as decoded (no interpretation yet). Two
 * readers produce it: from a decoded message (`partsOf`, for the connect listener and tests) and
 * straight from the wire (`scanCheckRequest` in check-wire.ts, the grpc-js hot path). Both end in
 * `viewOf`, so the two can only differ in decoding, which a differential test pins down.
 */
export interface CheckRequestParts {
  /** `http.headers` as decoded (a later duplicate key wins). */
  headers: Readonly<Record<string, string>>;
  /** `http.header_map.headers` in wire order (Envoy's `encode_raw_headers`). */
  headerMap: readonly { key: string; value: string; rawValue: Uint8Array }[];
  /** `http.path`. */
  path: string;
  /** `source.address.socket_address.address`, "" when the address is not a socket address. */
  socketAddress: string;
  contextExtensions: Readonly<Record<string, string>>;
  /** When read from the wire: a string that is equal exactly when the encoded extensions are (see check-wire.ts). */
  contextExtensionsKey?: string;
}

const utf8 = new TextDecoder("utf-8", { fatal: false });
const NO_ENTRIES: CheckRequestParts["headerMap"] = [];

/** The parts of a decoded CheckRequest. */
export function partsOf(req: CheckRequest): CheckRequestParts {
  const attributes = req.attributes;
  const http = attributes?.request?.http;
  const address = attributes?.source?.address?.address;
  return {
    headers: http?.headers ?? {},
    headerMap: http?.headerMap?.headers ?? NO_ENTRIES,
    path: http?.path ?? "",
    socketAddress: address?.case === "socketAddress" ? address.value.address : "",
    contextExtensions: attributes?.contextExtensions ?? {},
  };
}

/** Builds the request view of a decoded CheckRequest (see `viewOf`). */
export function readCheckRequest(req: CheckRequest, xffTrustedHops: number): HttpRequestView {
  return viewOf(partsOf(req), xffTrustedHops);
}

/**
 * Builds the request view. Headers come from `http.headers` (lower-case names, duplicates merged
 * by Envoy), or from `http.header_map` when Envoy runs with `encode_raw_headers` (names are
 * lower-cased and duplicates joined with "," here, as Envoy would). The target comes from
 * `http.path`, falling back to the `:path` pseudo-header.
 */
export function viewOf(parts: CheckRequestParts, xffTrustedHops: number): HttpRequestView {
  const headers = lookupOf(parts.headers) ?? headerMapOf(parts);
  return {
    path: parts.path || headers.get(":path") || "",
    headers,
    clientIp: clientIpOf(parts.socketAddress, headers.get("x-forwarded-for"), xffTrustedHops),
    extensions: parts.contextExtensions,
    extensionsKey: parts.contextExtensionsKey,
  };
}

function headerMapOf(parts: CheckRequestParts): Map<string, string> {
  const headers = new Map<string, string>();
  for (const name in parts.headers) headers.set(name.toLowerCase(), parts.headers[name]!);
  if (headers.size > 0) return headers;
  for (const h of parts.headerMap) {
    const name = h.key.toLowerCase();
    const value = h.value !== "" ? h.value : utf8.decode(h.rawValue);
    const prior = headers.get(name);
    headers.set(name, prior === undefined ? value : `${prior},${value}`);
  }
  return headers;
}

/**
 * The headers as they are, without a copy, when that is safe: a record without a prototype (the
 * wire reader's), non-empty, whose names are all lower-case already (as Envoy sends them).
 */
function lookupOf(record: Readonly<Record<string, string>>): HeaderLookup | undefined {
  if (Object.getPrototypeOf(record) !== null || !namesAreLowerCase(record)) return undefined;
  for (const _name in record) return new RecordHeaders(record); // not empty
  return undefined;
}

class RecordHeaders implements HeaderLookup {
  constructor(private readonly record: Readonly<Record<string, string>>) {}
  get(name: string): string | undefined {
    return this.record[name];
  }
  has(name: string): boolean {
    return this.record[name] !== undefined;
  }
  *[Symbol.iterator](): Iterator<[string, string]> {
    for (const name in this.record) yield [name, this.record[name]!];
  }
}

/**
 * The end client's address. With `trustedHops = 0` it is the downstream socket address Envoy
 * reports (which Envoy itself already derives from XFF when its `xff_num_trusted_hops` is set —
 * the preferred setup). With `trustedHops = N` it is the N-th address from the right of
 * `x-forwarded-for` as Envoy forwards it (Envoy with `use_remote_address: true` appends the
 * downstream address, so N = 1 is that address and N = 2 the client seen by one trusted proxy in
 * front). A header with fewer than N entries did not pass every trusted hop: the socket address
 * is used, as Envoy does. An unparsable address yields "" (unknown), which an IP allowlist refuses.
 */
export function clientIpOf(socketAddress: string, forwardedFor: string | undefined, trustedHops: number): string {
  if (trustedHops > 0 && forwardedFor) {
    const hops = forwardedFor.split(",");
    if (hops.length >= trustedHops) return validIp(hops[hops.length - trustedHops]!.trim());
  }
  return validIp(socketAddress);
}

function validIp(text: string): string {
  if (text === "" || text.length > 64) return "";
  // Node's native check settles the common forms cheaply; ipaddr.js (parseIp) judges the rest as everywhere else.
  return isIP(text) !== 0 || parseIp(text) ? text : "";
}
