import { execFile } from "node:child_process";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import type { FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { create, createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  file_google_protobuf_descriptor,
} from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  file_grpc_health_v1_health,
} from "../src/gen/grpc/health/v1/health_pb.js";
import * as v1 from "../src/gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { AuthService, file_tollgate_v1_auth_service } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { KeyService, file_tollgate_v1_key_service } from "../src/gen/tollgate/v1/key_service_pb.js";
import { HealthStatus, createHealthService } from "../src/transport/health.js";
import type { ReflectionRequest } from "../src/transport/reflection.js";
import { ReflectionCatalog, createReflectionServices } from "../src/transport/reflection.js";

const execFileAsync = promisify(execFile);
const bufBin = fileURLToPath(new URL("../node_modules/.bin/buf", import.meta.url));

/** A proto2 file with nested types and extensions, which the generated Tollgate schema lacks. */
function extensionFixture(): DescFile {
  const descriptorProto = file_google_protobuf_descriptor.proto.name;
  const field = (name: string, number: number, type: FieldDescriptorProto_Type, extendee?: string) => ({
    name,
    number,
    type,
    extendee,
    label: FieldDescriptorProto_Label.OPTIONAL,
  });
  const { STRING, INT32, BOOL } = FieldDescriptorProto_Type;
  const proto = create(FileDescriptorProtoSchema, {
    name: "reflecttest/v1/ext.proto",
    package: "reflecttest.v1",
    syntax: "proto2",
    dependency: [descriptorProto],
    messageType: [
      {
        name: "Outer",
        field: [field("id", 1, STRING)],
        nestedType: [{ name: "Inner", extension: [field("inner_ext", 101, INT32, ".reflecttest.v1.Outer")] }],
        enumType: [{ name: "Color", value: [{ name: "COLOR_UNSPECIFIED", number: 0 }, { name: "COLOR_RED", number: 1 }] }],
        extensionRange: [{ start: 100, end: 200 }],
      },
    ],
    extension: [
      field("outer_ext", 100, STRING, ".reflecttest.v1.Outer"),
      field("redact", 50001, BOOL, ".google.protobuf.FieldOptions"),
    ],
  });
  const registry = createFileRegistry(proto, (name) => (name === descriptorProto ? file_google_protobuf_descriptor : undefined));
  const file = registry.getFile(proto.name);
  if (file === undefined) throw new Error("fixture did not build");
  return file;
}

const mounted: DescService[] = [Health, v1.ServerReflection, v1alpha.ServerReflection, AuthService, KeyService];
const mountedNames = mounted.map((service) => service.typeName);

type ReflectionResponse = v1.ServerReflectionResponse | v1alpha.ServerReflectionResponse;
type ReflectionRequestInit = Omit<ReflectionRequest, "host"> & { host?: string };

let server: http2.Http2Server;
const sessions = new Set<http2.ServerHttp2Session>();
let baseUrl: string;
let health: HealthStatus;
let v1Client: Client<typeof v1.ServerReflection>;
let v1alphaClient: Client<typeof v1alpha.ServerReflection>;
let healthClient: Client<typeof Health>;

beforeAll(async () => {
  health = new HealthStatus();
  const reflection = createReflectionServices({
    files: [file_tollgate_v1_auth_service, file_tollgate_v1_key_service, file_grpc_health_v1_health, extensionFixture()],
    serviceNames: () => mountedNames,
  });
  const handler = connectNodeAdapter({
    routes(router) {
      router.service(Health, createHealthService(health));
      router.service(v1.ServerReflection, reflection.v1);
      router.service(v1alpha.ServerReflection, reflection.v1alpha);
      // Mounted without handlers: they answer UNIMPLEMENTED, but are listed and describable.
      router.service(AuthService, {});
      router.service(KeyService, {});
    },
  });
  server = http2.createServer(handler);
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const transport = createGrpcTransport({ baseUrl });
  v1Client = createClient(v1.ServerReflection, transport);
  v1alphaClient = createClient(v1alpha.ServerReflection, transport);
  healthClient = createClient(Health, transport);
});

