import type { CheckRequest } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { isIP } from "node:net";
import { parseIp } from "../keys/ip.js";
import type { CredentialCarrier, HeaderLookup } from "./credentials.js";

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
  /**
   * When read from the wire: `headers` looked up without decoding them all, present when they
   * are not empty and every name is lower-case (as Envoy sends them).
   */
  headerLookup?: HeaderLookup | undefined;
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
  return new RequestView(parts, xffTrustedHops);
}

/** The view of some parts; the route's extensions are read only when asked for (see route-settings.ts). */
class RequestView implements HttpRequestView {
  readonly path: string;
  readonly headers: HeaderLookup;
  readonly clientIp: string;
  readonly extensionsKey: string | undefined;
  readonly #parts: CheckRequestParts;

  constructor(parts: CheckRequestParts, xffTrustedHops: number) {
    this.#parts = parts;
    const headers = parts.headerLookup ?? headerMapOf(parts);
    this.headers = headers;
    this.path = parts.path || headers.get(":path") || "";
    this.clientIp = clientIpOf(parts.socketAddress, xffTrustedHops > 0 ? headers.get("x-forwarded-for") : undefined, xffTrustedHops);
    this.extensionsKey = parts.contextExtensionsKey;
  }

  get extensions(): Readonly<Record<string, string>> {
    return this.#parts.contextExtensions;
  }
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
