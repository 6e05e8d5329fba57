import net from "node:net";

/** A TCP proxy in front of PostgreSQL, so that a test can cut the database off mid-run. */
export interface TcpProxy {
  port: number;
  /** A connection string identical to the target URL but going through the proxy. */
  url: string;
  /** Refuses new connections and drops open ones (the database "goes away"). */
  stop(): Promise<void>;
  /** The same as stop(). */
  cut(): Promise<void>;
  close(): Promise<void>;
}

/** Starts a proxy on an ephemeral loopback port forwarding to the host and port of `targetUrl`. */
export async function startTcpProxy(targetUrl: string): Promise<TcpProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
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
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(targetUrl);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      if (!server.listening) return resolve();
      server.close(() => resolve());
    });
  return { port, url: url.toString(), stop, cut: stop, close: stop };
}