afterAll(async () => {
  for (const session of sessions) session.destroy();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

/** Runs `buf curl` over gRPC with prior-knowledge HTTP/2 from a directory without any buf module. */
async function bufCurl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(bufBin, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], {
    cwd: tmpdir(),
    timeout: 20_000,
  });
  return stdout;
}

/** Sends all requests on one reflection stream and collects the responses in order. */
async function reflect(
  client: Client<typeof v1.ServerReflection> | Client<typeof v1alpha.ServerReflection>,
  requests: ReflectionRequestInit[],
): Promise<ReflectionResponse[]> {
  async function* send() {
    for (const request of requests) yield { host: "", ...request };
  }
  const responses: ReflectionResponse[] = [];
  for await (const response of client.serverReflectionInfo(send())) responses.push(response);
  return responses;
}

/** Names of the files in a `file_descriptor_response`, in the order they were sent. */
function fileNames(response: ReflectionResponse | undefined): string[] {
  expect(response?.messageResponse.case).toBe("fileDescriptorResponse");
  if (response?.messageResponse.case !== "fileDescriptorResponse") return [];
  return response.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
}

/** Orders reflected files so each follows its imports, as a FileDescriptorSet must be. */
function dependenciesFirst(files: FileDescriptorProto[]) {
  const ordered: FileDescriptorProto[] = [];
  const visited = new Set<string>();
  const visit = (file: FileDescriptorProto): void => {
    if (visited.has(file.name)) return;
    visited.add(file.name);
    for (const name of file.dependency) {
      const dependency = files.find((candidate) => candidate.name === name);
      if (dependency === undefined) throw new Error(`reflection omitted ${name}, imported by ${file.name}`);
      visit(dependency);
    }
    ordered.push(file);
  };
  files.forEach(visit);
  return create(FileDescriptorSetSchema, { file: ordered });
}

const symbol = (value: string): ReflectionRequestInit => ({ messageRequest: { case: "fileContainingSymbol", value } });
const filename = (value: string): ReflectionRequestInit => ({ messageRequest: { case: "fileByFilename", value } });

describe("reflection via buf curl", () => {
  it("lists services over v1", async () => {
    const out = await bufCurl("--list-services", baseUrl);
    expect(out.trim().split("\n").sort()).toEqual([...mountedNames].sort());
  });

  it("lists every method over v1alpha, resolving all imports through reflection", async () => {
    const out = await bufCurl("--reflect-protocol", "grpc-v1alpha", "--list-methods", baseUrl);
    const expected = mounted.flatMap((service) => service.methods.map((m) => `${service.typeName}/${m.name}`));
    expect(out.trim().split("\n").sort()).toEqual(expected.sort());
  });

  it("calls Health/Check with a schema obtained only from reflection", async () => {
    expect(JSON.parse(await bufCurl(`${baseUrl}/grpc.health.v1.Health/Check`, "-d", "{}"))).toEqual({ status: "SERVING" });
    health.set("buf.curl.Probe", ServingStatus.NOT_SERVING);
    const out = await bufCurl(`${baseUrl}/grpc.health.v1.Health/Check`, "-d", '{"service":"buf.curl.Probe"}');
    expect(JSON.parse(out)).toEqual({ status: "NOT_SERVING" });
  });

  it("encodes a request whose schema imports well-known types", async () => {
    const body = JSON.stringify({ key: { keyId: "k1", expiresAt: "2030-01-01T00:00:00Z" }, updateMask: "name" });
    const call = bufCurl(`${baseUrl}/tollgate.v1.KeyService/UpdateKey`, "-d", body);
    await expect(call).rejects.toMatchObject({ stderr: expect.stringMatching(/unimplemented/i) });
  });
});

