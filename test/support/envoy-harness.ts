/**
 * An Envoy stand-in for tests (no Envoy binary can run here). It compiles Envoy's OFFICIAL protos
 * (from `@grpc/grpc-js-xds/deps`, with protobufjs — an implementation independent of our
 * generated code), sends requests shaped as Envoy's ext_authz and ratelimit HTTP filters send
 * them, and reads the answers as those filters do:
 *
 * ext_authz (envoy/source/extensions/filters/common/ext_authz/ext_authz_grpc_impl.cc, ext_authz.cc):
 *   - `status.code == 0` → allow: apply `ok_response` (headers by `append` if set, else by
 *     `append_action`, whose default is APPEND_IF_EXISTS_OR_ADD; empty values are skipped unless
 *     `keep_empty_value`), `headers_to_remove` (never pseudo-headers or host),
 *     `query_parameters_to_remove`, `response_headers_to_add`, dynamic metadata;
 *   - any other code → deny: `denied_response.status` (403 when unset), its headers and body;
 *   - a gRPC error (including Envoy's own timeout) → `status_on_error` (403 by default) unless
 *     `failure_mode_allow`.
 * ratelimit: `overall_code == OVER_LIMIT` → 429 with `raw_body` and `response_headers_to_add`;
 * OK → pass; a gRPC error → pass unless `failure_mode_deny`.
 */
import * as grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const DEPS = new URL("../../node_modules/@grpc/grpc-js-xds/deps/", import.meta.url).pathname;
/** Where the official definitions live. */
export const OFFICIAL_INCLUDE_DIRS = ["envoy-api", "googleapis", "xds", "protoc-gen-validate"].map((d) => DEPS + d);

let loaded: grpc.GrpcObject | undefined;
/** The official ext_authz and RLS definitions, compiled once per test file. */
export function officialProtos(): grpc.GrpcObject {
  loaded ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(["envoy/service/auth/v3/external_auth.proto", "envoy/service/ratelimit/v3/rls.proto"], {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
      includeDirs: OFFICIAL_INCLUDE_DIRS,
    }),
  );
  return loaded;
}

type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
type Unary = (message: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, callback: Callback<never>) => void;
type Ctor = new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client;
function service(path: string): Ctor {
  let node: unknown = officialProtos();
  for (const part of path.split(".")) node = (node as Record<string, unknown>)[part];
  return node as Ctor;
}

/** What one HTTP request looks like to Envoy before ext_authz. */
export interface EnvoyHttpRequest {
  method?: string;
  /** Request target with its query string. */
  path?: string;
  authority?: string;
  /** Non-pseudo headers; names are lower-cased as Envoy does. */
  headers?: Record<string, string>;
  /** Downstream address as Envoy reports it; `null` leaves `source.address` out. */
  sourceIp?: string | null;
  /** Per-route `check_settings.context_extensions`. */
  contextExtensions?: Record<string, string>;
  /** This request's deadline (sent as grpc-timeout), overriding the filter's. */
  timeoutMs?: number;
  /** `encode_raw_headers: true`: headers go in `header_map` as raw bytes. */
  encodeRawHeaders?: boolean;
}

let streamIds = 1_000_000_000_000_000n;

/** Builds a CheckRequest exactly as Envoy's HTTP ext_authz filter would (proto-loader object form). */
export function envoyCheckRequest(req: EnvoyHttpRequest): Record<string, unknown> {
  return buildCheck(req).message;
}

/** The request headers as Envoy holds them (lower-case, pseudo-headers included). */
function buildCheck(req: EnvoyHttpRequest): { message: Record<string, unknown>; headers: Record<string, string> } {
  const method = req.method ?? "GET";
  const path = req.path ?? "/";
  const authority = req.authority ?? "api.example.com";
  const id = String(++streamIds);
  const headers: Record<string, string> = {
    ":authority": authority,
    ":method": method,
    ":path": path,
    ":scheme": "http",
    "x-forwarded-proto": "http",
    "x-request-id": `0c2f4b9e-${id.slice(-12)}`,
    "user-agent": "curl/8.5.0",
    accept: "*/*",
  };
  for (const [name, value] of Object.entries(req.headers ?? {})) headers[name.toLowerCase()] = value;
  const now = Date.now();
  const http: Record<string, unknown> = {
    id,
    method,
    path,
    host: authority,
    scheme: "http",
    protocol: "HTTP/1.1",
    size: "0",
  };
  if (req.encodeRawHeaders) {
    http.header_map = { headers: Object.entries(headers).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) };
  } else {
    http.headers = headers;
  }
  const source = req.sourceIp === null ? {} : { address: { socket_address: { address: req.sourceIp ?? "203.0.113.10", port_value: 51514 } } };
  const message = {
    attributes: {
      source,
      destination: { address: { socket_address: { address: "10.0.0.2", port_value: 10000 } } },
      request: { time: { seconds: String(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 }, http },
      context_extensions: req.contextExtensions ?? {},
      metadata_context: {},
    },
  };
  return { message, headers };
}

