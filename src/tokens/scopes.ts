/**
 * Whether a key permission grants a requested scope. A scope may narrow a key's permissions,
 * never widen them: exact matches, `*` (everything), and a trailing `:*` segment (`chat:*`
 * grants `chat:write` and `chat:files:read`). A wildcard is never granted by a narrower
 * permission: `chat:write` does not grant `chat:*`.
 * NOTE: this must agree with the policy engine's wildcard rules; when src/policy lands, use its
 * matcher here.
 */
export function grants(permission: string, scope: string): boolean {
  if (permission === scope || permission === "*") return true;
  if (permission.endsWith(":*")) return scope.startsWith(permission.slice(0, -1)) && scope.length > permission.length - 1;
  return false;
}

/** Whether any of `permissions` grants `scope`. */
export function covered(scope: string, permissions: readonly string[]): boolean {
  return permissions.some((p) => grants(p, scope));
}

/** The scopes of `requested` that `permissions` do not grant, in request order. */
export function uncovered(requested: readonly string[], permissions: readonly string[]): string[] {
  return requested.filter((s) => !covered(s, permissions));
}
