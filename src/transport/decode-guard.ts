import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { invalidArgument } from "../domain/errors.js";
import { toConnectError } from "./errors.js";

/** Largest unary request body the guard buffers; larger ones go to connect, which enforces its own limit. */
const MAX_GUARDED_BYTES = 4 * 1024 * 1024;

type Protocol = "connect" | "grpc" | "grpc-web";

/** The protocol of a binary unary request, or undefined when the guard should not look at it. */
function binaryProtocol(req: UniversalServerRequest): Protocol | undefined {
  const type = (req.header.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  // Compressed bodies are left to connect: it decompresses (with its own limits) before parsing.
  if (type === "application/proto") return req.header.get("content-encoding") ? undefined : "connect";
  if (type === "application/grpc" || type === "application/grpc+proto") return "grpc";
  if (type === "application/grpc-web" || type === "application/grpc-web+proto") return "grpc-web";
  return undefined;
}

/** The message bytes of a body: the whole body (Connect), or the payload of its one uncompressed frame (gRPC). */
function messageBytes(protocol: Protocol, body: Uint8Array): Uint8Array | undefined {
  if (protocol === "connect") return body;
  if (body.length < 5 || (body[0]! & 1) === 1) return undefined; // short (connect reports it) or compressed
  const length = new DataView(body.buffer, body.byteOffset).getUint32(1);
  return body.length === 5 + length ? body.subarray(5) : undefined;
}

function invalidResponse(protocol: Protocol, message: string): UniversalServerResponse {
  const error = toConnectError(invalidArgument("request", `the request message could not be decoded: ${message}`));
  if (protocol === "connect") {
    const body = errorToJsonBytes(error, {});
    return { status: codeToHttpStatus(error.code), header: new Headers({ "content-type": "application/json" }), body: (async function* () { yield body; })() };
  }
  const header = new Headers({ "content-type": `application/${protocol}+proto` });
  // gRPC-Web reads a "trailers-only" status from the headers; gRPC clients need real HTTP/2 trailers.
  if (protocol === "grpc-web") return { status: 200, header: setTrailerStatus(header, error) };
  return { status: 200, header, body: (async function* () {})(), trailer: setTrailerStatus(new Headers(), error) };
}

async function readAll(body: AsyncIterable<Uint8Array>): Promise<Uint8Array | undefined> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    chunks.push(chunk);
    if (size > MAX_GUARDED_BYTES) return undefined;
  }
  return Buffer.concat(chunks);
}

/**
 * Wraps a unary connect handler so that a binary request that does not decode (invalid UTF-8 in
 * a string, a truncated field) is answered INVALID_ARGUMENT in the caller's protocol. connect-es
 * parses before any interceptor runs and reports such bodies as INTERNAL, which would tell the
 * client the server is broken when the request is. Streaming methods and JSON are passed through.
 */
export function guardDecoding(handler: UniversalHandler): UniversalHandler {
  if (handler.method.methodKind !== "unary") return handler;
  const schema: DescMessage = handler.method.input;
  const guarded = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => {
    const protocol = binaryProtocol(req);
    if (!protocol || typeof req.body !== "object" || !(Symbol.asyncIterator in (req.body as object))) return handler(req);
    const chunks = (req.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    const bytes = await readAll({ [Symbol.asyncIterator]: () => chunks });
    if (bytes === undefined) {
      // Too large to inspect: hand connect the rest, which enforces its own read limit.
      return handler({ ...req, body: { [Symbol.asyncIterator]: () => chunks } });
    }
    const message = messageBytes(protocol, bytes);
    if (message) {
      try {
        fromBinary(schema, message);
      } catch (err) {
        return invalidResponse(protocol, err instanceof Error ? err.message : String(err));
      }
    }
    return handler({ ...req, body: (async function* () { yield bytes; })() });
  };
  return Object.assign(guarded, handler);
}
