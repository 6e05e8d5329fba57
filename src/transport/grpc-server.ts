import { create, fromBinary, toBinary, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import type { Readable } from "node:stream";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";
import { toConnectError } from "./errors.js";
import { encodeMessage } from "./encode.js";
import { createGrpcHandlerContext, toMetadata, type GrpcHandlerContext } from "./grpc-context.js";

type AnyImpl = (input: unknown, ctx: HandlerContext) => unknown;
type AnyCall = grpc.ServerUnaryCall<Buffer, Buffer> | grpc.ServerWritableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>;

const passthrough = (b: Buffer) => b;

/** Per-method request decoders (by method local name) that replace the generic `fromBinary`. */
export type WireDecoders = Readonly<Record<string, (bytes: Uint8Array) => unknown>>;

/**
 * Mounts a connect `ServiceImpl` on a `@grpc/grpc-js` server, so each service is written once
 * and served by both the fast grpc-js listener and connect-node. Messages are (de)serialized here
 * with the generated schema; an undecodable request is INVALID_ARGUMENT (grpc-js would say INTERNAL);
 * errors carry `grpc-status-details-bin` (google.rpc.Status with the same details connect sends).
 *
 * A hot method may bring its own wire decoder (`decoders`): its handler then receives what that
 * decoder returns, and may answer with encoded bytes (a Uint8Array), which are sent unchanged.
 */
export function mountOnGrpc<S extends DescService>(server: grpc.Server, service: S, impl: ServiceImpl<S>, shutdownSignal?: AbortSignal, decoders: WireDecoders = {}): void {
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  const impls = impl as unknown as Record<string, AnyImpl>;
  for (const method of service.methods) {
    const fn = impls[method.localName];
    if (!fn) continue;
    const clientStreams = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
    const serverStreams = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: clientStreams,
      responseStream: serverStreams,
      requestSerialize: passthrough,
      requestDeserialize: passthrough,
      responseSerialize: passthrough,
      responseDeserialize: passthrough,
      originalName: method.localName,
    };
    const schema = method.input;
    const decodeRequest = decoders[method.localName] ?? ((bytes: Uint8Array) => fromBinary(schema, bytes));
    const bind = { service, method, fn, shutdownSignal, decode: decodeRequest };
    handlers[method.localName] = method.methodKind === "unary" ? unaryHandler(bind) : method.methodKind === "client_streaming" ? clientStreamingUnsupported : streamHandler(bind);
  }
  server.addService(definition as grpc.ServiceDefinition, handlers);
}

interface Bound {
  service: DescService;
  method: DescMethod;
  fn: AnyImpl;
  shutdownSignal: AbortSignal | undefined;
  decode: (bytes: Uint8Array) => unknown;
}

function contextFor(call: AnyCall, { service, method, shutdownSignal }: Bound): GrpcHandlerContext {
  return createGrpcHandlerContext(call, service, method, shutdownSignal);
}

function decode(decoder: (bytes: Uint8Array) => unknown, bytes: Buffer): unknown {
  try {
    return decoder(bytes);
  } catch {
    throw new ConnectError("the request message could not be decoded", Code.InvalidArgument);
  }
}

/** The grpc-js form of an error: code, message, and google.rpc.Status in `grpc-status-details-bin`. */
function serviceError(err: unknown, ctx: HandlerContext): Partial<grpc.StatusObject> {
  const ce = toConnectError(err);
  const metadata = toMetadata(ctx.responseTrailer);
  const details = ce.details.map((d) => ("desc" in d ? anyPack(d.desc, create(d.desc, d.value)) : { $typeName: "google.protobuf.Any" as const, typeUrl: `type.googleapis.com/${d.type}`, value: d.value }));
  if (details.length > 0) {
    metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, create(StatusSchema, { code: ce.code, message: ce.rawMessage, details }))));
  }
  return { code: ce.code as number as grpc.status, details: ce.rawMessage, metadata };
}

function unaryHandler(bound: Bound): grpc.handleUnaryCall<Buffer, Buffer> {
  return (call, callback) => {
    const ctx = contextFor(call, bound);
    let out: unknown;
    try {
      out = bound.fn(decode(bound.decode, call.request), ctx);
    } catch (err) {
      failUnary(err, ctx, callback);
      return;
    }
    // A synchronous answer (a warm Check) is sent at once: no promise, no microtask hop.
    if (!isThenable(out)) sendUnary(out, bound, call, ctx, callback);
    else out.then((res) => sendUnary(res, bound, call, ctx, callback), (err: unknown) => failUnary(err, ctx, callback));
  };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

function sendUnary(res: unknown, bound: Bound, call: grpc.ServerUnaryCall<Buffer, Buffer>, ctx: GrpcHandlerContext, callback: grpc.sendUnaryData<Buffer>): void {
  let bytes: Buffer;
  try {
    bytes = encodeMessage(bound.method.output, res);
  } catch (err) {
    failUnary(err, ctx, callback);
    return;
  }
  ctx.finished();
  if (ctx.touchedResponseHeaders) call.sendMetadata(ctx.responseMetadata());
  callback(null, bytes, ctx.touchedResponseTrailers ? toMetadata(ctx.responseTrailer) : undefined);
}

function failUnary(err: unknown, ctx: GrpcHandlerContext, callback: grpc.sendUnaryData<Buffer>): void {
  ctx.finished();
  callback(serviceError(err, ctx));
}

/**
 * Decodes a client stream. The iterator must not destroy the call when the client half-closes:
 * a Duplex destroyed at the end of its readable side never sends its status, and the client
 * (buf curl's reflection stream, say) waits forever.
 */
async function* decodeStream(call: grpc.ServerDuplexStream<Buffer, Buffer>, decoder: (bytes: Uint8Array) => unknown): AsyncIterable<unknown> {
  for await (const chunk of (call as unknown as Readable).iterator({ destroyOnReturn: false })) yield decode(decoder, chunk as Buffer);
}

function streamHandler(bound: Bound) {
  return (call: grpc.ServerWritableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>) => {
    const ctx = contextFor(call, bound);
    const input = bound.method.methodKind === "bidi_streaming" ? decodeStream(call as grpc.ServerDuplexStream<Buffer, Buffer>, bound.decode) : decode(bound.decode, (call as grpc.ServerWritableStream<Buffer, Buffer>).request);
    (async () => {
      let headersSent = false;
      for await (const res of bound.fn(input, ctx) as AsyncIterable<unknown>) {
        if (call.cancelled) return;
        if (!headersSent) {
          call.sendMetadata(ctx.responseMetadata());
          headersSent = true;
        }
        if (!call.write(encodeMessage(bound.method.output, res))) await new Promise((resolve) => call.once("drain", resolve));
      }
      call.end(toMetadata(ctx.responseTrailer));
    })()
      .catch((err: unknown) => {
        if (!call.cancelled) call.emit("error", serviceError(err, ctx));
      })
      .finally(() => ctx.finished());
  };
}

const clientStreamingUnsupported: grpc.handleClientStreamingCall<Buffer, Buffer> = (_call, callback) => {
  callback({ code: grpc.status.UNIMPLEMENTED, details: "client streaming is not served on this listener" });
};
