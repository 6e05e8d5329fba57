/** Namespace of token subjects, so that a key id can never collide with a user subject. */
export const SUBJECT_PREFIX = "apikey:";

/** The `typ` header of every access token (RFC 9068 §2.1). */
export const ACCESS_TOKEN_TYPE = "at+jwt";

/** The claims Tollgate puts in an access token (RFC 9068 §2.2, plus `tenant`). */
export interface AccessTokenClaims {
  iss: string;
  /** `apikey:<key id>`. */
  sub: string;
  aud: string;
  exp: number;
  iat: number;
  nbf: number;
  jti: string;
  /** The key id the token was issued from. */
  client_id: string;
  /** Space-separated granted scopes. */
  scope: string;
  tenant: string;
}

/** A credential shaped like a compact JWS (the header of ours always starts `{"` = `eyJ`). */
export function looksLikeJwt(credential: string): boolean {
  return /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(credential);
}

/** Splits a space-separated scope string, dropping empties and duplicates. */
export function splitScope(scope: string): string[] {
  return [...new Set(scope.split(" ").filter(Boolean))];
}
