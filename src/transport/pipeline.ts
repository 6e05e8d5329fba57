import { randomUUID } from "node:crypto";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, type ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { unavailable } from "../domain/errors.js";
import { isPromise } from "../domain/maybe-promise.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { toConnectError } from "./errors.js";
import { requestHeaderValue, setResponseHeader } from "./quick-headers.js";

export interface PipelineDeps {
  logger: Logger;
  /** Where successful calls are logged (see createAccessLogger); defaults to `logger`. */
  accessLogger?: Logger;
  metrics: Metrics;
  /** Leave this much of the caller's deadline to send the answer. */
  deadlineMarginMs?: number;
  /**
   * Leave at least this fraction of the caller's deadline too (default 0). A relative grpc-timeout
   * starts late by the request's transit time, so a fixed few milliseconds is too thin for a
   * 200 ms Envoy check across a network, and a large fixed margin would eat a 20 ms one whole.
   */
  deadlineMarginRatio?: number;
}

type AnyImpl = (input: unknown, ctx: HandlerContext) => unknown;

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Wraps every method of a service with, in this order (outermost first):
 *   1. request id   — taken from `x-request-id` or generated, echoed in the response header;
 *   2. log + metrics — observe the *final* mapped status code, so they see what the client sees;
 *   3. error mapping — domain errors → gRPC code + ErrorInfo/BadRequest details (one place);
 *   4. deadline     — unary work still running near the caller's deadline is answered UNAVAILABLE,
 *                     so the client (Envoy's status_on_error, say) gets a typed answer in time
 *                     (a handler that answers synchronously needs no timer).
 * The result is a plain connect `ServiceImpl`, mounted unchanged on every transport.
 */
export function instrument<S extends DescService>(service: S, impl: ServiceImpl<S>, deps: PipelineDeps): ServiceImpl<S> {
  const wrapped: Record<string, AnyImpl> = {};
  const impls = impl as unknown as Record<string, AnyImpl>;
  for (const method of service.methods) {
    const fn = impls[method.localName];
    if (!fn) continue;
    wrapped[method.localName] = method.methodKind === "unary" ? wrapUnary(service, method, fn, deps) : wrapStream(service, method, fn, deps);
  }
  return wrapped as unknown as ServiceImpl<S>;
}

function begin(service: DescService, method: DescMethod, ctx: HandlerContext, deps: PipelineDeps) {
  // A client's request id is kept only when it is plainly an id, so it can never smuggle content into logs.
  const offered = requestHeaderValue(ctx, "x-request-id");
  const requestId = offered && REQUEST_ID.test(offered) ? offered : randomUUID();
  setResponseHeader(ctx, "x-request-id", requestId);
  const started = performance.now();
  /** Logs and counts the call; `mapped` is the error as the client receives it (undefined = OK). */
  return (mapped?: ConnectError) => {
    const seconds = (performance.now() - started) / 1000;
    const code = mapped === undefined ? "OK" : Code[mapped.code];
    deps.metrics.rpc(service.typeName, method.name, code, seconds);
    const line = { rpc: `${service.typeName}/${method.name}`, code, ms: Math.round(seconds * 1e5) / 100, requestId, protocol: ctx.protocolName };
    if (mapped === undefined) (deps.accessLogger ?? deps.logger).info(line, "rpc");
    else {
      const level = mapped.code === Code.Internal ? "error" : mapped.code === Code.Unavailable ? "warn" : "info";
      deps.logger[level]({ ...line, reason: mapped.rawMessage, err: mapped.cause instanceof Error ? mapped.cause : undefined }, "rpc");
    }
  };
}

function withDeadline<T>(work: Promise<T>, ctx: HandlerContext, minMarginMs: number, marginRatio: number): Promise<T> {
  const timeoutMs = ctx.timeoutMs();
  if (timeoutMs === undefined) return work;
  const marginMs = Math.max(minMarginMs, timeoutMs * marginRatio);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unavailable("DEADLINE_NEAR", "a dependency did not answer within the call's deadline")), Math.max(timeoutMs - marginMs, 1));
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** Logs and counts a failed call, and returns the error as the client receives it. */
function failed(err: unknown, end: (mapped?: ConnectError) => void): ConnectError {
  const mapped = toConnectError(err);
  end(mapped);
  return mapped;
}

/**
 * A unary method's wrapper returns what the method returns: a value when it answered
 * synchronously (a warm Check or Authenticate: no promise, no microtask, and no deadline timer,
 * as the answer is already in time), else a promise. Both transports accept either; a
 * synchronous throw is an error answer on both.
 */
function wrapUnary(service: DescService, method: DescMethod, fn: AnyImpl, deps: PipelineDeps): AnyImpl {
  const margin = deps.deadlineMarginMs ?? 5;
  const ratio = deps.deadlineMarginRatio ?? 0;
  return (req, ctx) => {
    const end = begin(service, method, ctx, deps);
    let out: unknown;
    try {
      out = fn(req, ctx);
    } catch (err) {
      throw failed(err, end);
    }
    if (!isPromise(out)) {
      end();
      return out;
    }
    return withDeadline(out, ctx, margin, ratio).then(
      (res) => {
        end();
        return res;
      },
      (err: unknown) => {
        throw failed(err, end);
      },
    );
  };
}

function wrapStream(service: DescService, method: DescMethod, fn: AnyImpl, deps: PipelineDeps): AnyImpl {
  return async function* (input, ctx) {
    const end = begin(service, method, ctx, deps);
    try {
      yield* fn(input, ctx) as AsyncIterable<unknown>;
      end();
    } catch (err) {
      const mapped = toConnectError(err);
      end(mapped);
      throw mapped;
    }
  };
}
