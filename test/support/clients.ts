import { create, fromBinary, toBinary, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type CallOptions, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { BadRequestSchema, ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.js";

/**
 * The client stacks every admin and auth test runs over:
 * - `grpc-js`: a real `@grpc/grpc-js` client against the grpc-js listener;
 * - `connect-grpc`: connect-node's gRPC transport against the grpc-js listener;
 * - `connect-h1`: the Connect protocol (JSON) over HTTP/1.1 against the connect-node listener;
 * - `connect-h2`: the Connect protocol (binary) over cleartext HTTP/2 against the connect-node listener.
 */
export const STACKS = ["grpc-js", "connect-grpc", "connect-h1", "connect-h2"] as const;
export type Stack = (typeof STACKS)[number];

/** Ports of a running server (an in-process App or a child process). */
export interface Ports {
  grpcPort: number;
  httpPort: number;
}

/** A client of any stack, closable (grpc-js channels hold sockets open). */
export type TestClient<S extends DescService> = Client<S> & { close(): void };

const bearer = (secret: string): Interceptor => (next) => (req) => {
  if (!req.header.has("authorization")) req.header.set("authorization", `Bearer ${secret}`);
  return next(req);
};

/** A client for `service` over `stack`; with `adminSecret`, every call sends it as a Bearer token. */
export function clientFor<S extends DescService>(service: S, stack: Stack, ports: Ports, adminSecret?: string): TestClient<S> {
  if (stack === "grpc-js") return grpcJsClient(service, ports.grpcPort, adminSecret);
  const interceptors = adminSecret ? [bearer(adminSecret)] : [];
  const transport =
    stack === "connect-grpc"
      ? createGrpcTransport({ baseUrl: `http://127.0.0.1:${ports.grpcPort}`, interceptors })
      : createConnectTransport({
          baseUrl: `http://127.0.0.1:${ports.httpPort}`,
          httpVersion: stack === "connect-h1" ? "1.1" : "2",
          useBinaryFormat: stack === "connect-h2",
          interceptors,
        });
  return Object.assign(createClient(service, transport), { close() {} });
}

/** Turns a grpc-js error (status, message, `grpc-status-details-bin`) into a ConnectError with incoming details. */
export function connectErrorFromGrpc(err: grpc.ServiceError): ConnectError {
  const ce = new ConnectError(err.details, err.code as number as Code);
  const bin = err.metadata?.get("grpc-status-details-bin")[0];
  if (bin instanceof Buffer) {
    for (const any of fromBinary(StatusSchema, bin).details) {
      ce.details.push({ type: any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1), value: any.value });
    }
  }
  return ce;
}

/** Sends raw request bytes to a unary method through grpc-js (for hand-built, deliberately invalid messages). */
export function grpcJsRawCall(port: number, path: string, body: Buffer, headers: Record<string, string> = {}): Promise<Buffer> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  return new Promise<Buffer>((resolve, reject) => {
    client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, md, { deadline: Date.now() + 10_000 }, (err, res) => {
      client.close();
      if (err) reject(connectErrorFromGrpc(err));
      else resolve(res!);
    });
  });
}

/** A promise client over a plain `@grpc/grpc-js` channel, shaped like a connect client. */
export function grpcJsClient<S extends DescService>(service: S, port: number, adminSecret?: string): TestClient<S> {
  const channel = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const methods: Record<string, unknown> = { close: () => channel.close() };
  for (const method of service.methods) {
    if (method.methodKind !== "unary") continue;
    methods[method.localName] = (request: MessageInitShape<typeof method.input>, options: CallOptions = {}) => {
      const md = new grpc.Metadata();
      if (adminSecret) md.set("authorization", `Bearer ${adminSecret}`);
      new Headers(options.headers).forEach((value, name) => md.set(name, value));
      const bytes = Buffer.from(toBinary(method.input, create(method.input, request)));
      const deadline = options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : Infinity;
      return new Promise((resolve, reject) => {
        channel.makeUnaryRequest(
          `/${service.typeName}/${method.name}`,
          (b: Buffer) => b,
          (b: Buffer) => fromBinary(method.output, b),
          bytes,
          md,
          { deadline },
          (err, res) => (err ? reject(connectErrorFromGrpc(err)) : resolve(res)),
        );
      });
    };
  }
  return methods as unknown as TestClient<S>;
}

/** Runs `call`, which must fail, and returns its ConnectError. */
export async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw err;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** The `google.rpc.ErrorInfo` reason of an error ("" when absent). */
export function reasonOf(err: ConnectError): string {
  return err.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
}

/** The fields named by an error's `google.rpc.BadRequest` field violations. */
export function violatedFields(err: ConnectError): string[] {
  return err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => v.field));
}