/** How Envoy acted on a Check answer. */
export type EnvoyVerdict =
  | {
      kind: "allow";
      /** The request as it goes upstream (headers and target after mutation). */
      upstream: { headers: Map<string, string[]>; path: string };
      /** Headers added to the downstream response. */
      responseHeaders: Map<string, string>;
      dynamicMetadata: Record<string, unknown>;
      raw: CheckResponseObject;
    }
  | { kind: "deny"; status: number; headers: Map<string, string>; body: string; dynamicMetadata: Record<string, unknown>; raw: CheckResponseObject }
  | { kind: "error"; grpcCode: grpc.status; message: string; status: number };

/** A CheckResponse as protobufjs decodes it from the official definition. */
export interface CheckResponseObject {
  status: { code: number; message: string } | null;
  http_response?: "denied_response" | "ok_response";
  denied_response?: { status: { code: string } | null; headers: HeaderOption[]; body: string };
  ok_response?: { headers: HeaderOption[]; headers_to_remove: string[]; response_headers_to_add: HeaderOption[]; query_parameters_to_remove: string[] };
  dynamic_metadata: StructObject | null;
}
interface HeaderOption {
  header: { key: string; value: string; raw_value: Buffer };
  append: { value: boolean } | null;
  append_action: string;
  keep_empty_value: boolean;
}
/** protobufjs decodes well-known types with its bundled camelCase definitions. */
interface StructObject {
  fields: Record<string, { kind: string; stringValue?: string; numberValue?: number; boolValue?: boolean }>;
}

const STATUS_CODES: Record<string, number> = { Unauthorized: 401, Forbidden: 403, TooManyRequests: 429, OK: 200 };

/** Options of the ext_authz filter that shape how an error is handled. */
export interface ExtAuthzFilterOptions {
  statusOnError?: number;
  failureModeAllow?: boolean;
  /** The filter's `grpc_service.timeout` (Envoy's default 200 ms); a request may override it. */
  timeoutMs?: number;
}

/** An ext_authz filter pointed at `port`. */
export function envoyExtAuthz(port: number, filter: ExtAuthzFilterOptions = {}) {
  const Authorization = service("envoy.service.auth.v3.Authorization");
  const client = new Authorization(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Check: Unary };
  return {
    /** Sends one request through the filter and reports what Envoy would do. */
    async check(req: EnvoyHttpRequest): Promise<EnvoyVerdict> {
      const { message, headers } = buildCheck(req);
      const deadline = new Date(Date.now() + (req.timeoutMs ?? filter.timeoutMs ?? 200));
      try {
        const raw = await new Promise<CheckResponseObject>((resolve, reject) =>
          client.Check(message, new grpc.Metadata(), { deadline }, (err: grpc.ServiceError | null, res: CheckResponseObject) => (err ? reject(err) : resolve(res))),
        );
        return interpretCheck(raw, headers, req);
      } catch (err) {
        const e = err as grpc.ServiceError;
        if (typeof e.code !== "number") throw err;
        return { kind: "error", grpcCode: e.code, message: e.details, status: filter.failureModeAllow ? 200 : (filter.statusOnError ?? 403) };
      }
    },
    /** The raw official-schema answer, for assertions on exact wire fields. */
    raw(message: Record<string, unknown>, timeoutMs = 200): Promise<CheckResponseObject> {
      return new Promise((resolve, reject) =>
        client.Check(message, new grpc.Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (err: grpc.ServiceError | null, res: CheckResponseObject) => (err ? reject(err) : resolve(res))),
      );
    },
    close: () => client.close(),
  };
}

function valueOf(h: HeaderOption): string {
  return h.header.value !== "" ? h.header.value : Buffer.from(h.header.raw_value ?? []).toString("utf8");
}

/** Envoy's header mutation for one option (ext_authz.cc, `onComplete`). */
function applyHeader(headers: Map<string, string[]>, h: HeaderOption): void {
  const key = h.header.key.toLowerCase();
  const value = valueOf(h);
  if (value === "" && !h.keep_empty_value) return;
  const exists = headers.has(key);
  const action = h.append !== null && h.append !== undefined ? (h.append.value ? "APPEND_IF_EXISTS_OR_ADD" : "OVERWRITE_IF_EXISTS_OR_ADD") : h.append_action;
  if (action === "APPEND_IF_EXISTS_OR_ADD") headers.set(key, [...(headers.get(key) ?? []), value]);
  else if (action === "ADD_IF_ABSENT") {
    if (!exists) headers.set(key, [value]);
  } else if (action === "OVERWRITE_IF_EXISTS_OR_ADD") headers.set(key, [value]);
  else if (action === "OVERWRITE_IF_EXISTS" && exists) headers.set(key, [value]);
}

