import { invalidArgument } from "../domain/errors.js";

/**
 * Opaque page tokens: base64url JSON bound to the query they continue (`scope`), so a token from
 * one tenant's listing cannot be replayed against another's. Bad tokens are INVALID_ARGUMENT.
 */
export function encodePageToken(scope: string, position: Record<string, string>): string {
  return Buffer.from(JSON.stringify({ s: scope, ...position })).toString("base64url");
}

/** Decodes a token produced by `encodePageToken` for the same scope; "" means the first page. */
export function decodePageToken(field: string, token: string, scope: string, keys: readonly string[]): Record<string, string> | undefined {
  if (token === "") return undefined;
  let parsed: unknown;
  try {
    if (token.length > 1024 || !/^[A-Za-z0-9_-]+$/.test(token)) throw new Error("shape");
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalidArgument(field, "is not a page token returned by this API");
  }
  const record = parsed as Record<string, unknown>;
  if (typeof parsed !== "object" || parsed === null || record.s !== scope || !keys.every((k) => typeof record[k] === "string")) {
    throw invalidArgument(field, "does not belong to this query");
  }
  return Object.fromEntries(keys.map((k) => [k, record[k] as string]));
}

/** Validates a requested page size; 0 means the default. */
export function pageSize(field: string, requested: number, def = 50, max = 500): number {
  if (requested < 0 || requested > max) throw invalidArgument(field, `must be between 0 and ${max}`);
  return requested === 0 ? def : requested;
}
