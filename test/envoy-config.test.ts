/**
 * deploy/envoy.yaml, checked without an Envoy binary: `buf convert` parses it strictly (unknown
 * fields and `@type`s are errors) against Envoy's official v3 protos, and the parsed settings are
 * checked against what the Tollgate adapters expect (route settings, descriptors, health names).
 */
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CREDENTIAL_SOURCES, parseCredentialSources, type CredentialSource } from "../src/envoy/credentials.js";
import { DESCRIPTOR_KEYS } from "../src/envoy/rate-limit-service.js";
import { readRouteSettings } from "../src/envoy/route-settings.js";
import { Authorization } from "../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { OFFICIAL_INCLUDE_DIRS } from "./support/envoy-harness.js";

const run = promisify(execFile);
const buf = fileURLToPath(new URL("../node_modules/.bin/buf", import.meta.url));
const envoyYaml = fileURLToPath(new URL("../deploy/envoy.yaml", import.meta.url));
let workspace: string;

/**
 * A buf workspace over the official protos. The protoc-gen-validate copy bundled next to them
 * predates `StringRules.ignore_empty`, which the bundled envoy-api uses in annotations; a copy with
 * that one option field added lets buf compile. Validation annotations do not affect parsing.
 */
async function buildImage(): Promise<string> {
  workspace = mkdtempSync(path.join(tmpdir(), "envoy-api-"));
  const [envoyApi, googleapis, xds, pgv] = OFFICIAL_INCLUDE_DIRS as [string, string, string, string];
  symlinkSync(envoyApi, path.join(workspace, "envoy-api"));
  symlinkSync(googleapis, path.join(workspace, "googleapis"));
  symlinkSync(xds, path.join(workspace, "xds"));
  mkdirSync(path.join(workspace, "pgv/validate"), { recursive: true });
  const validate = readFileSync(path.join(pgv, "validate/validate.proto"), "utf8");
  writeFileSync(path.join(workspace, "pgv/validate/validate.proto"), validate.replace("message StringRules {", "message StringRules {\n  optional bool ignore_empty = 26;"));
  writeFileSync(path.join(workspace, "buf.yaml"), "version: v2\nmodules:\n  - path: envoy-api\n  - path: googleapis\n  - path: xds\n  - path: pgv\n");
  const roots = ["config/bootstrap/v3/bootstrap", "extensions/filters/http/ext_authz/v3/ext_authz", "extensions/filters/http/ratelimit/v3/rate_limit", "extensions/filters/http/router/v3/router", "extensions/filters/network/http_connection_manager/v3/http_connection_manager", "extensions/upstreams/http/v3/http_protocol_options"];
  const image = path.join(workspace, "image.binpb");
  await run(buf, ["build", "-o", image, ...roots.flatMap((r) => ["--path", `envoy-api/envoy/${r}.proto`])], { cwd: workspace });
  return image;
}

async function parse(image: string, file: string): Promise<Json> {
  const { stdout } = await run(buf, ["convert", image, "--type", "envoy.config.bootstrap.v3.Bootstrap", "--from", file, "--to", "-#format=json"], { cwd: workspace });
  return JSON.parse(stdout) as Json;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;
let image: string;
let config: Json;

beforeAll(async () => {
  image = await buildImage();
  copyFileSync(envoyYaml, path.join(workspace, "envoy.yaml"));
  config = await parse(image, path.join(workspace, "envoy.yaml"));
}, 60_000);
afterAll(() => workspace && rmSync(workspace, { recursive: true, force: true }));

const hcm = () => config.staticResources.listeners[0].filterChains[0].filters[0].typedConfig;
const filter = (name: string) => hcm().httpFilters.find((f: Json) => f.name === name)?.typedConfig;

describe("deploy/envoy.yaml", () => {
  it("is rejected by the same check when it holds a field Envoy does not know", async () => {
    const bad = path.join(workspace, "bad.yaml");
    writeFileSync(bad, readFileSync(envoyYaml, "utf8").replace("stat_prefix: tollgate", "stat_prefix: tollgate\n                      status_on_eror: { code: Forbidden }"));
    await expect(parse(image, bad)).rejects.toMatchObject({ stderr: expect.stringMatching(/unknown field "status_on_eror"/) });
  });

  it("calls Check on the tollgate cluster with a 200 ms timeout, failing closed with 503", () => {
    const extAuthz = filter("envoy.filters.http.ext_authz");
    expect(extAuthz).toMatchObject({ transportApiVersion: "V3", grpcService: { envoyGrpc: { clusterName: "tollgate" }, timeout: "0.200s" }, statusOnError: { code: "ServiceUnavailable" } });
    expect(extAuthz.failureModeAllow ?? false).toBe(false);
    expect(hcm().httpFilters.map((f: Json) => f.name)).toEqual(["envoy.filters.http.ext_authz", "envoy.filters.http.ratelimit", "envoy.filters.http.router"]);
  });

  it("gives every route context extensions that Tollgate accepts", () => {
    const defaults = parseCredentialSources(DEFAULT_CREDENTIAL_SOURCES) as CredentialSource[];
    const routes = hcm().routeConfig.virtualHosts[0].routes as Json[];
    const settings = routes.map((r) => r.typedPerFilterConfig?.["envoy.filters.http.ext_authz"]).filter((c) => c?.checkSettings).map((c) => readRouteSettings(c.checkSettings.contextExtensions, defaults));
    expect(settings.map((s) => [s.permission, s.limits, s.tenantHeader])).toEqual([["chat:write", ["rpm"], ""], ["files:read", [], "x-tenant-id"], ["", undefined, ""]]);
  });

  it("rate-limits by the key_id ext_authz publishes, on a route where ext_authz does not also charge", () => {
    const search = hcm().routeConfig.virtualHosts[0].routes.find((r: Json) => r.match.prefix === "/v1/search");
    const [metadata, generic] = search.route.rateLimits[0].actions;
    expect(metadata.metadata).toMatchObject({ descriptorKey: DESCRIPTOR_KEYS.keyId, metadataKey: { key: "envoy.filters.http.ext_authz", path: [{ key: "key_id" }] } });
    expect(generic.genericKey.descriptorKey).toBe(DESCRIPTOR_KEYS.limit);
    expect(search.typedPerFilterConfig["envoy.filters.http.ext_authz"].checkSettings.contextExtensions.limits).toBe("none");
    expect(filter("envoy.filters.http.ratelimit")).toMatchObject({ domain: "tollgate", timeout: "0.020s", rateLimitService: { grpcService: { envoyGrpc: { clusterName: "tollgate" } } } });
  });

  it("health-checks the tollgate cluster over gRPC for the service name Tollgate reports", () => {
    const cluster = config.staticResources.clusters.find((c: Json) => c.name === "tollgate");
    expect(cluster.healthChecks[0].grpcHealthCheck.serviceName).toBe(Authorization.typeName);
    expect(cluster.typedExtensionProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].explicitHttpConfig).toHaveProperty("http2ProtocolOptions");
  });
});
