/** Reading Envoy's request: client address, credential sources, route settings and their defaults. */
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { clientIpOf, readCheckRequest } from "../src/envoy/check-request.js";
import { credentialLocations, DEFAULT_CREDENTIAL_SOURCES, findCredential, locationsFor, parseCredentialSources, type CredentialSource } from "../src/envoy/credentials.js";
import { createRouteSettingsReader, readRouteSettings } from "../src/envoy/route-settings.js";
import { CheckRequestSchema } from "../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { TollgateError } from "../src/domain/errors.js";

const defaults = parseCredentialSources(DEFAULT_CREDENTIAL_SOURCES) as CredentialSource[];

describe("client address", () => {
  it("is the socket address unless trusted hops are configured", () => {
    expect(clientIpOf("203.0.113.10", "198.51.100.1", 0)).toBe("203.0.113.10");
  });

  it("is the N-th x-forwarded-for entry from the right with N trusted hops", () => {
    const xff = "192.0.2.66, 198.51.100.7, 10.0.0.5";
    expect(clientIpOf("10.0.0.9", xff, 1)).toBe("10.0.0.5");
    expect(clientIpOf("10.0.0.9", xff, 2)).toBe("198.51.100.7");
    expect(clientIpOf("10.0.0.9", xff, 3)).toBe("192.0.2.66");
  });

  it("falls back to the socket address when XFF is shorter than the trusted hops, and is unknown when garbage", () => {
    expect(clientIpOf("10.0.0.9", "198.51.100.7", 2)).toBe("10.0.0.9");
    expect(clientIpOf("10.0.0.9", "evil, 10.0.0.5", 2)).toBe("");
    expect(clientIpOf("::ffff:192.0.2.1", undefined, 0)).toBe("::ffff:192.0.2.1");
    expect(clientIpOf("unix:/tmp/x", undefined, 0)).toBe("");
  });

  it("is read from source.address.socket_address, honouring the configured hops", () => {
    const req = create(CheckRequestSchema, {
      attributes: {
        source: { address: { address: { case: "socketAddress", value: { address: "10.0.0.9", portSpecifier: { case: "portValue", value: 1 } } } } },
        request: { http: { headers: { "x-forwarded-for": "198.51.100.7, 10.0.0.5" }, path: "/p?q=1" } },
      },
    });
    expect(readCheckRequest(req, 0).clientIp).toBe("10.0.0.9");
    expect(readCheckRequest(req, 2).clientIp).toBe("198.51.100.7");
    expect(readCheckRequest(req, 0).path).toBe("/p?q=1");
  });
});

describe("credential sources", () => {
  it("parse the documented forms and reject anything else", () => {
    expect(parseCredentialSources("bearer, header:x-api-key ,query:api_key")).toEqual([
      { kind: "bearer", name: "authorization" },
      { kind: "header", name: "x-api-key" },
      { kind: "query", name: "api_key" },
    ]);
    for (const bad of ["", "cookie:s", "header:X-Upper", "header::path", "bearer:x", "query:"]) expect(typeof parseCredentialSources(bad)).toBe("string");
  });

  it("find the first present source; an empty parameter or header is absent", () => {
    const headers = new Map([["x-api-key", ""], ["authorization", "Bearer abc"]]);
    expect(findCredential({ headers, path: "/x?api_key=q" }, defaults)?.value).toBe("Bearer abc");
    expect(findCredential({ headers: new Map(), path: "/x?api_key=&b=1" }, defaults)).toBeUndefined();
    expect(findCredential({ headers: new Map(), path: "/x?api_key=q#frag" }, defaults)?.source.kind).toBe("query");
  });

  it("locate every configured credential the request carries, once per name, the same answer for the same combination", () => {
    const sources = parseCredentialSources("header:x-api-key,bearer,query:api_key,header:x-api-key,query:key") as CredentialSource[];
    const request = (names: string[], path: string) => ({ headers: new Map(names.map((n) => [n, "v"])), path });
    expect(credentialLocations(request(["x-api-key", "authorization", "accept"], "/a?key=1&api_key=2"), sources)).toEqual({ headers: ["x-api-key", "authorization"], queryParameters: ["api_key", "key"] });
    expect(credentialLocations(request(["authorization"], "/a?key="), sources)).toEqual({ headers: ["authorization"], queryParameters: ["key"] });
    expect(credentialLocations(request([], "/a"), sources)).toEqual({ headers: [], queryParameters: [] });
    // Remembered per combination (and frozen, as it is shared); another list of sources has its own answers.
    const first = credentialLocations(request(["x-api-key"], "/b"), sources);
    expect(credentialLocations(request(["x-api-key"], "/c?other=1"), sources)).toBe(first);
    expect(Object.isFrozen(first.headers)).toBe(true);
    const other = parseCredentialSources("header:x-api-key") as CredentialSource[];
    expect(credentialLocations(request(["x-api-key"], "/b"), other)).not.toBe(first);
    expect(credentialLocations(request(["x-api-key"], "/b"), other)).toEqual(first);
  });

  it("find the credential and which sources are present in one pass, the same locations credentialLocations gives", () => {
    const sources = parseCredentialSources("header:x-api-key,bearer,query:api_key,header:x-api-key,query:key") as CredentialSource[];
    const cases: [Record<string, string>, string, string | undefined][] = [
      [{ "x-api-key": "k1", authorization: "Bearer t" }, "/a?key=1&api_key=2", "k1"],
      [{ "x-api-key": "", authorization: "Basic zz" }, "/a?api_key=&key=q", "q"], // present but unusable sources still count
      [{ authorization: "bearer t" }, "/a", "bearer t"],
      [{ accept: "*/*" }, "/a?other=1", undefined],
    ];
    for (const [headers, path, expected] of cases) {
      const request = { headers: new Map(Object.entries(headers)), path };
      const found = findCredential(request, sources);
      expect(found?.value).toBe(expected);
      if (found) expect(locationsFor(sources, found.present)).toEqual(credentialLocations(request, sources));
    }
  });

  it("are configured from TOLLGATE_ENVOY_CREDENTIAL_SOURCES and TOLLGATE_ENVOY_XFF_TRUSTED_HOPS, each problem reported", () => {
    const config = loadConfig({ TOLLGATE_ENVOY_CREDENTIAL_SOURCES: "query:key", TOLLGATE_ENVOY_XFF_TRUSTED_HOPS: "2" });
    expect(config.envoy).toEqual({ credentialSources: [{ kind: "query", name: "key" }], xffTrustedHops: 2 });
    expect(loadConfig({}).envoy.credentialSources).toEqual(defaults);
    try {
      loadConfig({ TOLLGATE_ENVOY_CREDENTIAL_SOURCES: "cookie:x", TOLLGATE_ENVOY_XFF_TRUSTED_HOPS: "-1" });
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).problems.join("\n")).toMatch(/TOLLGATE_ENVOY_CREDENTIAL_SOURCES/);
    }
  });
});

