import { EventEmitter, getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { createGrpcHandlerContext } from "../src/transport/grpc-context.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { peerAddressKey } from "../src/transport/peer.js";
import { createHandlerContext } from "@connectrpc/connect";
import { requestHeaderValue, setResponseHeader } from "../src/transport/quick-headers.js";

/** The few members of a grpc-js server call that the context reads. */
function call(deadline: number = Number.POSITIVE_INFINITY) {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", "Bearer x");
  return Object.assign(new EventEmitter(), { metadata, getDeadline: () => deadline, getPeer: () => "::ffff:10.1.2.3:5000" });
}
const method = AuthService.method.authenticate;
type Call = Parameters<typeof createGrpcHandlerContext>[0];

describe("the grpc-js handler context", () => {
  it("leaves no listener on the shutdown signal or the call once finished, whether or not the signal was used", () => {
    const shutdown = new AbortController();
    for (let i = 0; i < 1000; i++) {
      const c = call(Date.now() + 60_000);
      const ctx = createGrpcHandlerContext(c as unknown as Call, AuthService, method, shutdown.signal);
      if (i % 2 === 0) void ctx.signal; // half the calls use the signal, half never touch it
      ctx.finished();
      expect(c.listenerCount("cancelled")).toBe(0);
    }
    expect(getEventListeners(shutdown.signal, "abort")).toHaveLength(0);
  });

  it("aborts its signal when the client cancels, the deadline passes, or the server shuts down", async () => {
    const shutdown = new AbortController();
    const cancelled = call();
    const a = createGrpcHandlerContext(cancelled as unknown as Call, AuthService, method, shutdown.signal);
    const signal = a.signal;
    cancelled.emit("cancelled");
    expect(signal.aborted).toBe(true);

    const late = createGrpcHandlerContext(call(Date.now() + 5) as unknown as Call, AuthService, method, undefined);
    const lateSignal = late.signal;
    await new Promise((resolve) => lateSignal.addEventListener("abort", resolve));
    expect(lateSignal.aborted).toBe(true);

    const draining = createGrpcHandlerContext(call() as unknown as Call, AuthService, method, shutdown.signal);
    const drainingSignal = draining.signal;
    shutdown.abort();
    expect(drainingSignal.aborted).toBe(true);
  });

  it("reads request headers, the deadline and the peer address lazily from the call", () => {
    const ctx = createGrpcHandlerContext(call(Date.now() + 1_000) as unknown as Call, AuthService, method, undefined);
    expect(ctx.requestHeader.get("authorization")).toBe("Bearer x");
    expect(ctx.timeoutMs()).toBeGreaterThan(900);
    expect(ctx.values.get(peerAddressKey)).toBe("::ffff:10.1.2.3");
    expect(ctx.touchedResponseHeaders).toBe(false);
    ctx.responseHeader.set("x-request-id", "1");
    expect(ctx.touchedResponseHeaders).toBe(true);
  });

  it("reads one request header and sets response headers without a Headers object, with the same values as through Headers", () => {
    const metadata = () => {
      const md = new grpc.Metadata();
      md.set("x-request-id", "abc");
      md.add("x-repeated", "one");
      md.add("x-repeated", "two");
      md.set("x-trace-bin", Buffer.from([0, 1, 2, 250]));
      return md;
    };
    const names = ["x-request-id", "x-repeated", "x-trace-bin", "x-missing", "X-Request-Id"];
    const quick = createGrpcHandlerContext({ ...call(), metadata: metadata() } as unknown as Call, AuthService, method, undefined);
    const quickValues = names.map((n) => requestHeaderValue(quick, n));
    expect(quickValues.slice(0, 4)).toEqual(["abc", "one, two", Buffer.from([0, 1, 2, 250]).toString("base64"), null]);
    const viaHeaders = createGrpcHandlerContext({ ...call(), metadata: metadata() } as unknown as Call, AuthService, method, undefined);
    expect(names.map((n) => viaHeaders.requestHeader.get(n))).toEqual(quickValues);
    // Once the Headers exist, the quick read answers from them (a handler may have changed them).
    viaHeaders.requestHeader.set("x-request-id", "changed");
    expect(requestHeaderValue(viaHeaders, "x-request-id")).toBe("changed");

    // Response headers set quickly reach the metadata sent, and the Headers when a handler reads them.
    const ctx = createGrpcHandlerContext(call() as unknown as Call, AuthService, method, undefined);
    expect(ctx.touchedResponseHeaders).toBe(false);
    setResponseHeader(ctx, "x-request-id", "r1");
    expect(ctx.touchedResponseHeaders).toBe(true);
    expect(ctx.responseMetadata().getMap()).toEqual({ "x-request-id": "r1" });
    ctx.responseHeader.append("x-other", "o");
    setResponseHeader(ctx, "x-request-id", "r2");
    expect([...ctx.responseHeader]).toEqual([["x-other", "o"], ["x-request-id", "r2"]]);
    expect(ctx.responseMetadata().getMap()).toEqual({ "x-other": "o", "x-request-id": "r2" });

    // A context without the quick path (connect-node's) goes through its Headers.
    const plain = createHandlerContext({ service: AuthService, method, protocolName: "connect", requestMethod: "POST", url: "http://x/", requestHeader: { "x-request-id": "p" } });
    expect(requestHeaderValue(plain, "x-request-id")).toBe("p");
    setResponseHeader(plain, "x-request-id", "q");
    expect(plain.responseHeader.get("x-request-id")).toBe("q");
  });
});
