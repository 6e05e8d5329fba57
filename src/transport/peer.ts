import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { parseIp } from "../keys/ip.js";

/** The remote address of the connection a call arrived on ("" when unknown). */
export const peerAddressKey = createContextKey<string>("", { description: "remote address of the caller" });

/**
 * Extracts the address from a grpc-js peer string: `1.2.3.4:5`, `::1:5` or `::ffff:1.2.3.4:5`
 * (grpc-js joins the socket's address and port with a colon, without brackets), or a bare address.
 */
export function addressFromGrpcPeer(peer: string): string {
  if (parseIp(peer)) return peer;
  const cut = peer.lastIndexOf(":");
  const address = cut > 0 ? peer.slice(0, cut).replace(/^\[(.*)\]$/, "$1") : "";
  return parseIp(address) ? address : "";
}

/** The caller's address for IP allowlists on the admin surface, normalised; "" when unknown. */
export function peerAddress(ctx: HandlerContext): string {
  const raw = ctx.values.get(peerAddressKey);
  const ip = raw ? parseIp(raw) : undefined;
  return ip ? ip.toString() : "";
}
