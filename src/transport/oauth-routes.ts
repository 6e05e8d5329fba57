import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { TollgateError } from "../domain/errors.js";
import type { Logger } from "../observability/logger.js";
import { issueToken, type AccessTokens } from "../services/issue-token.js";
import { parseKey } from "../keys/format.js";
import type { Keyring } from "../tokens/keyring.js";
import type { TokenConfig } from "../tokens/token-config.js";
import { splitScope } from "../tokens/claims.js";
import { IssueTokenRequestSchema } from "../gen/tollgate/v1/token_pb.js";
import type { HttpRoute, RouteRequest, RouteResponse } from "./http-server.js";

/** The token parts the HTTP surface serves, its settings, and the logger for failures. */
export interface OAuthRouteDeps {
  tokens: AccessTokens;
  keyring: Pick<Keyring, "jwks">;
  config: TokenConfig;
  logger: Logger;
}

const MAX_BODY_BYTES = 16 * 1024;
const NO_STORE = { "cache-control": "no-store", pragma: "no-cache" };

function send(res: RouteResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

/** An RFC 6749 §5.2 error answer; client authentication failures are 401 with a Basic challenge. */
function oauthError(res: RouteResponse, error: string, description: string): void {
  const status = error === "invalid_client" ? 401 : error === "temporarily_unavailable" ? 503 : error === "server_error" ? 500 : 400;
  const extra: Record<string, string> = { ...NO_STORE };
  if (status === 401) extra["www-authenticate"] = 'Basic realm="tollgate"';
  if (status === 503) extra["retry-after"] = "1";
  send(res, status, { error, error_description: description }, extra);
}

/** Reads the form body, or undefined when it is too large. */
async function readBody(req: RouteRequest): Promise<string | undefined> {
  let body = "";
  for await (const chunk of req) {
    body += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    if (body.length > MAX_BODY_BYTES) return undefined;
  }
  return body;
}

/** Client credentials from HTTP Basic (RFC 6749 §2.3.1: form-encoded, then base64) or the form; both is an error. */
function clientCredentials(req: RouteRequest, form: URLSearchParams): { id: string; secret: string } | "both" | undefined {
  const header = String(req.headers.authorization ?? "");
  const fromForm = form.has("client_secret");
  const basic = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (basic && fromForm) return "both";
  if (basic) {
    const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return undefined;
    const unescape = (s: string) => {
      try {
        return decodeURIComponent(s.replaceAll("+", " "));
      } catch {
        return s;
      }
    };
    return { id: unescape(decoded.slice(0, colon)), secret: unescape(decoded.slice(colon + 1)) };
  }
  return fromForm ? { id: form.get("client_id") ?? "", secret: form.get("client_secret") ?? "" } : undefined;
}

/** The peer address, with IPv4-mapped IPv6 unwrapped so IPv4 allowlists match. */
function peerAddress(req: RouteRequest): string {
  const address = req.socket?.remoteAddress ?? "";
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** `POST /oauth/token`: the client-credentials grant (RFC 6749 §4.4), answered per §5.1 / §5.2. */
function tokenEndpoint(deps: OAuthRouteDeps): HttpRoute {
  return async (req, res) => {
    const type = String(req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== "application/x-www-form-urlencoded") return oauthError(res, "invalid_request", "the body must be application/x-www-form-urlencoded");
    const body = await readBody(req);
    if (body === undefined) return oauthError(res, "invalid_request", "the body is too large");
    const form = new URLSearchParams(body);
    for (const name of new Set(form.keys())) {
      if (form.getAll(name).length > 1) return oauthError(res, "invalid_request", `parameter ${name.slice(0, 40)} is repeated`);
    }
    const grant = form.get("grant_type");
    if (!grant) return oauthError(res, "invalid_request", "grant_type is required");
    if (grant !== "client_credentials") return oauthError(res, "unsupported_grant_type", "only client_credentials is supported");
    const client = clientCredentials(req, form);
    if (client === "both") return oauthError(res, "invalid_request", "use HTTP Basic or form parameters for client authentication, not both");
    if (!client) return oauthError(res, "invalid_client", "client authentication is required");
    // The client id is the key id inside the API key; a mismatch is a wrong credential.
    const parsed = parseKey(client.secret);
    if (!parsed || (client.id !== "" && client.id !== parsed.keyId)) return oauthError(res, "invalid_client", "the client credentials are not valid");
    await answerToken(deps, res, client.secret, form, peerAddress(req));
  };
}

async function answerToken(deps: OAuthRouteDeps, res: RouteResponse, secret: string, form: URLSearchParams, clientIp: string): Promise<void> {
  const ttl = form.get("expires_in");
  if (ttl !== null && !/^[1-9]\d{0,8}$/.test(ttl)) return oauthError(res, "invalid_request", "expires_in must be a positive number of seconds");
  const request = create(IssueTokenRequestSchema, {
    credential: secret,
    scopes: splitScope(form.get("scope") ?? ""),
    audience: form.get("audience") ?? form.get("resource") ?? "",
    clientIp,
    ...(ttl !== null ? { ttl: durationFromMs(Number(ttl) * 1000) } : {}),
  });
  try {
    const issued = await issueToken(deps.tokens, request);
    send(res, 200, { access_token: issued.accessToken, token_type: "Bearer", expires_in: Number(issued.expiresIn), scope: issued.scope }, NO_STORE);
  } catch (err) {
    if (!(err instanceof TollgateError) || err.kind === "internal") {
      deps.logger.error({ err }, "token endpoint failed");
      return oauthError(res, "server_error", "internal error");
    }
    if (err.kind === "unavailable") {
      deps.logger.warn({ err, reason: err.reason }, "token endpoint: dependency unavailable");
      return oauthError(res, "temporarily_unavailable", err.message);
    }
    const named = err.details.metadata?.error;
    const fromField = err.details.violations?.some((v) => v.field.startsWith("scopes")) ? "invalid_scope" : "invalid_request";
    oauthError(res, named ?? (err.kind === "unauthenticated" ? "invalid_client" : fromField), err.message);
  }
}

/** The http(s) base of the metadata endpoints: the issuer when it is a URL, else the request's host. */
function baseUrl(config: TokenConfig, req: RouteRequest): string {
  if (/^https?:\/\//.test(config.issuer)) return config.issuer.replace(/\/+$/, "");
  const host = String(req.headers.host ?? req.headers[":authority"] ?? "");
  return `http://${/^[A-Za-z0-9.:[\]-]{1,255}$/.test(host) ? host : "localhost"}`;
}

/**
 * The OAuth 2.0 HTTP surface: the token endpoint, the JWKS (every key published now, the next
 * key included, so a verifier caching it for `max-age` knows a key before it signs), and RFC 8414
 * authorization-server metadata.
 */
export function createOAuthRoutes(deps: OAuthRouteDeps): Record<string, HttpRoute> {
  return {
    "POST /oauth/token": tokenEndpoint(deps),
    "/.well-known/jwks.json": (_req, res) => send(res, 200, deps.keyring.jwks(), { "cache-control": "public, max-age=300" }),
    "/.well-known/oauth-authorization-server": (req, res) => {
      const base = baseUrl(deps.config, req);
      send(res, 200, {
        issuer: deps.config.issuer,
        token_endpoint: `${base}/oauth/token`,
        jwks_uri: `${base}/.well-known/jwks.json`,
        grant_types_supported: ["client_credentials"],
        token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
        // Required by RFC 8414; there is no authorization endpoint, so no response type.
        response_types_supported: [],
      }, { "cache-control": "public, max-age=300" });
    },
  };
}
