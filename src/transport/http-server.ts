import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Duplex } from "node:stream";
import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { peerAddressKey } from "./peer.js";
import { guardDecoding } from "./decode-guard.js";

/** A plain HTTP route served beside the RPCs (health probes, metrics, JWKS, ...). */
export type HttpRoute = (req: RouteRequest, res: RouteResponse) => void | Promise<void>;

/** The parts of a Node request (HTTP/1.1 or HTTP/2) that routes read. */
export interface RouteRequest {
  method?: string | undefined;
  url?: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  socket?: { remoteAddress?: string | undefined } | null;
  [Symbol.asyncIterator](): AsyncIterator<Buffer | string>;
}

/** The parts of a Node response (HTTP/1.1 or HTTP/2) that routes use. */
export interface RouteResponse {
  readonly headersSent: boolean;
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body?: string): unknown;
}

export interface HttpServerOptions {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  services: Array<[DescService, ServiceImpl<any>, ...unknown[]]>;
  /** Exact-path routes: `/healthz` serves GET and HEAD, `POST /oauth/token` only POST; anything else is a JSON 404. */
  routes: Record<string, HttpRoute>;
  shutdownSignal?: AbortSignal;
}

/** The HTTP/2 connection preface starts with this; HTTP/1.1 request lines never do. */
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0");

/**
 * The connect-node listener: the Connect protocol (JSON and binary), gRPC and gRPC-Web, over both
 * HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on one port. Node cannot negotiate the two
 * without TLS, so the first bytes of each connection choose the parser.
 */
export function createHttpServer(options: HttpServerOptions): net.Server {
  const handler = connectNodeAdapter({
    routes(router) {
      for (const [service, impl] of options.services) router.service(service, impl as never);
      // Undecodable binary requests become INVALID_ARGUMENT instead of connect's INTERNAL.
      router.handlers.splice(0, router.handlers.length, ...router.handlers.map(guardDecoding));
    },
    ...(options.shutdownSignal ? { shutdownSignal: options.shutdownSignal } : {}),
    contextValues: (req) => createContextValues().set(peerAddressKey, (req.socket as { remoteAddress?: string } | undefined)?.remoteAddress ?? ""),
    fallback(req, res) {
      const path = (req.url ?? "/").split("?")[0]!;
      // `POST /oauth/token` names one method; a bare path serves GET and HEAD.
      const route = options.routes[`${req.method} ${path}`] ?? (req.method === "GET" || req.method === "HEAD" ? options.routes[path] : undefined);
      if (route) {
        Promise.resolve(route(req as RouteRequest, res as unknown as RouteResponse)).catch(() => {
          if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
          res.end('{"error":"internal error"}');
        });
        return;
      }
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "not found", path: path.slice(0, 200) }));
    },
  });
  const h1 = http.createServer(handler);
  const h2 = http2.createServer({}, handler);
  const server = net.createServer((socket) => {
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2 && seen.length < H2_PREFACE.length) return; // wait for more bytes
      socket.off("data", onData);
      if (isH2) {
        h2.emit("connection", new ReplayingSocket(socket, seen));
      } else {
        socket.pause();
        socket.unshift(seen);
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });
  server.on("close", () => {
    h1.close();
    h2.close();
  });
  (server as net.Server & { closeAllConnections?: () => void }).closeAllConnections = () => {
    h1.closeAllConnections();
  };
  return server;
}

/**
 * A duplex over a socket that first replays the bytes already read. Node's HTTP/2 session reads
 * a real socket through its native handle, which would skip bytes `unshift`ed back into the JS
 * stream; handing it a plain Duplex makes it read through JavaScript, replayed bytes included.
 */
class ReplayingSocket extends Duplex {
  constructor(
    private readonly socket: net.Socket,
    head: Buffer,
  ) {
    super();
    this.push(head);
    socket.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("close", () => this.destroy());
    socket.on("error", (err) => this.destroy(err));
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.socket.write(chunk, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.socket.destroy();
    callback(err);
  }
}
