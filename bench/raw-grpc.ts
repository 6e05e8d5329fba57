/**
 * A minimal gRPC load client on bare `node:http2`, for what h2load cannot do: a different request
 * per call (10,000 keys). Requests are framed once up front and sent round-robin; a connect or
 * grpc-js client would spend most of the two cores on itself (~1.5k calls/s measured here).
 * It checks the HTTP status and `grpc-status` of every answer; what the answers say is checked
 * from the server's decision counters, as for h2load.
 */
import http2 from "node:http2";
import { once } from "node:events";
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

/** The HTTP/2 `:path` of a gRPC method: `/package.Service/Method`. */
export const grpcPathOf = (method: { parent: { typeName: string }; name: string }) => `/${method.parent.typeName}/${method.name}`;

/** One gRPC message as a length-prefixed frame (uncompressed). */
export function grpcFrame<D extends DescMessage>(schema: D, message: MessageShape<D>): Buffer {
  const bytes = toBinary(schema, message);
  const frame = Buffer.alloc(5 + bytes.length);
  frame.writeUInt32BE(bytes.length, 1);
  frame.set(bytes, 5);
  return frame;
}

export interface RawLoadOptions {
  port: number;
  /** `/package.Service/Method`. */
  path: string;
  /** Request frames, sent in turn. */
  bodies: readonly Buffer[];
  headers?: Record<string, string>;
  connections: number;
  streamsPerConnection: number;
  durationSec: number;
  /** Stop after this many calls have been sent (a warm-up pass), if the duration has not ended first. */
  maxCalls?: number;
}

export interface RawLoadResult {
  calls: number;
  seconds: number;
  latenciesUs: number[];
  /** Failure descriptions and their counts (HTTP status, grpc-status, stream errors). */
  failures: Map<string, number>;
}

export async function rawGrpcLoad(o: RawLoadOptions): Promise<RawLoadResult> {
  const sessions = await Promise.all(Array.from({ length: o.connections }, async () => {
    const session = http2.connect(`http://127.0.0.1:${o.port}`);
    await once(session, "connect");
    return session;
  }));
  const latenciesUs: number[] = [];
  const failures = new Map<string, number>();
  const fail = (what: string) => failures.set(what, (failures.get(what) ?? 0) + 1);
  const headers = { ":method": "POST", ":path": o.path, "content-type": "application/grpc", te: "trailers", ...o.headers };
  const started = performance.now();
  const deadline = started + o.durationSec * 1000;
  let next = 0;
  let calls = 0;

  const stream = (session: http2.ClientHttp2Session) => new Promise<void>((resolve) => {
    const call = () => {
      if (performance.now() >= deadline || next >= (o.maxCalls ?? Number.POSITIVE_INFINITY)) return resolve();
      const t0 = performance.now();
      let grpcStatus: string | undefined;
      let httpStatus = 0;
      const req = session.request(headers);
      req.on("response", (h) => {
        httpStatus = Number(h[":status"]);
        grpcStatus = h["grpc-status"] as string | undefined; // trailers-only answers
      });
      req.on("trailers", (t) => (grpcStatus = t["grpc-status"] as string | undefined));
      req.on("data", () => {});
      req.on("error", (err) => {
        fail(`stream error: ${err.message}`);
        call();
      });
      req.on("end", () => {
        if (httpStatus !== 200) fail(`HTTP ${httpStatus}`);
        else if (grpcStatus !== "0") fail(`grpc-status ${grpcStatus}`);
        else {
          latenciesUs.push((performance.now() - t0) * 1000);
          calls++;
        }
        call();
      });
      req.end(o.bodies[next++ % o.bodies.length]);
    };
    call();
  });

  await Promise.all(sessions.flatMap((s) => Array.from({ length: o.streamsPerConnection }, () => stream(s))));
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(sessions.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return { calls, seconds, latenciesUs, failures };
}
