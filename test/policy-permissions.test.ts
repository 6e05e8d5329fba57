import { describe, expect, it } from "vitest";
import { PermissionSet, isConcretePermission, isPermissionPattern, patternMatches } from "../src/policy/permissions.js";

// The wildcard semantics of src/policy/permissions.ts, as a table: [grant, required, granted?].
const GRANT_TABLE: Array<[string, string, boolean]> = [
  // exact, case-sensitive
  ["chat:write", "chat:write", true],
  ["chat:write", "chat:read", false],
  ["chat:write", "Chat:write", false],
  ["chat:write", "chat:write:draft", false],
  ["prompt-engineering:execute", "prompt-engineering:execute", true],
  // a bare * matches every permission, any number of segments
  ["*", "read", true],
  ["*", "chat:write", true],
  ["*", "chat:messages:delete", true],
  // a trailing * matches one or more segments (crosses ':')
  ["chat:*", "chat:write", true],
  ["chat:*", "chat:messages:delete", true],
  ["chat:*", "chat", false],
  ["chat:*", "chatter:write", false],
  ["chat:*", "files:read", false],
  // an inner * matches exactly one segment
  ["*:read", "chat:read", true],
  ["*:read", "files:read", true],
  ["*:read", "read", false],
  ["*:read", "chat:messages:read", false],
  ["*:read", "chat:write", false],
  ["chat:*:delete", "chat:messages:delete", true],
  ["chat:*:delete", "chat:delete", false],
  ["chat:*:delete", "chat:a:b:delete", false],
  ["*:*", "chat:write", true],
  ["*:*", "chat:messages:write", true],
  ["*:*", "read", false],
  // the plain ladder: admin ⊇ write ⊇ read; admin ⊇ webhook
  ["admin", "admin", true],
  ["admin", "write", true],
  ["admin", "read", true],
  ["admin", "webhook", true],
  ["write", "read", true],
  ["write", "admin", false],
  ["write", "webhook", false],
  ["read", "write", false],
  ["webhook", "read", false],
  // the ladder does not reach resource-scoped permissions
  ["read", "chat:read", false],
  ["admin", "chat:admin", false],
  // reserved tollgate: permissions only by an exact grant
  ["*", "tollgate:admin", false],
  ["*", "tollgate:cross-tenant", false],
  ["tollgate:*", "tollgate:admin", false],
  ["*:admin", "tollgate:admin", false],
  ["admin", "tollgate:admin", false],
  ["tollgate:admin", "tollgate:admin", true],
  ["tollgate:cross-tenant", "tollgate:cross-tenant", true],
];

describe("permission wildcard semantics", () => {
  it.each(GRANT_TABLE)("grant %j covers %j: %s", (grant, required, expected) => {
    expect(new PermissionSet([grant], true).has(required)).toBe(expected);
  });

  // Deny lists use the same matching, without the ladder and without the reservation.
  const DENY_TABLE: Array<[string, string, boolean]> = [
    ["tool:Bash", "tool:Bash", true],
    ["tool:*", "tool:Bash", true],
    ["tool:*", "tool", false],
    ["*", "tollgate:admin", true],
    ["admin", "write", false],
    ["write", "write", true],
    ["*:delete", "files:delete", true],
  ];
  it.each(DENY_TABLE)("deny %j matches %j: %s", (deny, required, expected) => {
    expect(new PermissionSet([deny], false).has(required)).toBe(expected);
  });

  it("agrees with the single-pattern matcher for every non-reserved, ladder-free row", () => {
    for (const [grant, required, expected] of GRANT_TABLE) {
      if (required.startsWith("tollgate:") || ["admin", "write"].includes(grant)) continue;
      expect(patternMatches(grant, required), `${grant} vs ${required}`).toBe(expected);
    }
  });

  it("accepts whole-segment wildcards only, and queries only concrete permissions", () => {
    for (const p of ["*", "chat:*", "*:read", "a:*:c", "read", "chat.v2:write_all"]) expect(isPermissionPattern(p)).toBe(true);
    for (const p of ["", "chat:wr*", "**", "chat:", ":read", "chat::write", "chat write", "-x"]) expect(isPermissionPattern(p)).toBe(false);
    expect(isConcretePermission("chat:write")).toBe(true);
    expect(isConcretePermission("chat:*")).toBe(false);
    expect(isConcretePermission("*")).toBe(false);
  });

  it("an empty set grants nothing", () => {
    const set = new PermissionSet([], true);
    expect(set.empty).toBe(true);
    expect(set.has("read")).toBe(false);
  });
});