function structToObject(s: StructObject | null): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = v.kind === "stringValue" ? v.stringValue : v.kind === "numberValue" ? v.numberValue : v.boolValue;
  return out;
}

function interpretCheck(raw: CheckResponseObject, sent: Record<string, string>, req: EnvoyHttpRequest): EnvoyVerdict {
  const dynamicMetadata = structToObject(raw.dynamic_metadata);
  if ((raw.status?.code ?? 0) !== 0) {
    const denied = raw.denied_response;
    const code = denied?.status ? (STATUS_CODES[denied.status.code] ?? Number(denied.status.code)) : 0;
    const headers = new Map<string, string>();
    for (const h of denied?.headers ?? []) headers.set(h.header.key.toLowerCase(), valueOf(h));
    return { kind: "deny", status: code || 403, headers, body: denied?.body ?? "", dynamicMetadata, raw };
  }
  const upstream = new Map<string, string[]>(Object.entries(sent).map(([k, v]) => [k, [v]]));
  const ok = raw.ok_response;
  for (const h of ok?.headers ?? []) applyHeader(upstream, h);
  for (const name of ok?.headers_to_remove ?? []) {
    const key = name.toLowerCase();
    if (!key.startsWith(":") && key !== "host") upstream.delete(key);
  }
  let path = req.path ?? "/";
  if (ok?.query_parameters_to_remove.length) {
    const [base, query = ""] = path.split("?", 2) as [string, string?];
    const params = new URLSearchParams(query);
    for (const name of ok.query_parameters_to_remove) params.delete(name);
    path = params.size > 0 ? `${base}?${params}` : base;
  }
  const responseHeaders = new Map<string, string>();
  for (const h of ok?.response_headers_to_add ?? []) responseHeaders.set(h.header.key.toLowerCase(), valueOf(h));
  return { kind: "allow", upstream: { headers: upstream, path }, responseHeaders, dynamicMetadata, raw };
}

/** One descriptor as the ratelimit filter builds it from its actions. */
export type Descriptor = Array<[key: string, value: string]>;

/** How Envoy's ratelimit filter acted on a ShouldRateLimit answer. */
export type RateLimitVerdict =
  | { kind: "pass" | "limited"; status: number; headers: Map<string, string>; body: string; raw: RateLimitResponseObject }
  | { kind: "error"; grpcCode: grpc.status; message: string; status: number };

export interface RateLimitResponseObject {
  overall_code: string;
  statuses: Array<{
    code: string;
    current_limit: { name: string; requests_per_unit: number; unit: string } | null;
    limit_remaining: number;
    duration_until_reset: { seconds: string; nanos: number } | null;
  }>;
  response_headers_to_add: Array<{ key: string; value: string }>;
  raw_body: Buffer;
}

/** A ratelimit filter pointed at `port` (timeout 20 ms by default, as Envoy's). */
export function envoyRateLimit(port: number, filter: { failureModeDeny?: boolean; timeoutMs?: number } = {}) {
  const RateLimitService = service("envoy.service.ratelimit.v3.RateLimitService");
  const client = new RateLimitService(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { ShouldRateLimit: Unary };
  return {
    async shouldRateLimit(domain: string, descriptors: Descriptor[], options: { hitsAddend?: number; timeoutMs?: number } = {}): Promise<RateLimitVerdict> {
      const message = { domain, descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })), hits_addend: options.hitsAddend ?? 0 };
      const deadline = new Date(Date.now() + (options.timeoutMs ?? filter.timeoutMs ?? 20));
      try {
        const raw = await new Promise<RateLimitResponseObject>((resolve, reject) =>
          client.ShouldRateLimit(message, new grpc.Metadata(), { deadline }, (err: grpc.ServiceError | null, res: RateLimitResponseObject) => (err ? reject(err) : resolve(res))),
        );
        const headers = new Map(raw.response_headers_to_add.map((h) => [h.key.toLowerCase(), h.value] as const));
        const limited = raw.overall_code === "OVER_LIMIT";
        return { kind: limited ? "limited" : "pass", status: limited ? 429 : 200, headers, body: Buffer.from(raw.raw_body).toString("utf8"), raw };
      } catch (err) {
        const e = err as grpc.ServiceError;
        if (typeof e.code !== "number") throw err;
        return { kind: "error", grpcCode: e.code, message: e.details, status: filter.failureModeDeny ? 500 : 200 };
      }
    },
    close: () => client.close(),
  };
}
