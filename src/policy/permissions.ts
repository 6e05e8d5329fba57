/**
 * Permission matching. The rules, pinned by the table in test/policy-permissions.test.ts:
 *
 * 1. A permission is one or more non-empty segments separated by `:` (`chat:write`,
 *    `prompt-engineering:execute`, `read`). Matching is exact and case-sensitive.
 * 2. In a grant (or deny) pattern, a `*` segment that is NOT last matches exactly one segment:
 *    `*:read` matches `chat:read` but neither `read` nor `chat:messages:read`.
 * 3. A `*` segment that IS last matches one or more segments, so it does cross `:`:
 *    `chat:*` matches `chat:write` and `chat:messages:delete`, but not `chat` itself.
 *    A bare `*` is therefore "every permission".
 * 4. `*` is a whole segment or nothing: `chat:wr*` is not a pattern (validation rejects it).
 * 5. The plain grants form a ladder: `admin` implies `write`, `read` and `webhook`; `write`
 *    implies `read`. The ladder applies to grants only, never to deny lists, and never reaches
 *    resource-scoped permissions (`read` does not grant `chat:read`; grant `*:read` for that).
 * 6. Permissions in the reserved `tollgate:` namespace (`tollgate:admin`,
 *    `tollgate:cross-tenant`, …) are granted only by an exact grant: no wildcard, `*` included,
 *    ever yields them. Deny patterns have no such exception, so a deny `*` denies everything.
 * 7. A required permission (a query leaf) is always concrete: it never contains `*`.
 */

/** The namespace whose permissions only an exact grant confers. */
export const RESERVED_PREFIX = "tollgate:";

const IMPLIED: Record<string, readonly string[]> = {
  admin: ["write", "read", "webhook"],
  write: ["read"],
};

/** True when `permission` names a concrete permission (no wildcard) that a query may require. */
export function isConcretePermission(permission: string): boolean {
  return CONCRETE.test(permission);
}
const CONCRETE = /^[A-Za-z0-9][A-Za-z0-9_.-]*(?::[A-Za-z0-9][A-Za-z0-9_.-]*)*$/;

/** True when `pattern` is a permission or a wildcard pattern per the rules above. */
export function isPermissionPattern(pattern: string): boolean {
  return PATTERN.test(pattern);
}
const PATTERN = /^(?:\*|[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?:\*|[A-Za-z0-9][A-Za-z0-9_.-]*))*$/;

/** Matches one pattern against one concrete permission (rules 1–4; no ladder, no reservation). */
export function patternMatches(pattern: string, permission: string): boolean {
  if (pattern === permission) return true;
  if (!pattern.includes("*")) return false;
  const want = pattern.split(":");
  const have = permission.split(":");
  const last = want.length - 1;
  if (want[last] === "*" ? have.length < want.length : have.length !== want.length) return false;
  for (let i = 0; i < last; i++) {
    if (want[i] !== "*" && want[i] !== have[i]) return false;
  }
  return want[last] === "*" || want[last] === have[last];
}

/**
 * A compiled set of patterns, built once per effective policy and queried on the hot path with
 * no allocation: exact names in a Set, trailing-`*` patterns as prefixes, and the rare patterns
 * with an inner `*` kept for segment-wise matching.
 */
/** Whether a set of grants (or denies) covers a concrete permission. */
export interface PermissionMatcher {
  has(permission: string): boolean;
}

export class PermissionSet implements PermissionMatcher {
  private readonly exact = new Set<string>();
  private readonly prefixes: string[] = [];
  private readonly segmented: string[] = [];
  private everything = false;

  /**
   * @param patterns grant or deny patterns (invalid ones are ignored: validation keeps them out).
   * @param grants true for grants (ladder and reservation apply), false for deny lists.
   */
  constructor(patterns: Iterable<string>, private readonly grants: boolean) {
    for (const p of patterns) this.add(p);
  }

  private add(pattern: string): void {
    if (pattern === "*") this.everything = true;
    else if (!pattern.includes("*")) {
      this.exact.add(pattern);
      if (this.grants) for (const implied of IMPLIED[pattern] ?? []) this.exact.add(implied);
    } else if (pattern.endsWith(":*") && pattern.indexOf("*") === pattern.length - 1) {
      this.prefixes.push(pattern.slice(0, -1));
    } else this.segmented.push(pattern);
  }

  /** True when some pattern of the set covers the concrete `permission`. */
  has(permission: string): boolean {
    if (this.exact.has(permission)) return true;
    if (this.grants && permission.startsWith(RESERVED_PREFIX)) return false;
    if (this.everything) return true;
    for (const prefix of this.prefixes) {
      if (permission.length > prefix.length && permission.startsWith(prefix)) return true;
    }
    for (const pattern of this.segmented) {
      if (patternMatches(pattern, permission)) return true;
    }
    return false;
  }

  /** True when the set holds no pattern at all. */
  get empty(): boolean {
    return !this.everything && this.exact.size === 0 && this.prefixes.length === 0 && this.segmented.length === 0;
  }
}
