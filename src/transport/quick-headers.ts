import type { HandlerContext } from "@connectrpc/connect";

/**
 * One request header read, and one response header set, without building a `Headers` object:
 * the call pipeline reads `x-request-id` and echoes it on every call, and a `Headers` (undici's,
 * validating every name and value it is given) of all the request's metadata cost the grpc-js
 * listener ~2–3 µs a call for that (CPU profile; docs/performance.md). A context that offers
 * `QUICK_HEADERS` answers from its own representation; any other goes through its `Headers`.
 * Both ways give the same values (test/quick-headers.test.ts).
 */
export const QUICK_HEADERS = Symbol("tollgate.quickHeaders");

export interface QuickHeaders {
  /** As `requestHeader.get(name)`: null when absent. */
  requestHeaderValue(name: string): string | null;
  /** As `responseHeader.set(name, value)`. */
  setResponseHeader(name: string, value: string): void;
}

function quick(ctx: HandlerContext): QuickHeaders | undefined {
  return (ctx as HandlerContext & { [QUICK_HEADERS]?: QuickHeaders })[QUICK_HEADERS];
}

export function requestHeaderValue(ctx: HandlerContext, name: string): string | null {
  const q = quick(ctx);
  return q ? q.requestHeaderValue(name) : ctx.requestHeader.get(name);
}

export function setResponseHeader(ctx: HandlerContext, name: string, value: string): void {
  const q = quick(ctx);
  if (q) q.setResponseHeader(name, value);
  else ctx.responseHeader.set(name, value);
}
