import { Violations } from "../domain/errors.js";
import { NAME_TOKEN_PATTERN } from "../services/validate.js";
import { parseCredentialSources, type CredentialSource } from "./credentials.js";

/**
 * What one Envoy route asks of Tollgate, read from `check_settings.context_extensions`.
 *
 * | extension            | meaning                                                        | default            |
 * |----------------------|----------------------------------------------------------------|--------------------|
 * | `permission`         | permission query to Authorize (`chat:write AND files:read`)    | none: any valid key |
 * | `resource`           | resource passed to Authorize                                   | none               |
 * | `tenant_header`      | request header naming the target tenant (Authorize checks it)  | the key's tenant   |
 * | `limits`             | comma-separated limit names to charge; `none` = no quota step  | auto-applied limits |
 * | `cost`               | units to charge, 0 = check only                                | 1                  |
 * | `credential_sources` | e.g. `header:x-api-key,bearer` (see credentials.ts)           | server setting     |
 * | `strip_credentials`  | `true` / `false`: remove credential headers and query params   | true               |
 *
 * An unknown extension name is an error, not ignored: a misspelt `permision` must not silently
 * open a route. Errors are INVALID_ARGUMENT naming `attributes.context_extensions.<name>`, so Envoy
 * applies its `status_on_error` (a deny by default) and the operator sees the cause in the log.
 */
export interface RouteSettings {
  permission: string;
  resource: string;
  tenantHeader: string;
  /** undefined = no quota step; [] = the key's auto-applied limits. */
  limits: string[] | undefined;
  cost: number;
  credentialSources: readonly CredentialSource[];
  stripCredentials: boolean;
}

/** The largest `cost` a route may charge per request. */
export const MAX_ROUTE_COST = 1_000_000_000;

const KNOWN = new Set(["permission", "resource", "tenant_header", "limits", "cost", "credential_sources", "strip_credentials"]);
const FIELD = "attributes.context_extensions";

/** Parses and validates a route's extensions, reporting every bad one at once. */
export function readRouteSettings(extensions: Readonly<Record<string, string>>, defaultSources: readonly CredentialSource[]): RouteSettings {
  const v = new Violations();
  for (const name of Object.keys(extensions)) {
    if (!KNOWN.has(name)) v.add(`${FIELD}.${name.slice(0, 64)}`, `is not a Tollgate setting (known: ${[...KNOWN].join(", ")})`);
  }
  const get = (name: string) => extensions[name] ?? "";
  const permission = get("permission").trim();
  if (permission.length > 1024) v.add(`${FIELD}.permission`, "must be at most 1024 characters");
  const resource = get("resource");
  if (resource.length > 256) v.add(`${FIELD}.resource`, "must be at most 256 characters");
  const tenantHeader = get("tenant_header").toLowerCase();
  if (tenantHeader !== "" && !/^[a-z0-9-]{1,64}$/.test(tenantHeader)) v.add(`${FIELD}.tenant_header`, "must be a header name such as x-tenant-id");
  const settings: RouteSettings = {
    permission,
    resource,
    tenantHeader,
    limits: readLimits(v, get("limits")),
    cost: readCost(v, extensions.cost),
    credentialSources: defaultSources,
    stripCredentials: readBoolean(v, "strip_credentials", extensions.strip_credentials, true),
  };
  if (extensions.credential_sources !== undefined) {
    const sources = parseCredentialSources(extensions.credential_sources);
    if (typeof sources === "string") v.add(`${FIELD}.credential_sources`, sources);
    else settings.credentialSources = sources;
  }
  v.throwIfAny();
  return settings;
}

/** A request's route extensions; `extensions` is read only when `extensionsKey` (the wire reader's) is not cached. */
export interface RouteExtensions {
  readonly extensions: Readonly<Record<string, string>>;
  readonly extensionsKey?: string | undefined;
}

/** Most distinct route settings kept parsed; routes are few, so this is never reached in practice. */
const MAX_CACHED_ROUTES = 1_000;

/**
 * `readRouteSettings` remembered per distinct set of extensions: Envoy sends a route's
 * `context_extensions` with every Check, so each route is parsed and validated once. Invalid
 * settings are not remembered; each request with them gets the same INVALID_ARGUMENT. A request
 * read from the wire brings its own key (its extensions' encoded bytes), so none is built.
 */
export function createRouteSettingsReader(defaultSources: readonly CredentialSource[]): (request: RouteExtensions) => RouteSettings {
  const cache = new Map<string, RouteSettings>();
  return (request) => {
    // The wire reader's key (the entries' bytes) starts with their tag, "R"; a built one with a digit.
    const wireKey = request.extensionsKey;
    let key = wireKey ?? "";
    if (wireKey === undefined) {
      const extensions = request.extensions;
      for (const name in extensions) {
        const value = extensions[name]!;
        key += `${name.length}:${name}${value.length}:${value}`; // length-prefixed: no two sets share a key
      }
    }
    const cached = cache.get(key);
    if (cached) return cached;
    const settings = readRouteSettings(request.extensions, defaultSources);
    if (cache.size >= MAX_CACHED_ROUTES) cache.clear();
    cache.set(key, settings);
    return settings;
  };
}

function readLimits(v: Violations, text: string): string[] | undefined {
  const trimmed = text.trim();
  if (trimmed === "none") return undefined;
  if (trimmed === "") return [];
  const names = trimmed.split(",").map((n) => n.trim());
  if (names.length > 32 || names.some((n) => !NAME_TOKEN_PATTERN.test(n))) {
    v.add(`${FIELD}.limits`, "must be `none` or up to 32 comma-separated limit names");
  }
  return names;
}

function readCost(v: Violations, text: string | undefined): number {
  if (text === undefined) return 1;
  const cost = /^\d{1,10}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(cost <= MAX_ROUTE_COST)) {
    v.add(`${FIELD}.cost`, `must be an integer from 0 to ${MAX_ROUTE_COST}`);
    return 1;
  }
  return cost;
}

function readBoolean(v: Violations, name: string, text: string | undefined, fallback: boolean): boolean {
  if (text === undefined) return fallback;
  if (text === "true" || text === "false") return text === "true";
  v.add(`${FIELD}.${name}`, "must be true or false");
  return fallback;
}
