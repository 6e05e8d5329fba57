import net from "node:net";

/** A TCP proxy in front of a server, which a test can cut to simulate a dependency failure. */
export interface TcpProxy {
  port: number;
  /** Rewrites a URL's host:port to point at the proxy. */
  url(target: string): string;
  /** Drops every connection and refuses new ones. */
  cut(): Promise<void>;
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1:0 forwarding to `host:port`. */
export async function startTcpProxy(host: string, port: number): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => s.destroy());
    }
    client.pipe(upstream).pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const proxyPort = (server.address() as net.AddressInfo).port;
  const close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      if (!server.listening) return resolve();
      server.close(() => resolve());
    });
  return {
    port: proxyPort,
    url(target) {
      const u = new URL(target);
      u.hostname = "127.0.0.1";
      u.port = String(proxyPort);
      return u.toString();
    },
    cut: close,
    close,
  };
}
