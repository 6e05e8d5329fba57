import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { parseIp } from "../keys/ip.js";

/** The remote address of the connection a call arrived on ("" when unknown). */
export const peerAddressKey = createContextKey<string>("", { description: "remote address of the caller" });

/** Extracts the address from a grpc-js peer string (`ipv4:1.2.3.4:5`, `ipv6:[::1]:5`). */
export function addressFromGrpcPeer(peer: string): string {
  const m = /^ipv4:([^:]+):\d+$/.exec(peer) ?? /^ipv6:\[([^\]]+)\]:\d+$/.exec(peer);
  return m?.[1] ?? "";
}

/** The caller's address for IP allowlists on the admin surface, normalised; "" when unknown. */
export function peerAddress(ctx: HandlerContext): string {
  const raw = ctx.values.get(peerAddressKey);
  const ip = raw ? parseIp(raw) : undefined;
  return ip ? ip.toString() : "";
}