describe("reflection via connect client", () => {
  it("lists services on v1alpha and v1, echoing host and request", async () => {
    for (const client of [v1alphaClient, v1Client]) {
      const [response] = await reflect(client, [{ host: "tollgate.test", messageRequest: { case: "listServices", value: "*" } }]);
      expect(response?.validHost).toBe("tollgate.test");
      expect(response?.originalRequest?.messageRequest).toEqual({ case: "listServices", value: "*" });
      expect(response?.messageResponse.case).toBe("listServicesResponse");
      if (response?.messageResponse.case !== "listServicesResponse") return;
      expect(response.messageResponse.value.service.map((s) => s.name)).toEqual(mountedNames);
    }
  });

  it("serves a file with its transitive imports as real descriptors", async () => {
    const [response] = await reflect(v1Client, [filename("tollgate/v1/key_service.proto")]);
    const names = fileNames(response);
    expect(names[0]).toBe("tollgate/v1/key_service.proto");
    expect([...names].sort()).toEqual(
      ["google/protobuf/field_mask.proto", "google/protobuf/timestamp.proto", "tollgate/v1/key.proto", "tollgate/v1/key_service.proto"],
    );
    if (response?.messageResponse.case !== "fileDescriptorResponse") return;
    const files = response.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
    const registry = createFileRegistry(dependenciesFirst(files));
    const service = registry.getService("tollgate.v1.KeyService");
    expect(service?.methods.map((m) => m.name)).toEqual(KeyService.methods.map((m) => m.name));
    expect(registry.getMessage("tollgate.v1.ApiKey")?.field["expiresAt"]?.message?.typeName).toBe("google.protobuf.Timestamp");
  });

  it("finds the file containing services, methods, messages, fields, enums and values", async () => {
    const cases: [string, string][] = [
      ["tollgate.v1.KeyService", "tollgate/v1/key_service.proto"],
      ["tollgate.v1.KeyService.ListKeys", "tollgate/v1/key_service.proto"],
      ["tollgate.v1.ApiKey", "tollgate/v1/key.proto"],
      ["tollgate.v1.ApiKey.expires_at", "tollgate/v1/key.proto"],
      ["grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto"],
      ["grpc.health.v1.HealthCheckResponse.SERVICE_UNKNOWN", "grpc/health/v1/health.proto"],
      ["google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
      ["reflecttest.v1.Outer.Inner", "reflecttest/v1/ext.proto"],
      ["reflecttest.v1.Outer.COLOR_RED", "reflecttest/v1/ext.proto"],
      ["reflecttest.v1.Outer.Inner.inner_ext", "reflecttest/v1/ext.proto"],
      ["grpc.reflection.v1alpha.ServerReflection", "grpc/reflection/v1alpha/reflection.proto"],
    ];
    const responses = await reflect(v1alphaClient, cases.map(([name]) => symbol(name)));
    expect(responses.map((response) => fileNames(response)[0])).toEqual(cases.map(([, file]) => file));
  });

  it("answers unknown names with NOT_FOUND and keeps the stream usable", async () => {
    for (const client of [v1Client, v1alphaClient]) {
      const responses = await reflect(client, [
        symbol("tollgate.v1.NoSuchService"),
        filename("no/such/file.proto"),
        { messageRequest: { case: "allExtensionNumbersOfType", value: "tollgate.v1.Nope" } },
        { messageRequest: { case: "fileContainingExtension", value: { containingType: "reflecttest.v1.Outer", extensionNumber: 150 } } },
        symbol("grpc.health.v1.Health"),
      ]);
      for (const response of responses.slice(0, 4)) {
        expect(response.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: Code.NotFound } });
      }
      expect(fileNames(responses[4])).toEqual(["grpc/health/v1/health.proto"]);
    }
  });

  it("rejects a request without a message_request in-band", async () => {
    const [response] = await reflect(v1Client, [{ messageRequest: { case: undefined } }]);
    expect(response?.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: Code.InvalidArgument } });
  });

  it("omits imports already sent on the same stream but always sends the requested file", async () => {
    const responses = await reflect(v1Client, [
      symbol("tollgate.v1.KeyService"),
      filename("google/protobuf/timestamp.proto"),
      filename("tollgate/v1/key.proto"),
    ]);
    expect(fileNames(responses[0])).toHaveLength(4);
    expect(fileNames(responses[1])).toEqual(["google/protobuf/timestamp.proto"]);
    expect(fileNames(responses[2])).toEqual(["tollgate/v1/key.proto"]);
    // A fresh stream starts over.
    const [fresh] = await reflect(v1Client, [filename("tollgate/v1/key.proto")]);
    expect(fileNames(fresh)).toEqual(["tollgate/v1/key.proto", "google/protobuf/timestamp.proto"]);
  });

  it("answers extension queries", async () => {
    const extension = (containingType: string, extensionNumber: number): ReflectionRequestInit => ({
      messageRequest: { case: "fileContainingExtension", value: { containingType, extensionNumber } },
    });
    const responses = await reflect(v1Client, [
      { messageRequest: { case: "allExtensionNumbersOfType", value: "reflecttest.v1.Outer" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "google.protobuf.FieldOptions" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "tollgate.v1.ApiKey" } },
      extension("reflecttest.v1.Outer", 101),
      extension("google.protobuf.FieldOptions", 50001),
    ]);
    const numbers = (r: ReflectionResponse | undefined) => r?.messageResponse;
    expect(numbers(responses[0])).toMatchObject({ value: { baseTypeName: "reflecttest.v1.Outer", extensionNumber: [100, 101] } });
    expect(numbers(responses[1])).toMatchObject({ value: { baseTypeName: "google.protobuf.FieldOptions", extensionNumber: [50001] } });
    expect(numbers(responses[2])).toMatchObject({ case: "allExtensionNumbersResponse", value: { extensionNumber: [] } });
    expect(fileNames(responses[3])).toEqual(["reflecttest/v1/ext.proto", "google/protobuf/descriptor.proto"]);
    expect(fileNames(responses[4])).toEqual(["reflecttest/v1/ext.proto"]);
  });
});

