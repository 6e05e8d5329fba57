import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { ACCEPTS_ENCODED } from "./encode.js";
import { QUICK_HEADERS, type QuickHeaders } from "./quick-headers.js";
import { addressFromGrpcPeer, peerAddressKey } from "./peer.js";

type Call = grpc.ServerUnaryCall<Buffer, Buffer> | grpc.ServerWritableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>;

/** A handler context plus the adapter's end-of-call hook. */
export interface GrpcHandlerContext extends HandlerContext {
  /** True when the handler set response headers or trailers (else nothing needs converting). */
  readonly touchedResponseHeaders: boolean;
  readonly touchedResponseTrailers: boolean;
  /** The response headers as grpc-js metadata (call when `touchedResponseHeaders`). */
  responseMetadata(): grpc.Metadata;
  /** Releases everything the call holds: listeners, timers. Call once the answer is sent. */
  finished(): void;
}

/** Headers as grpc-js metadata (response headers and trailers). */
export function toMetadata(headers: Headers): grpc.Metadata {
  const metadata = new grpc.Metadata();
  headers.forEach((value, name) => metadata.set(name, value));
  return metadata;
}

/** grpc-js metadata as headers: names as they are (grpc-js lower-cases them), binary values in base64, repeated values joined with ", ". */
function headerValue(values: grpc.MetadataValue[]): string | null {
  if (values.length === 0) return null;
  const text = (v: grpc.MetadataValue) => (typeof v === "string" ? v : Buffer.from(v).toString("base64"));
  return values.length === 1 ? text(values[0]!) : values.map(text).join(", ");
}

/**
 * A `HandlerContext` for a grpc-js call that costs almost nothing unless used. connect's own
 * `createHandlerContext` eagerly builds two AbortControllers, three Headers and a deadline timer,
 * and links every call to the shutdown signal — a listener that stays until the call is aborted.
 * Here headers, values and the signal are created on first access; the signal follows the call's
 * cancellation, its deadline and server shutdown, and `finished()` unlinks it all. A class, so
 * that a call allocates one object and no closures.
 */
class GrpcContext implements GrpcHandlerContext, QuickHeaders {
  readonly protocolName = "grpc";
  readonly [QUICK_HEADERS] = this;
  /** The adapter sends a handler's Uint8Array answer as it is (see encode.ts). */
  readonly [ACCEPTS_ENCODED] = true;
  readonly requestMethod = "POST";
  private readonly deadlineMs: number;
  private requestHeaders: Headers | undefined;
  private responseHeaders: Headers | undefined;
  /** Response headers set through `setResponseHeader` before `responseHeader` was first read: name, value, name, value, ... */
  private pendingResponseHeaders: string[] | undefined;
  private responseTrailers: Headers | undefined;
  private contextValues: ContextValues | undefined;
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private done = false;
  /** The listeners that must be removed again; created with the signal, never for calls that do not use it. */
  private onCancel: (() => void) | undefined;
  private onShutdown: (() => void) | undefined;

  constructor(
    private readonly call: Call,
    readonly service: DescService,
    readonly method: DescMethod,
    private readonly shutdownSignal: AbortSignal | undefined,
  ) {
    const deadline = call.getDeadline();
    this.deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  }

  get url(): string {
    return `/${this.service.typeName}/${this.method.name}`;
  }

  timeoutMs(): number | undefined {
    return Number.isFinite(this.deadlineMs) ? this.deadlineMs - Date.now() : undefined;
  }

  get signal(): AbortSignal {
    if (this.controller) return this.controller.signal;
    const controller = (this.controller = new AbortController());
    if (this.done) return controller.signal;
    this.onCancel = () => controller.abort(new ConnectError("the call was cancelled", Code.Canceled));
    this.onShutdown = () => controller.abort(new ConnectError("the server is shutting down", Code.Unavailable));
    (this.call as unknown as NodeJS.EventEmitter).once("cancelled", this.onCancel);
    this.shutdownSignal?.addEventListener("abort", this.onShutdown, { once: true });
    if (Number.isFinite(this.deadlineMs)) {
      const timeout = () => controller.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
      this.timer = setTimeout(timeout, Math.max(this.deadlineMs - Date.now(), 0));
    }
    return controller.signal;
  }

  get requestHeader(): Headers {
    if (!this.requestHeaders) {
      const headers = new Headers();
      const metadata = this.call.metadata;
      for (const name of Object.keys(metadata.getMap())) headers.set(name, headerValue(metadata.get(name))!);
      this.requestHeaders = headers;
    }
    return this.requestHeaders;
  }

  requestHeaderValue(name: string): string | null {
    return this.requestHeaders ? this.requestHeaders.get(name) : headerValue(this.call.metadata.get(name));
  }

  get responseHeader(): Headers {
    if (!this.responseHeaders) {
      const headers = new Headers();
      const pending = this.pendingResponseHeaders;
      if (pending) for (let i = 0; i < pending.length; i += 2) headers.set(pending[i]!, pending[i + 1]!);
      this.pendingResponseHeaders = undefined;
      this.responseHeaders = headers;
    }
    return this.responseHeaders;
  }

  setResponseHeader(name: string, value: string): void {
    if (this.responseHeaders) this.responseHeaders.set(name, value);
    else (this.pendingResponseHeaders ??= []).push(name, value);
  }

  responseMetadata(): grpc.Metadata {
    const pending = this.pendingResponseHeaders;
    if (!pending) return toMetadata(this.responseHeader);
    const metadata = new grpc.Metadata();
    for (let i = 0; i < pending.length; i += 2) metadata.set(pending[i]!, pending[i + 1]!);
    return metadata;
  }

  get responseTrailer(): Headers {
    return (this.responseTrailers ??= new Headers());
  }

  get values(): ContextValues {
    return (this.contextValues ??= createContextValues().set(peerAddressKey, addressFromGrpcPeer(this.call.getPeer())));
  }

  get touchedResponseHeaders(): boolean {
    return this.responseHeaders !== undefined || this.pendingResponseHeaders !== undefined;
  }

  get touchedResponseTrailers(): boolean {
    return this.responseTrailers !== undefined;
  }

  finished(): void {
    this.done = true;
    if (!this.controller) return;
    if (this.onCancel) (this.call as unknown as NodeJS.EventEmitter).off("cancelled", this.onCancel);
    if (this.onShutdown) this.shutdownSignal?.removeEventListener("abort", this.onShutdown);
    clearTimeout(this.timer);
  }
}

/** Creates the context of one grpc-js call (see {@link GrpcContext}). */
export function createGrpcHandlerContext(call: Call, service: DescService, method: DescMethod, shutdownSignal: AbortSignal | undefined): GrpcHandlerContext {
  return new GrpcContext(call, service, method, shutdownSignal);
}