describe("route settings", () => {
  it("default to: any valid key, the key's tenant, auto-applied limits, cost 1, strip credentials", () => {
    expect(readRouteSettings({}, defaults)).toEqual({
      permission: "", resource: "", tenantHeader: "", limits: [], cost: 1, credentialSources: defaults, stripCredentials: true,
    });
  });

  it("read every documented extension", () => {
    const s = readRouteSettings({ permission: " chat:write ", resource: "r", tenant_header: "X-Tenant", limits: "none", cost: "0", credential_sources: "query:k", strip_credentials: "false" }, defaults);
    expect(s).toEqual({ permission: "chat:write", resource: "r", tenantHeader: "x-tenant", limits: undefined, cost: 0, credentialSources: [{ kind: "query", name: "k" }], stripCredentials: false });
  });

  it("report every bad extension at once as INVALID_ARGUMENT", () => {
    try {
      readRouteSettings({ cost: "1e3", limits: "", tenant_header: "bad header", typo: "x" }, defaults);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(TollgateError);
      expect((err as TollgateError).details.violations?.map((v) => v.field).sort()).toEqual([
        "attributes.context_extensions.cost",
        "attributes.context_extensions.tenant_header",
        "attributes.context_extensions.typo",
      ]);
    }
  });
});

describe("route settings reader", () => {
  it("parses each distinct set of extensions once, and never confuses two sets", () => {
    const read = createRouteSettingsReader(defaults);
    const a = read({ extensions: { resource: "a", cost: "5" } });
    expect(read({ extensions: { resource: "a", cost: "5" } })).toBe(a);
    const b = read({ extensions: { resource: "a4:cost1:5" } });
    expect(b).not.toBe(a);
    expect([a.resource, a.cost, b.resource, b.cost]).toEqual(["a", 5, "a4:cost1:5", 1]);
  });

  it("reports invalid settings on every request rather than remembering them", () => {
    const read = createRouteSettingsReader(defaults);
    for (let i = 0; i < 2; i++) expect(() => read({ extensions: { cost: "-1" } })).toThrow(TollgateError);
  });

  it("decodes a wire request's extensions only when their key is not cached yet", () => {
    const read = createRouteSettingsReader(defaults);
    let decoded = 0;
    const request = (key: string, extensions: Record<string, string>) => ({
      extensionsKey: key,
      get extensions() {
        decoded++;
        return extensions;
      },
    });
    const first = read(request("R1", { cost: "3" }));
    expect(read(request("R1", { cost: "3" }))).toBe(first);
    expect(decoded).toBe(1);
    expect(read(request("R2", { cost: "4" })).cost).toBe(4);
    expect(decoded).toBe(2);
  });
});
