import { describe, expect, it } from "vitest";
import { MAX_QUERY_DEPTH, MAX_QUERY_LENGTH, MAX_QUERY_TERMS, isQueryError, parseQuery, permissionsOf, type QueryNode } from "../src/policy/query.js";

/** Renders a tree fully parenthesized, so precedence is visible in the expectation. */
function show(node: QueryNode): string {
  if (node.op === "perm") return node.name;
  return `(${node.children.map(show).join(node.op === "and" ? " & " : " | ")})`;
}

function parsed(text: string): string {
  const result = parseQuery(text);
  if (isQueryError(result)) throw new Error(`unexpected error: ${result.message} at ${result.position}`);
  return show(result);
}

function error(text: string): { message: string; position: number } {
  const result = parseQuery(text);
  if (!isQueryError(result)) throw new Error(`expected an error for ${text}`);
  return result;
}

describe("permission query parser", () => {
  it("binds AND tighter than OR, flattens chains, and honours parentheses", () => {
    expect(parsed("chat:write")).toBe("chat:write");
    expect(parsed("a AND b OR c")).toBe("((a & b) | c)");
    expect(parsed("a OR b AND c")).toBe("(a | (b & c))");
    expect(parsed("a AND (b OR c)")).toBe("(a & (b | c))");
    expect(parsed("a AND b AND c OR d OR e AND f")).toBe("((a & b & c) | d | (e & f))");
    expect(parsed("((a))")).toBe("a");
    expect(parsed("  chat:write\tand\n(files:read or admin) ")).toBe("(chat:write & (files:read | admin))");
  });

  it("lists the permissions a query names, once each, in order", () => {
    const q = parseQuery("b AND (a OR b) AND c");
    expect(isQueryError(q)).toBe(false);
    expect(permissionsOf(q as QueryNode)).toEqual(["b", "a", "c"]);
  });

  it.each([
    ["", "the query is empty", 1],
    ["   ", "the query is empty", 1],
    ["AND", 'expected a permission or "(", found AND', 1],
    ["a AND", "the query ends where a permission was expected", 6],
    ["a OR OR b", 'expected a permission or "(", found OR', 6],
    ["a b", 'expected AND, OR or ")", found permission "b"', 3],
    ["(a", '"(" is never closed', 1],
    ["a)", 'unmatched ")"', 2],
    ["()", 'expected a permission or "(", found ")"', 2],
    ["a AND (b OR c))", 'unmatched ")"', 15],
    ["a OR chat:*", '"chat:*" has a wildcard; queries name concrete permissions (wildcards belong in grants)', 6],
    ["a & b", 'unexpected character "&"', 3],
    ["chat::write", '"chat::write" is not a permission such as chat:write', 1],
    ["a AND :b", '":b" is not a permission such as chat:write', 7],
  ])("rejects %j: %s at position %d", (text, message, position) => {
    expect(error(text)).toEqual({ message, position });
  });

  it("rejects 100k nested parentheses as too long, without touching the stack", () => {
    const text = "(".repeat(100_000) + "a" + ")".repeat(100_000);
    expect(error(text)).toEqual({ message: `longer than ${MAX_QUERY_LENGTH} characters`, position: MAX_QUERY_LENGTH + 1 });
  });

  it("rejects nesting deeper than the cap at the first paren over it, even within the length limit", () => {
    const text = "(".repeat(2000) + "a" + ")".repeat(2000);
    expect(text.length).toBeLessThanOrEqual(MAX_QUERY_LENGTH);
    expect(error(text)).toEqual({ message: `parentheses nested deeper than ${MAX_QUERY_DEPTH}`, position: MAX_QUERY_DEPTH + 1 });
    const atCap = "(".repeat(MAX_QUERY_DEPTH) + "a" + ")".repeat(MAX_QUERY_DEPTH);
    expect(parsed(atCap)).toBe("a");
  });

  it("rejects more terms than the cap", () => {
    const ok = Array.from({ length: MAX_QUERY_TERMS }, (_, i) => `p${i}`).join(" OR ");
    expect(isQueryError(parseQuery(ok))).toBe(false);
    const tooMany = `${ok} OR extra`;
    expect(error(tooMany).message).toBe(`more than ${MAX_QUERY_TERMS} permissions`);
  });

  it("parses long flat chains in linear time", () => {
    // 128 terms is the cap; long whitespace padding must not cost more than a linear scan.
    const text = `a${" ".repeat(MAX_QUERY_LENGTH - 10)}OR b`;
    const started = performance.now();
    expect(parsed(text)).toBe("(a | b)");
    expect(performance.now() - started).toBeLessThan(50);
  });
});
