import ipaddr from "ipaddr.js";

/** A parsed CIDR block, ready for repeated matching. */
export type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Parses a CIDR (or a bare address, meaning a /32 or /128); undefined when invalid. */
export function parseCidr(text: string): Cidr | undefined {
  try {
    if (!text.includes("/")) {
      const addr = ipaddr.parse(text);
      return [addr, addr.kind() === "ipv4" ? 32 : 128];
    }
    return ipaddr.parseCIDR(text);
  } catch {
    return undefined;
  }
}

/** Parses a client address; IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is treated as the IPv4 address. */
export function parseIp(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (!ipaddr.isValid(text)) return undefined;
  const addr = ipaddr.parse(text);
  return addr.kind() === "ipv6" && (addr as ipaddr.IPv6).isIPv4MappedAddress() ? (addr as ipaddr.IPv6).toIPv4Address() : addr;
}

/** True when the address falls inside any block. Families never match each other. */
export function ipAllowed(ip: ipaddr.IPv4 | ipaddr.IPv6, blocks: readonly Cidr[]): boolean {
  return blocks.some(([range, bits]) => range.kind() === ip.kind() && ip.match(range, bits));
}
