/**
 * Where a credential may come from in an HTTP request seen by Envoy, and how it is found.
 *
 * A source is one of:
 *   - `bearer`          — the `authorization` header with the `Bearer` scheme (other schemes are skipped);
 *   - `header:<name>`   — the whole value of a header, e.g. `header:x-api-key`;
 *   - `query:<param>`   — a query parameter of the request target, e.g. `query:api_key`.
 * Sources are tried in the configured order; the first one present wins, even if what it holds
 * turns out to be invalid (a request does not get a second try with another credential).
 */
export type CredentialSource =
  | { kind: "bearer"; name: "authorization" }
  | { kind: "header"; name: string }
  | { kind: "query"; name: string };

/** The default order: `authorization: Bearer`, then `x-api-key`, then the `api_key` query parameter. */
export const DEFAULT_CREDENTIAL_SOURCES = "bearer,header:x-api-key,query:api_key";

const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]{1,64}$/;
const QUERY_NAME = /^[A-Za-z0-9._~-]{1,64}$/;

/**
 * Parses a comma-separated source list such as `bearer,header:x-api-key,query:api_key`.
 * Returns a description of the first problem instead of throwing, so the caller can report it
 * against its own field name (an environment variable or a context extension).
 */
export function parseCredentialSources(text: string): CredentialSource[] | string {
  const sources: CredentialSource[] = [];
  for (const raw of text.split(",")) {
    const item = raw.trim();
    const colon = item.indexOf(":");
    const kind = colon < 0 ? item : item.slice(0, colon);
    const name = colon < 0 ? "" : item.slice(colon + 1);
    if (kind === "bearer" && name === "") sources.push({ kind: "bearer", name: "authorization" });
    else if (kind === "header" && HEADER_NAME.test(name) && !name.startsWith(":")) sources.push({ kind: "header", name });
    else if (kind === "query" && QUERY_NAME.test(name)) sources.push({ kind: "query", name });
    else return `"${item.slice(0, 80)}" is not bearer, header:<lower-case name> or query:<name>`;
  }
  if (sources.length === 0) return "must name at least one source";
  return sources;
}

/** Request headers by lower-case name (a Map will do). */
export interface HeaderLookup extends Iterable<[string, string]> {
  get(name: string): string | undefined;
  has(name: string): boolean;
}

/** The parts of a request a credential can be read from. Header names are lower-case. */
export interface CredentialCarrier {
  headers: HeaderLookup;
  /** The request target with its query string, undecoded (`/v1/chat?api_key=...`). */
  path: string;
}

/** A credential found in a request, and where it was found. */
export interface FoundCredential {
  value: string;
  source: CredentialSource;
  /** Bit i set: source i is present in the request, usable or not (what `locationsFor` strips). */
  present: number;
}

const BEARER = /^bearer(?:\s+|$)/i;

/**
 * Finds the credential of a request: the first configured source present with a usable value,
 * else undefined. Every source is looked at once, so the answer also says which are present.
 */
export function findCredential(request: CredentialCarrier, sources: readonly CredentialSource[]): FoundCredential | undefined {
  const looked = lookAt(request, sources);
  return looked.source ? (looked as FoundCredential) : undefined;
}

/** One pass over the sources: which are present (bit i = source i), and the first usable one with its value. */
function lookAt(request: CredentialCarrier, sources: readonly CredentialSource[]): { value: string; source: CredentialSource | undefined; present: number } {
  let query: URLSearchParams | undefined;
  let present = 0;
  let value = "";
  let source: CredentialSource | undefined;
  for (let i = 0; i < sources.length; i++) {
    const s = sources[i]!;
    const v = s.kind === "query" ? (query ??= queryOf(request.path)).get(s.name) ?? undefined : request.headers.get(s.name);
    if (v === undefined) continue;
    present += 2 ** i;
    if (source === undefined && v !== "" && (s.kind !== "bearer" || BEARER.test(v))) {
      value = v;
      source = s;
    }
  }
  return { value, source, present };
}

/** Credential headers and query parameters to remove; shared between requests, so never changed. */
export interface CredentialLocations {
  readonly headers: readonly string[];
  readonly queryParameters: readonly string[];
}

/** Per list of sources: the locations for each set of sources present (bit i = source i present). */
const locationsBySources = new WeakMap<readonly CredentialSource[], Map<number, CredentialLocations>>();
/** Lists longer than this (not seen in practice) are answered without the memo. */
const MAX_MEMO_SOURCES = 30;

/**
 * What to strip before the request goes upstream: every configured credential header and query
 * parameter the request carries, not just the one used, so no credential reaches the upstream.
 * The answer depends only on which sources are present, so it is built once per combination.
 */
export function credentialLocations(request: CredentialCarrier, sources: readonly CredentialSource[]): CredentialLocations {
  return locationsFor(sources, lookAt(request, sources).present);
}

/** The locations of the sources whose bits are set in `present` (as `FoundCredential.present` gives them). */
export function locationsFor(sources: readonly CredentialSource[], present: number): CredentialLocations {
  if (sources.length > MAX_MEMO_SOURCES) return locationsOf(sources, present);
  let memo = locationsBySources.get(sources);
  if (!memo) locationsBySources.set(sources, (memo = new Map()));
  let locations = memo.get(present);
  if (!locations) memo.set(present, (locations = locationsOf(sources, present)));
  return locations;
}

function locationsOf(sources: readonly CredentialSource[], present: number): CredentialLocations {
  const headers: string[] = [];
  const queryParameters: string[] = [];
  sources.forEach((source, i) => {
    if (Math.floor(present / 2 ** i) % 2 === 0) return;
    const into = source.kind === "query" ? queryParameters : headers;
    if (!into.includes(source.name)) into.push(source.name);
  });
  return Object.freeze({ headers: Object.freeze(headers), queryParameters: Object.freeze(queryParameters) });
}

/** Read only: the query of a target without one. */
const NO_QUERY = new URLSearchParams();

function queryOf(path: string): URLSearchParams {
  const start = path.indexOf("?");
  if (start < 0) return NO_QUERY;
  const end = path.indexOf("#", start);
  try {
    return new URLSearchParams(path.slice(start + 1, end < 0 ? undefined : end));
  } catch {
    return new URLSearchParams();
  }
}
