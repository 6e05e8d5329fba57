/**
 * gRPC server reflection (`grpc.reflection.v1` and `grpc.reflection.v1alpha`).
 *
 * Both protocol versions are served by one version-neutral {@link ReflectionCatalog}; the two
 * `ServiceImpl`s only differ in the generated message types they are typed against, because the
 * v1alpha and v1 schemas are wire- and shape-identical apart from their package name.
 */
import type { DescEnum, DescFile, DescMessage, FileRegistry } from "@bufbuild/protobuf";
import { toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

/**
 * Options for {@link createReflectionServices}.
 *
 * `files` are the schema roots to describe (typically the generated `file_*` constants of every
 * mounted service, or a `FileRegistry`). Their transitive imports, including well-known types,
 * are discovered by walking `DescFile.dependencies`, so clients can resolve every import by name.
 * The reflection protocol's own files are always added so reflection can describe itself.
 *
 * `serviceNames` answers `list_services`. It is a callback rather than a list so the answer tracks
 * what is actually mounted at request time; when omitted, every service declared in the indexed
 * files is listed.
 */
export interface ReflectionOptions {
  readonly files: Iterable<DescFile> | FileRegistry;
  readonly serviceNames?: () => Iterable<string>;
}

/**
 * The two reflection service implementations, ready to be mounted with
 * `router.service(ServerReflection, impl)` for their respective generated service descriptors.
 */
export interface ReflectionServices {
  readonly v1: ServiceImpl<typeof v1.ServerReflection>;
  readonly v1alpha: ServiceImpl<typeof v1alpha.ServerReflection>;
}

/**
 * A reflection request reduced to the fields shared by v1 and v1alpha, so the catalog can answer
 * either version without knowing which one it is talking to.
 */
export interface ReflectionRequest {
  readonly host: string;
  readonly messageRequest:
    | { readonly case: "fileByFilename"; readonly value: string }
    | { readonly case: "fileContainingSymbol"; readonly value: string }
    | {
        readonly case: "fileContainingExtension";
        readonly value: { readonly containingType: string; readonly extensionNumber: number };
      }
    | { readonly case: "allExtensionNumbersOfType"; readonly value: string }
    | { readonly case: "listServices"; readonly value: string }
    | { readonly case: undefined; readonly value?: undefined };
}

/**
 * The `message_response` oneof of a reflection response as plain init data, valid for both
 * protocol versions.
 */
export type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/**
 * Creates the v1 and v1alpha `ServerReflection` implementations over one shared, precomputed
 * {@link ReflectionCatalog}. Each stream remembers which files it already sent, so dependencies
 * are transmitted once per stream (as grpc-go does), while the file that answers a request is
 * always included so every response is self-identifying.
 */
export function createReflectionServices(options: ReflectionOptions): ReflectionServices {
  const catalog = new ReflectionCatalog(options);
  return {
    v1: { serverReflectionInfo: reflectionStream<v1.ServerReflectionRequest>(catalog) },
    v1alpha: { serverReflectionInfo: reflectionStream<v1alpha.ServerReflectionRequest>(catalog) },
  };
}

/**
 * Builds the bidi-streaming handler for one protocol version: every request gets exactly one
 * response, in order, echoing the host and the original request as the protocol requires.
 */
function reflectionStream<Req extends ReflectionRequest>(catalog: ReflectionCatalog) {
  return async function* serverReflectionInfo(requests: AsyncIterable<Req>) {
    const sent = new Set<string>();
    for await (const request of requests) {
      yield {
        validHost: request.host,
        originalRequest: request,
        messageResponse: catalog.answer(request, sent),
      };
    }
  };
}

/** The reflection protocol's own files, always served so reflection can describe itself. */
const SELF_DESCRIPTION: readonly DescFile[] = [
  v1.file_grpc_reflection_v1_reflection,
  v1alpha.file_grpc_reflection_v1alpha_reflection,
];

/**
 * Version-neutral index of the served schema: files by name (with their serialized
 * `FileDescriptorProto` computed once), every fully-qualified symbol, and every known extension by
 * extendee and field number. It is immutable after construction, so one instance safely serves
 * any number of concurrent streams.
 */
export class ReflectionCatalog {
  readonly #files = new Map<string, DescFile>();
  readonly #encoded = new Map<string, Uint8Array>();
  readonly #symbols = new Map<string, DescFile>();
  readonly #messages = new Set<string>();
  readonly #extensions = new Map<string, Map<number, DescFile>>();
  readonly #services: string[] = [];
  readonly #serviceNames: () => Iterable<string>;

  /** Walks all files reachable from `options.files` and indexes them eagerly. */
  constructor(options: ReflectionOptions) {
    const roots = isFileRegistry(options.files) ? options.files.files : options.files;
    for (const file of [...roots, ...SELF_DESCRIPTION]) {
      this.#addFile(file);
    }
    this.#serviceNames = options.serviceNames ?? (() => this.#services);
  }

  /**
   * Answers one request. `sent` holds the names of files already transmitted on the calling
   * stream; it is updated with the files included in this answer.
   */
  answer(request: ReflectionRequest, sent: Set<string>): ReflectionAnswer {
    const message = request.messageRequest;
    switch (message.case) {
      case "fileByFilename":
        return this.#fileAnswer(this.#files.get(message.value), sent, `file not found: ${message.value}`);
      case "fileContainingSymbol":
        return this.#fileAnswer(this.#symbols.get(message.value), sent, `symbol not found: ${message.value}`);
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = message.value;
        const file = this.#extensions.get(containingType)?.get(extensionNumber);
        return this.#fileAnswer(file, sent, `extension not found: ${containingType}(${extensionNumber})`);
      }
      case "allExtensionNumbersOfType":
        return this.#extensionNumbers(message.value);
      case "listServices":
        return { case: "listServicesResponse", value: { service: this.#listServices() } };
      default:
        return errorAnswer(Code.InvalidArgument, "reflection request has no message_request set");
    }
  }

  /** Adds a file and, recursively, its imports; the first file seen under a path wins. */
  #addFile(file: DescFile): void {
    const name = fileName(file);
    if (this.#files.has(name)) {
      return;
    }
    this.#files.set(name, file);
    this.#encoded.set(name, toBinary(FileDescriptorProtoSchema, file.proto));
    this.#indexFile(file);
    for (const dependency of file.dependencies) {
      this.#addFile(dependency);
    }
  }

  /** Indexes every top-level declaration of a file under its fully-qualified name. */
  #indexFile(file: DescFile): void {
    for (const service of file.services) {
      this.#services.push(service.typeName);
      this.#addSymbol(service.typeName, file);
      for (const method of service.methods) {
        this.#addSymbol(`${service.typeName}.${method.name}`, file);
      }
    }
    for (const message of file.messages) {
      this.#indexMessage(message);
    }
    for (const enumeration of file.enums) {
      this.#indexEnum(enumeration, file.proto.package);
    }
    for (const extension of file.extensions) {
      this.#addExtension(extension.typeName, extension.extendee, extension.number, file);
    }
  }

  /** Indexes a message with its fields, oneofs and nested declarations. */
  #indexMessage(message: DescMessage): void {
    const { file, typeName } = message;
    this.#messages.add(typeName);
    this.#addSymbol(typeName, file);
    for (const member of message.members) {
      this.#addSymbol(`${typeName}.${member.name}`, file);
    }
    for (const nested of message.nestedMessages) {
      this.#indexMessage(nested);
    }
    for (const enumeration of message.nestedEnums) {
      this.#indexEnum(enumeration, typeName);
    }
    for (const extension of message.nestedExtensions) {
      this.#addExtension(extension.typeName, extension.extendee, extension.number, file);
    }
  }

  /**
   * Indexes an enum and its values. Following protobuf scoping rules, values are siblings of
   * their enum (`pkg.Parent.VALUE`, not `pkg.Parent.Enum.VALUE`).
   */
  #indexEnum(enumeration: DescEnum, scope: string): void {
    this.#addSymbol(enumeration.typeName, enumeration.file);
    for (const value of enumeration.values) {
      this.#addSymbol(qualify(scope, value.name), enumeration.file);
    }
  }

  /** Indexes an extension both as a symbol and under its extendee for the extension queries. */
  #addExtension(typeName: string, extendee: DescMessage, number: number, file: DescFile): void {
    this.#addSymbol(typeName, file);
    let byNumber = this.#extensions.get(extendee.typeName);
    if (byNumber === undefined) {
      byNumber = new Map();
      this.#extensions.set(extendee.typeName, byNumber);
    }
    if (!byNumber.has(number)) {
      byNumber.set(number, file);
    }
  }

  /** Records a symbol unless an earlier file already claimed the name. */
  #addSymbol(name: string, file: DescFile): void {
    if (!this.#symbols.has(name)) {
      this.#symbols.set(name, file);
    }
  }

  /**
   * Answers with `file` first, followed by its transitive imports in breadth-first order,
   * skipping imports already sent on this stream. The requested file itself is always sent,
   * even if sent before, because clients identify the answer by it.
   */
  #fileAnswer(file: DescFile | undefined, sent: Set<string>, notFound: string): ReflectionAnswer {
    if (file === undefined) {
      return errorAnswer(Code.NotFound, notFound);
    }
    const included = new Set<string>();
    const queue: DescFile[] = [file];
    for (let current = queue.shift(); current !== undefined; current = queue.shift()) {
      const name = fileName(current);
      if (included.has(name) || (included.size > 0 && sent.has(name))) {
        continue;
      }
      included.add(name);
      queue.push(...current.dependencies);
    }
    const fileDescriptorProto: Uint8Array[] = [];
    for (const name of included) {
      sent.add(name);
      fileDescriptorProto.push(this.#encodedFile(name));
    }
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto } };
  }

  /** Returns the precomputed encoding of a file; dependencies were indexed with their importer. */
  #encodedFile(name: string): Uint8Array {
    const bytes = this.#encoded.get(name);
    if (bytes === undefined) {
      throw new Error(`reflection catalog is missing the encoding of ${name}`);
    }
    return bytes;
  }

  /** Lists the extension numbers known for a message type, in ascending order. */
  #extensionNumbers(typeName: string): ReflectionAnswer {
    if (!this.#messages.has(typeName)) {
      return errorAnswer(Code.NotFound, `message type not found: ${typeName}`);
    }
    const numbers = [...(this.#extensions.get(typeName)?.keys() ?? [])].sort((a, b) => a - b);
    return { case: "allExtensionNumbersResponse", value: { baseTypeName: typeName, extensionNumber: numbers } };
  }

  /** Lists the currently advertised services, without duplicates, in the callback's order. */
  #listServices(): { name: string }[] {
    return [...new Set(this.#serviceNames())].map((name) => ({ name }));
  }
}

/** Builds an `error_response` answer; reflection reports per-request errors in-band. */
function errorAnswer(code: Code, message: string): ReflectionAnswer {
  return { case: "errorResponse", value: { errorCode: code, errorMessage: message } };
}

/**
 * The file's path as clients know it (`google/protobuf/timestamp.proto`). `DescFile.name` drops
 * the `.proto` suffix, so the descriptor's own `name` is the one to match and serve.
 */
function fileName(file: DescFile): string {
  return file.proto.name;
}

/** Joins a scope and a simple name the way protobuf forms fully-qualified names. */
function qualify(scope: string, name: string): string {
  return scope === "" ? name : `${scope}.${name}`;
}

/** Distinguishes a `FileRegistry` from a plain iterable of files. */
function isFileRegistry(files: Iterable<DescFile> | FileRegistry): files is FileRegistry {
  return (files as Partial<FileRegistry>).kind === "registry" && "files" in files;
}
