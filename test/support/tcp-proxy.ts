import net from "node:net";

/**
 * A TCP proxy in front of PostgreSQL, to take the database away from a server and give it back.
 * `cut("refuse")` closes every connection and refuses new ones (Postgres is down);
 * `cut("blackhole")` closes every connection and accepts new ones that never answer (a network
 * partition); `restore()` forwards again.
 */
export interface TcpProxy {
  port: number;
  cut(mode?: "refuse" | "blackhole"): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<TcpProxy> {
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

  return {
    port,
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
}
