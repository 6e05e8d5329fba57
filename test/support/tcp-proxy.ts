import net from "node:net";

/**
 * A TCP proxy in front of PostgreSQL, to take the database away from a server and give it back.
 * `cut("refuse")` closes every connection and refuses new ones (Postgres is down);
 * `cut("blackhole")` closes every connection and accepts new ones that never answer (a network
 * partition); `restore()` forwards again.
 */
export interface TcpProxy {
  port: number;
  /** When started with a connection string: the same string, pointing at the proxy. */
  url: string;
  cut(mode?: "refuse" | "blackhole"): Promise<void>;
  /** The same as cut("refuse"). */
  stop(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

/** Starts a proxy on a free loopback port, in front of a connection string's host and port, or a port. */
export async function startTcpProxy(target: string | number, host = "127.0.0.1"): Promise<TcpProxy> {
  const targetUrl = typeof target === "string" ? new URL(target) : undefined;
  const targetPort = targetUrl ? Number(targetUrl.port || 5432) : (target as number);
  const targetHost = targetUrl ? targetUrl.hostname : host;
  let mode: "forward" | "refuse" | "blackhole" = "forward";
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("error", () => s.destroy());
    s.once("close", () => sockets.delete(s));
  };
  const onConnection = (client: net.Socket) => {
    track(client);
    if (mode !== "forward") return; // blackhole: hold the connection, say nothing
    const upstream = net.connect(targetPort, targetHost);
    track(upstream);
    client.pipe(upstream).pipe(client);
    client.once("close", () => upstream.destroy());
    upstream.once("close", () => client.destroy());
  };
  let server = net.createServer(onConnection);
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port));
    });
  const port = await listen(0);
  const stopListening = () => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  const dropAll = () => {
    for (const s of sockets) s.destroy();
  };

  const proxied = targetUrl ? new URL(targetUrl) : undefined;
  if (proxied) {
    proxied.hostname = "127.0.0.1";
    proxied.port = String(port);
  }
  const proxy: TcpProxy = {
    port,
    url: proxied?.toString() ?? "",
    stop: () => proxy.cut("refuse"),
    async cut(how = "refuse") {
      mode = how;
      dropAll();
      if (how === "refuse") await stopListening();
    },
    async restore() {
      mode = "forward";
      dropAll(); // blackholed connections would otherwise hang until their own timeouts
      if (!server.listening) {
        server = net.createServer(onConnection);
        await listen(port);
      }
    },
    async close() {
      dropAll();
      await stopListening();
    },
  };
  return proxy;
}
