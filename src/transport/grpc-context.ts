import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import { addressFromGrpcPeer, peerAddressKey } from "./peer.js";

type Call = grpc.ServerUnaryCall<Buffer, Buffer> | grpc.ServerWritableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>;

/** A handler context plus the adapter's end-of-call hook. */
export interface GrpcHandlerContext extends HandlerContext {
  /** True when the handler set response headers or trailers (else nothing needs converting). */
  readonly touchedResponseHeaders: boolean;
  readonly touchedResponseTrailers: boolean;
  /** Releases everything the call holds: listeners, timers. Call once the answer is sent. */
  finished(): void;
}

/**
 * A `HandlerContext` for a grpc-js call that costs almost nothing unless used. connect's own
 * `createHandlerContext` eagerly builds two AbortControllers, three Headers and a deadline timer,
 * and links every call to the shutdown signal — a listener that stays until the call is aborted.
 * Here headers, values and the signal are created on first access; the signal follows the call's
 * cancellation, its deadline and server shutdown, and `finished()` unlinks it all.
 */
export function createGrpcHandlerContext(call: Call, service: DescService, method: DescMethod, shutdownSignal: AbortSignal | undefined): GrpcHandlerContext {
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  const hasDeadline = Number.isFinite(deadlineMs);
  let requestHeader: Headers | undefined;
  let responseHeader: Headers | undefined;
  let responseTrailer: Headers | undefined;
  let values: ContextValues | undefined;
  let controller: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  const emitter = call as unknown as NodeJS.EventEmitter;

  const abort = (reason: unknown) => controller?.abort(reason);
  const onCancel = () => abort(new ConnectError("the call was cancelled", Code.Canceled));
  const onShutdown = () => abort(new ConnectError("the server is shutting down", Code.Unavailable));

  function signal(): AbortSignal {
    if (controller) return controller.signal;
    controller = new AbortController();
    if (done) return controller.signal;
    emitter.once("cancelled", onCancel);
    shutdownSignal?.addEventListener("abort", onShutdown, { once: true });
    if (hasDeadline) timer = setTimeout(() => abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), Math.max(deadlineMs - Date.now(), 0));
    return controller.signal;
  }

  return {
    service,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: `/${service.typeName}/${method.name}`,
    timeoutMs: () => (hasDeadline ? deadlineMs - Date.now() : undefined),
    get signal() {
      return signal();
    },
    get requestHeader() {
      if (!requestHeader) {
        requestHeader = new Headers();
        for (const [name, value] of Object.entries(call.metadata.getMap())) {
          requestHeader.set(name, typeof value === "string" ? value : Buffer.from(value).toString("base64"));
        }
      }
      return requestHeader;
    },
    get responseHeader() {
      return (responseHeader ??= new Headers());
    },
    get responseTrailer() {
      return (responseTrailer ??= new Headers());
    },
    get values() {
      return (values ??= createContextValues().set(peerAddressKey, addressFromGrpcPeer(call.getPeer())));
    },
    get touchedResponseHeaders() {
      return responseHeader !== undefined;
    },
    get touchedResponseTrailers() {
      return responseTrailer !== undefined;
    },
    finished() {
      done = true;
      if (!controller) return;
      emitter.off("cancelled", onCancel);
      shutdownSignal?.removeEventListener("abort", onShutdown);
      clearTimeout(timer);
    },
  };
}
