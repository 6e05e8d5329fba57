import type { CheckRequest } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { parseIp } from "../keys/ip.js";
import type { CredentialCarrier } from "./credentials.js";

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
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

/**
 * Builds the request view. Headers come from `http.headers` (lower-case names, duplicates merged
 * by Envoy), or from `http.header_map` when Envoy runs with `encode_raw_headers` (names are
 * lower-cased and duplicates joined with "," here, as Envoy would). The target comes from
 * `http.path`, falling back to the `:path` pseudo-header.
 */
export function readCheckRequest(req: CheckRequest, xffTrustedHops: number): HttpRequestView {
  const attributes = req.attributes;
  const http = attributes?.request?.http;
  const headers = new Map<string, string>();
  for (const [name, value] of Object.entries(http?.headers ?? {})) headers.set(name.toLowerCase(), value);
  if (headers.size === 0 && http?.headerMap) {
    for (const h of http.headerMap.headers) {
      const name = h.key.toLowerCase();
      const value = h.value !== "" ? h.value : utf8.decode(h.rawValue);
      const prior = headers.get(name);
      headers.set(name, prior === undefined ? value : `${prior},${value}`);
    }
  }
  const socket = attributes?.source?.address?.address.case === "socketAddress" ? attributes.source.address.address.value.address : "";
  return {
    path: http?.path || headers.get(":path") || "",
    headers,
    clientIp: clientIpOf(socket, headers.get("x-forwarded-for"), xffTrustedHops),
    extensions: attributes?.contextExtensions ?? {},
  };
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
  return parseIp(text) ? text : "";
}