describe("reflection catalog defaults", () => {
  it("accepts a FileRegistry and lists every indexed service when no callback is given", () => {
    const registry = createFileRegistry(file_grpc_health_v1_health.proto, () => undefined);
    const catalog = new ReflectionCatalog({ files: registry });
    const answer = catalog.answer({ host: "", messageRequest: { case: "listServices", value: "" } }, new Set());
    expect(answer).toEqual({
      case: "listServicesResponse",
      value: {
        service: [
          { name: "grpc.health.v1.Health" },
          { name: "grpc.reflection.v1.ServerReflection" },
          { name: "grpc.reflection.v1alpha.ServerReflection" },
        ],
      },
    });
  });
});

describe("health", () => {
  it("checks the overall status and rejects unknown services with NOT_FOUND", async () => {
    expect((await healthClient.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    const error = await healthClient.check({ service: "no.such.Service" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.NotFound);
  });

  it("watches: current status first, then each change, and cleans up on cancel", async () => {
    const service = "tollgate.v1.AuthService";
    const baseline = health.listenerCount;
    const abort = new AbortController();
    const stream = healthClient.watch({ service }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    expect(health.listenerCount).toBe(baseline + 1);
    health.set(service, ServingStatus.SERVING);
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVING);
    health.set(service, ServingStatus.SERVING); // unchanged: must not produce a message
    health.set(service, ServingStatus.NOT_SERVING);
    expect((await stream.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    health.clear(service);
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    abort.abort();
    await expect(stream.next()).rejects.toMatchObject({ code: Code.Canceled });
    await vi.waitFor(() => expect(health.listenerCount).toBe(baseline));
  });

  it("starts a watch of a known service with its current status", async () => {
    health.set("tollgate.v1.KeyService", ServingStatus.NOT_SERVING);
    const abort = new AbortController();
    const stream = healthClient.watch({ service: "tollgate.v1.KeyService" }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    abort.abort();
    await stream.next().catch(() => undefined);
    await vi.waitFor(() => expect(health.listenerCount).toBe(0));
  });

  it("refuses SERVICE_UNKNOWN as a settable status", () => {
    expect(() => new HealthStatus().set("x", ServingStatus.SERVICE_UNKNOWN)).toThrow(RangeError);
  });
});
